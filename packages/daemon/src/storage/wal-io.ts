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
  /** Writes all of `data` at byte `position` (the file is not extended implicitly beyond it). */
  write(data: Uint8Array, position: number): Promise<void>;
  /**
   * Writes all of `data` at `position`, durably (through a second descriptor opened with
   * `O_DSYNC`): that range survives a power loss once this resolves. One call instead of a write
   * and a datasync: one trip through libuv's thread pool, which matters on a busy machine. It does
   * not make earlier, unsynced writes of other ranges durable.
   */
  writeSynced(data: Uint8Array, position: number): Promise<void>;
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

async function writeAll(handle: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

class NodeWalFile implements WalFile {
  private synced: Promise<FileHandle> | null = null;

  constructor(
    private readonly path: string,
    private readonly handle: FileHandle,
  ) {}

  write(data: Uint8Array, position: number): Promise<void> {
    return writeAll(this.handle, data, position);
  }

  async writeSynced(data: Uint8Array, position: number): Promise<void> {
    this.synced ??= open(this.path, constants.O_RDWR | constants.O_DSYNC);
    await writeAll(await this.synced, data, position);
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
