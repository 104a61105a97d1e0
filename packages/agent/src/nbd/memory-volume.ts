import { AgentError, AgentErrorCode } from '../errors.js';
import type {
  OpenOptions,
  VolumeHandle,
  VolumeInfo,
  VolumeProvider,
  WriteOptions,
  WriteZeroesOptions,
} from './volume.js';

/** Operation names passed to a `MemoryVolumeProvider` interceptor. */
export type MemoryVolumeOp = 'read' | 'write' | 'writeZeroes' | 'trim' | 'flush';

/**
 * Called before each operation of every handle; may delay it (return a promise) or fail it (throw
 * or reject). Tests use it to hold requests in flight, reorder completions and inject backend errors.
 */
export type MemoryVolumeInterceptor = (
  volumeName: string,
  op: MemoryVolumeOp,
  offset: number,
  length: number,
) => void | Promise<void>;

/** Counters of one in-memory volume, for tests that check what reached the backend. */
export interface MemoryVolumeStats {
  reads: number;
  writes: number;
  fuaWrites: number;
  writeZeroes: number;
  noHoleWriteZeroes: number;
  trims: number;
  flushes: number;
}

/** Options of `MemoryVolumeProvider`. */
export interface MemoryVolumeProviderOptions {
  /** Allocation unit of the sparse store (power of two); default 64 KiB. */
  readonly chunkBytes?: number;
  /** Preferred IO size advertised by handles; default 4096. */
  readonly blockSizeBytes?: number;
}

interface MemoryVolume {
  readonly name: string;
  readonly sizeBytes: number;
  readonly isReadOnly: boolean;
  /** Sparse contents: chunk index → chunk bytes; a missing chunk reads as zeroes (a hole). */
  readonly chunks: Map<number, Buffer>;
  readonly stats: MemoryVolumeStats;
}

/** Throws `AGENT_VOLUME_OUT_OF_RANGE` unless `[offset, offset + length)` lies inside the volume. */
export function checkRange(name: string, sizeBytes: number, offset: number, length: number): void {
  if (
    !Number.isSafeInteger(offset) ||
    !Number.isSafeInteger(length) ||
    offset < 0 ||
    length < 0 ||
    offset + length > sizeBytes
  ) {
    throw new AgentError(
      AgentErrorCode.VolumeOutOfRange,
      `range [${offset}, +${length}) is outside volume "${name}" of ${sizeBytes} bytes`,
    );
  }
}

/**
 * Volumes kept in memory, sparse in chunks, shared by every handle of the same name. Every
 * operation takes effect before its promise resolves and there is no cache, so a flush on one
 * handle trivially covers writes acknowledged on all (`isFlushShared`). Not durable: for tests and
 * `rdl-agent nbd --memory-volume` demos only.
 */
export class MemoryVolumeProvider implements VolumeProvider {
  readonly #volumes = new Map<string, MemoryVolume>();
  readonly #chunkBytes: number;
  readonly #blockSizeBytes: number;
  #interceptor: MemoryVolumeInterceptor | undefined;

  constructor(options: MemoryVolumeProviderOptions = {}) {
    this.#chunkBytes = options.chunkBytes ?? 64 * 1024;
    this.#blockSizeBytes = options.blockSizeBytes ?? 4096;
    if (!Number.isInteger(Math.log2(this.#chunkBytes)) || this.#chunkBytes < 512) {
      throw new AgentError(AgentErrorCode.ConfigInvalid, `chunkBytes must be a power of two >= 512`);
    }
  }

  /** Creates an empty (all-zero, fully sparse) volume; fails if the name exists. */
  createVolume(name: string, sizeBytes: number, options: { isReadOnly?: boolean } = {}): void {
    if (this.#volumes.has(name)) {
      throw new AgentError(AgentErrorCode.ConfigInvalid, `volume "${name}" already exists`);
    }
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) {
      throw new AgentError(AgentErrorCode.ConfigInvalid, `volume size must be a non-negative integer`);
    }
    this.#volumes.set(name, {
      name,
      sizeBytes,
      isReadOnly: options.isReadOnly ?? false,
      chunks: new Map(),
      stats: { reads: 0, writes: 0, fuaWrites: 0, writeZeroes: 0, noHoleWriteZeroes: 0, trims: 0, flushes: 0 },
    });
  }

  /** Installs (or removes, with undefined) the interceptor called before every operation. */
  setInterceptor(interceptor: MemoryVolumeInterceptor | undefined): void {
    this.#interceptor = interceptor;
  }

  /** Bytes currently allocated (not holes) in the named volume. */
  allocatedBytes(name: string): number {
    return this.#get(name).chunks.size * this.#chunkBytes;
  }

  /** A copy of the named volume's operation counters. */
  stats(name: string): MemoryVolumeStats {
    return { ...this.#get(name).stats };
  }

  /** The whole content of a volume (tests compare it with what a client wrote). */
  snapshot(name: string): Buffer {
    const volume = this.#get(name);
    return readRange(volume, this.#chunkBytes, 0, volume.sizeBytes);
  }

  async open(name: string, options: OpenOptions): Promise<VolumeHandle> {
    const volume = this.#volumes.get(name);
    if (volume === undefined) {
      throw new AgentError(AgentErrorCode.VolumeNotFound, `no volume named "${name}"`);
    }
    return new MemoryVolumeHandle(this, volume, this.#chunkBytes, this.#blockSizeBytes, options.isReadOnly);
  }

  async list(): Promise<VolumeInfo[]> {
    return [...this.#volumes.values()].map((v) => ({ name: v.name, sizeBytes: v.sizeBytes }));
  }

  /** @internal Runs the interceptor, if any. */
  intercept(name: string, op: MemoryVolumeOp, offset: number, length: number): void | Promise<void> {
    return this.#interceptor?.(name, op, offset, length);
  }

  #get(name: string): MemoryVolume {
    const volume = this.#volumes.get(name);
    if (volume === undefined) throw new AgentError(AgentErrorCode.VolumeNotFound, `no volume named "${name}"`);
    return volume;
  }
}

function readRange(volume: MemoryVolume, chunkBytes: number, offset: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const position = offset + done;
    const index = Math.floor(position / chunkBytes);
    const within = position - index * chunkBytes;
    const n = Math.min(chunkBytes - within, length - done);
    const chunk = volume.chunks.get(index);
    if (chunk === undefined) out.fill(0, done, done + n);
    else chunk.copy(out, done, within, within + n);
    done += n;
  }
  return out;
}

class MemoryVolumeHandle implements VolumeHandle {
  readonly name: string;
  readonly sizeBytes: number;
  readonly blockSizeBytes: number;
  readonly isReadOnly: boolean;
  readonly isFlushShared = true;
  readonly #provider: MemoryVolumeProvider;
  readonly #volume: MemoryVolume;
  readonly #chunkBytes: number;
  #isClosed = false;

  constructor(
    provider: MemoryVolumeProvider,
    volume: MemoryVolume,
    chunkBytes: number,
    blockSizeBytes: number,
    isReadOnly: boolean,
  ) {
    this.#provider = provider;
    this.#volume = volume;
    this.#chunkBytes = chunkBytes;
    this.name = volume.name;
    this.sizeBytes = volume.sizeBytes;
    this.blockSizeBytes = blockSizeBytes;
    this.isReadOnly = isReadOnly || volume.isReadOnly;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.#check(offset, length, false);
    await this.#provider.intercept(this.name, 'read', offset, length);
    this.#volume.stats.reads++;
    return readRange(this.#volume, this.#chunkBytes, offset, length);
  }

  async write(offset: number, data: Buffer, options: WriteOptions): Promise<void> {
    this.#check(offset, data.length, true);
    await this.#provider.intercept(this.name, 'write', offset, data.length);
    this.#volume.stats.writes++;
    if (options.isFua) this.#volume.stats.fuaWrites++;
    const chunkBytes = this.#chunkBytes;
    let done = 0;
    while (done < data.length) {
      const position = offset + done;
      const index = Math.floor(position / chunkBytes);
      const within = position - index * chunkBytes;
      const n = Math.min(chunkBytes - within, data.length - done);
      let chunk = this.#volume.chunks.get(index);
      if (chunk === undefined) {
        chunk = Buffer.alloc(chunkBytes);
        this.#volume.chunks.set(index, chunk);
      }
      data.copy(chunk, within, done, done + n);
      done += n;
    }
  }

  async writeZeroes(offset: number, length: number, options: WriteZeroesOptions): Promise<void> {
    this.#check(offset, length, true);
    await this.#provider.intercept(this.name, 'writeZeroes', offset, length);
    this.#volume.stats.writeZeroes++;
    if (!options.mayTrim) this.#volume.stats.noHoleWriteZeroes++;
    const chunkBytes = this.#chunkBytes;
    let done = 0;
    while (done < length) {
      const position = offset + done;
      const index = Math.floor(position / chunkBytes);
      const within = position - index * chunkBytes;
      const n = Math.min(chunkBytes - within, length - done);
      const chunk = this.#volume.chunks.get(index);
      if (n === chunkBytes && options.mayTrim) {
        // A whole chunk may become a hole: it reads back as zero and frees the memory.
        this.#volume.chunks.delete(index);
      } else if (chunk !== undefined) {
        chunk.fill(0, within, within + n);
      } else if (!options.mayTrim) {
        // NO_HOLE: the range must end up provisioned, so allocate it (zeroed).
        this.#volume.chunks.set(index, Buffer.alloc(chunkBytes));
      }
      done += n;
    }
  }

  async trim(offset: number, length: number, _options: WriteOptions): Promise<void> {
    this.#check(offset, length, true);
    await this.#provider.intercept(this.name, 'trim', offset, length);
    this.#volume.stats.trims++;
    // Only whole chunks are discarded; the spec lets a server round the range inwards.
    const chunkBytes = this.#chunkBytes;
    const first = Math.ceil(offset / chunkBytes);
    const end = Math.floor((offset + length) / chunkBytes);
    for (let index = first; index < end; index++) this.#volume.chunks.delete(index);
  }

  async flush(): Promise<void> {
    this.#check(0, 0, false);
    await this.#provider.intercept(this.name, 'flush', 0, 0);
    this.#volume.stats.flushes++;
  }

  async close(): Promise<void> {
    this.#isClosed = true;
  }

  #check(offset: number, length: number, isWrite: boolean): void {
    if (this.#isClosed) throw new AgentError(AgentErrorCode.VolumeClosed, `volume "${this.name}" handle is closed`);
    if (isWrite && this.isReadOnly) {
      throw new AgentError(AgentErrorCode.VolumeReadOnly, `volume "${this.name}" is read-only`);
    }
    checkRange(this.name, this.sizeBytes, offset, length);
  }
}
