/**
 * Shared helpers of the NBD tests: a seeded random source, a bounded wait, and a server backed by
 * the in-memory provider on an ephemeral 127.0.0.1 port.
 */
import { spawnSync } from 'node:child_process';
import { NbdServer, type NbdServerOptions } from '../../src/nbd/server.js';
import { MemoryVolumeProvider } from '../../src/nbd/memory-volume.js';

/** Deterministic PRNG (mulberry32): same seed, same sequence. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Seeded random bytes. */
export function randomBytes(random: () => number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) out[i] = Math.floor(random() * 256);
  return out;
}

/** Polls `condition` every 5 ms until true; throws after `timeoutMs`. */
export async function waitFor(condition: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A running server over a fresh in-memory provider. */
export interface TestServer {
  readonly server: NbdServer;
  readonly provider: MemoryVolumeProvider;
  readonly port: number;
  uri(name: string): string;
  close(): Promise<void>;
}

/** Starts an NBD server on 127.0.0.1:0 with the given volumes (name → size in bytes). */
export async function startServer(
  volumes: Record<string, number>,
  options: Partial<NbdServerOptions> = {},
): Promise<TestServer> {
  const provider = new MemoryVolumeProvider();
  for (const [name, size] of Object.entries(volumes)) provider.createVolume(name, size);
  const server = new NbdServer({ ...options, provider });
  const address = await server.listen({ host: '127.0.0.1', port: 0 });
  const port = 'port' in address ? address.port : 0;
  return {
    server,
    provider,
    port,
    uri: (name) => `nbd://127.0.0.1:${port}/${name}`,
    close: () => server.close(),
  };
}

/** True when `command` is on the PATH (interop tests skip, saying so, when a peer is missing). */
export function hasCommand(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}
