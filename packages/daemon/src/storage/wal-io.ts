/**
 * The few file operations the write-ahead log (`wal.ts`) needs, behind an interface so that tests
 * can substitute a file system that loses what was written after the last `datasync` when they
 * simulate a power loss (test/storage/crash-fs.ts). `nodeWalFileSystem` is the real one.
 */
import { constants } from 'node:fs';
import { open, readdir, readFile, rename, rm, stat, unlink, mkdir } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';

/** An open segment file. */
export interface WalFile {
  /**
   * Writes `chunks`, one after the other, at byte `position` (the file is not extended implicitly
   * beyond it). Chunks rather than one buffer so that a record's parts (prefix, entry headers, the
   * entries' payloads as they are) reach the file with one `pwritev` instead of being copied into
   * one buffer first.
   */
  write(chunks: readonly Uint8Array[], position: number): Promise<void>;
  /**
   * Writes all of `chunks` at `position`, durably (through a second descriptor opened with
   * `O_DSYNC`): that range survives a power loss once this resolves. One call instead of a write
   * and a datasync: one trip through libuv's thread pool, which matters on a busy machine. It does
   * not make earlier, unsynced writes of other ranges durable.
   */
  writeSynced(chunks: readonly Uint8Array[], position: number): Promise<void>;
  /** `fdatasync(2)`: what was written so far survives a power loss once this resolves. */
  datasync(): Promise<void>;
  close(): Promise<void>;
}

/** Directory and file operations used by the WAL. Paths are absolute. */
export interface WalFileSystem {
  /** Creates `directory` (and its parents) if missing. */
  makeDirectory(directory: string): Promise<void>;
  /** The names of the entries of `directory` ([] when it does not exist). */
  list(directory: string): Promise<string[]>;
  /** The whole content of `path`. */
  read(path: string): Promise<Buffer>;
  /** The size in bytes of the file `path`. */
  sizeOf(path: string): Promise<number>;
  /** Opens an existing file for writing in place. */
  openExisting(path: string): Promise<WalFile>;
  /** Creates (or truncates) `path` and opens it for writing. */
  create(path: string): Promise<WalFile>;
  /** Atomically renames `from` to `to` (replacing `to`). */
  rename(from: string, to: string): Promise<void>;
  /** Removes a file; a missing one is not an error. */
  remove(path: string): Promise<void>;
  /** Removes a directory tree; a missing one is not an error. */
  removeTree(path: string): Promise<void>;
  /** Makes the entries of `directory` (creations, renames, removals) durable: fsync of the directory. */
  syncDirectory(directory: string): Promise<void>;
}

/** At most this many buffers per `pwritev` (Linux's IOV_MAX is 1024; libuv would cut the call there anyway). */
const IOVECS_PER_CALL_MAX = 1024;

/** `FileHandle.writev`'s shape, so that tests can make writes short. */
export type WritevFunction = (buffers: Uint8Array[], position: number) => Promise<{ bytesWritten: number }>;

/** Writes every byte of `chunks` at `position` with `writev`, resuming after short writes. */
export async function writeChunks(
  writev: WritevFunction,
  chunks: readonly Uint8Array[],
  position: number,
): Promise<void> {
  let index = 0;
  let offset = 0; // bytes of chunks[index] already written
  while (index < chunks.length) {
    if (offset === chunks[index].length) {
      index++;
      offset = 0;
      continue;
    }
    const end = Math.min(chunks.length, index + IOVECS_PER_CALL_MAX);
    const batch = chunks.slice(index, end);
    if (offset > 0) batch[0] = batch[0].subarray(offset);
    let { bytesWritten } = await writev(batch, position);
    if (bytesWritten === 0) throw new Error('a WAL write wrote nothing');
    position += bytesWritten;
    // Skip what was written: whole chunks, then part of the next one.
    while (bytesWritten > 0) {
      const left = chunks[index].length - offset;
      if (bytesWritten < left) {
        offset += bytesWritten;
        break;
      }
      bytesWritten -= left;
      index++;
      offset = 0;
    }
  }
}

class NodeWalFile implements WalFile {
  private synced: Promise<FileHandle> | null = null;

  constructor(
    private readonly path: string,
    private readonly handle: FileHandle,
  ) {}

  write(chunks: readonly Uint8Array[], position: number): Promise<void> {
    return writeChunks((buffers, at) => this.handle.writev(buffers, at), chunks, position);
  }

  async writeSynced(chunks: readonly Uint8Array[], position: number): Promise<void> {
    this.synced ??= open(this.path, constants.O_RDWR | constants.O_DSYNC);
    const synced = await this.synced;
    await writeChunks((buffers, at) => synced.writev(buffers, at), chunks, position);
  }

  datasync(): Promise<void> {
    return this.handle.datasync();
  }

  async close(): Promise<void> {
    const synced = this.synced;
    this.synced = null;
    await this.handle.close();
    if (synced !== null) await (await synced).close();
  }
}

/** The real file system (node:fs). */
export const nodeWalFileSystem: WalFileSystem = {
  async makeDirectory(directory) {
    await mkdir(directory, { recursive: true });
  },
  async list(directory) {
    try {
      return await readdir(directory);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
  },
  read: (path) => readFile(path),
  sizeOf: async (path) => (await stat(path)).size,
  openExisting: async (path) => new NodeWalFile(path, await open(path, 'r+')),
  create: async (path) => new NodeWalFile(path, await open(path, 'w')),
  rename: (from, to) => rename(from, to),
  async remove(path) {
    try {
      await unlink(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  },
  removeTree: (path) => rm(path, { recursive: true, force: true }),
  async syncDirectory(directory) {
    const handle = await open(directory, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  },
};
