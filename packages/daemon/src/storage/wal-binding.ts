/**
 * Binds a data directory's LevelDB state machine to its Raft WAL, so that a daemon never starts on
 * a WAL that is not the one its state was built from.
 *
 * Why: with `storage.wal_dir` the WAL can live on a device of its own, and then the two halves of
 * a region's state can come apart: the WAL's file system not mounted (an empty directory where the
 * log should be), a typo in the path, another region's WAL, or a data directory restored without
 * its WAL. Starting on an empty log would forget this region's term and vote (it could vote twice
 * in one term) and the entries it acknowledged to a leader as durable; starting on another's log
 * would mix two histories. Both break Raft's safety silently, so both are refused at start-up with
 * a coded error instead. The same check guards the default layout (`<data_dir>/wal`), where the
 * WAL can still be deleted by hand.
 *
 * How: a random id, written durably into `rdl-wal.json` in the WAL directory and then into LevelDB
 * (key `WAL-binding`). The WAL's file appears atomically and exclusively (`link(2)` of a synced
 * temporary file, which fails if the name exists), so two daemons with different data directories
 * can never both bind one WAL directory. (LevelDB's `LOCK` already keeps two daemons off one data
 * directory, and the daemon takes it before this runs.) The WAL's file comes first so that
 * LevelDB's record without it can only mean a lost WAL, never an interrupted bind.
 *
 * At start-up (after a legacy Raft log was migrated, before anything loads the WAL):
 * - both ids present: they must be equal, else `DAEMON_WAL_MISMATCH`;
 * - only LevelDB's: the WAL is gone (`DAEMON_WAL_MISSING`), even when LevelDB holds nothing else:
 *   a daemon that never applied an entry may still have voted;
 * - only the WAL's: a bind stopped between its two writes, if the WAL's file names this data
 *   directory and the two halves agree (no segments and nothing in LevelDB: a new daemon; both:
 *   a data directory of an rdld without the binding, bound on its first start), and LevelDB's
 *   record is written now. Otherwise the WAL belongs to another data directory, or this one was
 *   emptied or replaced: `DAEMON_WAL_MISMATCH` (`DAEMON_WAL_MISSING` when only LevelDB has state);
 * - neither (a new daemon, or one upgraded from an rdld without the binding): if LevelDB holds
 *   state but the WAL directory holds no segments, the log is gone: `DAEMON_WAL_MISSING`;
 *   otherwise both records are written.
 */
import { randomUUID } from 'node:crypto';
import { link, mkdir, open, readFile, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Database } from './database.js';
import { StorageErrorCode, storageError, walDirectoryUnusable } from './errors.js';
import { segmentSeqOf } from './wal-format.js';
import { nodeWalFileSystem } from './wal-io.js';

/** LevelDB key of the binding record (outside the state machine's `S`/`G` keys and the legacy `L` log). */
export const WAL_BINDING_KEY = Buffer.from('WAL-binding');
/** Name of the binding file in the WAL directory. */
export const WAL_BINDING_FILE = 'rdl-wal.json';
const BINDING_FORMAT = 1;

/** What both sides record. `dataDir`/`walDir` are where they were at binding time (for messages). */
export interface WalBinding {
  readonly format: number;
  readonly id: string;
  readonly region: string;
  readonly dataDir: string;
  readonly walDir: string;
  readonly boundAt: string;
}

/** What `bindWal` found or did, for the start-up log line. */
export type WalBindingResult =
  | { readonly status: 'bound'; readonly id: string } // a new binding was written (both sides)
  | { readonly status: 'completed'; readonly id: string } // the WAL's file existed; LevelDB's record was written
  | { readonly status: 'verified'; readonly id: string };

export interface BindWalOptions {
  /** This daemon's region, recorded for error messages. */
  readonly region: string;
  /** The data directory (recorded for error messages). */
  readonly dataDirectory: string;
}

function parseBinding(bytes: Uint8Array, where: string): WalBinding {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (error) {
    throw storageError(StorageErrorCode.StorageCorrupt, `${where} is not valid JSON`, error);
  }
  const record = value as Partial<WalBinding> | null;
  if (record === null || typeof record !== 'object' || typeof record.id !== 'string' || record.id === '') {
    throw storageError(StorageErrorCode.StorageCorrupt, `${where} has no binding id`);
  }
  return record as WalBinding;
}

function describe(binding: WalBinding): string {
  return `id ${binding.id}, region ${binding.region}, data directory ${binding.dataDir}, WAL ${binding.walDir}, bound ${binding.boundAt}`;
}

async function readDatabaseBinding(db: Database): Promise<WalBinding | null> {
  const bytes = await db.get(WAL_BINDING_KEY);
  return bytes === undefined ? null : parseBinding(bytes, `the WAL binding in the data directory's LevelDB`);
}

async function readWalBinding(walDirectory: string): Promise<WalBinding | null> {
  const path = join(walDirectory, WAL_BINDING_FILE);
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  return parseBinding(bytes, path);
}

/** Whether LevelDB holds anything besides the binding record. */
async function databaseHasState(db: Database): Promise<boolean> {
  for await (const key of db.keys({ limit: 2 })) if (!key.equals(WAL_BINDING_KEY)) return true;
  return false;
}

async function walHasSegments(walDirectory: string): Promise<boolean> {
  return (await nodeWalFileSystem.list(walDirectory)).some((name) => segmentSeqOf(name) !== null);
}

/**
 * Creates `<walDirectory>/rdl-wal.json` holding `binding`, durably, unless the name exists:
 * returns the binding the file holds afterwards (`binding` itself, or whoever was first).
 */
async function createWalBindingFile(walDirectory: string, binding: WalBinding): Promise<WalBinding> {
  const created = await mkdir(walDirectory, { recursive: true });
  // A new directory's own entry must be durable in its parent, or a power loss can take the
  // directory (and the binding file in it) away after the start-up that made it.
  if (created !== undefined) await nodeWalFileSystem.syncDirectory(dirname(created));
  const path = join(walDirectory, WAL_BINDING_FILE);
  const temporary = `${path}.${binding.id}.new`;
  const handle = await open(temporary, 'w');
  try {
    await handle.writeFile(JSON.stringify(binding) + '\n');
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await link(temporary, path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  } finally {
    await unlink(temporary);
  }
  await nodeWalFileSystem.syncDirectory(walDirectory);
  return (await readWalBinding(walDirectory)) ?? binding;
}

/**
 * Checks (or creates) the binding between `db` and the WAL in `walDirectory`; see the module
 * comment for the rules. Rejects with `DAEMON_WAL_MISSING`, `DAEMON_WAL_MISMATCH`,
 * `DAEMON_STORAGE_CORRUPT` (an unreadable binding record), `DAEMON_DATA_DIR_UNWRITABLE` (the WAL
 * directory cannot be read, created or written) or `DAEMON_STORAGE_FAILED`.
 */
export async function bindWal(db: Database, walDirectory: string, options: BindWalOptions): Promise<WalBindingResult> {
  let inDatabase: WalBinding | null;
  let inWal: WalBinding | null;
  try {
    [inDatabase, inWal] = await Promise.all([readDatabaseBinding(db), readWalBinding(walDirectory)]);
  } catch (error) {
    throw wrap(error, walDirectory);
  }
  if (inDatabase !== null && inWal !== null) {
    if (inDatabase.id === inWal.id) return { status: 'verified', id: inDatabase.id };
    throw mismatch(walDirectory, options, inDatabase, inWal);
  }
  // LevelDB's record is written after the WAL's file: without the file, the WAL was lost.
  if (inDatabase !== null) throw missing(walDirectory, options, inDatabase);

  try {
    const [hasSegments, hasState] = await Promise.all([walHasSegments(walDirectory), databaseHasState(db)]);
    if (inWal !== null) {
      const isOurs = inWal.dataDir === options.dataDirectory;
      if (isOurs && hasSegments === hasState) {
        await db.put(WAL_BINDING_KEY, Buffer.from(JSON.stringify(inWal)), { sync: true });
        return { status: 'completed', id: inWal.id };
      }
      if (hasState && !hasSegments) throw missing(walDirectory, options, null);
      throw mismatch(walDirectory, options, null, inWal);
    }
    if (hasState && !hasSegments) throw missing(walDirectory, options, null);
    const binding: WalBinding = {
      format: BINDING_FORMAT,
      id: randomUUID(),
      region: options.region,
      dataDir: options.dataDirectory,
      walDir: walDirectory,
      boundAt: new Date().toISOString(),
    };
    const result = await createWalBindingFile(walDirectory, binding);
    if (result.id !== binding.id) throw mismatch(walDirectory, options, null, result);
    await db.put(WAL_BINDING_KEY, Buffer.from(JSON.stringify(binding)), { sync: true });
    return { status: 'bound', id: binding.id };
  } catch (error) {
    throw wrap(error, walDirectory);
  }
}

function wrap(error: unknown, walDirectory: string): Error {
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && code.startsWith('DAEMON_')) return error as Error;
  const unusable = walDirectoryUnusable(walDirectory, error);
  if (unusable !== null) return unusable;
  return storageError(
    StorageErrorCode.StorageFailed,
    `checking the WAL binding of ${walDirectory}: ${(error as Error).message}`,
    error,
  );
}

function missing(walDirectory: string, options: BindWalOptions, inDatabase: WalBinding | null): Error {
  const what =
    inDatabase === null
      ? `holds no Raft log, but the data directory ${options.dataDirectory} holds state built from one`
      : `holds no ${WAL_BINDING_FILE}, so not the Raft log the data directory ${options.dataDirectory} was bound to (${describe(inDatabase)})`;
  return storageError(
    StorageErrorCode.WalMissing,
    `the WAL directory ${walDirectory} ${what}. Starting would forget this ` +
      `region's vote and the entries it acknowledged. Check that storage.wal_dir names the right directory and ` +
      `that its file system is mounted; to rebuild this region from its peers instead, see docs/operations.md ` +
      `"Recovery".`,
  );
}

function mismatch(
  walDirectory: string,
  options: BindWalOptions,
  inDatabase: WalBinding | null,
  inWal: WalBinding,
): Error {
  const ours =
    inDatabase === null
      ? `the data directory ${options.dataDirectory} has no binding (it is new, or was emptied or replaced)`
      : `the data directory ${options.dataDirectory} is bound to ${describe(inDatabase)}`;
  return storageError(
    StorageErrorCode.WalMismatch,
    `the WAL in ${walDirectory} belongs to another data directory (${describe(inWal)}); ${ours}. ` +
      `Point storage.wal_dir at this data directory's own WAL; see docs/operations.md "Recovery".`,
  );
}
