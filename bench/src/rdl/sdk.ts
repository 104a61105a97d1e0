import { RdlClient } from '@rdl/client';

/** The few SDK calls the harness makes, over the real client SDK (`RdlClient`). */
export interface BenchSdk {
  createVolume(name: string, sizeBytes: number): Promise<void>;
  write(volume: string, offsetBytes: number, data: Buffer): Promise<void>;
  read(volume: string, offsetBytes: number, lengthBytes: number): Promise<unknown>;
  transferLeader(region: string): Promise<void>;
  /** The region of the leader as the daemons report it, or null when none is known. */
  leaderRegion(): Promise<string | null>;
  close(): Promise<void>;
}

/** Opens the SDK (`new RdlClient({ endpoints })`) on `endpoints`. */
export async function openSdk(endpoints: readonly string[]): Promise<BenchSdk> {
  const client = new RdlClient({ endpoints: [...endpoints] });
  return {
    createVolume: async (name, sizeBytes) => {
      await client.createVolume(name, sizeBytes);
    },
    write: async (volume, offsetBytes, data) => {
      await client.write(volume, offsetBytes, data);
    },
    read: (volume, offsetBytes, lengthBytes) => client.read(volume, offsetBytes, lengthBytes),
    transferLeader: async (region) => {
      await client.transferLeader(region);
    },
    leaderRegion: async () => (await client.status()).leader?.region ?? null,
    close: async () => {
      await client.close();
    },
  };
}
