import { existsSync } from 'node:fs';

import type { Region } from '../args.js';
import { BenchError } from '../errors.js';
import type { RunningSystem, SystemRunner } from '../systems.js';
import { startAgent } from './agent.js';
import { scrapeCluster } from './metrics.js';
import { rdldMainPath, startRdlCluster } from './cluster.js';
import { openSdk } from './sdk.js';

/** The region the harness makes leader before measuring (the report's commit-latency claim). */
export const rdlLeaderRegion: Region = 'geneva';

/** The volume the workloads write and read. */
export const benchVolumeName = 'bench';

/**
 * rdl: three real rdld daemons on loopback; the SDK (RdlClient) for closed-loop workloads and
 * `rdl-agent nbd` for fio.
 */
export const rdlRunner: SystemRunner = {
  system: 'rdl',
  unavailableReason: () => null,
  async start(context) {
    if (!existsSync(rdldMainPath)) throw new Error(`rdld is not built (${rdldMainPath} missing): run npm run build`);
    const cluster = await startRdlCluster(context.workDir, context.rtt, context.walDir);
    const stops: Array<() => Promise<void>> = [() => cluster.stop()];
    const stop = async (): Promise<void> => {
      for (const s of stops.reverse()) await s().catch(() => undefined);
    };
    try {
      const sdk = await openSdk(cluster.clientEndpoints);
      stops.push(() => sdk.close());
      await sdk.transferLeader(rdlLeaderRegion);
      const leader = await sdk.leaderRegion();
      if (leader !== rdlLeaderRegion) {
        throw new BenchError(
          'BENCH_STARTUP_TIMEOUT',
          `leadership did not move to ${rdlLeaderRegion} (leader: ${leader ?? 'none'})`,
        );
      }
      await sdk.createVolume(benchVolumeName, context.volumeBytes);
      const serverPids = cluster.daemons.map((d) => d.process.pid);
      const metricsPorts = cluster.daemons.map((d) => ({ region: d.region, port: d.metricsPort }));
      const fioServerPids = [...serverPids];
      let nbdUri: string | null = null;
      let nbdError: string | null = null;
      if (context.needsNbd) {
        // A broken agent must not hide the SDK figures: only the fio workloads fail then.
        try {
          const agent = await startAgent(context.workDir, cluster.clientEndpoints);
          stops.push(() => agent.stop());
          nbdUri = agent.uriOf(benchVolumeName);
          // Through NBD the agent is part of the server side: its CPU counts too.
          fioServerPids.push(agent.process.pid);
        } catch (err) {
          nbdError = `rdl-agent: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`;
        }
      }
      return {
        serverPids,
        fioServerPids,
        blockTarget: {
          write: (offset, data) => sdk.write(benchVolumeName, offset, data),
          read: (offset, length) => sdk.read(benchVolumeName, offset, length),
        },
        nbdUri,
        nbdError,
        sampleStages: () => scrapeCluster(metricsPorts),
        description:
          `3 rdld on 127.0.0.1 (leader ${rdlLeaderRegion}), SDK to ${cluster.clientEndpoints.join(',')}` +
          (nbdUri === null ? '' : `, rdl-agent NBD at ${nbdUri}`),
        stop,
      } satisfies RunningSystem;
    } catch (err) {
      await stop();
      throw err;
    }
  },
};
