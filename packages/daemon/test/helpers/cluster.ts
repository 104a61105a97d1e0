/**
 * A process-cluster harness for integration tests: real `rdld` processes (bin/rdld.js) on
 * 127.0.0.1 with ephemeral ports and a temporary data directory per region. Kill with any signal,
 * restart, find the leader, and clean up (SIGKILL survivors, remove the directory) at the end.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { StatusResponse } from '@rdl/client/wire';
import { RDLD_ENVIRONMENT, RDLD_NODE_FLAGS } from '../../src/node-flags.js';
import { BlockClient } from './block-client.js';
import { freePorts, waitFor } from './ports.js';

/**
 * A watchdog process that SIGKILLs the daemons this test process started once the test process is
 * gone. AVA ends a run that times out without running `after.always` hooks (the tests' cleanup),
 * and the daemons then kept running, taking CPU from whatever ran next. The watchdog learns each
 * daemon's pid on its stdin (`+pid`, `-pid` once it exited); when the test process exits, however
 * it exits, that pipe closes and the watchdog kills what is left.
 */
const WATCHDOG_SOURCE = `
const pids = new Set();
let pending = '';
process.stdin.on('data', (chunk) => {
  pending += chunk;
  for (let i = pending.indexOf('\\n'); i >= 0; i = pending.indexOf('\\n')) {
    const line = pending.slice(0, i);
    pending = pending.slice(i + 1);
    const pid = Number(line.slice(1));
    if (line[0] === '+') pids.add(pid);
    else pids.delete(pid);
  }
});
process.stdin.on('end', () => {
  for (const pid of pids) {
    try { process.kill(pid, 'SIGKILL'); } catch {}
  }
  process.exit(0);
});
`;
let watchdog: ChildProcess | null = null;

/** Tells the watchdog that `pid` runs (`isRunning`) or has exited. */
function watch(pid: number | undefined, isRunning: boolean): void {
  if (pid === undefined) return;
  if (watchdog === null) {
    watchdog = spawn(process.execPath, ['-e', WATCHDOG_SOURCE], { stdio: ['pipe', 'ignore', 'ignore'] });
    // Neither the process nor its pipe may keep this test process alive.
    watchdog.unref();
    (watchdog.stdin as unknown as { unref(): void }).unref();
  }
  watchdog.stdin!.write(`${isRunning ? '+' : '-'}${pid}\n`);
}

/** bin/rdld.js, from dist/test/helpers. */
export const RDLD_BIN = fileURLToPath(new URL('../../../bin/rdld.js', import.meta.url));

/** One daemon of the cluster. */
export interface Member {
  readonly region: string;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly metricsPort: number;
  readonly dataDir: string;
  /** `--storage-wal-dir` (outside the data directory), or null for the default `<dataDir>/wal`. */
  walDir: string | null;
  readonly logPath: string;
  process: ChildProcess | null;
  /** Resolves with the exit code (or signal) of the current process. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | null;
  client: BlockClient;
}

/** Options of {@link startCluster}. */
export interface ClusterOptions {
  regions?: readonly string[];
  /** Extra flags for every daemon. */
  args?: readonly string[];
  /** Raft tick; short keeps elections fast in tests. */
  tickIntervalMs?: number;
  /** Each member's WAL in `<root>/wal/<region>` (`--storage-wal-dir`) instead of its data directory. */
  isWalOutside?: boolean;
}

/** A running test cluster. */
export class Cluster {
  readonly members = new Map<string, Member>();

  constructor(
    readonly root: string,
    private readonly args: readonly string[],
  ) {}

  member(region: string): Member {
    const member = this.members.get(region);
    if (!member) throw new Error(`no member ${region}`);
    return member;
  }

  /** The flags a member is started with. */
  argsOf(member: Member): string[] {
    const peers = [...this.members.values()]
      .filter((m) => m.region !== member.region)
      .flatMap((m) => ['--peer', `${m.region}=127.0.0.1:${m.peerPort},client=127.0.0.1:${m.clientPort}`]);
    return [
      '--region',
      member.region,
      '--data-dir',
      member.dataDir,
      '--listen-client',
      `127.0.0.1:${member.clientPort}`,
      '--listen-peer',
      `127.0.0.1:${member.peerPort}`,
      '--listen-metrics',
      `127.0.0.1:${member.metricsPort}`,
      ...peers,
      ...(member.walDir === null ? [] : ['--storage-wal-dir', member.walDir]),
      ...this.args,
    ];
  }

  /** Starts (or restarts) one member's process. */
  start(region: string): void {
    const member = this.member(region);
    if (member.process !== null) throw new Error(`${region} is already running`);
    const log = createWriteStream(member.logPath, { flags: 'a' });
    const child = spawn(process.execPath, [...RDLD_NODE_FLAGS, RDLD_BIN, ...this.argsOf(member)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...RDLD_ENVIRONMENT },
    });
    child.stdout.pipe(log, { end: false });
    child.stderr.pipe(log, { end: false });
    member.process = child;
    watch(child.pid, true);
    member.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        watch(child.pid, false);
        member.process = null;
        resolve({ code, signal });
      });
    });
  }

  /** Sends `signal` to a member and waits for it to exit. */
  async kill(
    region: string,
    signal: NodeJS.Signals = 'SIGKILL',
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const member = this.member(region);
    const exited = member.exited;
    if (member.process === null || exited === null) throw new Error(`${region} is not running`);
    member.process.kill(signal);
    return exited;
  }

  /** The last `lines` lines of a member's log (for failure messages). */
  logTail(region: string, lines = 30): string {
    try {
      return readFileSync(this.member(region).logPath, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** Status as reported by one member, or null if it does not answer. */
  async statusOf(region: string): Promise<StatusResponse | null> {
    try {
      // A short deadline: one unresponsive member must not stall a polling loop.
      return await this.member(region).client.status(2_000);
    } catch {
      return null;
    }
  }

  /**
   * Waits until every running member (or those in `among`) agrees on one leader that is itself
   * running and says it leads; returns its region.
   */
  async waitForLeader(timeoutMs = 40_000, among?: readonly string[]): Promise<string> {
    let leader = '';
    await waitFor(
      async () => {
        const regions = among ?? [...this.members.values()].filter((m) => m.process !== null).map((m) => m.region);
        const statuses = await Promise.all(regions.map((r) => this.statusOf(r)));
        if (statuses.some((s) => s === null)) return false;
        const leaders = new Set(statuses.map((s) => s!.leader?.region ?? ''));
        if (leaders.size !== 1) return false;
        const [candidate] = leaders;
        if (candidate === '' || this.member(candidate).process === null) return false;
        const own = await this.statusOf(candidate);
        if (own?.role !== 'leader') return false;
        leader = candidate;
        return true;
      },
      'a leader all members agree on',
      timeoutMs,
      50,
    );
    return leader;
  }

  /**
   * Makes `to` the leader: asks whoever leads now (starting with `from`) to hand leadership over,
   * retrying on LEADER_TRANSFER_FAILED, NOT_LEADER and UNAVAILABLE. The core gives a transfer one
   * election timeout, and a loaded test machine can also see an election in between.
   */
  async transferLeader(
    from: string,
    to: string,
    attempts = 8,
  ): Promise<{ leader: { region: string; clientAddress: string } }> {
    let current = from;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.member(current).client.call('transferLeader', { region: to });
      } catch (err) {
        const code = (err as { code?: string }).code ?? '';
        if (!['LEADER_TRANSFER_FAILED', 'NOT_LEADER', 'UNAVAILABLE'].includes(code) || attempt >= attempts) throw err;
        current = await this.waitForLeader();
      }
    }
  }

  /** Stops every member (SIGKILL), closes clients and removes the data. */
  async destroy(): Promise<void> {
    for (const member of this.members.values()) {
      member.client.close();
      if (member.process !== null) {
        const exited = member.exited;
        member.process.kill('SIGKILL');
        await exited;
      }
    }
    if (!process.env.RDL_KEEP_TEST_DATA) rmSync(this.root, { recursive: true, force: true });
  }
}

/** Creates a cluster of `regions` (default geneva, gland, lucerne) and starts every member. */
export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const regions = options.regions ?? ['geneva', 'gland', 'lucerne'];
  const root = mkdtempSync(join(tmpdir(), 'rdld-it-'));
  const cluster = new Cluster(root, [
    '--raft-tick-interval-ms',
    String(options.tickIntervalMs ?? 30),
    '--log-level',
    'info',
    // Small WAL segments: each daemon zero-fills its first segment at start-up, and the suite
    // starts many clusters (the default 64 MiB would write ~200 MiB of zeros per cluster).
    '--storage-wal-segment-bytes',
    String(8 * 1024 * 1024),
    ...(options.args ?? []),
  ]);
  const ports = await freePorts(regions.length * 3);
  regions.forEach((region, i) => {
    const clientPort = ports[i * 3];
    cluster.members.set(region, {
      region,
      clientPort,
      peerPort: ports[i * 3 + 1],
      metricsPort: ports[i * 3 + 2],
      dataDir: join(root, region),
      walDir: options.isWalOutside ? join(root, 'wal', region) : null,
      logPath: join(root, `${region}.log`),
      process: null,
      exited: null,
      client: new BlockClient(`127.0.0.1:${clientPort}`),
    });
  });
  for (const region of regions) cluster.start(region);
  return cluster;
}
