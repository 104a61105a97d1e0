/**
 * The few file operations the write-ahead log (`wal.ts`) needs, behind an interface so that tests
 * can substitute a file system that loses what was written after the last `datasync` when they
 * simulate a power loss (test/storage/crash-fs.ts). `nodeWalFileSystem` is the real one.
 */
import { open, readdir, readFile, rename, rm, unlink, mkdir } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';

/** An open segment file. */
export interface WalFile {
  /** Writes all of `data` at byte `position` (the file is not extended implicitly beyond it). */
  write(data: Uint8Array, position: number): Promise<void>;
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

class NodeWalFile implements WalFile {
  constructor(private readonly handle: FileHandle) {}

  async write(data: Uint8Array, position: number): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.handle.write(data, done, data.length - done, position + done);
      done += bytesWritten;
    }
  }

  datasync(): Promise<void> {
    return this.handle.datasync();
  }

  close(): Promise<void> {
    return this.handle.close();
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
  openExisting: async (path) => new NodeWalFile(await open(path, 'r+')),
  create: async (path) => new NodeWalFile(await open(path, 'w')),
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
