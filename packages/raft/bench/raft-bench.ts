/**
 * `npm run bench:raft`: the Raft core alone. Three RaftCores in one process exchange messages
 * through in-memory queues (no timers, no IO; "persisting" a Ready is acknowledging it at once),
 * and the leader is fed batches of proposals with a bounded window of uncommitted entries. Reports
 * committed entries per second for 16 B and 4 KiB entries and the CPU time the whole cluster
 * (three cores, one thread) spent per committed entry, from process.cpuUsage().
 *
 * A last scenario runs the same three nodes behind the async RaftNode driver (in-memory storage and
 * transport, one promise per proposal) to show what the driver adds on top of the core.
 *
 * Usage: node packages/raft/dist/bench/raft-bench.js [--seconds 3] [--json]
 */
import { parseArgs } from 'node:util';
import type {
  Clock,
  Entry,
  HardState,
  PersistedState,
  RaftMessage,
  SnapshotMeta,
  SnapshotReader,
  SnapshotWriter,
  StateMachine,
  Storage,
} from '../src/api.js';
import { RaftNode } from '../src/node.js';
import type { CoreConfig, Message } from '../src/core/index.js';
import { RaftCore } from '../src/core/index.js';

interface Scenario {
  name: string;
  entryBytes: number;
  batchEntries: number;
  /** Uncommitted entries the leader may hold before the bench stops proposing. */
  windowEntries: number;
}

interface Result {
  scenario: string;
  entryBytes: number;
  batchEntries: number;
  committedEntries: number;
  seconds: number;
  entriesPerSecond: number;
  megabytesPerSecond: number;
  cpuMicrosPerEntry: number;
  messages: number;
}

function random(seed: number): { nextInt(bound: number): number } {
  let s = seed >>> 0 || 1;
  return {
    nextInt(bound: number): number {
      s ^= s << 13;
      s >>>= 0;
      s ^= s >>> 17;
      s ^= s << 5;
      s >>>= 0;
      return s % bound;
    },
  };
}

const ids = ['geneva', 'gland', 'lucerne'];

function buildCluster(): Map<string, RaftCore> {
  const cores = new Map<string, RaftCore>();
  for (const [i, id] of ids.entries()) {
    const config: CoreConfig = {
      id,
      electionTimeoutTicks: 10,
      heartbeatTicks: 1,
      isPreVoteEnabled: true,
      isCheckQuorumEnabled: true,
      isProposalForwardingEnabled: false,
      inflightMessagesMax: 256,
      inflightBytesMax: 32 * 1024 * 1024,
      entryBytesMax: 4 * 1024 * 1024,
      appendBatchBytesMax: 1024 * 1024,
      uncommittedBytesMax: 256 * 1024 * 1024,
      leaseTicks: 0,
      applyBatchBytesMax: 64 * 1024 * 1024,
      isCommitPiggybackEnabled: true,
      random: random(i + 1),
    };
    cores.set(
      id,
      new RaftCore(config, {
        hardState: { term: 0, vote: null, commit: 0 },
        snapshot: null,
        entries: [],
        appliedIndex: 0,
        conf: { voters: ids, learners: [], votersOutgoing: [], learnersNext: [] },
      }),
    );
  }
  return cores;
}

class Pump {
  messages = 0;
  private queue: Message[] = [];
  /** Sink for applied entries so the work is not optimised away. */
  appliedBytes = 0;

  constructor(private readonly cores: Map<string, RaftCore>) {}

  /** Runs every core's Readies and delivers every message until the cluster is quiet. */
  run(): void {
    for (let rounds = 0; rounds < 1_000_000; rounds++) {
      let isBusy = false;
      for (const core of this.cores.values()) {
        if (!core.hasReady()) continue;
        isBusy = true;
        const rd = core.ready();
        for (const m of rd.messages) this.queue.push(m);
        // In-memory storage: the write is durable as soon as it is made.
        core.persisted(rd);
        for (const m of rd.messagesAfterPersist) this.queue.push(m);
        const applied: readonly Entry[] = rd.committedEntries;
        if (applied.length > 0) {
          for (let i = 0; i < applied.length; i++) this.appliedBytes += applied[i].data.byteLength;
          core.appliedTo(applied[applied.length - 1].index);
        }
      }
      if (this.queue.length > 0) {
        isBusy = true;
        const batch = this.queue;
        this.queue = [];
        this.messages += batch.length;
        for (const m of batch) this.cores.get(m.to)!.step(m);
      }
      if (!isBusy) return;
    }
    throw new Error('the cluster did not settle');
  }
}

function runScenario(s: Scenario, seconds: number): Result {
  const cores = buildCluster();
  const pump = new Pump(cores);
  const leader = cores.get('geneva')!;
  leader.campaign();
  pump.run();
  if (leader.role !== 'leader') throw new Error('geneva did not become leader');
  const payload = new Uint8Array(s.entryBytes).fill(7);
  const batch: Uint8Array[] = new Array<Uint8Array>(s.batchEntries).fill(payload);
  const startCommit = leader.log.committed;
  const startMessages = pump.messages;
  const cpuStart = process.cpuUsage();
  const startNs = process.hrtime.bigint();
  const durationNs = BigInt(Math.round(seconds * 1e9));
  let elapsedNs = 0n;
  while (elapsedNs < durationNs) {
    // Keep the pipeline full: propose while fewer than windowEntries are uncommitted.
    while (leader.log.lastIndex() - leader.log.committed < s.windowEntries) {
      const r = leader.propose(batch);
      if (r.code !== null) throw new Error(`proposal refused: ${r.code}`);
    }
    pump.run();
    // Keep memory flat: drop entries every node has applied (a real node compacts after snapshots).
    let applied = Infinity;
    for (const core of cores.values()) applied = Math.min(applied, core.log.applied);
    for (const core of cores.values()) core.compact(applied);
    elapsedNs = process.hrtime.bigint() - startNs;
  }
  const cpu = process.cpuUsage(cpuStart);
  const committed = leader.log.committed - startCommit;
  const secondsTaken = Number(elapsedNs) / 1e9;
  return {
    scenario: s.name,
    entryBytes: s.entryBytes,
    batchEntries: s.batchEntries,
    committedEntries: committed,
    seconds: secondsTaken,
    entriesPerSecond: committed / secondsTaken,
    megabytesPerSecond: (committed * s.entryBytes) / secondsTaken / 1e6,
    cpuMicrosPerEntry: (cpu.user + cpu.system) / committed,
    messages: pump.messages - startMessages,
  };
}

/** Storage whose writes are durable at once (the bench measures CPU, not disks). */
class InstantStorage implements Storage {
  load(): Promise<PersistedState> {
    return Promise.resolve({ hardState: { term: 0, vote: null, commit: 0 }, snapshot: null, entries: [] });
  }
  append(_entries: readonly Entry[], _hardState: HardState | null): Promise<void> {
    return Promise.resolve();
  }
  applySnapshot(): Promise<void> {
    return Promise.resolve();
  }
  compact(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

class CountingMachine implements StateMachine {
  applied = 0;
  appliedIndex(): Promise<number> {
    return Promise.resolve(0);
  }
  apply(entries: readonly Entry[]): Promise<unknown[]> {
    this.applied = entries[entries.length - 1].index;
    return Promise.resolve(new Array<unknown>(entries.length));
  }
  openSnapshot(_meta: SnapshotMeta): Promise<SnapshotReader> {
    return Promise.reject(new Error('no snapshots in the bench'));
  }
  beginRestore(_meta: SnapshotMeta): Promise<SnapshotWriter> {
    return Promise.reject(new Error('no snapshots in the bench'));
  }
}

/** A clock whose timers fire only when `fire()` is called (elections are driven by hand). */
class HandClock implements Clock {
  private readonly timers = new Set<() => void>();
  now(): number {
    return Number(process.hrtime.bigint() / 1_000_000n);
  }
  setInterval(fn: () => void): () => void {
    this.timers.add(fn);
    return () => this.timers.delete(fn);
  }
  setTimeout(fn: () => void): () => void {
    return this.setInterval(fn);
  }
  fire(): void {
    for (const fn of [...this.timers]) fn();
  }
}

async function runDriverScenario(seconds: number): Promise<Result> {
  const clock = new HandClock();
  const handlers = new Map<string, (m: RaftMessage) => void>();
  const nodes: RaftNode[] = [];
  for (const [i, id] of ids.entries()) {
    const node = await RaftNode.create({
      id,
      peers: ids,
      storage: new InstantStorage(),
      transport: {
        send: (messages) => {
          for (const m of messages) queueMicrotask(() => handlers.get(m.to)?.(m));
        },
        onMessage: (handler) => {
          handlers.set(id, handler);
        },
      },
      stateMachine: new CountingMachine(),
      clock,
      random: random(i + 1),
      config: { logEntriesMax: 200_000, logEntriesKeep: 1_000 },
    });
    node.start();
    nodes.push(node);
  }
  const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
  for (let i = 0; i < 100 && !nodes.some((n) => n.status().role === 'leader'); i++) {
    clock.fire();
    await tick();
  }
  const leader = nodes.find((n) => n.status().role === 'leader');
  if (leader === undefined) throw new Error('no leader in the driver scenario');
  const payload = new Uint8Array(16);
  const windowMax = 4096;
  const cpuStart = process.cpuUsage();
  const startNs = process.hrtime.bigint();
  const durationNs = BigInt(Math.round(seconds * 1e9));
  let committed = 0;
  await new Promise<void>((resolve, reject) => {
    let inflight = 0;
    let isStopping = false;
    const pump = (): void => {
      if (process.hrtime.bigint() - startNs >= durationNs) isStopping = true;
      while (!isStopping && inflight < windowMax) {
        inflight++;
        leader.propose(payload).then(() => {
          inflight--;
          committed++;
          if (isStopping && inflight === 0) resolve();
          else if (inflight < windowMax / 2) pump();
        }, reject);
      }
      if (isStopping && inflight === 0) resolve();
    };
    pump();
  });
  const elapsedNs = process.hrtime.bigint() - startNs;
  const cpu = process.cpuUsage(cpuStart);
  for (const n of nodes) await n.stop();
  const secondsTaken = Number(elapsedNs) / 1e9;
  return {
    scenario: 'RaftNode driver, 16 B proposals, 4,096 in flight',
    entryBytes: 16,
    batchEntries: 1,
    committedEntries: committed,
    seconds: secondsTaken,
    entriesPerSecond: committed / secondsTaken,
    megabytesPerSecond: (committed * 16) / secondsTaken / 1e6,
    cpuMicrosPerEntry: (cpu.user + cpu.system) / committed,
    messages: 0,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { seconds: { type: 'string', default: '3' }, json: { type: 'boolean', default: false } },
  });
  const seconds = Number(values.seconds);
  if (!(seconds > 0 && seconds <= 600)) {
    process.stderr.write('--seconds must be a number in (0, 600]\n');
    process.exit(2);
  }
  const scenarios: Scenario[] = [
    { name: '16 B entries, batches of 1024', entryBytes: 16, batchEntries: 1024, windowEntries: 4096 },
    { name: '16 B entries, batches of 64', entryBytes: 16, batchEntries: 64, windowEntries: 4096 },
    { name: '4 KiB entries, batches of 64', entryBytes: 4096, batchEntries: 64, windowEntries: 4096 },
  ];
  // A short warm-up so the JIT has compiled the hot paths before measuring.
  runScenario(scenarios[0], Math.min(1, seconds));
  const results = scenarios.map((s) => runScenario(s, seconds));
  results.push(await runDriverScenario(seconds));
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ node: process.version, results }, null, 2)}\n`);
    return;
  }
  process.stdout.write(`Raft core, 3 nodes in one process, in-memory messages (node ${process.version})\n`);
  process.stdout.write(
    '| Scenario | Committed entries/s (wall) | MB/s | CPU µs per committed entry (3 cores) | Committed entries per CPU-second |\n',
  );
  process.stdout.write('|---|---:|---:|---:|---:|\n');
  for (const r of results) {
    process.stdout.write(
      `| ${r.scenario} | ${Math.round(r.entriesPerSecond).toLocaleString('en-US')} | ${r.megabytesPerSecond.toFixed(1)} | ${r.cpuMicrosPerEntry.toFixed(3)} | ${Math.round(1e6 / r.cpuMicrosPerEntry).toLocaleString('en-US')} |\n`,
    );
  }
}

await main();
