import type { RttPair } from './args.js';
import type { BlockTarget } from './loop-workload.js';
import type { DaemonSnapshot } from './rdl/metrics.js';
import { EtcdKv, startEtcdCluster } from './peers/etcd.js';
import { startNbdkit } from './peers/nbdkit.js';
import { isInstalled } from './processes.js';
import type { SystemName } from './workloads.js';

/** What a started system offers the workloads. */
export interface RunningSystem {
  /** Server processes whose CPU time is charged to the closed-loop workloads. */
  readonly serverPids: readonly number[];
  /** Server processes charged for fio workloads (for rdl: the daemons and the NBD agent). */
  readonly fioServerPids: readonly number[];
  /** For closed-loop workloads (rdl's SDK, etcd's gRPC API), or null. */
  readonly blockTarget: BlockTarget | null;
  /** nbd://127.0.0.1:PORT/ for fio workloads (rdl's agent, nbdkit), or null. */
  readonly nbdUri: string | null;
  /** Why there is no NBD export when one was needed (e.g. the agent failed to start), or null. */
  readonly nbdError?: string | null;
  /** Scrapes every daemon's latency histograms (rdl only), for the per-stage breakdown. */
  readonly sampleStages?: () => Promise<DaemonSnapshot[]>;
  /** A line describing the system for the report (versions, leader). */
  readonly description: string;
  /** Stops every process of the system; resolves when they have exited. */
  stop(): Promise<void>;
}

/** Context a system is started in. */
export interface StartContext {
  readonly workDir: string;
  /** Where the system's daemons keep their write-ahead logs (`--wal-dir`), or null for their data directories. */
  readonly walDir: string | null;
  readonly volumeBytes: number;
  /** Emulated region round trips (rdl only; the peers run on plain loopback). */
  readonly rtt: readonly RttPair[] | null;
  /** Whether any selected workload needs the block target, and whether any needs NBD. */
  readonly needsBlockTarget: boolean;
  readonly needsNbd: boolean;
}

/** Starts one system under test, or says why it cannot run here. */
export interface SystemRunner {
  readonly system: SystemName;
  /** Null when the system can run, else the reason to skip it (e.g. "etcd not installed"). */
  unavailableReason(context: Pick<StartContext, 'needsBlockTarget' | 'needsNbd'>): string | null;
  start(context: StartContext): Promise<RunningSystem>;
}

/** The key under which the etcd peer stores the block at `offsetBytes`. */
export function etcdKeyOf(offsetBytes: number, sizeBytes: number): Buffer {
  return Buffer.from(`block/${Math.floor(offsetBytes / sizeBytes)}`);
}

/** etcd 3-member cluster on loopback; 4 KiB values per block key through the v3 gRPC API. */
export const etcdRunner: SystemRunner = {
  system: 'etcd',
  unavailableReason: () => (isInstalled('etcd') ? null : 'etcd not installed'),
  async start(context) {
    const cluster = await startEtcdCluster(context.workDir, context.walDir);
    const kv = new EtcdKv(cluster.leaderEndpoint);
    return {
      serverPids: cluster.processes.map((p) => p.pid),
      fioServerPids: [],
      blockTarget: {
        write: (offset, data) => kv.put(etcdKeyOf(offset, data.length), data),
        read: (offset, length) => kv.get(etcdKeyOf(offset, length)),
      },
      nbdUri: null,
      description: `etcd 3 members on 127.0.0.1, client to the leader ${cluster.leaderEndpoint}`,
      async stop() {
        kv.close();
        await cluster.stop();
      },
    };
  },
};

/** nbdkit's file plugin on a sparse file: the unreplicated durable ceiling for fio. */
export const nbdkitRunner: SystemRunner = {
  system: 'nbdkit',
  unavailableReason: () =>
    !isInstalled('nbdkit') ? 'nbdkit not installed' : !isInstalled('fio') ? 'fio not installed' : null,
  async start(context) {
    const server = await startNbdkit(context.workDir, context.volumeBytes);
    return {
      serverPids: [server.process.pid],
      fioServerPids: [server.process.pid],
      blockTarget: null,
      nbdUri: server.uri,
      description: `nbdkit file plugin at ${server.uri}`,
      stop: () => server.stop(),
    };
  },
};
