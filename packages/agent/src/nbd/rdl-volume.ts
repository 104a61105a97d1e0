/**
 * A `VolumeProvider` backed by the rdl cluster through the client SDK (`RdlClient`). One client
 * (one multiplexed Io stream) serves every NBD connection of the agent.
 *
 * Durability and multi-conn: the SDK resolves a write, write-zeroes or trim only once the cluster
 * has committed it (fsynced on a majority), so every acknowledged write is already durable. FUA
 * therefore needs nothing extra, a flush is only a barrier, and a flush on any connection covers
 * writes acknowledged on all connections: `isFlushShared` is true and the NBD server advertises
 * NBD_FLAG_CAN_MULTI_CONN.
 *
 * A flush is therefore answered here, at once, without a cluster call: NBD_CMD_FLUSH promises that
 * the writes already answered are on permanent storage (doc/proto.md), and they are, on a majority
 * of regions, before they were answered. Writes still in flight are not covered by a flush (the
 * spec says so too). Under fio's `--fsync=1` (a flush after every write) this halves the cluster
 * calls per write and removes a round trip from every write+flush pair. A flush on a closed handle
 * still fails. Like a local disk with nothing dirty, a flush succeeds while the cluster is
 * unreachable: there is nothing it could lose.
 *
 * Failures: each NBD request is one SDK call with deadline `requestTimeoutMs`; within it the SDK
 * follows leader changes and retries (exactly once for writes), so a region dying or a leader
 * changing mid-IO is invisible to the kernel. Only when the deadline passes does the request fail
 * with `AGENT_VOLUME_IO_FAILED` (NBD EIO).
 */
import type { RdlClient } from '@rdl/client';
import { AgentError, AgentErrorCode, codeOf } from '../errors.js';
import { checkRange } from './memory-volume.js';
import type {
  OpenOptions,
  VolumeHandle,
  VolumeInfo,
  VolumeProvider,
  WriteOptions,
  WriteZeroesOptions,
} from './volume.js';

/** The part of `RdlClient` the provider uses (tests may pass a stand-in). */
export type RdlVolumeClient = Pick<RdlClient, 'statVolume' | 'listVolumes' | 'read' | 'write' | 'writeZeroes' | 'trim'>;

/** Options of `RdlVolumeProvider`. */
export interface RdlVolumeProviderOptions {
  /** Deadline of one NBD request (and of open/list), SDK retries included. */
  readonly requestTimeoutMs: number;
}

/** Translates an SDK error into the agent's codes (which the NBD server maps to NBD errors). */
function toAgentError(err: unknown, what: string): AgentError {
  const code = codeOf(err);
  const message = `${what}: ${code ?? 'ERROR'} ${(err as Error)?.message ?? String(err)}`;
  switch (code) {
    case 'OUT_OF_RANGE':
      return new AgentError(AgentErrorCode.VolumeOutOfRange, message, { cause: err });
    case 'VOLUME_NOT_FOUND':
      return new AgentError(AgentErrorCode.VolumeNotFound, message, { cause: err });
    default:
      // Deadline exceeded, unavailable, closed client, internal: the kernel sees EIO.
      return new AgentError(AgentErrorCode.VolumeIoFailed, message, { cause: err });
  }
}

/** Volumes of the rdl cluster, opened by name through `RdlClient`. */
export class RdlVolumeProvider implements VolumeProvider {
  readonly #client: RdlVolumeClient;
  readonly #callOptions: { readonly timeoutMs: number };

  constructor(client: RdlVolumeClient, options: RdlVolumeProviderOptions) {
    if (!Number.isSafeInteger(options.requestTimeoutMs) || options.requestTimeoutMs < 1) {
      throw new AgentError(AgentErrorCode.ConfigInvalid, 'requestTimeoutMs must be a positive integer');
    }
    this.#client = client;
    this.#callOptions = Object.freeze({ timeoutMs: options.requestTimeoutMs });
  }

  async open(name: string, options: OpenOptions): Promise<VolumeHandle> {
    let info;
    try {
      info = await this.#client.statVolume(name, this.#callOptions);
    } catch (err) {
      throw toAgentError(err, `opening volume "${name}"`);
    }
    return new RdlVolumeHandle(this.#client, this.#callOptions, info, options.isReadOnly);
  }

  async list(): Promise<VolumeInfo[]> {
    try {
      const volumes = await this.#client.listVolumes(this.#callOptions);
      return volumes.map((v) => ({ name: v.name, sizeBytes: v.sizeBytes }));
    } catch (err) {
      throw toAgentError(err, 'listing volumes');
    }
  }
}

class RdlVolumeHandle implements VolumeHandle {
  readonly name: string;
  readonly sizeBytes: number;
  readonly blockSizeBytes: number;
  readonly isReadOnly: boolean;
  readonly isFlushShared = true;
  readonly #client: RdlVolumeClient;
  readonly #callOptions: { readonly timeoutMs: number };
  #isClosed = false;

  constructor(
    client: RdlVolumeClient,
    callOptions: { readonly timeoutMs: number },
    info: { name: string; sizeBytes: number; blockSizeBytes: number },
    isReadOnly: boolean,
  ) {
    this.#client = client;
    this.#callOptions = callOptions;
    this.name = info.name;
    this.sizeBytes = info.sizeBytes;
    this.blockSizeBytes = info.blockSizeBytes;
    this.isReadOnly = isReadOnly;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.#check(offset, length, false);
    try {
      return await this.#client.read(this.name, offset, length, this.#callOptions);
    } catch (err) {
      throw toAgentError(err, `read of ${length} bytes at ${offset} of "${this.name}"`);
    }
  }

  async write(offset: number, data: Buffer, _options: WriteOptions): Promise<void> {
    // FUA needs nothing: the SDK resolves only after the cluster committed the write.
    this.#check(offset, data.length, true);
    try {
      await this.#client.write(this.name, offset, data, this.#callOptions);
    } catch (err) {
      throw toAgentError(err, `write of ${data.length} bytes at ${offset} of "${this.name}"`);
    }
  }

  async writeZeroes(offset: number, length: number, _options: WriteZeroesOptions): Promise<void> {
    // The store keeps 4 KiB blocks thin: zeroing never fails for lack of space, so NO_HOLE and
    // a hole-punching write-zeroes are the same call (the cluster has no allocation quota).
    this.#check(offset, length, true);
    try {
      await this.#client.writeZeroes(this.name, offset, length, this.#callOptions);
    } catch (err) {
      throw toAgentError(err, `write-zeroes of ${length} bytes at ${offset} of "${this.name}"`);
    }
  }

  async trim(offset: number, length: number, _options: WriteOptions): Promise<void> {
    this.#check(offset, length, true);
    try {
      await this.#client.trim(this.name, offset, length, this.#callOptions);
    } catch (err) {
      throw toAgentError(err, `trim of ${length} bytes at ${offset} of "${this.name}"`);
    }
  }

  async flush(): Promise<void> {
    this.flushNow();
  }

  flushNow(): void {
    // Every write this handle answered is already committed (fsynced on a majority): see the top.
    this.#check(0, 0, false);
  }

  async close(): Promise<void> {
    // The client is shared by every connection; the provider's owner closes it.
    this.#isClosed = true;
  }

  #check(offset: number, length: number, isWrite: boolean): void {
    if (this.#isClosed) throw new AgentError(AgentErrorCode.VolumeClosed, `volume "${this.name}" handle is closed`);
    if (isWrite && this.isReadOnly) {
      throw new AgentError(AgentErrorCode.VolumeReadOnly, `volume "${this.name}" is opened read-only`);
    }
    checkRange(this.name, this.sizeBytes, offset, length);
  }
}
