// Proves the LevelDB Raft log store: it passes @rdl/raft's storage compliance suite (the same one
// the in-memory storage passes) on real LevelDB in temp directories, writes every append as one
// synced batch, group-commits appends that arrive during a sync, reports a locked or unwritable
// data directory with coded errors, detects a damaged log, and refuses use after close.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { storageCompliance, type ComplianceAssertions } from '@rdl/raft/testing';
import { openDatabase, type Database } from '../../src/storage/database.js';
import { RaftLogStore } from '../../src/storage/raft-log-store.js';
import type { Entry } from '../../src/storage/raft-api.js';

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'rdl-raft-log-'));
}

function entry(index: number, term: number, size = 16): Entry {
  return { index, term, type: 0, data: new Uint8Array(size).fill(index & 0xff) };
}

storageCompliance(
  (title, implementation) => test(title, (t) => implementation(t as unknown as ComplianceAssertions)),
  async () => {
    const directory = await tempDir();
    let current = new RaftLogStore(await openDatabase(directory), { isDatabaseOwned: true });
    return {
      storage: current,
      async reopen() {
        await current.close();
        current = new RaftLogStore(await openDatabase(directory), { isDatabaseOwned: true });
        return current;
      },
      async cleanup() {
        await current.close();
        await rm(directory, { recursive: true, force: true });
      },
    };
  },
  'leveldb log store',
);

/** Records the options of every batch the store writes. */
function spyOnBatches(db: Database): { sync: boolean | undefined; size: number }[] {
  const calls: { sync: boolean | undefined; size: number }[] = [];
  const original = db.batch.bind(db) as (operations: unknown[], options?: { sync?: boolean }) => Promise<void>;
  (db as unknown as { batch: typeof original }).batch = (operations, options) => {
    calls.push({ sync: options?.sync, size: operations.length });
    return original(operations, options);
  };
  return calls;
}

test('every append is one batch, written with sync: true unless only the commit index moved', async (t) => {
  const directory = await tempDir();
  const db = await openDatabase(directory);
  const calls = spyOnBatches(db);
  const store = new RaftLogStore(db, { isDatabaseOwned: true });
  await store.load();
  await store.append([entry(1, 1), entry(2, 1)], { term: 1, vote: 'geneva', commit: 0 });
  await store.append([entry(2, 2)], { term: 2, vote: null, commit: 1 }); // replaces a suffix
  await store.append([], { term: 3, vote: 'gland', commit: 2 });
  // Only the commit index moved: Raft does not need it durable, so no fsync of its own.
  await store.append([], { term: 3, vote: 'gland', commit: 3 });
  await store.append([entry(3, 3)], { term: 3, vote: 'gland', commit: 3 });
  t.deepEqual(calls, [
    { sync: true, size: 3 },
    { sync: true, size: 2 },
    { sync: true, size: 1 },
    { sync: false, size: 1 },
    { sync: true, size: 2 },
  ]);
  await store.close();
  await rm(directory, { recursive: true, force: true });
});

test('appends issued while a sync is in flight are group-committed into fewer synced batches', async (t) => {
  const directory = await tempDir();
  const db = await openDatabase(directory);
  const calls = spyOnBatches(db);
  const syncs: number[] = [];
  const store = new RaftLogStore(db, {
    isDatabaseOwned: true,
    observer: { onSync: (_durationMs, entries) => syncs.push(entries) },
  });
  await store.load();
  const appends: Promise<void>[] = [];
  for (let index = 1; index <= 100; index++) appends.push(store.append([entry(index, 1, 4096)], null));
  await Promise.all(appends);
  t.true(calls.length < 100, `100 appends took ${calls.length} batches`);
  t.true(
    calls.every((call) => call.sync === true),
    'every batch is synced',
  );
  t.is(
    syncs.reduce((sum, n) => sum + n, 0),
    100,
    'the observer saw every entry once',
  );
  await store.close();
  const reopened = new RaftLogStore(await openDatabase(directory), { isDatabaseOwned: true });
  const state = await reopened.load();
  t.deepEqual(
    state.entries.map((e) => e.index),
    Array.from({ length: 100 }, (_, i) => i + 1),
  );
  t.true(state.entries.every((e) => e.data.length === 4096 && e.data[0] === (e.index & 0xff)));
  await reopened.close();
  await rm(directory, { recursive: true, force: true });
});

test('the queue of appends waiting for a sync is bounded', async (t) => {
  const directory = await tempDir();
  const store = new RaftLogStore(await openDatabase(directory), { isDatabaseOwned: true, queuedAppendsMax: 3 });
  await store.load();
  // The first append is taken by the sync at once; three more may wait behind it.
  const accepted = [1, 2, 3, 4].map((index) => store.append([entry(index, 1)], null));
  const refused = store.append([entry(5, 1)], null);
  await t.throwsAsync(refused, { code: 'DAEMON_STORAGE_BUSY' });
  await Promise.all(accepted);
  await store.close();
  await rm(directory, { recursive: true, force: true });
});

test('a data directory opened twice is DAEMON_DATA_DIR_LOCKED', async (t) => {
  const directory = await tempDir();
  const db = await openDatabase(directory);
  await t.throwsAsync(openDatabase(directory), { code: 'DAEMON_DATA_DIR_LOCKED' });
  await db.close();
  await rm(directory, { recursive: true, force: true });
});

test('a data directory that cannot be created is DAEMON_DATA_DIR_UNWRITABLE', async (t) => {
  const directory = await tempDir();
  const file = join(directory, 'a-file');
  await writeFile(file, 'not a directory');
  await t.throwsAsync(openDatabase(join(file, 'db')), { code: 'DAEMON_DATA_DIR_UNWRITABLE' });
  await rm(directory, { recursive: true, force: true });
});

test('a log with a gap or an undecodable hard state is DAEMON_STORAGE_CORRUPT', async (t) => {
  const directory = await tempDir();
  const db = await openDatabase(directory);
  const store = new RaftLogStore(db);
  await store.load();
  await store.append([entry(1, 1), entry(2, 1), entry(3, 1)], null);
  const key = Buffer.from([0x4c, 0x65, 0, 0, 0, 0, 0, 0, 0, 2]);
  t.not(await db.get(key), undefined, 'the key layout is as documented');
  await db.del(key);
  await t.throwsAsync(new RaftLogStore(db).load(), { code: 'DAEMON_STORAGE_CORRUPT' });
  await db.put(key, Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 1]));
  await db.put(Buffer.from([0x4c, 0x68]), Buffer.from([0xc1])); // undecodable hard state
  await t.throwsAsync(new RaftLogStore(db).load(), { code: 'DAEMON_STORAGE_CORRUPT' });
  await db.put(Buffer.from([0x4c, 0x68]), Buffer.from([0x93, 1, 2, 3])); // an array, not a record
  await t.throwsAsync(new RaftLogStore(db).load(), { code: 'DAEMON_STORAGE_CORRUPT' });
  await db.close();
  await rm(directory, { recursive: true, force: true });
});

test('a closed store refuses appends with DAEMON_STORAGE_CLOSED', async (t) => {
  const directory = await tempDir();
  const store = new RaftLogStore(await openDatabase(directory), { isDatabaseOwned: true });
  await store.load();
  await store.close();
  await t.throwsAsync(store.append([entry(1, 1)], null), { code: 'DAEMON_STORAGE_CLOSED' });
  await store.close(); // idempotent
  await rm(directory, { recursive: true, force: true });
});

test('a compaction survives a reopen and later appends continue the log', async (t) => {
  const directory = await tempDir();
  let store = new RaftLogStore(await openDatabase(directory), { isDatabaseOwned: true });
  await store.load();
  await store.append(
    [1, 2, 3, 4, 5].map((index) => entry(index, 1)),
    null,
  );
  await store.compact(5);
  await store.close();
  store = new RaftLogStore(await openDatabase(directory), { isDatabaseOwned: true });
  t.deepEqual((await store.load()).entries, []);
  await store.append([entry(6, 1)], null);
  await t.throwsAsync(store.append([entry(5, 2)], null), undefined, 'below the compacted index is refused');
  store = await (async () => {
    await store.close();
    return new RaftLogStore(await openDatabase(directory), { isDatabaseOwned: true });
  })();
  t.deepEqual(
    (await store.load()).entries.map((e) => e.index),
    [6],
  );
  await store.close();
  await rm(directory, { recursive: true, force: true });
});

test('a failed synced write poisons the store: DAEMON_STORAGE_FAILED for it and every later call', async (t) => {
  const directory = await tempDir();
  const db = await openDatabase(directory);
  const store = new RaftLogStore(db);
  await store.load();
  await store.append([entry(1, 1)], null);
  const original = db.batch.bind(db) as unknown as (operations: unknown[], options?: unknown) => Promise<void>;
  (db as unknown as { batch: typeof original }).batch = async () => {
    throw new Error('EIO: simulated fsync failure');
  };
  const failed = await t.throwsAsync(store.append([entry(2, 1)], null), { code: 'DAEMON_STORAGE_FAILED' });
  t.regex(String((failed?.cause as Error).message), /EIO/);
  (db as unknown as { batch: typeof original }).batch = original;
  await t.throwsAsync(store.append([entry(2, 1)], null), { code: 'DAEMON_STORAGE_FAILED' }, 'even once the disk works');
  await t.throwsAsync(store.whenSynced(), { code: 'DAEMON_STORAGE_FAILED' });
  await t.throwsAsync(store.load(), { code: 'DAEMON_STORAGE_FAILED' });
  await store.close();
  // A new store on the same database (the restarted daemon) sees only what was synced.
  t.deepEqual(
    (await new RaftLogStore(db).load()).entries.map((e) => e.index),
    [1],
  );
  await db.close();
  await rm(directory, { recursive: true, force: true });
});

test('group commit caps the bytes of one synced batch', async (t) => {
  const directory = await tempDir();
  const db = await openDatabase(directory);
  const calls = spyOnBatches(db);
  const store = new RaftLogStore(db, { isDatabaseOwned: true, groupBytesMax: 3 * 4200 });
  await store.load();
  await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map((index) => store.append([entry(index, 1, 4096)], null)));
  t.true(calls.length >= 3, `8 appends of 4 KiB with a 12.3 KB cap took ${calls.length} batches`);
  t.true(calls.every((call) => call.size <= 3));
  t.is((await store.load()).entries.length, 8);
  await store.close();
  await rm(directory, { recursive: true, force: true });
});
