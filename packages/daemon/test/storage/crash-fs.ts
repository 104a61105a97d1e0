/**
 * An in-memory `WalFileSystem` for tests that simulates a power loss: `crash()` returns a new file
 * system holding, per file, what was there at its last `datasync` and every `writeSynced` (O_DSYNC)
 * range, plus (when given a random source) a random subset of the other writes made since, each kept whole, cut short (torn) or dropped,
 * in any combination (the disk may persist later writes and not earlier ones). Directory
 * operations (create, rename, remove) are durable at once: the WAL syncs the directory after each
 * of them, so this models a disk that honours those syncs.
 */
import { dirname } from 'node:path';
import type { WalFile, WalFileSystem } from '../../src/storage/wal-io.js';

interface SimFile {
  /** What a read sees now. */
  current: Buffer;
  /** What survives a power loss for sure. */
  durable: Buffer;
  /** Writes since the last datasync, in order (`isDurable`: an O_DSYNC write, always kept). */
  unsynced: { position: number; bytes: Buffer; isDurable: boolean }[];
}

function written(target: Buffer, position: number, bytes: Uint8Array): Buffer {
  const end = position + bytes.length;
  const grown = end > target.length ? Buffer.concat([target, Buffer.alloc(end - target.length)]) : target;
  grown.set(bytes, position);
  return grown;
}

function enoent(path: string): Error {
  return Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
}

/** The simulated file system. */
export class CrashFileSystem implements WalFileSystem {
  private readonly files = new Map<string, SimFile>();
  private readonly directories = new Set<string>();
  /** Counts, for tests that check the IO pattern. */
  datasyncs = 0;
  writes = 0;
  /** O_DSYNC writes (also counted in `writes`). */
  syncedWrites = 0;
  /** Set to make every datasync take one turn of the event loop (so crashes can land mid-sync). */
  isSlow = false;
  /** While set, every datasync waits for it (tests holding the log's syncs). */
  syncGate: Promise<void> | null = null;

  async makeDirectory(directory: string): Promise<void> {
    for (let d = directory; !this.directories.has(d) && d !== dirname(d); d = dirname(d)) this.directories.add(d);
  }

  async list(directory: string): Promise<string[]> {
    const names: string[] = [];
    for (const path of this.files.keys()) if (dirname(path) === directory) names.push(path.slice(directory.length + 1));
    return names;
  }

  async read(path: string): Promise<Buffer> {
    const file = this.files.get(path);
    if (file === undefined) throw enoent(path);
    return Buffer.from(file.current);
  }

  async sizeOf(path: string): Promise<number> {
    const file = this.files.get(path);
    if (file === undefined) throw enoent(path);
    return file.current.length;
  }

  async openExisting(path: string): Promise<WalFile> {
    if (!this.files.has(path)) throw enoent(path);
    return this.handle(path);
  }

  async create(path: string): Promise<WalFile> {
    if (!this.directories.has(dirname(path))) throw enoent(dirname(path));
    this.files.set(path, { current: Buffer.alloc(0), durable: Buffer.alloc(0), unsynced: [] });
    return this.handle(path);
  }

  async rename(from: string, to: string): Promise<void> {
    const file = this.files.get(from);
    if (file === undefined) throw enoent(from);
    this.files.delete(from);
    this.files.set(to, file);
  }

  async remove(path: string): Promise<void> {
    this.files.delete(path);
  }

  async removeTree(path: string): Promise<void> {
    for (const name of [...this.files.keys()])
      if (name === path || name.startsWith(`${path}/`)) this.files.delete(name);
    for (const name of [...this.directories])
      if (name === path || name.startsWith(`${path}/`)) this.directories.delete(name);
  }

  async syncDirectory(): Promise<void> {
    // Directory operations are durable at once here (see the module comment).
  }

  /** The content of `path` now (for tests that damage files). */
  bytesOf(path: string): Buffer {
    const file = this.files.get(path);
    if (file === undefined) throw enoent(path);
    return file.current;
  }

  /** Replaces the content of `path`, durably (for tests that damage files). */
  setBytes(path: string, bytes: Buffer): void {
    this.files.set(path, { current: Buffer.from(bytes), durable: Buffer.from(bytes), unsynced: [] });
  }

  /**
   * The file system after a power loss now. Without `random` every unsynced write is lost; with
   * it, each is kept whole, kept torn (a random prefix) or dropped.
   */
  crash(random?: (bound: number) => number): CrashFileSystem {
    const after = new CrashFileSystem();
    for (const directory of this.directories) after.directories.add(directory);
    for (const [path, file] of this.files) {
      let bytes: Buffer = Buffer.from(file.durable);
      if (random === undefined) {
        for (const write of file.unsynced) if (write.isDurable) bytes = written(bytes, write.position, write.bytes);
      } else {
        for (const write of file.unsynced) {
          if (write.isDurable) {
            bytes = written(bytes, write.position, write.bytes);
            continue;
          }
          const choice = random(3);
          if (choice === 0) continue;
          const kept = choice === 1 ? write.bytes : write.bytes.subarray(0, random(write.bytes.length + 1));
          bytes = written(bytes, write.position, kept);
        }
      }
      after.files.set(path, { current: bytes, durable: Buffer.from(bytes), unsynced: [] });
    }
    return after;
  }

  private handle(path: string): WalFile {
    const files = this.files;
    const count = (what: 'writes' | 'datasyncs' | 'syncedWrites'): void => {
      this[what] += 1;
    };
    const isSlow = (): boolean => this.isSlow;
    const gate = (): Promise<void> | null => this.syncGate;
    let isClosed = false;
    const file = (): SimFile => {
      const found = files.get(path);
      if (found === undefined || isClosed) throw enoent(path);
      return found;
    };
    return {
      async write(chunks, position) {
        const data = Buffer.concat(chunks);
        const target = file();
        count('writes');
        target.current = written(target.current, position, data);
        target.unsynced.push({ position, bytes: Buffer.from(data), isDurable: false });
      },
      async writeSynced(chunks, position) {
        const data = Buffer.concat(chunks);
        const target = file();
        count('writes');
        // In the page cache at once, durable only when the call returns (a crash meanwhile may tear it).
        target.current = written(target.current, position, data);
        const write = { position, bytes: Buffer.from(data), isDurable: false };
        target.unsynced.push(write);
        if (isSlow()) await new Promise((resolve) => setImmediate(resolve));
        await gate();
        count('syncedWrites');
        write.isDurable = true;
      },
      async datasync() {
        const target = file();
        if (isSlow()) await new Promise((resolve) => setImmediate(resolve));
        await gate();
        count('datasyncs');
        target.durable = Buffer.from(target.current);
        target.unsynced = [];
      },
      async close() {
        isClosed = true;
      },
    };
  }
}
