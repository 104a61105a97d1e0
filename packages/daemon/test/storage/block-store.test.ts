// Proves the block state machine on real LevelDB: volume commands and their coded results, reads
// of any byte range against a seeded model (thin provisioning, partial-block read-modify-write,
// writeZeroes and trim), one LevelDB batch per apply holding the applied index, restarts that
// neither re-apply nor skip, exactly-once writes with client sessions (dedup, window, expiry in
// log time, eviction), determinism across batch boundaries, lazy removal of deleted volumes, and
// apply batches that never reach LevelDB before the WAL synced their entries (of the same term),
// and write-behind: with the WAL's syncs held back (so every apply batch waits), apply still
// resolves, reads (also `readMany`'s, which is checked against the model too) and partial-block
// updates see the applied bytes (from the overlay), a log
// compaction waits until the batches up to its index landed, and only those (no deadlock).
import { createHash } from 'node:crypto';
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { Tag, blockKey, deletionKey, stateKey } from '../../src/storage/block-keys.js';
import type { BlockStateMachine } from '../../src/storage/block-store.js';
import { BLOCK_SIZE_BYTES, type ApplyResult, type Command } from '../../src/storage/commands.js';
import type { Database } from '../../src/storage/database.js';
import { WAL_SEGMENT_BYTES_MIN, WalLogStore } from '../../src/storage/wal-log-store.js';
import type { Entry } from '../../src/storage/raft-api.js';
import { CrashFileSystem } from './crash-fs.js';
import {
  sameBytes,
  LogBuilder,
  applyAll,
  applyOne,
  countKeys,
  openMachine,
  randomBytes,
  seededRandom,
  tempDatabase,
} from './helpers.js';

const MiB = 1024 * 1024;

test('volumes: create is idempotent on the same size, VOLUME_EXISTS on another; grow only grows; delete', async (t) => {
  const temp = await tempDatabase();
  const machine = await openMachine(temp.db);
  const log = new LogBuilder();
  const created = await applyOne(machine, log, { type: 'createVolume', name: 'data', sizeBytes: MiB, createdAtMs: 5 });
  t.deepEqual(created, {
    ok: true,
    volume: { name: 'data', sizeBytes: MiB, blockSizeBytes: 4096, createdAtMs: 5 },
  });
  t.deepEqual(
    await applyOne(machine, log, { type: 'createVolume', name: 'data', sizeBytes: MiB, createdAtMs: 9 }),
    created,
  );
  const exists = await applyOne(machine, log, {
    type: 'createVolume',
    name: 'data',
    sizeBytes: 2 * MiB,
    createdAtMs: 9,
  });
  t.is(!exists.ok && exists.code, 'VOLUME_EXISTS');
  const shrink = await applyOne(machine, log, { type: 'growVolume', name: 'data', sizeBytes: 4096 });
  t.is(!shrink.ok && shrink.code, 'INVALID_ARGUMENT');
  const grown = await applyOne(machine, log, { type: 'growVolume', name: 'data', sizeBytes: 2 * MiB });
  t.is(grown.ok && grown.volume?.sizeBytes, 2 * MiB);
  await applyOne(machine, log, { type: 'createVolume', name: 'alpha', sizeBytes: 4096, createdAtMs: 1 });
  t.deepEqual(
    machine.listVolumes().map((v) => v.name),
    ['alpha', 'data'],
  );
  t.deepEqual(await applyOne(machine, log, { type: 'deleteVolume', name: 'alpha' }), {
    ok: true,
    volume: { name: 'alpha', sizeBytes: 4096, blockSizeBytes: 4096, createdAtMs: 1 },
  });
  const missing = await applyOne(machine, log, { type: 'deleteVolume', name: 'alpha' });
  t.is(!missing.ok && missing.code, 'VOLUME_NOT_FOUND');
  const missingGrow = await applyOne(machine, log, { type: 'growVolume', name: 'nope', sizeBytes: 8192 });
  t.is(!missingGrow.ok && missingGrow.code, 'VOLUME_NOT_FOUND');
  t.is(machine.getVolume('alpha'), null);
  t.is(machine.getVolume('data')?.sizeBytes, 2 * MiB);
  // Everything survives a restart.
  await machine.close();
  const reopened = await openMachine(await temp.reopen());
  t.deepEqual(
    reopened.listVolumes().map((v) => [v.name, v.sizeBytes]),
    [['data', 2 * MiB]],
  );
  t.is(await reopened.appliedIndex(), log.entries.length);
  await reopened.close();
  await temp.cleanup();
});

test('the volume count is capped with RESOURCE_EXHAUSTED', async (t) => {
  const temp = await tempDatabase();
  const machine = await openMachine(temp.db, { volumesMax: 2 });
  const log = new LogBuilder();
  for (const name of ['a', 'b']) {
    t.true((await applyOne(machine, log, { type: 'createVolume', name, sizeBytes: 4096, createdAtMs: 0 })).ok);
  }
  const third = await applyOne(machine, log, { type: 'createVolume', name: 'c', sizeBytes: 4096, createdAtMs: 0 });
  t.is(!third.ok && third.code, 'RESOURCE_EXHAUSTED');
  await machine.close();
  await temp.cleanup();
});

test('never-written blocks read as zeros, and out-of-range or unknown reads are coded errors', async (t) => {
  const temp = await tempDatabase();
  const machine = await openMachine(temp.db);
  const log = new LogBuilder();
  await applyOne(machine, log, { type: 'createVolume', name: 'thin', sizeBytes: 64 * MiB, createdAtMs: 0 });
  const data = await machine.read('thin', 10 * MiB + 3, 3 * BLOCK_SIZE_BYTES);
  t.is(data.length, 3 * BLOCK_SIZE_BYTES);
  t.true(data.every((byte) => byte === 0));
  await machine.whenWritten();
  t.is(await countKeys(temp.db, blockKey(0, 0, 0), blockKey(0, 0xffff_ffff, 0)), 0, 'nothing stored');
  await t.throwsAsync(machine.read('thin', 64 * MiB - 1, 2), { code: 'OUT_OF_RANGE' });
  await t.throwsAsync(machine.read('other', 0, 1), { code: 'VOLUME_NOT_FOUND' });
  await t.throwsAsync(machine.read('thin', -1, 1), { code: 'INVALID_ARGUMENT' });
  const beyond = await applyOne(machine, log, {
    type: 'write',
    volume: 'thin',
    offset: 64 * MiB - 2,
    data: new Uint8Array(3),
  });
  t.is(!beyond.ok && beyond.code, 'OUT_OF_RANGE');
  const unknown = await applyOne(machine, log, { type: 'trim', volume: 'other', offset: 0, length: 1 });
  t.is(!unknown.ok && unknown.code, 'VOLUME_NOT_FOUND');
  const garbage = (
    await applyAll(machine, [{ index: log.entries.length + 1, term: 1, type: 0, data: new Uint8Array([0xc1]) }])
  )[0];
  t.is(!garbage.ok && garbage.code, 'INVALID_ARGUMENT');
  await machine.close();
  await temp.cleanup();
});

test('writes, writeZeroes and trims at any offset match a byte model (seeded, many batch sizes)', async (t) => {
  const temp = await tempDatabase();
  const machine = await openMachine(temp.db);
  const log = new LogBuilder();
  const sizeBytes = 48 * BLOCK_SIZE_BYTES;
  await applyAll(machine, [log.add({ type: 'createVolume', name: 'v', sizeBytes, createdAtMs: 0 })]);
  const model = new Uint8Array(sizeBytes);
  const next = seededRandom(42);
  let applied = 1;
  for (let round = 0; round < 60; round++) {
    // A batch of 1..12 commands, so several touch the same block inside one apply.
    const batchSize = 1 + next(12);
    for (let i = 0; i < batchSize; i++) {
      const offset = next(sizeBytes);
      const length = Math.min(sizeBytes - offset, next(4) === 0 ? next(6 * BLOCK_SIZE_BYTES) : next(300));
      const kind = next(5);
      if (kind < 3) {
        const data = randomBytes(length, round * 100 + i);
        model.set(data, offset);
        log.add({ type: 'write', volume: 'v', offset, data });
      } else {
        model.fill(0, offset, offset + length);
        log.add({ type: kind === 3 ? 'writeZeroes' : 'trim', volume: 'v', offset, length });
      }
    }
    const results = await applyAll(machine, log.from(applied + 1));
    applied = log.entries.length;
    t.true(
      results.every((result) => result.ok),
      `round ${round}`,
    );
    if (round % 10 === 9) {
      const offset = next(sizeBytes);
      const length = next(sizeBytes - offset);
      sameBytes(t, await machine.read('v', offset, length), model.subarray(offset, offset + length));
    }
    if (round % 5 === 4) await checkReadMany(t, machine, model, next);
  }
  sameBytes(t, await machine.read('v', 0, sizeBytes), model);
  // Blocks that are all zeros are not stored (thin).
  let zeroBlocks = 0;
  for (let block = 0; block < 48; block++) {
    if (model.subarray(block * BLOCK_SIZE_BYTES, (block + 1) * BLOCK_SIZE_BYTES).every((b) => b === 0)) zeroBlocks++;
  }
  await machine.whenWritten();
  t.is(await countKeys(temp.db, blockKey(0, 1, 0), blockKey(0, 2, 0)), 48 - zeroBlocks);
  await machine.close();
  await temp.cleanup();
});

/**
 * One `readMany` of a seeded mix of whole-block, in-block, spanning, empty and refused reads of
 * volume 'v': each result must equal the model (or be `read`'s coded error).
 */
async function checkReadMany(
  t: ExecutionContext,
  machine: BlockStateMachine,
  model: Uint8Array,
  next: (below: number) => number,
): Promise<void> {
  const blocks = model.length / BLOCK_SIZE_BYTES;
  const reads: { volume: string; offset: number; length: number; code?: string }[] = [];
  for (let i = 0; i < 24; i++) {
    const kind = next(4);
    if (kind === 0 || kind === 1) {
      reads.push({ volume: 'v', offset: next(blocks) * BLOCK_SIZE_BYTES, length: BLOCK_SIZE_BYTES });
    } else if (kind === 2) {
      const offset = next(blocks) * BLOCK_SIZE_BYTES + next(BLOCK_SIZE_BYTES);
      const inBlockEnd = (Math.floor(offset / BLOCK_SIZE_BYTES) + 1) * BLOCK_SIZE_BYTES;
      reads.push({ volume: 'v', offset, length: next(inBlockEnd - offset + 1) });
    } else {
      const offset = next(model.length);
      reads.push({ volume: 'v', offset, length: next(Math.min(3 * BLOCK_SIZE_BYTES, model.length - offset) + 1) });
    }
  }
  reads.push({ volume: 'v', offset: model.length - 1, length: 2, code: 'OUT_OF_RANGE' });
  reads.push({ volume: 'nope', offset: 0, length: BLOCK_SIZE_BYTES, code: 'VOLUME_NOT_FOUND' });
  reads.push({ volume: 'v', offset: 0.5, length: 1, code: 'INVALID_ARGUMENT' });
  const results = await machine.readMany(reads);
  t.is(results.length, reads.length);
  reads.forEach((read, i) => {
    const result = results[i];
    if (read.code !== undefined) {
      t.is(result instanceof Error && (result as Error & { code?: string }).code, read.code);
    } else if (result instanceof Error) {
      t.fail(`read ${i} failed: ${result.message}`);
    } else {
      sameBytes(t, result, model.subarray(read.offset, read.offset + read.length), `readMany ${i}`);
    }
  });
}

test('trimming whole blocks deletes them: the volume is thin again', async (t) => {
  const temp = await tempDatabase();
  const machine = await openMachine(temp.db);
  const log = new LogBuilder();
  await applyOne(machine, log, { type: 'createVolume', name: 'v', sizeBytes: MiB, createdAtMs: 0 });
  await applyOne(machine, log, { type: 'write', volume: 'v', offset: 0, data: randomBytes(16 * BLOCK_SIZE_BYTES, 1) });
  await machine.whenWritten();
  t.is(await countKeys(temp.db, blockKey(0, 1, 0), blockKey(0, 2, 0)), 16);
  await applyOne(machine, log, { type: 'trim', volume: 'v', offset: 0, length: 8 * BLOCK_SIZE_BYTES });
  await applyOne(machine, log, {
    type: 'writeZeroes',
    volume: 'v',
    offset: 8 * BLOCK_SIZE_BYTES,
    length: 8 * BLOCK_SIZE_BYTES,
  });
  await machine.whenWritten();
  t.is(await countKeys(temp.db, blockKey(0, 1, 0), blockKey(0, 2, 0)), 0);
  t.true((await machine.read('v', 0, MiB)).every((byte) => byte === 0));
  await machine.close();
  await temp.cleanup();
});

/** Records every batch the database writes (array batches and chained ones). */
function spyOnBatches(db: Database): { sync: boolean | undefined; keys: Buffer[] }[] {
  const calls: { sync: boolean | undefined; keys: Buffer[] }[] = [];
  type Chained = {
    put(key: Buffer, value: Buffer): Chained;
    del(key: Buffer): Chained;
    write(options?: { sync?: boolean }): Promise<void>;
  };
  const original = db.batch.bind(db) as unknown as (
    operations?: { key: Buffer }[],
    options?: { sync?: boolean },
  ) => Promise<void> | Chained;
  (db as unknown as { batch: typeof original }).batch = (operations, options) => {
    if (operations !== undefined) {
      calls.push({ sync: options?.sync, keys: operations.map((operation) => operation.key) });
      return original(operations, options);
    }
    const chained = original() as Chained;
    const keys: Buffer[] = [];
    const spy: Chained = {
      put(key, value) {
        keys.push(key);
        chained.put(key, value);
        return spy;
      },
      del(key) {
        keys.push(key);
        chained.del(key);
        return spy;
      },
      write(writeOptions) {
        calls.push({ sync: writeOptions?.sync, keys });
        return chained.write(writeOptions);
      },
    };
    return spy;
  };
  return calls;
}

test('one apply of many writes is one LevelDB batch that includes the applied index', async (t) => {
  const temp = await tempDatabase();
  const machine = await openMachine(temp.db);
  const log = new LogBuilder();
  await applyOne(machine, log, { type: 'createVolume', name: 'v', sizeBytes: MiB, createdAtMs: 0 });
  const calls = spyOnBatches(temp.db);
  for (let i = 0; i < 64; i++)
    log.add({ type: 'write', volume: 'v', offset: i * BLOCK_SIZE_BYTES, data: randomBytes(4096, i) });
  await applyAll(machine, log.from(2));
  await machine.whenWritten();
  t.is(calls.length, 1);
  t.is(calls[0].keys.length, 64 + 1, '64 blocks and the meta record');
  t.true(calls[0].keys.some((key) => key.equals(stateKey(0, Tag.Meta))));
  t.is(await machine.appliedIndex(), 65);
  await machine.close();
  await temp.cleanup();
});

test('a restart resumes after the applied index: nothing re-applied, nothing skipped', async (t) => {
  const temp = await tempDatabase();
  // Each command's effect depends on the ones before (create/delete/create changes the volume id,
  // writes overlap), so a re-applied or skipped entry shows in the final state and the results.
  const log = new LogBuilder();
  const next = seededRandom(9);
  log.add({ type: 'createVolume', name: 'v', sizeBytes: MiB, createdAtMs: 1 });
  for (let i = 0; i < 120; i++) {
    if (i % 40 === 39) {
      log.add({ type: 'deleteVolume', name: 'v' });
      log.add({ type: 'createVolume', name: 'v', sizeBytes: MiB, createdAtMs: i });
    } else if (i % 13 === 0) {
      log.noop();
    } else {
      log.add({
        type: 'write',
        volume: 'v',
        offset: next(MiB - 600),
        data: randomBytes(1 + next(600), i),
        session: 'c'.repeat(32),
        seq: i + 1,
        ackedBelow: Math.max(0, i - 3),
        atMs: 1000 + i,
      });
    }
  }
  // Reference: everything in one go.
  const reference = await tempDatabase();
  const whole = await openMachine(reference.db);
  const expectedResults = await applyAll(whole, log.entries);
  const expectedData = await whole.read('v', 0, MiB);
  await whole.whenGarbageCollected();
  const expectedStats = whole.stats();
  await whole.close();
  await reference.cleanup();
  // Under test: random batches with a restart after each, resuming at appliedIndex() + 1 the way
  // the Raft driver does.
  const results: ApplyResult[] = [];
  let machine = await openMachine(temp.db);
  while ((await machine.appliedIndex()) < log.entries.length) {
    const from = (await machine.appliedIndex()) + 1;
    const batch = log.entries.slice(from - 1, from - 1 + 1 + next(9));
    results.push(...(await applyAll(machine, batch)));
    await machine.close();
    machine = await openMachine(await temp.reopen());
  }
  t.deepEqual(results, expectedResults);
  sameBytes(t, await machine.read('v', 0, MiB), expectedData);
  await machine.whenGarbageCollected();
  t.deepEqual(machine.stats(), expectedStats);
  await t.throwsAsync(machine.apply(log.entries.slice(5, 6)), undefined, 'an entry already applied is refused');
  await machine.close();
  await temp.cleanup();
});

const SESSION = 'a'.repeat(32);

test('exactly-once: a retried write that was already applied does not overwrite a newer one', async (t) => {
  const temp = await tempDatabase();
  let machine = await openMachine(temp.db);
  const log = new LogBuilder();
  await applyOne(machine, log, { type: 'createVolume', name: 'v', sizeBytes: MiB, createdAtMs: 0 });
  const old = new Uint8Array(10).fill(1);
  const newer = new Uint8Array(10).fill(2);
  const first: Command = {
    type: 'write',
    volume: 'v',
    offset: 100,
    data: old,
    session: SESSION,
    seq: 1,
    ackedBelow: 1,
  };
  t.deepEqual(await applyOne(machine, log, first), { ok: true });
  t.deepEqual(
    await applyOne(machine, log, {
      type: 'write',
      volume: 'v',
      offset: 100,
      data: newer,
      session: SESSION,
      seq: 2,
      ackedBelow: 1,
    }),
    { ok: true },
  );
  // The client did not see the answer to seq 1 and retries it (same session, same seq).
  t.deepEqual(await applyOne(machine, log, first), { ok: true, isDuplicate: true });
  t.deepEqual([...(await machine.read('v', 100, 10))], [...newer]);
  // The dedup state is durable: after a restart the retry is still recognised.
  await machine.close();
  machine = await openMachine(await temp.reopen());
  t.deepEqual(await applyOne(machine, log, first), { ok: true, isDuplicate: true });
  t.deepEqual([...(await machine.read('v', 100, 10))], [...newer]);
  // Seqs below ackedBelow were answered: a late copy of one is a no-op too.
  await applyOne(machine, log, {
    type: 'write',
    volume: 'v',
    offset: 0,
    data: newer,
    session: SESSION,
    seq: 3,
    ackedBelow: 3,
  });
  t.deepEqual(await applyOne(machine, log, { ...first, ackedBelow: 1 }), { ok: true, isDuplicate: true });
  t.deepEqual([...(await machine.read('v', 100, 10))], [...newer]);
  // writeZeroes and trim are deduplicated the same way.
  const zero: Command = {
    type: 'writeZeroes',
    volume: 'v',
    offset: 100,
    length: 10,
    session: SESSION,
    seq: 4,
    ackedBelow: 3,
  };
  t.deepEqual(await applyOne(machine, log, zero), { ok: true });
  await applyOne(machine, log, {
    type: 'write',
    volume: 'v',
    offset: 100,
    data: newer,
    session: SESSION,
    seq: 5,
    ackedBelow: 3,
  });
  t.deepEqual(await applyOne(machine, log, zero), { ok: true, isDuplicate: true });
  t.deepEqual([...(await machine.read('v', 100, 10))], [...newer]);
  await machine.close();
  await temp.cleanup();
});

test('a failed write is not recorded as applied: its retry is evaluated again', async (t) => {
  const temp = await tempDatabase();
  const machine = await openMachine(temp.db);
  const log = new LogBuilder();
  const write: Command = {
    type: 'write',
    volume: 'late',
    offset: 0,
    data: new Uint8Array([7]),
    session: SESSION,
    seq: 1,
    ackedBelow: 0,
  };
  const failed = await applyOne(machine, log, write);
  t.is(!failed.ok && failed.code, 'VOLUME_NOT_FOUND');
  await applyOne(machine, log, { type: 'createVolume', name: 'late', sizeBytes: 4096, createdAtMs: 0 });
  t.deepEqual(await applyOne(machine, log, write), { ok: true });
  t.deepEqual([...(await machine.read('late', 0, 1))], [7]);
  await machine.close();
  await temp.cleanup();
});

test('the dedup window bounds a session: seq far above ackedBelow is RESOURCE_EXHAUSTED', async (t) => {
  const temp = await tempDatabase();
  const machine = await openMachine(temp.db, { sessionWindowSeqs: 4 });
  const log = new LogBuilder();
  await applyOne(machine, log, { type: 'createVolume', name: 'v', sizeBytes: 4096, createdAtMs: 0 });
  const write = (seq: number, ackedBelow: number): Command => ({
    type: 'write',
    volume: 'v',
    offset: 0,
    data: new Uint8Array([seq]),
    session: SESSION,
    seq,
    ackedBelow,
  });
  // Nothing acknowledged yet (ackedBelow 1): seqs 1..4 fit in the window of 4, seq 5 does not.
  for (let seq = 1; seq <= 4; seq++) t.deepEqual(await applyOne(machine, log, write(seq, 1)), { ok: true });
  const refused = await applyOne(machine, log, write(5, 1));
  t.is(!refused.ok && refused.code, 'RESOURCE_EXHAUSTED');
  t.deepEqual(await applyOne(machine, log, write(5, 2)), { ok: true }, 'accepted once the client acknowledged more');
  t.deepEqual(
    await applyOne(machine, log, write(1, 1)),
    { ok: true, isDuplicate: true },
    'forgotten seqs stay answered',
  );
  await machine.close();
  await temp.cleanup();
});

test('sessions expire after idling in LOG time and are evicted least-recently-used at the cap', async (t) => {
  const temp = await tempDatabase();
  const machine = await openMachine(temp.db, { sessionIdleMsMax: 1000, sessionsMax: 2 });
  const log = new LogBuilder();
  await applyOne(machine, log, { type: 'createVolume', name: 'v', sizeBytes: 4096, createdAtMs: 0 });
  const write = (session: string, seq: number, ackedBelow: number, atMs: number): Command => ({
    type: 'write',
    volume: 'v',
    offset: 0,
    data: new Uint8Array([seq]),
    session,
    seq,
    ackedBelow,
    atMs,
  });
  const [a, b, c] = ['a', 'b', 'c'].map((letter) => letter.repeat(32));
  await applyOne(machine, log, write(a, 1, 1, 10_000));
  await applyOne(machine, log, write(a, 2, 2, 10_500));
  t.deepEqual(
    await applyOne(machine, log, write(a, 2, 2, 10_900)),
    { ok: true, isDuplicate: true },
    'known while active',
  );
  // Another client's command moves log time forward past a's idle limit.
  await applyOne(machine, log, write(b, 1, 1, 12_000));
  t.is(machine.stats().sessions, 1, 'a expired');
  const expired = await applyOne(machine, log, write(a, 2, 2, 12_001));
  t.is(!expired.ok && expired.code, 'SESSION_EXPIRED', 'a retry from a forgotten session is refused, not re-applied');
  // At the cap, a new session evicts the least recently used one (b, not the fresher c).
  await applyOne(machine, log, write(c, 1, 1, 12_100));
  await applyOne(machine, log, write(b, 2, 2, 12_200)); // b used again: c is now the oldest
  await applyOne(machine, log, write(a, 1, 1, 12_300)); // a new session again
  t.is(machine.stats().sessions, 2);
  const evicted = await applyOne(machine, log, write(c, 2, 2, 12_400));
  t.is(!evicted.ok && evicted.code, 'SESSION_EXPIRED', 'c was evicted');
  t.deepEqual(await applyOne(machine, log, write(b, 2, 2, 12_500)), { ok: true, isDuplicate: true }, 'b was kept');
  t.deepEqual(await applyOne(machine, log, { type: 'closeSession', session: b }), { ok: true });
  t.is(machine.stats().sessions, 1);
  await machine.close();
  await temp.cleanup();
});

test('two replicas given the same log in different batches end in the same state', async (t) => {
  const log = new LogBuilder();
  const next = seededRandom(1234);
  log.add({ type: 'createVolume', name: 'v', sizeBytes: 64 * BLOCK_SIZE_BYTES, createdAtMs: 0 });
  for (let i = 0; i < 300; i++) {
    const session = String(next(6)).repeat(32);
    log.add({
      type: next(4) === 0 ? 'trim' : 'writeZeroes',
      volume: 'v',
      offset: next(60 * BLOCK_SIZE_BYTES),
      length: next(3 * BLOCK_SIZE_BYTES),
      session,
      seq: 1 + next(40),
      ackedBelow: next(3),
      atMs: 1000 * i,
    });
    log.add({
      type: 'write',
      volume: 'v',
      offset: next(60 * BLOCK_SIZE_BYTES),
      data: randomBytes(1 + next(5000), i),
      session,
      seq: 1 + next(40),
      ackedBelow: next(3),
      atMs: 1000 * i + next(3000),
    });
  }
  const outcomes: unknown[] = [];
  for (const maxBatch of [1, 7, 64]) {
    const temp = await tempDatabase();
    const machine = await openMachine(temp.db, { sessionsMax: 3, sessionIdleMsMax: 20_000, sessionWindowSeqs: 16 });
    const results: ApplyResult[] = [];
    for (let from = 0; from < log.entries.length; from += maxBatch) {
      results.push(...(await applyAll(machine, log.entries.slice(from, from + maxBatch))));
    }
    const data = await machine.read('v', 0, 64 * BLOCK_SIZE_BYTES);
    outcomes.push({ results, dataSha256: createHash('sha256').update(data).digest('hex'), stats: machine.stats() });
    await machine.close();
    await temp.cleanup();
  }
  t.deepEqual(outcomes[1], outcomes[0]);
  t.deepEqual(outcomes[2], outcomes[0]);
  const { results } = outcomes[0] as { results: ApplyResult[] };
  t.true(
    results.some((r) => r.ok && r.isDuplicate),
    'the log exercised dedup',
  );
  t.true(
    results.some((r) => !r.ok && r.code === 'SESSION_EXPIRED'),
    'and expiry',
  );
});

test('deleting a volume removes its blocks in the background; a new volume of that name starts empty', async (t) => {
  const temp = await tempDatabase();
  let machine: BlockStateMachine = await openMachine(temp.db);
  const log = new LogBuilder();
  await applyOne(machine, log, { type: 'createVolume', name: 'v', sizeBytes: 8 * MiB, createdAtMs: 0 });
  await applyOne(machine, log, { type: 'write', volume: 'v', offset: 0, data: randomBytes(2 * MiB, 3) });
  await machine.whenWritten();
  t.is(await countKeys(temp.db, blockKey(0, 1, 0), blockKey(0, 2, 0)), 512);
  await applyOne(machine, log, { type: 'deleteVolume', name: 'v' });
  await applyOne(machine, log, { type: 'createVolume', name: 'v', sizeBytes: 8 * MiB, createdAtMs: 1 });
  t.true(
    (await machine.read('v', 0, 2 * MiB)).every((byte) => byte === 0),
    'the old blocks are invisible at once',
  );
  await machine.whenGarbageCollected();
  await machine.whenWritten();
  t.is(await countKeys(temp.db, blockKey(0, 1, 0), blockKey(0, 2, 0)), 0, 'and gone once collected');
  await machine.whenWritten();
  t.is(await countKeys(temp.db, stateKey(0, Tag.Deletion), stateKey(0, Tag.Deletion + 1)), 0);
  // A deletion interrupted by a crash (its record and blocks still stored) is resumed at the next open.
  await machine.close();
  const db = await temp.reopen();
  await db.batch([
    { type: 'put', key: deletionKey(0, 99), value: Buffer.alloc(0) },
    ...[0, 1, 2].map((block) => ({ type: 'put' as const, key: blockKey(0, 99, block), value: Buffer.alloc(4096, 1) })),
  ]);
  machine = await openMachine(db);
  t.is(machine.stats().volumeDeletionsPending, 1);
  await machine.whenGarbageCollected();
  t.is(await countKeys(db, blockKey(0, 99, 0), blockKey(0, 100, 0)), 0);
  t.is(machine.stats().volumeDeletionsPending, 0);
  await machine.close();
  await temp.cleanup();
});

/** A WAL store on a simulated file system whose syncs can be held, and a way to hold them. */
async function heldLog(): Promise<{ logStore: WalLogStore; hold(): void; release(): void }> {
  const fs = new CrashFileSystem();
  const logStore = new WalLogStore('/d/wal', { fileSystem: fs, segmentBytes: WAL_SEGMENT_BYTES_MIN });
  await logStore.load();
  let open: () => void = () => undefined;
  return {
    logStore,
    hold() {
      fs.syncGate = new Promise<void>((resolve) => (open = resolve));
    },
    release() {
      fs.syncGate = null;
      open();
    },
  };
}

async function turns(count: number): Promise<void> {
  for (let i = 0; i < count; i++) await new Promise((resolve) => setImmediate(resolve));
}

test('an apply batch is written only once the WAL has synced its entries, of the same term', async (t) => {
  const temp = await tempDatabase();
  const { logStore, hold, release } = await heldLog();
  const machine = await openMachine(temp.db, { log: logStore });
  const log = new LogBuilder();
  const create = log.add({ type: 'createVolume', name: 'v', sizeBytes: 4096, createdAtMs: 0 });
  const meta = (): Promise<number> => countKeys(temp.db, stateKey(0, Tag.Meta), stateKey(0, Tag.Meta + 1));
  // The leader's own append of entry 1 is still syncing when its followers make it committed.
  hold();
  const append = logStore.append([create], { term: 1, vote: null, commit: 0 });
  await machine.apply([create]);
  await turns(20);
  t.is(await meta(), 0, 'the apply batch waits for the WAL sync');
  release();
  await Promise.all([append, machine.whenWritten()]);
  t.is(await meta(), 1, 'and lands after it');
  // Entry 2 of term 2 is applied while the WAL holds a stale entry 2 of term 1 (a follower's
  // conflicting suffix whose replacement is still syncing): the batch waits for the replacement.
  await logStore.append([{ index: 2, term: 1, type: 0, data: new Uint8Array(0) }], null);
  const write: Entry = {
    index: 2,
    term: 2,
    type: 0,
    data: log.add({ type: 'write', volume: 'v', offset: 0, data: randomBytes(4096, 3) }).data,
  };
  hold();
  const replace = logStore.append([write], { term: 2, vote: null, commit: 1 });
  await machine.apply([write]);
  let isWritten = false;
  const written = machine.whenWritten().then(() => (isWritten = true));
  await turns(20);
  t.false(isWritten, 'entry 2 of term 1 does not stand for entry 2 of term 2');
  release();
  await Promise.all([replace, written]);
  t.is(await countKeys(temp.db, blockKey(0, 1, 0), blockKey(0, 2, 0)), 1);
  await machine.close();
  await logStore.close();
  await temp.cleanup();
});

test('write-behind: apply resolves before its batch lands; reads see it; a compaction waits for it', async (t) => {
  const temp = await tempDatabase();
  const { logStore, hold, release } = await heldLog();
  const machine = await openMachine(temp.db, { log: logStore });
  logStore.setStateBarrier((index) => machine.whenDurableThrough(index));
  const log = new LogBuilder();
  const create = log.add({ type: 'createVolume', name: 'v', sizeBytes: MiB, createdAtMs: 0 });
  await logStore.append([create], null);
  await machine.apply([create]);
  await machine.whenWritten();
  // Hold the WAL's syncs, so every apply batch waits.
  hold();
  const model = Buffer.alloc(4 * BLOCK_SIZE_BYTES);
  const whole = randomBytes(2 * BLOCK_SIZE_BYTES, 7);
  model.set(whole, 0);
  const part = randomBytes(100, 8);
  const commands: Command[] = [
    { type: 'write', volume: 'v', offset: 0, data: whole },
    // A partial write over a block whose whole-block write has not landed: read-modify-write must
    // start from the applied bytes, not from LevelDB's (zeros).
    { type: 'write', volume: 'v', offset: BLOCK_SIZE_BYTES + 50, data: part },
    { type: 'trim', volume: 'v', offset: 0, length: BLOCK_SIZE_BYTES },
  ];
  const entries = commands.map((command) => log.add(command));
  const append = logStore.append(entries, null);
  for (const entry of entries) await machine.apply([entry]);
  model.set(part, BLOCK_SIZE_BYTES + 50);
  model.fill(0, 0, BLOCK_SIZE_BYTES);
  t.is(await machine.appliedIndex(), 4);
  sameBytes(t, await machine.read('v', 0, model.length), model, 'a multi-block read sees the overlay');
  sameBytes(
    t,
    await machine.read('v', BLOCK_SIZE_BYTES, BLOCK_SIZE_BYTES),
    model.subarray(BLOCK_SIZE_BYTES, 2 * BLOCK_SIZE_BYTES),
  );
  t.is(await countKeys(temp.db, blockKey(0, 1, 0), blockKey(0, 2, 0)), 0, 'nothing landed yet');
  // readMany serves single-block reads from the overlay (LevelDB has zeros for all of them now).
  const blockReads = [0, 1, 2, 3].map((block) => ({
    volume: 'v',
    offset: block * BLOCK_SIZE_BYTES,
    length: BLOCK_SIZE_BYTES,
  }));
  const inBlock = { volume: 'v', offset: BLOCK_SIZE_BYTES + 40, length: 120 };
  const checkReadMany = async (source: string): Promise<void> => {
    const results = await machine.readMany([...blockReads, inBlock]);
    [...blockReads, inBlock].forEach(({ offset, length }, i) =>
      sameBytes(t, results[i] as Uint8Array, model.subarray(offset, offset + length), `readMany read ${i} (${source})`),
    );
  };
  await checkReadMany('overlay');
  // A compaction standing the state in for entries 1..4 must not be written before that state.
  let isCompacted = false;
  const compaction = logStore
    .applySnapshot(
      { index: 4, term: 1, conf: { voters: ['a'], learners: [], votersOutgoing: [], learnersNext: [] } },
      true,
    )
    .then(() => (isCompacted = true));
  await turns(20);
  t.false(isCompacted, 'the compaction waits for the held apply batches');
  release();
  await Promise.all([append, compaction]);
  t.is(await countKeys(temp.db, blockKey(0, 1, 0), blockKey(0, 2, 0)), 1, 'block 1 landed, block 0 trimmed');
  sameBytes(t, await machine.read('v', 0, model.length), model, 'the same bytes from LevelDB');
  await checkReadMany('LevelDB');
  await machine.close();
  await logStore.close();
  await temp.cleanup();
});

test('a compaction waits only for the batches up to its index, not for later ones (no deadlock)', async (t) => {
  const temp = await tempDatabase();
  const { logStore, hold, release } = await heldLog();
  const machine = await openMachine(temp.db, { log: logStore });
  logStore.setStateBarrier((index) => machine.whenDurableThrough(index));
  const log = new LogBuilder();
  const create = log.add({ type: 'createVolume', name: 'v', sizeBytes: MiB, createdAtMs: 0 });
  await logStore.append([create], null);
  await machine.apply([create]);
  // Entry 2 is applied (committed by the followers) before the leader's own append of it is
  // issued: its batch waits for an append that the driver queues behind the compaction.
  const write = log.add({ type: 'write', volume: 'v', offset: 0, data: randomBytes(4096, 5) });
  await machine.apply([write]);
  await logStore.applySnapshot(
    { index: 1, term: 1, conf: { voters: ['a'], learners: [], votersOutgoing: [], learnersNext: [] } },
    true,
  );
  t.pass('the compaction through 1 did not wait for the batch of entry 2');
  hold();
  const append = logStore.append([write], null);
  release();
  await Promise.all([append, machine.whenWritten()]);
  t.is(await countKeys(temp.db, blockKey(0, 1, 0), blockKey(0, 1, 1)), 1);
  await machine.close();
  await logStore.close();
  await temp.cleanup();
});
