// Proves the move of an old data directory's Raft log (in LevelDB, written by the legacy
// RaftLogStore) into the WAL at start-up: the WAL then holds the same hard state, snapshot and
// entries, the old keys are gone, a second start does not migrate again, a migration interrupted
// before the rename (a leftover wal.migrating/) is redone, and leftover old keys next to a complete
// WAL are deleted without touching the WAL, and a WAL directory outside the data directory
// (storage.wal_dir) is migrated into through its own sibling directory.
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { openDatabase, type Database } from '../../src/storage/database.js';
import { RaftLogStore } from '../../src/storage/raft-log-store.js';
import type { ConfState, Entry, HardState, SnapshotMeta } from '../../src/storage/raft-api.js';
import { openRaftLog } from '../../src/storage/wal-migration.js';
import { WAL_SEGMENT_BYTES_MIN } from '../../src/storage/wal-log-store.js';

const conf: ConfState = { voters: ['a', 'b', 'c'], learners: [], votersOutgoing: [], learnersNext: [] };
const options = { segmentBytes: WAL_SEGMENT_BYTES_MIN };

function range(from: number, to: number, term: number): Entry[] {
  const entries: Entry[] = [];
  for (let index = from; index <= to; index++) {
    entries.push({ index, term, type: 0, data: new Uint8Array(3000).fill(index & 0xff) });
  }
  return entries;
}

function plain(entries: readonly Entry[]): [number, number, string][] {
  return entries.map((e) => [e.index, e.term, Buffer.from(e.data).toString('hex')]);
}

async function legacyKeys(db: Database): Promise<number> {
  let count = 0;
  for await (const _key of db.keys({ gte: Buffer.from([0x4c]), lt: Buffer.from([0x4d]) })) count++;
  return count;
}

/** A data directory as an old rdld left it: LevelDB in db/ with a log 1..200, snapshot at 50. */
async function oldDataDirectory(): Promise<{ directory: string; hardState: HardState; snapshot: SnapshotMeta }> {
  const directory = await mkdtemp(join(tmpdir(), 'rdl-wal-migration-'));
  const db = await openDatabase(join(directory, 'db'));
  const legacy = new RaftLogStore(db);
  await legacy.load();
  const hardState: HardState = { term: 3, vote: 'b', commit: 180 };
  await legacy.append(range(1, 100, 2), { term: 2, vote: 'a', commit: 90 });
  await legacy.append(range(101, 200, 3), hardState);
  const snapshot: SnapshotMeta = { index: 50, term: 2, conf };
  await legacy.applySnapshot(snapshot, true);
  await legacy.close();
  await db.close();
  return { directory, hardState, snapshot };
}

test('an old LevelDB Raft log is moved into the WAL: same state, old keys gone, done once', async (t) => {
  const { directory, hardState, snapshot } = await oldDataDirectory();
  const db = await openDatabase(join(directory, 'db'));
  t.true((await legacyKeys(db)) > 0);
  const opened = await openRaftLog(join(directory, 'wal'), db, options);
  t.is(opened.migratedEntries, 150);
  const state = await opened.store.load();
  t.deepEqual(state.hardState, hardState);
  t.deepEqual(state.snapshot, snapshot);
  t.deepEqual(plain(state.entries), plain([...range(51, 100, 2), ...range(101, 200, 3)]));
  t.true(opened.store.segmentSeqs.length > 1, 'the 450 KB log spans segments of 256 KiB');
  t.is(await legacyKeys(db), 0, 'the old keys are deleted');
  t.false((await readdir(directory)).includes('wal.migrating'));
  await opened.store.append(range(201, 201, 3), null);
  await opened.store.close();
  const again = await openRaftLog(join(directory, 'wal'), db, options);
  t.is(again.migratedEntries, null, 'a second start finds the WAL and migrates nothing');
  t.is((await again.store.load()).entries.length, 151);
  await again.store.close();
  await db.close();
  await rm(directory, { recursive: true, force: true });
});

test('a migration interrupted before the rename is redone; old keys left next to a complete WAL are deleted', async (t) => {
  const { directory, snapshot } = await oldDataDirectory();
  const db = await openDatabase(join(directory, 'db'));
  // A crash mid-migration: a partial wal.migrating/ and an empty wal/ directory.
  await mkdir(join(directory, 'wal.migrating'), { recursive: true });
  await writeFile(join(directory, 'wal.migrating', '0000000000000001.wal'), Buffer.alloc(1000, 7));
  await mkdir(join(directory, 'wal'), { recursive: true });
  const opened = await openRaftLog(join(directory, 'wal'), db, options);
  t.is(opened.migratedEntries, 150);
  const state = await opened.store.load();
  t.deepEqual(state.snapshot, snapshot);
  t.is(state.entries.length, 150);
  await opened.store.close();
  // A crash after the rename but before the old keys were deleted: put one back.
  await db.put(Buffer.from([0x4c, 0x68]), Buffer.from([0x80]));
  const next = await openRaftLog(join(directory, 'wal'), db, options);
  t.is(next.migratedEntries, null, 'the complete WAL wins');
  t.is(await legacyKeys(db), 0, 'and the leftover key is deleted');
  t.is((await next.store.load()).entries.length, 150);
  await next.store.close();
  await db.close();
  await rm(directory, { recursive: true, force: true });
});

test('a new data directory starts an empty WAL without migrating', async (t) => {
  const directory = await mkdtemp(join(tmpdir(), 'rdl-wal-migration-'));
  const db = await openDatabase(join(directory, 'db'));
  const opened = await openRaftLog(join(directory, 'wal'), db, options);
  t.is(opened.migratedEntries, null);
  const state = await opened.store.load();
  t.deepEqual(state.entries, []);
  t.deepEqual(await readdir(join(directory, 'wal')), ['0000000000000001.wal']);
  await opened.store.close();
  await db.close();
  await rm(directory, { recursive: true, force: true });
});

test('with storage.wal_dir outside the data directory, the migration builds beside the WAL directory; without old keys no sibling is touched', async (t) => {
  const { directory, hardState } = await oldDataDirectory();
  const walParent = await mkdtemp(join(tmpdir(), 'rdl-wal-dir-'));
  const walDirectory = join(walParent, 'gland');
  const db = await openDatabase(join(directory, 'db'));
  const opened = await openRaftLog(walDirectory, db, options);
  t.is(opened.migratedEntries, 150);
  t.deepEqual((await opened.store.load()).hardState, hardState);
  await opened.store.close();
  t.deepEqual(await readdir(walParent), ['gland'], 'built in gland.migrating, renamed to gland');
  t.false((await readdir(directory)).includes('wal'), 'nothing in the data directory');
  // Not ours unless old keys call for a migration: a sibling with the migration's name stays.
  await mkdir(`${walDirectory}.migrating`);
  const next = await openRaftLog(walDirectory, db, options);
  t.is(next.migratedEntries, null);
  t.true((await readdir(walParent)).includes('gland.migrating'));
  await next.store.close();
  await db.close();
  await rm(directory, { recursive: true, force: true });
  await rm(walParent, { recursive: true, force: true });
});
