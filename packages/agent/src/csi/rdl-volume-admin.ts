import type { AdminVolume, VolumeAdmin } from './volume-admin.js';

/** A volume as the SDK returns it (only the fields the driver reads). */
interface SdkVolume {
  name: string;
  sizeBytes: number;
}

/**
 * The part of `RdlClient` (from `@rdl/client`) the driver uses. Declared structurally so tests
 * can substitute a recording double; the SDK's errors already carry the codes `VolumeAdmin`
 * promises (`VOLUME_NOT_FOUND`, `VOLUME_EXISTS`).
 */
export interface RdlVolumeAdminClient {
  createVolume(name: string, sizeBytes: number, options?: { timeoutMs?: number }): Promise<{ volume: SdkVolume }>;
  deleteVolume(name: string, options?: { timeoutMs?: number }): Promise<void>;
  statVolume(name: string, options?: { timeoutMs?: number }): Promise<SdkVolume>;
  listVolumes(options?: { timeoutMs?: number }): Promise<SdkVolume[]>;
  growVolume(name: string, sizeBytes: number, options?: { timeoutMs?: number }): Promise<SdkVolume>;
}

/**
 * `VolumeAdmin` over the client SDK: each call is one SDK call (which finds the leader, follows
 * redirects and retries within `requestTimeoutMs`), so every volume change is committed by the
 * Raft group before the CO hears success.
 */
export class RdlVolumeAdmin implements VolumeAdmin {
  readonly #client: RdlVolumeAdminClient;
  readonly #callOptions: { timeoutMs: number };

  /** `requestTimeoutMs` bounds each call, retries included; keep it under the sidecars' timeout. */
  constructor(client: RdlVolumeAdminClient, options: { requestTimeoutMs: number }) {
    this.#client = client;
    this.#callOptions = { timeoutMs: options.requestTimeoutMs };
  }

  async createVolume(name: string, sizeBytes: number): Promise<AdminVolume> {
    return toAdminVolume((await this.#client.createVolume(name, sizeBytes, this.#callOptions)).volume);
  }

  async deleteVolume(name: string): Promise<void> {
    await this.#client.deleteVolume(name, this.#callOptions);
  }

  async statVolume(name: string): Promise<AdminVolume> {
    return toAdminVolume(await this.#client.statVolume(name, this.#callOptions));
  }

  async listVolumes(): Promise<AdminVolume[]> {
    return (await this.#client.listVolumes(this.#callOptions)).map(toAdminVolume);
  }

  async growVolume(name: string, sizeBytes: number): Promise<AdminVolume> {
    return toAdminVolume(await this.#client.growVolume(name, sizeBytes, this.#callOptions));
  }
}

function toAdminVolume(volume: SdkVolume): AdminVolume {
  return { name: volume.name, sizeBytes: volume.sizeBytes };
}
