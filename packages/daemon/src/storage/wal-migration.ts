/**
 * Opens the daemon's Raft log: the WAL in its directory (`storage.wal_dir`, by default
 * `<data_dir>/wal/`), after moving a Raft log that an older rdld kept in LevelDB (keys under `L`,
 * read by the legacy `RaftLogStore`) into it.
 *
 * The migration is crash-safe: the WAL is built in a sibling directory, `<wal dir>.migrating/`,
 * synced, and renamed to the WAL directory (then their parent synced) before the old keys are
 * deleted. At start-up: a WAL directory holding segments is the log (old keys still there are
 * leftovers of an interrupted migration and are deleted); otherwise old keys mean a migration to
 * (re)do; otherwise the data directory is new or already migrated. The rename needs the sibling on
 * the WAL's file system: a `storage.wal_dir` that is itself a mount point cannot be the target of
 * a migration (it fails with `DAEMON_WAL_MIGRATION_FAILED`, the old log kept; migrate first with
 * the default WAL directory, then move the WAL).
 */
import { dirname } from 'node:path';
import type { Database } from './database.js';
import { StorageErrorCode, storageError, walDirectoryUnusable } from './errors.js';
import { RaftLogStore } from './raft-log-store.js';
import { segmentSeqOf } from './wal-format.js';
import { nodeWalFileSystem, type WalFileSystem } from './wal-io.js';
import { WalLogStore, type WalLogStoreOptions } from './wal-log-store.js';

const LEGACY_LOG_START = Buffer.from([0x4c]); // 'L'
const LEGACY_LOG_END = Buffer.from([0x4d]);

/** What `openRaftLog` did, for the start-up log line. */
export interface RaftLogOpening {
  readonly store: WalLogStore;
  /** Entries moved from a LevelDB Raft log (null when there was none to move). */
  readonly migratedEntries: number | null;
}

async function hasLegacyLog(db: Database): Promise<boolean> {
  for await (const _key of db.keys({ gte: LEGACY_LOG_START, lt: LEGACY_LOG_END, limit: 1 })) return true;
  return false;
}

/**
 * Returns the WAL store in `walDirectory` (not loaded yet: the Raft node calls `load`), migrating
 * an old LevelDB Raft log found in `db` first. Rejects with `DAEMON_DATA_DIR_UNWRITABLE` when the
 * WAL directory cannot be read (a file in its path, permissions), and with
 * `DAEMON_WAL_MIGRATION_FAILED` when a migration fails (the old log is kept; the next start retries).
 */
export async function openRaftLog(
  walDirectory: string,
  db: Database,
  options: WalLogStoreOptions = {},
): Promise<RaftLogOpening> {
  const fs: WalFileSystem = options.fileSystem ?? nodeWalFileSystem;
  const migratingDirectory = `${walDirectory}.migrating`;
  let migratedEntries: number | null = null;
  let names: string[];
  try {
    names = await fs.list(walDirectory);
  } catch (error) {
    throw walDirectoryUnusable(walDirectory, error) ?? error;
  }
  try {
    const hasSegments = names.some((name) => segmentSeqOf(name) !== null);
    if (await hasLegacyLog(db)) {
      if (!hasSegments) {
        // A leftover of a migration interrupted before its rename (only touched while old keys
        // say a migration is due: the sibling of a configured wal_dir is not ours otherwise).
        await fs.removeTree(migratingDirectory);
        migratedEntries = await migrate(db, fs, migratingDirectory, options);
        await fs.removeTree(walDirectory);
        await fs.rename(migratingDirectory, walDirectory);
        await fs.syncDirectory(dirname(walDirectory));
      }
      // The WAL is complete and durable: the old log can go (if this is lost, the next start redoes it).
      await db.clear({ gte: LEGACY_LOG_START, lt: LEGACY_LOG_END });
    }
  } catch (error) {
    throw storageError(
      StorageErrorCode.WalMigrationFailed,
      `moving the Raft log from LevelDB to ${walDirectory} failed: ${(error as Error).message}`,
      error,
    );
  }
  return { store: new WalLogStore(walDirectory, options), migratedEntries };
}

/** Writes the legacy log's state into a new WAL in `directory`, durably; returns the entry count. */
async function migrate(
  db: Database,
  fs: WalFileSystem,
  directory: string,
  options: WalLogStoreOptions,
): Promise<number> {
  const legacy = new RaftLogStore(db);
  const state = await legacy.load();
  await legacy.close();
  const snapshotIndex = state.snapshot?.index ?? 0;
  if (state.entries.length > 0 && state.entries[0].index !== snapshotIndex + 1) {
    throw new Error(
      `the LevelDB log was compacted to ${state.entries[0].index - 1} past its snapshot at ${snapshotIndex}, which the WAL cannot express`,
    );
  }
  const store = new WalLogStore(directory, { ...options, fileSystem: fs });
  try {
    await store.load();
    if (state.snapshot !== null) await store.applySnapshot(state.snapshot, false);
    // One synced append of the whole log and the hard state (the term and vote always sync).
    await store.append(state.entries, state.hardState);
  } finally {
    await store.close();
  }
  return state.entries.length;
}
