/**
 * Opens the daemon's one LevelDB database (classic-level) and turns LevelDB's open failures into
 * coded errors. The Raft log (`raft-log-store.ts`) and the block state machine (`block-store.ts`)
 * share it under different key prefixes; docs/storage.md explains why one database and not two.
 */
import { constants as fsConstants, existsSync } from 'node:fs';
import { access, mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { type CompactionPriority, lowerCompactionPriority, threadIds } from './compaction-priority.js';
import { StorageErrorCode, storageError } from './errors.js';

/** The database handle shared by the storage modules: binary keys and values (Node Buffers). */
export type Database = ClassicLevel<Buffer, Buffer>;

/** The LevelDB binary classic-level loads, and how it computes its CRC32C checksums. */
export interface LevelDbBinary {
  readonly path: string;
  /**
   * `hardware`: built by `npm install` from classic-level's sources with SSE4.2
   * (scripts/build-leveldb.mjs); `software`: classic-level's prebuilt binary, which checksums in
   * software (about a tenth of the cluster's CPU at 64 writes in flight; docs/storage.md).
   */
  readonly crc32c: 'hardware' | 'software';
}

/** Which LevelDB binary this process loads (node-gyp-build prefers build/Release to the prebuilds). */
export function levelDbBinary(): LevelDbBinary {
  const require = createRequire(import.meta.url);
  const dir = dirname(require.resolve('classic-level/package.json'));
  const gypBuild = createRequire(join(dir, 'package.json'))('node-gyp-build') as { path(dir: string): string };
  const path = gypBuild.path(dir);
  const isBuilt =
    path.startsWith(join(dir, 'build', 'Release') + sep) && existsSync(join(dir, 'build', 'rdl-build.json'));
  return { path, crc32c: isBuilt ? 'hardware' : 'software' };
}

/** Tuning of the LevelDB instance. */
export interface DatabaseOptions {
  /** LevelDB block cache (default 64 MiB). */
  cacheSizeBytes?: number;
  /**
   * Memtable size before a flush to a level-0 file. The default here, 16 MiB, keeps the many
   * databases the tests open small; rdld passes `storage.leveldb_write_buffer_bytes` (64 MiB).
   */
  writeBufferSizeBytes?: number;
  /**
   * LevelDB table block size (default 16 KiB, also rdld's `storage.leveldb_block_bytes`; LevelDB's
   * own default is 4 KiB). With 4 KiB values a 4 KiB block holds one value, so every value written
   * by a flush or compaction costs a block of its own: a `write` syscall, a checksum call, a block
   * trailer and an index entry. See docs/storage.md#table-block-size.
   */
  blockSizeBytes?: number;
  /**
   * Nice value (1..19) for LevelDB's compaction thread, or 0 to leave it at the process's
   * (default 0 here; rdld sets `storage.compaction_nice`). See compaction-priority.ts.
   */
  compactionNice?: number;
  /** Told what became of `compactionNice` (the daemon logs it). */
  onCompactionPriority?: (result: CompactionPriority) => void;
}

/**
 * Opens (creating if needed) the LevelDB database in `directory`.
 * Rejects with `DAEMON_DATA_DIR_UNWRITABLE` when the directory cannot be created or written, and
 * with `DAEMON_DATA_DIR_LOCKED` when another process (or another handle in this one) has it open.
 */
export async function openDatabase(directory: string, options: DatabaseOptions = {}): Promise<Database> {
  try {
    await mkdir(directory, { recursive: true });
    await access(directory, fsConstants.W_OK | fsConstants.R_OK | fsConstants.X_OK);
  } catch (error) {
    throw storageError(
      StorageErrorCode.DataDirUnwritable,
      `data directory ${directory} cannot be created or written: ${(error as Error).message}`,
      error,
    );
  }
  // Taken after the awaited file operations above started libuv's thread pool, so that the only
  // thread the open can add is LevelDB's own.
  const threadsBefore = (options.compactionNice ?? 0) > 0 ? threadIds() : null;
  const db = new ClassicLevel<Buffer, Buffer>(directory, {
    keyEncoding: 'buffer',
    valueEncoding: 'buffer',
    cacheSize: options.cacheSizeBytes ?? 64 * 1024 * 1024,
    writeBufferSize: options.writeBufferSizeBytes ?? 16 * 1024 * 1024,
    blockSize: options.blockSizeBytes ?? 16 * 1024,
  });
  try {
    await db.open();
  } catch (error) {
    const cause = (error as { cause?: { code?: unknown } }).cause;
    if (cause?.code === 'LEVEL_LOCKED') {
      throw storageError(
        StorageErrorCode.DataDirLocked,
        `data directory ${directory} is locked: another rdld (or another open of it) is running`,
        error,
      );
    }
    throw storageError(
      StorageErrorCode.DataDirUnwritable,
      `cannot open the database in ${directory}: ${(error as Error).message}`,
      error,
    );
  }
  if ((options.compactionNice ?? 0) > 0) {
    let result: CompactionPriority;
    try {
      result = await lowerCompactionPriority(db, threadsBefore, options.compactionNice!);
    } catch (error) {
      await db.close();
      throw wrapLevelError(error, 'starting the compaction thread');
    }
    options.onCompactionPriority?.(result);
  }
  return db;
}

/** Wraps a LevelDB failure in `DAEMON_STORAGE_FAILED` (closed databases become `DAEMON_STORAGE_CLOSED`). */
export function wrapLevelError(error: unknown, what: string): Error {
  const code = (error as { code?: unknown }).code;
  if (code === 'LEVEL_DATABASE_NOT_OPEN' || code === 'LEVEL_ITERATOR_NOT_OPEN' || code === 'LEVEL_SNAPSHOT_NOT_OPEN') {
    return storageError(StorageErrorCode.StorageClosed, `${what}: the database is closed`, error);
  }
  if (typeof code === 'string' && code.startsWith('DAEMON_')) return error as Error;
  return storageError(StorageErrorCode.StorageFailed, `${what}: ${(error as Error).message}`, error);
}

/** Encodes a non-negative safe integer as 8 big-endian bytes at `target[offset]` (keys sort by number). */
export function writeUint64BE(target: Uint8Array, offset: number, value: number): void {
  const high = Math.floor(value / 0x1_0000_0000);
  const low = value >>> 0;
  target[offset] = high >>> 24;
  target[offset + 1] = (high >>> 16) & 0xff;
  target[offset + 2] = (high >>> 8) & 0xff;
  target[offset + 3] = high & 0xff;
  target[offset + 4] = low >>> 24;
  target[offset + 5] = (low >>> 16) & 0xff;
  target[offset + 6] = (low >>> 8) & 0xff;
  target[offset + 7] = low & 0xff;
}

/** Reads what `writeUint64BE` wrote. */
export function readUint64BE(source: Uint8Array, offset: number): number {
  const high =
    ((source[offset] << 24) | (source[offset + 1] << 16) | (source[offset + 2] << 8) | source[offset + 3]) >>> 0;
  const low =
    ((source[offset + 4] << 24) | (source[offset + 5] << 16) | (source[offset + 6] << 8) | source[offset + 7]) >>> 0;
  return high * 0x1_0000_0000 + low;
}
