/**
 * Error codes raised by the storage modules (thrown `DaemonError`s, as opposed to the apply results
 * of `commands.ts`, which are plain data). Listed in docs/errors.md, Daemon section.
 */
import { DaemonError, DaemonErrorCode } from '../errors.js';

/** Codes thrown by `src/storage`. */
export const StorageErrorCode = {
  /** Another process (or another open in this one) holds the LevelDB lock of the data directory. */
  DataDirLocked: DaemonErrorCode.DataDirLocked,
  /** The data directory cannot be created, written or opened as a database. */
  DataDirUnwritable: DaemonErrorCode.DataDirUnwritable,
  /** A LevelDB read or write failed (disk full, IO error, failed fsync). The store stops accepting writes. */
  StorageFailed: 'DAEMON_STORAGE_FAILED',
  /** A stored value does not decode, or the stored log has a gap: the data directory is damaged. */
  StorageCorrupt: 'DAEMON_STORAGE_CORRUPT',
  /** The store was closed (daemon stopping) before or while the call ran. */
  StorageClosed: 'DAEMON_STORAGE_CLOSED',
  /** Too many appends are queued behind the one being synced. */
  StorageBusy: 'DAEMON_STORAGE_BUSY',
  /** A log entry is too large for one Raft WAL segment (`storage.wal_segment_bytes`). */
  WalRecordTooLarge: 'DAEMON_WAL_RECORD_TOO_LARGE',
  /** A data directory written by an older rdld cannot be migrated to the WAL (or the migration failed). */
  WalMigrationFailed: 'DAEMON_WAL_MIGRATION_FAILED',
  /** The WAL directory holds no Raft log (or not its binding file), but the data directory holds state or a binding (wal-binding.ts). */
  WalMissing: 'DAEMON_WAL_MISSING',
  /** The WAL directory belongs to another data directory, or the data directory to another WAL (wal-binding.ts). */
  WalMismatch: 'DAEMON_WAL_MISMATCH',
  /** A received snapshot chunk is malformed (or the stream ended without its metadata). */
  SnapshotInvalid: 'DAEMON_SNAPSHOT_INVALID',
  /** `openSnapshot` was asked for an index other than the state machine's applied index. */
  SnapshotMismatch: 'DAEMON_SNAPSHOT_MISMATCH',
} as const;
export type StorageErrorCode = (typeof StorageErrorCode)[keyof typeof StorageErrorCode];

/** Builds the `DaemonError` for a storage failure. */
export function storageError(code: StorageErrorCode, message: string, cause?: unknown): DaemonError {
  return new DaemonError(code, message, cause === undefined ? undefined : { cause });
}

/** Errno codes that say a directory cannot be used at all (as opposed to a failing disk). */
const UNUSABLE_DIRECTORY_CODES = new Set(['EACCES', 'EPERM', 'ENOTDIR', 'EROFS', 'EEXIST', 'EISDIR']);

/**
 * `DAEMON_DATA_DIR_UNWRITABLE` naming the WAL's directory (`storage.wal_dir`) when `cause` says it
 * cannot be read, created or written (permissions, a file in its path, a read-only file system);
 * null for other failures.
 */
export function walDirectoryUnusable(walDirectory: string, cause: unknown): DaemonError | null {
  const code = (cause as { code?: unknown }).code;
  if (typeof code !== 'string' || !UNUSABLE_DIRECTORY_CODES.has(code)) return null;
  return storageError(
    StorageErrorCode.DataDirUnwritable,
    `the WAL directory ${walDirectory} (storage.wal_dir) cannot be read, created or written: ${(cause as Error).message}`,
    cause,
  );
}
