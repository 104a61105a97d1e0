import { WireCode } from '@rdl/client/wire';
import { AgentError, codeOf } from '../errors.js';
import { CsiErrorCode, csiError } from './errors.js';

/** A volume as the CSI controller sees it. */
export interface AdminVolume {
  /** rdl volume name; also the CSI volume_id and the NBD export name. */
  name: string;
  /** Size in bytes, a multiple of 4 KiB. */
  sizeBytes: number;
}

/**
 * What the CSI driver needs from rdl to manage volumes. Implemented over the client SDK
 * (`RdlVolumeAdmin`) in production and in memory (`MemoryVolumeAdmin`) in tests.
 *
 * Errors carry the SDK's codes: `VOLUME_NOT_FOUND` when the named volume does not exist, and
 * `VOLUME_EXISTS` when `createVolume` finds a volume of that name with another size. Any other
 * failure (no quorum, deadline) carries its own code and is reported to the CO as UNAVAILABLE.
 */
export interface VolumeAdmin {
  /** Creates a volume; succeeds without change when one of the same name and size exists. */
  createVolume(name: string, sizeBytes: number): Promise<AdminVolume>;
  /** Deletes a volume and its blocks; `VOLUME_NOT_FOUND` when there is none. */
  deleteVolume(name: string): Promise<void>;
  /** The named volume; `VOLUME_NOT_FOUND` when there is none. */
  statVolume(name: string): Promise<AdminVolume>;
  /** Every volume, sorted by name. */
  listVolumes(): Promise<AdminVolume[]>;
  /** Grows a volume to `sizeBytes` (>= its size; equal is a no-op). */
  growVolume(name: string, sizeBytes: number): Promise<AdminVolume>;
}

/** The SDK code for a missing volume. */
export const volumeNotFoundCode: string = WireCode.VOLUME_NOT_FOUND;
/** The SDK code for a name taken by a volume of another size. */
export const volumeExistsCode: string = WireCode.VOLUME_EXISTS;

/**
 * Wraps a VolumeAdmin failure for the CO: VOLUME_NOT_FOUND becomes the CSI NOT_FOUND code, every
 * other failure BACKEND_FAILED (gRPC UNAVAILABLE, which the CO retries with back-off).
 */
export function backendError(operation: string, name: string, err: unknown): AgentError {
  if (codeOf(err) === volumeNotFoundCode) {
    return csiError(CsiErrorCode.VolumeNotFound, `volume ${name} does not exist`, err);
  }
  const detail = err instanceof Error ? err.message : String(err);
  return csiError(
    CsiErrorCode.BackendFailed,
    `rdl ${operation} of volume ${name} failed (${codeOf(err) ?? 'no code'}): ${detail}`,
    err,
  );
}

/** Options of the in-memory VolumeAdmin. */
export interface MemoryVolumeAdminOptions {
  /** Most volumes it holds; createVolume beyond it fails with RESOURCE_EXHAUSTED. */
  volumesMax?: number;
}

/**
 * An in-memory VolumeAdmin with the SDK's semantics and codes, for tests and for trying the driver
 * without a cluster. `failNext(code)` makes the next call fail with that code (fault injection).
 */
export class MemoryVolumeAdmin implements VolumeAdmin {
  readonly #volumes = new Map<string, number>();
  readonly #volumesMax: number;
  #pendingFailureCode: string | undefined;
  /** Names of the calls made, in order (tests assert what the controller asked of rdl). */
  readonly calls: string[] = [];

  constructor(options: MemoryVolumeAdminOptions = {}) {
    this.#volumesMax = options.volumesMax ?? 10_000;
  }

  /** Makes the next call fail with an error carrying `code`. */
  failNext(code: string): void {
    this.#pendingFailureCode = code;
  }

  #enter(call: string): void {
    this.calls.push(call);
    const code = this.#pendingFailureCode;
    if (code !== undefined) {
      this.#pendingFailureCode = undefined;
      throw new AgentError(code, `injected failure of ${call}`);
    }
  }

  async createVolume(name: string, sizeBytes: number): Promise<AdminVolume> {
    this.#enter(`createVolume ${name} ${sizeBytes}`);
    const existing = this.#volumes.get(name);
    if (existing !== undefined) {
      if (existing !== sizeBytes) {
        throw new AgentError(volumeExistsCode, `volume ${name} exists with size ${existing}`);
      }
      return { name, sizeBytes };
    }
    if (this.#volumes.size >= this.#volumesMax) {
      throw new AgentError(WireCode.RESOURCE_EXHAUSTED, `at most ${this.#volumesMax} volumes`);
    }
    this.#volumes.set(name, sizeBytes);
    return { name, sizeBytes };
  }

  async deleteVolume(name: string): Promise<void> {
    this.#enter(`deleteVolume ${name}`);
    if (!this.#volumes.delete(name)) throw new AgentError(volumeNotFoundCode, `volume ${name} does not exist`);
  }

  async statVolume(name: string): Promise<AdminVolume> {
    this.#enter(`statVolume ${name}`);
    const sizeBytes = this.#volumes.get(name);
    if (sizeBytes === undefined) throw new AgentError(volumeNotFoundCode, `volume ${name} does not exist`);
    return { name, sizeBytes };
  }

  async listVolumes(): Promise<AdminVolume[]> {
    this.#enter('listVolumes');
    return [...this.#volumes.entries()]
      .map(([name, sizeBytes]) => ({ name, sizeBytes }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async growVolume(name: string, sizeBytes: number): Promise<AdminVolume> {
    this.#enter(`growVolume ${name} ${sizeBytes}`);
    const existing = this.#volumes.get(name);
    if (existing === undefined) throw new AgentError(volumeNotFoundCode, `volume ${name} does not exist`);
    if (sizeBytes < existing) throw new AgentError(WireCode.INVALID_ARGUMENT, 'volumes cannot shrink');
    this.#volumes.set(name, sizeBytes);
    return { name, sizeBytes };
  }
}
