import { BenchError } from '../errors.js';

/**
 * The few SDK calls the harness makes. The harness loads `@rdl/client` at run time through this
 * adapter (not through a TypeScript project reference) so that the harness builds and its tests run
 * on their own, whatever state the other packages' builds are in.
 */
export interface BenchSdk {
  createVolume(name: string, sizeBytes: number): Promise<void>;
  write(volume: string, offsetBytes: number, data: Buffer): Promise<void>;
  read(volume: string, offsetBytes: number, lengthBytes: number): Promise<unknown>;
  transferLeader(region: string): Promise<void>;
  /** The region of the leader as the daemons report it, or null when none is known. */
  leaderRegion(): Promise<string | null>;
  close(): Promise<void>;
}

type Method = (...args: unknown[]) => unknown;

/** Opens the SDK (`new RdlClient({ endpoints })`) on `endpoints`. */
export async function openSdk(endpoints: readonly string[]): Promise<BenchSdk> {
  const specifier = '@rdl/client';
  const module = (await import(specifier)) as Record<string, unknown>;
  const RdlClient = module.RdlClient as (new (options: { endpoints: string[] }) => Record<string, Method>) | undefined;
  if (typeof RdlClient !== 'function') {
    throw new BenchError('BENCH_PROCESS_FAILED', '@rdl/client exports no RdlClient (is packages/client built?)');
  }
  const client = new RdlClient({ endpoints: [...endpoints] });
  for (const name of ['createVolume', 'write', 'read', 'transferLeader', 'status', 'close']) {
    if (typeof client[name] !== 'function') {
      throw new BenchError('BENCH_PROCESS_FAILED', `RdlClient has no ${name}() method`);
    }
  }
  return {
    createVolume: async (name, sizeBytes) => {
      await client.createVolume(name, sizeBytes);
    },
    write: async (volume, offsetBytes, data) => {
      await client.write(volume, offsetBytes, data);
    },
    read: (volume, offsetBytes, lengthBytes) => client.read(volume, offsetBytes, lengthBytes) as Promise<unknown>,
    transferLeader: async (region) => {
      await client.transferLeader(region);
    },
    leaderRegion: async () => {
      const status = (await client.status()) as { leader?: { region?: unknown } };
      return typeof status.leader?.region === 'string' ? status.leader.region : null;
    },
    close: async () => {
      await client.close();
    },
  };
}
