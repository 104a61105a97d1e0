import { existsSync, mkdirSync } from 'node:fs';
import { get } from 'node:http';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { RDLD_ENVIRONMENT, RDLD_NODE_FLAGS } from '@rdl/daemon';
import type { Region, RttPair } from '../args.js';
import { oneWayDelaysMs, regions } from '../args.js';
import { freePorts, startProcess, stopProcess, waitUntil } from '../processes.js';
import type { ManagedProcess } from '../processes.js';

/** The repository root, found from this compiled file (bench/dist/src/rdl/cluster.js). */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');

/** The compiled daemon entry point the harness runs (`rdld`). */
export const rdldMainPath = join(repoRoot, 'packages/daemon/dist/src/main.js');

/** One daemon of the cluster. */
export interface DaemonHandle {
  readonly region: Region;
  readonly clientAddress: string;
  readonly peerAddress: string;
  readonly metricsPort: number;
  readonly process: ManagedProcess;
}

/** Three running rdld daemons on loopback. */
export interface RdlCluster {
  readonly daemons: readonly DaemonHandle[];
  /** Block API addresses, geneva first. */
  readonly clientEndpoints: readonly string[];
  stop(): Promise<void>;
}

/**
 * The rdld command line of `region`: its data directory, its three listeners, the other two
 * members, and (with `rtt`) a one-way delay of half the round trip on messages to each of them.
 */
export function rdldArgs(
  region: Region,
  dataDir: string,
  ports: ReadonlyMap<Region, { client: number; peer: number; metrics: number }>,
  rtt: readonly RttPair[] | null,
  walDir: string | null = null,
): string[] {
  const own = ports.get(region)!;
  const args = [
    '--region',
    region,
    '--data-dir',
    dataDir,
    '--listen-client',
    `127.0.0.1:${own.client}`,
    '--listen-peer',
    `127.0.0.1:${own.peer}`,
    '--listen-metrics',
    `127.0.0.1:${own.metrics}`,
    '--log-level',
    'warn',
  ];
  if (walDir !== null) args.push('--storage-wal-dir', walDir);
  for (const other of regions) {
    if (other === region) continue;
    const p = ports.get(other)!;
    args.push('--peer', `${other}=127.0.0.1:${p.peer},client=127.0.0.1:${p.client}`);
  }
  if (rtt !== null) {
    for (const [other, delayMs] of oneWayDelaysMs(rtt, region)) {
      args.push('--peer-delay-ms', `${other}=${delayMs}`);
    }
  }
  return args;
}

function httpStatus(port: number, path: string): Promise<number> {
  return new Promise((resolvePromise) => {
    const request = get({ host: '127.0.0.1', port, path, timeout: 1000 }, (response) => {
      response.resume();
      resolvePromise(response.statusCode ?? 0);
    });
    request.on('timeout', () => request.destroy());
    request.on('error', () => resolvePromise(0));
  });
}

/**
 * Starts geneva, gland and lucerne as real `node packages/daemon/dist/src/main.js` processes with
 * fresh data directories under `workDir` (and, with `walRoot`, their WALs under it) and ports
 * reserved just before, and waits until all three answer `GET /readyz` with 200 (a leader is known
 * and each has applied what it knows committed).
 */
export async function startRdlCluster(
  workDir: string,
  rtt: readonly RttPair[] | null,
  walRoot: string | null = null,
  timeoutMs = 60_000,
): Promise<RdlCluster> {
  if (!existsSync(rdldMainPath)) throw new Error(`rdld is not built: ${rdldMainPath} is missing`);
  const allPorts = await freePorts(9);
  const ports = new Map<Region, { client: number; peer: number; metrics: number }>();
  regions.forEach((region, i) => {
    ports.set(region, { client: allPorts[3 * i], peer: allPorts[3 * i + 1], metrics: allPorts[3 * i + 2] });
  });
  const daemons: DaemonHandle[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(daemons.map((d) => stopProcess(d.process, 10_000)));
  };
  try {
    for (const region of regions) {
      const dataDir = join(workDir, `rdld-${region}`);
      mkdirSync(dataDir, { recursive: true });
      const p = ports.get(region)!;
      const proc = startProcess(
        `rdld-${region}`,
        process.execPath,
        [
          // rdld's own flags first, so that RDL_BENCH_NODE_ARGS can override them in an A/B run.
          ...RDLD_NODE_FLAGS,
          ...(process.env.RDL_BENCH_NODE_ARGS ?? '').split(' ').filter((s) => s !== ''),
          rdldMainPath,
          ...rdldArgs(region, dataDir, ports, rtt, walRoot === null ? null : join(walRoot, `rdld-${region}`)),
        ],
        join(workDir, `rdld-${region}.log`),
        // rdld's own environment, unless the bench's sets the variable (GLIBC_TUNABLES= for glibc's defaults).
        { ...RDLD_ENVIRONMENT, ...process.env },
      );
      daemons.push({
        region,
        clientAddress: `127.0.0.1:${p.client}`,
        peerAddress: `127.0.0.1:${p.peer}`,
        metricsPort: p.metrics,
        process: proc,
      });
    }
    await waitUntil(
      'rdld /readyz on all three daemons',
      async () => (await Promise.all(daemons.map((d) => httpStatus(d.metricsPort, '/readyz')))).every((s) => s === 200),
      timeoutMs,
      daemons.map((d) => d.process),
      200,
    );
    return { daemons, clientEndpoints: daemons.map((d) => d.clientAddress), stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
