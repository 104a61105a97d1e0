// Proves the binding between a data directory's LevelDB and its Raft WAL (wal-binding.ts): a new
// pair is bound on both sides and verified on the next start; a WAL directory emptied (an unmounted
// device, a wrong path) under a data directory with state is refused with DAEMON_WAL_MISSING, with
// or without a binding recorded, and so is LevelDB's record without the WAL's file even before any
// state; another data directory's WAL, and a bound WAL under an emptied data directory, are refused
// with DAEMON_WAL_MISMATCH; an interrupted bind (the WAL's file written, LevelDB's record not)
// completes only for the data directory the file names; a data directory from an rdld without the
// binding is bound on its first start; and two new data directories binding one WAL directory at
// the same time cannot both succeed.
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { openDatabase, type Database } from '../../src/storage/database.js';
import { WAL_BINDING_FILE, WAL_BINDING_KEY, bindWal } from '../../src/storage/wal-binding.js';

const root = await mkdtemp(join(tmpdir(), 'rdl-wal-binding-'));
test.after.always(() => rm(root, { recursive: true, force: true }));

let counter = 0;
/** A new data directory (LevelDB open in `<dir>/db`) and a WAL directory outside it. */
async function pair(): Promise<{ dataDirectory: string; walDirectory: string; db: Database }> {
  counter++;
  const dataDirectory = join(root, `data-${counter}`);
  const walDirectory = join(root, `wal-${counter}`, 'region');
  const db = await openDatabase(join(dataDirectory, 'db'));
  return { dataDirectory, walDirectory, db };
}

/** What a running daemon leaves behind: some state in LevelDB and a WAL segment. */
async function addState(db: Database, walDirectory: string): Promise<void> {
  await db.put(Buffer.from('S\0\0\0\0m'), Buffer.from('meta'));
  await mkdir(walDirectory, { recursive: true });
  await writeFile(join(walDirectory, '0000000000000001.wal'), Buffer.alloc(4096));
}

const options = (dataDirectory: string) => ({ region: 'gland', dataDirectory });

test('a new pair is bound on both sides, then verified', async (t) => {
  const { dataDirectory, walDirectory, db } = await pair();
  const first = await bindWal(db, walDirectory, options(dataDirectory));
  t.is(first.status, 'bound');
  const file = JSON.parse(await readFile(join(walDirectory, WAL_BINDING_FILE), 'utf8'));
  const record = JSON.parse((await db.get(WAL_BINDING_KEY))!.toString());
  t.is(file.id, first.id);
  t.deepEqual(record, file);
  t.like(file, { format: 1, region: 'gland', dataDir: dataDirectory, walDir: walDirectory });
  // No temporary file is left behind.
  t.deepEqual(await readdir(walDirectory), [WAL_BINDING_FILE]);
  await addState(db, walDirectory);
  t.deepEqual(await bindWal(db, walDirectory, options(dataDirectory)), { status: 'verified', id: first.id });
  await db.close();
});

test('an emptied WAL directory under a data directory with state is refused (DAEMON_WAL_MISSING)', async (t) => {
  const { dataDirectory, walDirectory, db } = await pair();
  await bindWal(db, walDirectory, options(dataDirectory));
  await addState(db, walDirectory);
  // As if the WAL's file system were not mounted: the directory is there, empty.
  await rm(walDirectory, { recursive: true });
  await mkdir(walDirectory);
  const error = await t.throwsAsync(bindWal(db, walDirectory, options(dataDirectory)));
  t.is((error as { code?: string }).code, 'DAEMON_WAL_MISSING');
  t.regex(error!.message, /holds no rdl-wal\.json/);
  t.regex(error!.message, /storage\.wal_dir/);
  // Nothing was written into the empty directory.
  t.deepEqual(await readdir(walDirectory), []);
  // A missing directory is refused the same way.
  await rm(walDirectory, { recursive: true });
  const again = await t.throwsAsync(bindWal(db, walDirectory, options(dataDirectory)));
  t.is((again as { code?: string }).code, 'DAEMON_WAL_MISSING');
  await db.close();
});

test("another data directory's WAL is refused (DAEMON_WAL_MISMATCH), and so is a bound WAL under an emptied data directory", async (t) => {
  const a = await pair();
  const b = await pair();
  await bindWal(a.db, a.walDirectory, options(a.dataDirectory));
  await addState(a.db, a.walDirectory);
  await bindWal(b.db, b.walDirectory, options(b.dataDirectory));
  await addState(b.db, b.walDirectory);
  const swapped = await t.throwsAsync(bindWal(a.db, b.walDirectory, options(a.dataDirectory)));
  t.is((swapped as { code?: string }).code, 'DAEMON_WAL_MISMATCH');
  t.regex(swapped!.message, new RegExp(`data directory ${b.dataDirectory}`));

  // The data directory moved aside (to be rebuilt from the peers) but not the WAL.
  await b.db.close();
  await rm(b.dataDirectory, { recursive: true });
  const fresh = await openDatabase(join(b.dataDirectory, 'db'));
  const emptied = await t.throwsAsync(bindWal(fresh, b.walDirectory, options(b.dataDirectory)));
  t.is((emptied as { code?: string }).code, 'DAEMON_WAL_MISMATCH');
  t.regex(emptied!.message, /has no binding/);
  await fresh.close();
  await a.db.close();
});

test("a bind interrupted after the WAL's file completes, for this data directory only", async (t) => {
  // A new daemon stopped between the two writes: the WAL's file only, nothing else anywhere.
  const { dataDirectory, walDirectory, db } = await pair();
  const record = { format: 1, id: 'interrupted-1', region: 'gland', dataDir: dataDirectory, walDir: walDirectory };
  await mkdir(walDirectory, { recursive: true });
  await writeFile(join(walDirectory, WAL_BINDING_FILE), JSON.stringify({ ...record, boundAt: 'x' }));
  t.deepEqual(await bindWal(db, walDirectory, options(dataDirectory)), { status: 'completed', id: 'interrupted-1' });
  t.is(JSON.parse((await db.get(WAL_BINDING_KEY))!.toString()).id, 'interrupted-1');
  t.is((await bindWal(db, walDirectory, options(dataDirectory))).status, 'verified');

  // An upgraded daemon stopped between the two writes: state and segments, the WAL's file only.
  const upgraded = await pair();
  await addState(upgraded.db, upgraded.walDirectory);
  const upgradedRecord = { ...record, id: 'interrupted-2', dataDir: upgraded.dataDirectory };
  await writeFile(join(upgraded.walDirectory, WAL_BINDING_FILE), JSON.stringify(upgradedRecord));
  t.is((await bindWal(upgraded.db, upgraded.walDirectory, options(upgraded.dataDirectory))).status, 'completed');

  // The same file naming another data directory (the loser of a bind race, restarted before the
  // winner wrote a segment) is not completed.
  const other = await pair();
  await mkdir(other.walDirectory, { recursive: true });
  await writeFile(join(other.walDirectory, WAL_BINDING_FILE), JSON.stringify({ ...record, id: 'theirs' }));
  const error = await t.throwsAsync(bindWal(other.db, other.walDirectory, options(other.dataDirectory)));
  t.is((error as { code?: string }).code, 'DAEMON_WAL_MISMATCH');
  t.is(await other.db.get(WAL_BINDING_KEY), undefined);
  await db.close();
  await upgraded.db.close();
  await other.db.close();
});

test("LevelDB's record without the WAL's file is DAEMON_WAL_MISSING, even before any state: a new daemon may have voted", async (t) => {
  const { dataDirectory, walDirectory, db } = await pair();
  await bindWal(db, walDirectory, options(dataDirectory));
  // Nothing applied yet; the WAL directory emptied (or another, empty one configured).
  await rm(walDirectory, { recursive: true });
  const error = await t.throwsAsync(bindWal(db, walDirectory, options(dataDirectory)));
  t.is((error as { code?: string }).code, 'DAEMON_WAL_MISSING');
  t.regex(error!.message, new RegExp(`holds no ${WAL_BINDING_FILE.replace('.', '\\.')}`));
  // Segments without the binding file (the file deleted by hand): refused the same way.
  await addState(db, walDirectory);
  const again = await t.throwsAsync(bindWal(db, walDirectory, options(dataDirectory)));
  t.is((again as { code?: string }).code, 'DAEMON_WAL_MISSING');
  t.deepEqual(await readdir(walDirectory), ['0000000000000001.wal'], 'nothing written');
  await db.close();
});

test('a data directory of an rdld without the binding is bound on its first start, unless its WAL is gone', async (t) => {
  const { dataDirectory, walDirectory, db } = await pair();
  await addState(db, walDirectory);
  t.is((await bindWal(db, walDirectory, options(dataDirectory))).status, 'bound');

  const lost = await pair();
  await addState(lost.db, lost.walDirectory);
  await rm(lost.walDirectory, { recursive: true });
  const error = await t.throwsAsync(bindWal(lost.db, lost.walDirectory, options(lost.dataDirectory)));
  t.is((error as { code?: string }).code, 'DAEMON_WAL_MISSING');
  // Refused before writing anything: the next start (with the WAL back) binds normally.
  t.is(await lost.db.get(WAL_BINDING_KEY), undefined);
  await db.close();
  await lost.db.close();
});

test('two new data directories binding one WAL directory at once: exactly one succeeds', async (t) => {
  const shared = join(root, 'shared-wal');
  for (let round = 0; round < 5; round++) {
    const directory = join(shared, String(round));
    const a = await pair();
    const b = await pair();
    const results = await Promise.allSettled([
      bindWal(a.db, directory, options(a.dataDirectory)),
      bindWal(b.db, directory, options(b.dataDirectory)),
    ]);
    t.is(results.filter((r) => r.status === 'fulfilled').length, 1, `round ${round}`);
    const rejected = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    t.is((rejected.reason as { code?: string }).code, 'DAEMON_WAL_MISMATCH');
    await a.db.close();
    await b.db.close();
  }
});

test('an unreadable binding file is DAEMON_STORAGE_CORRUPT, not a fresh start', async (t) => {
  const { dataDirectory, walDirectory, db } = await pair();
  await bindWal(db, walDirectory, options(dataDirectory));
  await writeFile(join(walDirectory, WAL_BINDING_FILE), '{"id": ');
  const error = await t.throwsAsync(bindWal(db, walDirectory, options(dataDirectory)));
  t.is((error as { code?: string }).code, 'DAEMON_STORAGE_CORRUPT');
  await db.close();
});
