// Proves WAL segment recycling (WalLogStore, docs/storage.md "Recycled segments"): compacted
// segments are kept as `<seq>.wal.free` (at most `recycledSegmentsMax`, the rest deleted, also at
// load) and become the next segments instead of zero-filled files; a recycled segment still full
// of its previous life's valid records loads only the new records after a simulated power loss
// (CrashFileSystem drops the unsynced bytes), and after a torn tail placed exactly at a record
// boundary with old records spliced behind it (the CRC chain is seeded per segment number); an old
// segment's bytes left whole under the new name are not taken for a header; and seeded power
// losses with compactions and recycling keep every acknowledged append and nothing else.
import test from 'ava';
import { WAL_SEGMENT_BYTES_MIN, WalLogStore, type SegmentPreparation } from '../../src/storage/wal-log-store.js';
import { RecordType, freeSegmentName, scanSegment, segmentName } from '../../src/storage/wal-format.js';
import type { Entry } from '../../src/storage/raft-api.js';
import { CrashFileSystem } from './crash-fs.js';
import { indexes, patternEntry, patternRange, sameEntries, seededRandom } from './helpers.js';

const SEGMENT_BYTES = WAL_SEGMENT_BYTES_MIN;
const WAL = '/d/wal';

const entry = (index: number, term: number, size = 4096): Entry => patternEntry(index, term, size);
const range = (from: number, to: number, term: number, size = 4096): Entry[] => patternRange(from, to, term, size);

function open(fs: CrashFileSystem, recycledSegmentsMax?: number): WalLogStore {
  return new WalLogStore(WAL, { fileSystem: fs, segmentBytes: SEGMENT_BYTES, recycledSegmentsMax });
}

async function listing(fs: CrashFileSystem): Promise<{ live: string[]; free: string[] }> {
  const names = (await fs.list(WAL)).sort();
  return { live: names.filter((n) => n.endsWith('.wal')), free: names.filter((n) => n.endsWith('.free')) };
}

/**
 * A store whose term-1 entries 1..200 (4 KiB each, about four segments) were compacted through
 * 190, then term-2 entries 201..lastIndex appended until the log rolled over into a recycled
 * segment. Returns the recycled segment's number and its bytes from before it was recycled.
 */
async function recycledScenario(
  fs: CrashFileSystem,
): Promise<{ store: WalLogStore; seq: number; oldSeq: number; oldBytes: Buffer; lastIndex: number }> {
  const store = open(fs);
  await store.load();
  for (let i = 1; i <= 200; i += 10) await store.append(range(i, i + 9, 1), { term: 1, vote: 'a', commit: i });
  await store.compact(190);
  const oldSeq = store.freeSegmentSeqs[0];
  if (oldSeq === undefined) throw new Error(`no free segment after compaction: live ${store.segmentSeqs.join(',')}`);
  const oldBytes = Buffer.from(fs.bytesOf(`${WAL}/${freeSegmentName(oldSeq)}`));
  const lastSeq = store.segmentSeqs[store.segmentSeqs.length - 1];
  let lastIndex = 200;
  // Term-2 appends until the log is three records into the next (recycled) segment.
  while (store.segmentSeqs[store.segmentSeqs.length - 1] === lastSeq) {
    await store.append(range(lastIndex + 1, lastIndex + 10, 2), { term: 2, vote: 'a', commit: lastIndex });
    lastIndex += 10;
  }
  await store.append(range(lastIndex + 1, lastIndex + 2, 2), null);
  lastIndex += 2;
  return { store, seq: lastSeq + 1, oldSeq, oldBytes, lastIndex };
}

test('compacted segments are recycled as the next segments instead of zero-filled files', async (t) => {
  const fs = new CrashFileSystem();
  const prepared: SegmentPreparation[] = [];
  const store = new WalLogStore(WAL, {
    fileSystem: fs,
    segmentBytes: SEGMENT_BYTES,
    observer: { onSegmentPrepared: (how) => prepared.push(how) },
  });
  await store.load();
  let last = 0;
  // Keep about one segment of log: compaction frees a segment about as often as one fills.
  for (let round = 0; round < 100; round++) {
    await store.append(range(last + 1, last + 10, 1), null);
    last += 10;
    if (last > 60) await store.compact(last - 60);
  }
  const counts = store.segmentsPrepared;
  t.true(store.segmentSeqs[0] > 5, `the log moved through many segments: ${store.segmentSeqs.join(',')}`);
  t.true(counts.recycled >= 10, `recycled ${counts.recycled}, zero-filled ${counts.zeroFilled}`);
  t.true(counts.zeroFilled <= 5, `only the first segments are zero-filled: ${counts.zeroFilled}`);
  t.is(prepared.filter((how) => how === 'recycled').length, counts.recycled, 'the observer sees each one');
  const state = await open(fs.crash()).load();
  t.true(sameEntries(state.entries, range(last - 59, last, 1)), 'the log reloads after a power loss');
  await store.close();
});

test('a recycled segment full of old valid records loads only its new records after a power loss', async (t) => {
  const fs = new CrashFileSystem();
  const { store, seq, oldSeq, oldBytes, lastIndex } = await recycledScenario(fs);
  t.is(store.segmentsPrepared.recycled, 1, 'the new segment was recycled');
  // The old life of the file: a header and entries records of term 1, all valid in their own chain.
  const oldScan = scanSegment(oldBytes, oldSeq);
  t.true(oldScan.records.length > 10, `old records ${oldScan.records.length}`);
  const recycled = fs.bytesOf(`${WAL}/${segmentName(seq)}`);
  const newScan = scanSegment(recycled, seq);
  t.is(newScan.stop, 'invalid', 'stale bytes (not zeros) follow the new records');
  t.true(newScan.endOffset < oldScan.endOffset, 'old records remain beyond the write position');
  t.true(recycled.subarray(newScan.endOffset).equals(oldBytes.subarray(newScan.endOffset)), 'untouched old bytes');
  // An unsynced append is lost on power loss; nothing of term 1 after 200 appears.
  const unsynced = store.append(range(lastIndex + 1, lastIndex + 1, 2), { term: 2, vote: 'a', commit: 1 });
  const crashed = fs.crash();
  await unsynced;
  await store.close();
  const reloaded = open(crashed);
  const state = await reloaded.load();
  const expected = range(191, 200, 1).concat(range(201, state.entries[state.entries.length - 1].index, 2));
  t.true(sameEntries(state.entries, expected), `loaded ${indexes(state.entries).slice(-3).join(',')}`);
  t.true(state.entries.length >= lastIndex - 190, 'every acknowledged entry survives');
  // The store appends at the new end and reloads again with the stale bytes still further on.
  await reloaded.append(range(lastIndex + 1, lastIndex + 3, 3), { term: 3, vote: 'b', commit: 200 });
  await reloaded.close();
  const again = await open(crashed.crash()).load();
  t.deepEqual(indexes(again.entries), indexes(range(191, lastIndex + 3, 3)));
  t.is(again.entries[again.entries.length - 1].term, 3);
});

test('a torn tail at a record boundary of a recycled segment does not resurrect old records', async (t) => {
  const fs = new CrashFileSystem();
  const { store, seq, oldSeq, oldBytes, lastIndex } = await recycledScenario(fs);
  await store.close();
  const path = `${WAL}/${segmentName(seq)}`;
  const current = fs.bytesOf(path);
  const end = scanSegment(current, seq).endOffset;
  // Old entries records, valid in their own chain, spliced to start exactly where the new
  // records end (as if the tail were torn at a record boundary that the old life shared).
  let boundary = 0;
  const oldScan = scanSegment(oldBytes, oldSeq);
  for (let i = 0; i < 3; i++) boundary += 9 + oldScan.records[i].payload.length;
  const spliced = Buffer.concat([current.subarray(0, end), oldBytes.subarray(boundary)]).subarray(0, SEGMENT_BYTES);
  t.true(oldScan.records.length > 6, 'sanity: valid old records follow the boundary in their own chain');
  fs.setBytes(path, spliced);
  const state = await open(fs).load();
  t.deepEqual(indexes(state.entries), indexes(range(191, lastIndex, 2)), 'exactly the new log');
  t.true(
    state.entries.every((e) => e.index <= 200 || e.term === 2),
    'no term-1 entry of the old life past 200',
  );
  // The first record of the recycled segment: its old header and records, whole, under the new
  // name (as if neither the zeroing nor the new header had reached the disk) are not a segment.
  const fs2 = new CrashFileSystem();
  const second = await recycledScenario(fs2);
  await second.store.close();
  fs2.setBytes(`${WAL}/${segmentName(second.seq)}`, second.oldBytes);
  t.is(scanSegment(second.oldBytes, second.seq).records.length, 0, 'the old header fails under the new seed');
  const state2 = await open(fs2).load();
  t.true(
    state2.entries.length > 0 && state2.entries.every((e) => (e.index > 200 ? e.term === 2 : e.term === 1)),
    'only the log before the recycled segment: no old entries under new indexes',
  );
  t.true(indexes(state2.entries).every((index, i) => index === 191 + i));
  const old = scanSegment(second.oldBytes, second.oldSeq);
  t.is(old.records[0].type, RecordType.SegmentHeader, 'sanity: the old bytes hold a valid header in their own chain');
});

test('the number of free segments stays bounded, also across reloads', async (t) => {
  for (const max of [0, 1, 2]) {
    const fs = new CrashFileSystem();
    const store = open(fs, max);
    await store.load();
    let last = 0;
    for (let round = 0; round < 30; round++) {
      await store.append(range(last + 1, last + 20, 1), null);
      last += 20;
      // Compact everything but the last few entries: many segments free up at once.
      if (round % 6 === 5) await store.compact(last - 2);
      const { free } = await listing(fs);
      t.true(free.length <= max, `max ${max}: free files ${free.join(',')}`);
      t.true(store.freeSegmentSeqs.length <= max);
    }
    const counts = store.segmentsPrepared;
    if (max === 0) t.is(counts.recycled, 0, 'recycling off: every segment is zero-filled');
    else t.true(counts.recycled > 0, `max ${max}: recycled ${counts.recycled}`);
    await store.close();
    // Extra free files (e.g. from a run with a larger limit) are deleted at load, down to the limit.
    const seqs = store.segmentSeqs;
    const sample = fs.bytesOf(`${WAL}/${segmentName(seqs[seqs.length - 1])}`);
    for (let seq = 1; seq <= 5; seq++) {
      if (!(await fs.list(WAL)).includes(freeSegmentName(seq))) fs.setBytes(`${WAL}/${freeSegmentName(seq)}`, sample);
    }
    fs.setBytes(`${WAL}/${freeSegmentName(seqs[0] + 50)}`, sample);
    const reloaded = open(fs, max);
    await reloaded.load();
    const { free } = await listing(fs);
    t.true(free.length <= max, `max ${max} after reload: ${free.join(',')}`);
    t.false(free.includes(freeSegmentName(seqs[0] + 50)), 'a free file numbered after the log is deleted');
    await reloaded.close();
  }
});

test('seeded power losses with compactions and recycling keep every acknowledged entry and nothing else', async (t) => {
  let recycledTotal = 0;
  for (let seed = 1; seed <= 12; seed++) {
    const next = seededRandom(seed);
    let fs = new CrashFileSystem();
    let store = open(fs);
    let state = await store.load();
    let last = 0;
    let term = 1;
    for (let life = 0; life < 4; life++) {
      term++;
      let acked = last;
      const pending: Promise<void>[] = [];
      const rounds = 20 + next(30);
      for (let round = 0; round < rounds; round++) {
        const from = last + 1;
        const to = from + next(8);
        last = to;
        pending.push(
          store.append(range(from, to, term, 512 + next(8000)), { term, vote: 'a', commit: 0 }).then(() => {
            acked = Math.max(acked, to);
          }),
        );
        if (next(5) === 0 && last > 40) pending.push(store.compact(last - 30));
        if (next(3) === 0) await Promise.all(pending.splice(0));
      }
      for (let hops = next(4); hops > 0; hops--) await new Promise((resolve) => setImmediate(resolve));
      const crashed = fs.crash(next);
      const ackedBefore = acked;
      await Promise.allSettled(pending);
      recycledTotal += store.segmentsPrepared.recycled;
      await store.close();
      fs = crashed;
      store = open(fs);
      state = await store.load();
      const loadedLast = state.entries.length > 0 ? state.entries[state.entries.length - 1].index : 0;
      t.true(loadedLast >= ackedBefore, `seed ${seed} life ${life}: acknowledged ${ackedBefore}, loaded ${loadedLast}`);
      // Every loaded entry is the one issued at its index (all issued entries are distinct by index and term).
      t.true(
        state.entries.every((e, i) => {
          const expected = entry(e.index, e.term, e.data.length);
          return (
            e.term >= 2 &&
            e.term <= term &&
            Buffer.from(e.data).equals(expected.data) &&
            (i === 0 || e.index === state.entries[i - 1].index + 1)
          );
        }),
        `seed ${seed} life ${life}: only whole issued entries, contiguous`,
      );
      last = loadedLast;
    }
    await store.close();
  }
  t.true(recycledTotal > 0, `segments were recycled: ${recycledTotal}`);
});
