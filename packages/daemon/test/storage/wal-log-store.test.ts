// Proves the segmented write-ahead log store (WalLogStore): it passes @rdl/raft's storage
// compliance suite on real files (with small segments, so rollover is exercised too); an append is
// one O_DSYNC write (a commit-only hard state waits, unwritten, for the next one, or close) and
// concurrent appends are group-committed; a torn or garbage tail (seeded random cuts) loads as exactly the records before
// it, and a stale record beyond a repaired tail is not resurrected; an invalid record in an older
// segment is DAEMON_STORAGE_CORRUPT; segments roll over, compacted ones are deleted, and the log
// reloads across both; an oversized entry is refused with a code; and with a file system that
// loses (or tears) the writes after the last datasync on a simulated power loss, every
// acknowledged append survives and nothing else appears except whole entries that were issued.
import { mkdtemp, readdir, rm, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { storageCompliance, type ComplianceAssertions } from '@rdl/raft/testing';
import { WAL_SEGMENT_BYTES_MIN, WalLogStore } from '../../src/storage/wal-log-store.js';
import { recordBytes, scanSegment, segmentName } from '../../src/storage/wal-format.js';
import type { ConfState, Entry } from '../../src/storage/raft-api.js';
import { CrashFileSystem } from './crash-fs.js';
import { indexes, patternEntry, patternRange, sameEntries, seededRandom } from './helpers.js';

const SMALL_SEGMENT_BYTES = WAL_SEGMENT_BYTES_MIN;
const conf: ConfState = { voters: ['a', 'b', 'c'], learners: [], votersOutgoing: [], learnersNext: [] };

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'rdl-wal-'));
}

const entry = (index: number, term: number, size = 16): Entry => patternEntry(index, term, size);
const range = (from: number, to: number, term: number, size = 16): Entry[] => patternRange(from, to, term, size);

storageCompliance(
  (title, implementation) => test(title, (t) => implementation(t as unknown as ComplianceAssertions)),
  async () => {
    const directory = await tempDir();
    const open = (): WalLogStore => new WalLogStore(join(directory, 'wal'), { segmentBytes: SMALL_SEGMENT_BYTES });
    let current = open();
    return {
      storage: current,
      async reopen() {
        await current.close();
        current = open();
        return current;
      },
      async cleanup() {
        await current.close();
        await rm(directory, { recursive: true, force: true });
      },
    };
  },
  'wal log store',
);

test('an append is one O_DSYNC write; a commit-only hard state waits, unwritten, for the next one', async (t) => {
  const fs = new CrashFileSystem();
  const store = new WalLogStore('/d/wal', { fileSystem: fs, segmentBytes: SMALL_SEGMENT_BYTES });
  await store.load();
  const counts = (): [number, number, number] => [fs.writes, fs.syncedWrites, fs.datasyncs];
  const before = counts();
  await store.append(range(1, 3, 1), { term: 1, vote: 'a', commit: 0 });
  t.deepEqual(counts(), [before[0] + 1, before[1] + 1, before[2]], 'entries and hard state: one synced write');
  await store.append([], { term: 1, vote: 'a', commit: 3 });
  t.deepEqual(counts(), [before[0] + 1, before[1] + 1, before[2]], 'commit only: no IO at all');
  const lost = await new WalLogStore('/d/wal', { fileSystem: fs.crash(), segmentBytes: SMALL_SEGMENT_BYTES }).load();
  t.deepEqual(lost.hardState, { term: 1, vote: 'a', commit: 0 }, 'a power loss now loses only the commit index');
  await store.append([], { term: 2, vote: null, commit: 3 });
  t.deepEqual(counts(), [before[0] + 2, before[1] + 2, before[2]], 'a new term is one synced write');
  // The held commit-only record went to disk with it, in order.
  const crashed = fs.crash();
  const reader = new WalLogStore('/d/wal', { fileSystem: crashed, segmentBytes: SMALL_SEGMENT_BYTES });
  const state = await reader.load();
  t.deepEqual(state.hardState, { term: 2, vote: null, commit: 3 });
  t.deepEqual(indexes(state.entries), [1, 2, 3]);
  await reader.close();
  // Close writes a held commit-only record durably.
  await store.append([], { term: 2, vote: null, commit: 4 });
  await store.close();
  const after = await new WalLogStore('/d/wal', { fileSystem: fs.crash(), segmentBytes: SMALL_SEGMENT_BYTES }).load();
  t.deepEqual(after.hardState, { term: 2, vote: null, commit: 4 });
});

test('appends issued while a sync is in flight are group-committed', async (t) => {
  const fs = new CrashFileSystem();
  fs.isSlow = true;
  const store = new WalLogStore('/d/wal', { fileSystem: fs, segmentBytes: SMALL_SEGMENT_BYTES });
  await store.load();
  const syncs = (): number => fs.datasyncs + fs.syncedWrites;
  const before = syncs();
  const appends: Promise<void>[] = [];
  for (let i = 1; i <= 20; i++) appends.push(store.append([entry(i, 1)], { term: 1, vote: null, commit: i - 1 }));
  await Promise.all(appends);
  t.true(syncs() - before <= 2, `20 appends took ${syncs() - before} syncs`);
  const state = await new WalLogStore('/d/wal', { fileSystem: fs.crash(), segmentBytes: SMALL_SEGMENT_BYTES }).load();
  t.deepEqual(
    indexes(state.entries),
    range(1, 20, 1).map((e) => e.index),
  );
  await store.close();
});

/** Writes `count` appends of one entry each into a fresh real WAL; returns the directory and segment 1's path. */
async function writeLog(count: number, size: number): Promise<{ directory: string; wal: string; segment: string }> {
  const directory = await tempDir();
  const wal = join(directory, 'wal');
  const store = new WalLogStore(wal, { segmentBytes: SMALL_SEGMENT_BYTES });
  await store.load();
  for (let i = 1; i <= count; i++) await store.append([entry(i, 1, size)], null);
  await store.close();
  return { directory, wal, segment: join(wal, segmentName(1)) };
}

/** The end offsets of the records of a segment file (the header first). */
function recordEnds(bytes: Buffer): number[] {
  const ends: number[] = [];
  let offset = 0;
  for (const record of scanSegment(bytes, 1).records) {
    offset += recordBytes(record.payload.length);
    ends.push(offset);
  }
  return ends;
}

test('a torn tail (zeros or garbage from a random offset, seeded) loads as exactly the whole records before it', async (t) => {
  const { directory, wal, segment } = await writeLog(40, 300);
  const original = await readFile(segment);
  const ends = recordEnds(original);
  t.is(ends.length, 41, 'a header and 40 entries records');
  const next = seededRandom(11);
  for (let round = 0; round < 12; round++) {
    const cut = ends[0] + next(ends[40] - ends[0]);
    const damaged = Buffer.from(original);
    const isGarbage = round % 2 === 1;
    const tail = isGarbage
      ? Buffer.from(Array.from({ length: 1 + next(2000) }, () => next(256)))
      : Buffer.alloc(ends[40] - cut);
    damaged.set(tail.subarray(0, damaged.length - cut), cut);
    await writeFile(segment, damaged);
    const store = new WalLogStore(wal, { segmentBytes: SMALL_SEGMENT_BYTES });
    const state = await store.load();
    const whole = ends.filter((end) => end <= cut).length - 1;
    t.deepEqual(
      indexes(state.entries),
      range(1, whole, 1).map((e) => e.index),
      `round ${round}: cut at ${cut}`,
    );
    t.true(sameEntries(state.entries, range(1, whole, 1, 300)), `round ${round}: entries byte for byte`);
    // The log continues after the tail, and the continuation survives a reload.
    await store.append([entry(whole + 1, 2, 50)], null);
    await store.close();
    const reopened = new WalLogStore(wal, { segmentBytes: SMALL_SEGMENT_BYTES });
    const reloaded = await reopened.load();
    await reopened.close();
    t.deepEqual(
      indexes(reloaded.entries),
      range(1, whole + 1, 1).map((e) => e.index),
      `round ${round}: continued`,
    );
    t.is(reloaded.entries[whole].term, 2);
  }
  await rm(directory, { recursive: true, force: true });
});

test('a stale record beyond a repaired tail is not resurrected (the CRC chain)', async (t) => {
  const { directory, wal, segment } = await writeLog(10, 100);
  const bytes = await readFile(segment);
  const ends = recordEnds(bytes);
  // Damage entry 5's record (a torn write), leaving entries 6..10 intact behind it.
  bytes[ends[4] + 20] ^= 0xff;
  await writeFile(segment, bytes);
  const store = new WalLogStore(wal, { segmentBytes: SMALL_SEGMENT_BYTES });
  t.deepEqual(indexes((await store.load()).entries), [1, 2, 3, 4]);
  // A new entry 5 of exactly the old record's size: old entry 6 now starts right after it.
  await store.append([entry(5, 2, 100)], null);
  await store.close();
  const reopened = new WalLogStore(wal, { segmentBytes: SMALL_SEGMENT_BYTES });
  const state = await reopened.load();
  await reopened.close();
  t.deepEqual(indexes(state.entries), [1, 2, 3, 4, 5], 'old entries 6..10 stay gone');
  t.is(state.entries[4].term, 2);
  await rm(directory, { recursive: true, force: true });
});

test('segments roll over, compacted ones are deleted, and the log reloads across both', async (t) => {
  const directory = await tempDir();
  const wal = join(directory, 'wal');
  let store = new WalLogStore(wal, { segmentBytes: SMALL_SEGMENT_BYTES });
  await store.load();
  // 200 entries of 4 KiB: about 800 KiB, over four segments of 256 KiB.
  for (let i = 1; i <= 200; i += 10) await store.append(range(i, i + 9, 1, 4096), { term: 1, vote: 'a', commit: i });
  t.true(store.segmentSeqs.length >= 4, `segments ${store.segmentSeqs.join(',')}`);
  const files = async (): Promise<string[]> => (await readdir(wal)).filter((name) => name.endsWith('.wal'));
  store = await reopen(store, wal);
  let state = await store.load();
  t.true(sameEntries(state.entries, range(1, 200, 1, 4096)), 'all entries reload across the segments');
  const before = store.segmentSeqs;
  await store.applySnapshot({ index: 150, term: 1, conf }, true);
  const after = store.segmentSeqs;
  t.true(after[0] > before[0], `segments ${before.join(',')} became ${after.join(',')}`);
  const live = await files();
  t.true(
    before.filter((seq) => !after.includes(seq)).every((seq) => !live.includes(segmentName(seq))),
    'the deleted segments are gone from the directory',
  );
  await store.append(range(201, 260, 1, 4096), { term: 1, vote: 'a', commit: 200 });
  store = await reopen(store, wal);
  state = await store.load();
  t.deepEqual(state.snapshot, { index: 150, term: 1, conf });
  t.true(sameEntries(state.entries, range(151, 260, 1, 4096)), 'the log after the snapshot, across a new rollover');
  t.deepEqual(state.hardState, { term: 1, vote: 'a', commit: 200 });
  // A snapshot that drops the whole log (a follower installing one), then the log continues.
  await store.applySnapshot({ index: 300, term: 2, conf }, false);
  await store.append(range(301, 305, 2), null);
  store = await reopen(store, wal);
  state = await store.load();
  t.deepEqual(indexes(state.entries), [301, 302, 303, 304, 305]);
  t.is(store.segmentSeqs.length, 1, 'only the last segment is left');
  await store.close();
  await rm(directory, { recursive: true, force: true });
});

async function reopen(store: WalLogStore, wal: string): Promise<WalLogStore> {
  await store.close();
  return new WalLogStore(wal, { segmentBytes: SMALL_SEGMENT_BYTES });
}

test('an invalid record in a segment other than the last is DAEMON_STORAGE_CORRUPT', async (t) => {
  const directory = await tempDir();
  const wal = join(directory, 'wal');
  const store = new WalLogStore(wal, { segmentBytes: SMALL_SEGMENT_BYTES });
  await store.load();
  for (let i = 1; i <= 120; i += 10) await store.append(range(i, i + 9, 1, 4096), null);
  t.true(store.segmentSeqs.length >= 2);
  await store.close();
  const first = join(wal, segmentName(1));
  const bytes = await readFile(first);
  bytes[50_000] ^= 0x01;
  await writeFile(first, bytes);
  await t.throwsAsync(new WalLogStore(wal, { segmentBytes: SMALL_SEGMENT_BYTES }).load(), {
    code: 'DAEMON_STORAGE_CORRUPT',
  });
  await rm(directory, { recursive: true, force: true });
});

test('a missing middle segment is DAEMON_STORAGE_CORRUPT (the log would have a gap)', async (t) => {
  const directory = await tempDir();
  const wal = join(directory, 'wal');
  const store = new WalLogStore(wal, { segmentBytes: SMALL_SEGMENT_BYTES });
  await store.load();
  for (let i = 1; i <= 200; i += 10) await store.append(range(i, i + 9, 1, 4096), null);
  const seqs = store.segmentSeqs;
  t.true(seqs.length >= 3);
  await store.close();
  await rm(join(wal, segmentName(seqs[1])));
  await t.throwsAsync(new WalLogStore(wal, { segmentBytes: SMALL_SEGMENT_BYTES }).load(), {
    code: 'DAEMON_STORAGE_CORRUPT',
  });
  await rm(directory, { recursive: true, force: true });
});

test('an entry too large for a segment is refused with DAEMON_WAL_RECORD_TOO_LARGE and the store goes on', async (t) => {
  const fs = new CrashFileSystem();
  const store = new WalLogStore('/d/wal', { fileSystem: fs, segmentBytes: SMALL_SEGMENT_BYTES });
  await store.load();
  await store.append([entry(1, 1, store.entryBytesMax)], null);
  await t.throwsAsync(store.append([entry(2, 1, store.entryBytesMax + 1)], null), {
    code: 'DAEMON_WAL_RECORD_TOO_LARGE',
  });
  await store.append([entry(2, 1)], null);
  const state = await new WalLogStore('/d/wal', { fileSystem: fs.crash(), segmentBytes: SMALL_SEGMENT_BYTES }).load();
  t.deepEqual(indexes(state.entries), [1, 2]);
  t.is(state.entries[0].data.length, store.entryBytesMax);
  await store.close();
});

test('whenSyncedThrough waits for the entry with that term to be durable, and rejects on close', async (t) => {
  const fs = new CrashFileSystem();
  const store = new WalLogStore('/d/wal', { fileSystem: fs, segmentBytes: SMALL_SEGMENT_BYTES });
  await store.load();
  await store.append(range(1, 5, 1), null);
  await store.whenSyncedThrough(5, 1);
  let isDone = false;
  const waiting = store.whenSyncedThrough(4, 2).then(() => (isDone = true));
  await store.append(range(6, 6, 1), null);
  t.false(isDone, 'entry 4 of term 1 is not entry 4 of term 2');
  await store.append(range(4, 4, 2), null);
  await waiting;
  t.true(isDone);
  const never = store.whenSyncedThrough(9, 2);
  await store.close();
  await t.throwsAsync(never, { code: 'DAEMON_STORAGE_CLOSED' });
});

type Operation = { kind: 'append'; from: number; batch: Entry[] } | { kind: 'snapshot'; index: number };

/** The log (entries after the snapshot) that `base` becomes after `operations`. */
function modelAfter(base: readonly Entry[], baseSnapshot: number, operations: readonly Operation[]): Entry[] {
  let log = base.slice();
  let snapshot = baseSnapshot;
  for (const operation of operations) {
    if (operation.kind === 'append') {
      log = [...log.filter((e) => e.index < operation.from), ...operation.batch];
    } else {
      snapshot = operation.index;
      log = log.filter((e) => e.index > snapshot);
    }
  }
  return log.filter((e) => e.index > snapshot);
}

test('simulated power loss: every acknowledged append survives and nothing half-written appears (seeded)', async (t) => {
  for (let seed = 1; seed <= 30; seed++) {
    const next = seededRandom(seed);
    let fs = new CrashFileSystem();
    fs.isSlow = true;
    let store = new WalLogStore('/d/wal', { fileSystem: fs, segmentBytes: SMALL_SEGMENT_BYTES });
    let base: Entry[] = [];
    let baseSnapshot = 0;
    let operations: Operation[] = [];
    let ackedCount = 0;
    let ackedSnapshot = 0;
    let ackedTerm = 0;
    let term = 1;
    for (let life = 0; life < 4; life++) {
      const state = await store.load();
      const loadedSnapshot = state.snapshot?.index ?? 0;
      if (life > 0) {
        // Some k >= the acknowledged count of the issued operations explains the loaded log exactly.
        let explained = -1;
        for (let k = operations.length; k >= ackedCount && explained < 0; k--) {
          const model = modelAfter(base, baseSnapshot, operations.slice(0, k)).filter((e) => e.index > loadedSnapshot);
          if (sameEntries(state.entries, model)) explained = k;
        }
        t.true(
          explained >= ackedCount,
          `seed ${seed} life ${life}: the loaded log (${state.entries.length} entries after ${loadedSnapshot}) is the acknowledged one plus whole issued appends`,
        );
        t.true(loadedSnapshot >= ackedSnapshot, `seed ${seed} life ${life}: the acknowledged snapshot survives`);
        t.true(state.hardState.term >= ackedTerm, `seed ${seed} life ${life}: the acknowledged hard state survives`);
      }
      base = state.entries.slice();
      baseSnapshot = loadedSnapshot;
      operations = [];
      ackedCount = 0;
      let issuedSnapshot = loadedSnapshot;
      let last = base.length > 0 ? base[base.length - 1].index : loadedSnapshot;
      term = Math.max(term, state.hardState.term) + 1;
      // Issue appends without waiting (group commit), some replacing a suffix, and crash mid-way.
      const rounds = 5 + next(30);
      const pending: Promise<void>[] = [];
      for (let round = 0; round < rounds; round++) {
        const from = Math.max(issuedSnapshot + 1, last + 1 - next(3));
        const batch = range(from, from + next(6), term, 1 + next(6000));
        last = batch[batch.length - 1].index;
        operations.push({ kind: 'append', from, batch });
        const hardTerm = term;
        pending.push(
          store.append(batch, { term, vote: 'a', commit: 0 }).then(() => {
            ackedCount++;
            ackedTerm = hardTerm;
          }),
        );
        if (next(8) === 0 && last > issuedSnapshot + 10) {
          const index = last - 5;
          issuedSnapshot = index;
          operations.push({ kind: 'snapshot', index });
          pending.push(
            store.applySnapshot({ index, term, conf }, true).then(() => {
              ackedCount++;
              ackedSnapshot = index;
            }),
          );
        }
        for (let hops = next(3); hops > 0; hops--) await new Promise((resolve) => setImmediate(resolve));
      }
      for (let hops = next(4); hops > 0; hops--) await new Promise((resolve) => setImmediate(resolve));
      const crashed = fs.crash(next);
      // What was acknowledged before the power went: later acknowledgements do not count.
      const acknowledged = { count: ackedCount, snapshot: ackedSnapshot, term: ackedTerm };
      await Promise.allSettled(pending);
      ({ count: ackedCount, snapshot: ackedSnapshot, term: ackedTerm } = acknowledged);
      await store.close();
      fs = crashed;
      fs.isSlow = true;
      store = new WalLogStore('/d/wal', { fileSystem: fs, segmentBytes: SMALL_SEGMENT_BYTES });
    }
    await store.close();
  }
});
