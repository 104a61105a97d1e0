/**
 * A deterministic simulator of a Raft cluster: the pure cores (`src/core`) driven by a synchronous
 * driver of our own, over a simulated network and simulated disks, with virtual time. One integer
 * seed determines everything (fault schedule, latencies, election timeouts, client workload), so a
 * failing seed replays exactly.
 *
 * A run has two phases (as TigerBeetle's VOPR does):
 * - safety: faults are injected (message drop, duplication, delay and reordering; symmetric and
 *   asymmetric partitions; crashes that lose unsynced writes; disk stalls; fsync failures, after
 *   which the node crashes rather than acknowledge; leadership transfers) while clients run a
 *   key-value workload; invariants are checked after every event;
 * - liveness: everything heals; a leader must be elected and a new proposal committed within a
 *   bounded number of ticks.
 * Finally the clients' history goes through the linearizability checker.
 *
 * The driver follows the core's persistence contract (see `Ready`): `messages` leave at once,
 * `entries`/`hardState` are written in Ready order and group-committed by one sync,
 * `messagesAfterPersist` leave only once every earlier write is durable, `persisted` is called in
 * order after the sync, committed entries are applied to a state machine that survives crashes.
 */
import type { ConfState, Entry, HardState, NodeId, SnapshotMeta } from '../api.js';
import { EntryType } from '../api.js';
import {
  RaftCore,
  MessageType,
  ProgressState,
  applyConfChange,
  decodeConfChange,
  messageTypeName,
} from '../core/index.js';
import type { ConfChangeItem, CoreConfig, Message, Ready } from '../core/index.js';
import { KvStore, decodeKvCommand, encodeKvCommand } from './kv-state-machine.js';
import type { KvCommand, KvResult } from './kv-state-machine.js';
import { checkLinearizable } from './lincheck.js';
import type { HistoryOperation } from './lincheck.js';
import { SeededRandom } from './random.js';

/** The kinds of faults (and workload outcomes) the simulator counts, for coverage. */
export const FAULT_KINDS = [
  'message-dropped',
  'message-duplicated',
  'message-delayed',
  'message-reordered',
  'partition-symmetric',
  'partition-asymmetric',
  'node-crashed',
  'unsynced-writes-lost',
  'disk-stalled',
  'fsync-failed',
  'leadership-transfer',
  'log-compacted',
  'snapshot-sent',
  'snapshot-installed',
  'snapshot-chunk-sent',
  'snapshot-chunk-lost',
  'snapshot-chunk-resent',
  'snapshot-transfer-resumed',
  'snapshot-transfer-restarted',
  'snapshot-transfer-abandoned',
  'crash-mid-transfer',
  'member-added',
  'member-removed',
  'member-replaced',
  'member-replaced-joint',
  'leader-removed',
  'conf-change-refused',
] as const;
/** One kind of injected fault. */
export type FaultKind = (typeof FAULT_KINDS)[number];
/** How many of each fault were injected. */
export type FaultTally = Record<FaultKind, number>;

/** Per-run fault rates. Unset fields are drawn from the seed, so seeds differ in their mix. */
export interface FaultRates {
  /** Probability that a message is dropped. */
  readonly dropRate: number;
  /** Probability that a message is delivered twice. */
  readonly duplicateRate: number;
  /** Probability that a message is held back up to `longDelayMsMax` (which reorders it). */
  readonly longDelayRate: number;
  /** Per fault step (every `faultStepMs`), probability of starting a partition. */
  readonly partitionRate: number;
  readonly crashRate: number;
  readonly stallRate: number;
  readonly fsyncFailureRate: number;
  readonly transferRate: number;
  /** Per fault step, probability of starting a membership change (add, remove or replace). */
  readonly membershipRate: number;
}

/**
 * How a leader streams a snapshot (modelled on `RaftNode`'s transfer: `snapshotChunkBytes`,
 * `snapshotChunksInflightMax`, `snapshotIdleTicks`, `snapshotIdleRoundsMax`). Unset fields are
 * drawn from the seed, from a stream of their own.
 */
export interface SnapshotTransferConfig {
  /** Bytes per chunk: small, so that a typical KV image (~60-120 bytes) takes several chunks. */
  readonly chunkBytes: number;
  /** Chunks sent and not yet acknowledged, per follower. */
  readonly chunksInflightMax: number;
  /** Ticks without an acknowledgement after which the leader resends from the last acknowledged chunk. */
  readonly idleTicks: number;
  /** Idle periods in a row after which the leader abandons the transfer (`reportSnapshot(to, false)`). */
  readonly idleRoundsMax: number;
  /**
   * Per fault step, probability of crashing a node that sends or receives a snapshot transfer
   * (the receiver loses its partial transfer, the sender abandons its own). Crashes at random
   * times rarely hit a transfer, which lasts a few milliseconds.
   */
  readonly midTransferCrashRate: number;
}

/** Options of one simulated run. */
export interface SimulationOptions {
  readonly seed: number;
  /** Cluster size. Default 3. */
  readonly nodeCount?: number;
  /** Virtual duration of the safety phase. Default 3,000 ms (300 ticks). */
  readonly safetyMs?: number;
  /** Ticks after healing within which a leader must commit a new proposal. Default 200. */
  readonly livenessTicksMax?: number;
  /** Simulated clients. Default 3. */
  readonly clientCount?: number;
  /** Overrides of the seed-drawn fault rates. */
  readonly faults?: Partial<FaultRates>;
  /**
   * Breaks the driver on purpose, to prove the checkers catch what they claim to:
   * `ack-before-fsync` sends `messagesAfterPersist` (vote grants, append acks) before the write
   * is durable; `stale-reads` serves reads from the local state of whichever node the client
   * reached, without ReadIndex; `empty-snapshot` sends snapshots holding an empty state;
   * `snapshot-chunk-gap` makes a follower accept a snapshot chunk past a gap (a lost chunk) as if
   * it were the next one.
   */
  readonly driverBug?: 'ack-before-fsync' | 'stale-reads' | 'empty-snapshot' | 'snapshot-chunk-gap';
  /**
   * Checks to leave out, so a test can show the remaining ones catch a bug on their own
   * (`election-quorum` and `commit-durability` catch an early ack first, before its consequences show).
   */
  readonly disabledChecks?: readonly ('commit-durability' | 'election-quorum')[];
  /**
   * Log compaction: a node compacts once it holds more than twice this many applied entries,
   * keeping this many (0: never). Drawn from the seed when unset. Compaction makes lagging
   * followers need a snapshot, which the leader streams in MsgSnap chunks over the faulty network.
   */
  readonly logEntriesKeep?: number;
  /** Overrides of the seed-drawn snapshot transfer parameters. */
  readonly snapshotTransfer?: Partial<SnapshotTransferConfig>;
  /**
   * How a member is replaced once its successor caught up as a learner: `true`, in one
   * joint-consensus change (`add-voter new` + `remove old`, as `RaftNode.replaceMember` does);
   * `false`, in two single-server changes (promote, then remove). Unset (the default): each
   * replacement picks one or the other at random, from a stream of its own, so the rest of the
   * run draws the same numbers either way.
   */
  readonly isJointReplaceEnabled?: boolean;
  /** Overrides of the seed-drawn core configuration. */
  readonly coreConfig?: Partial<Omit<CoreConfig, 'id' | 'random'>>;
  /** Records a readable trace of the last events (slower; used to explain a failing seed). */
  readonly isTraceEnabled?: boolean;
  /** Events kept in the trace. Default 400. */
  readonly traceLinesMax?: number;
}

/** What one run found. */
export interface SimulationResult {
  readonly seed: number;
  /** Null when every check passed; else what broke. */
  readonly violation: string | null;
  /** Set when the linearizability search gave up (not a violation, but worth a look). */
  readonly inconclusive: string | null;
  readonly tally: FaultTally;
  readonly history: readonly HistoryOperation[];
  /** The last events before the end (empty unless `isTraceEnabled`). */
  readonly trace: readonly string[];
  /** The core configuration the seed drew (with `SimulationOptions.coreConfig` applied). */
  readonly coreConfig: Readonly<Omit<CoreConfig, 'id' | 'random'>>;
  /** The snapshot transfer parameters the seed drew (with `SimulationOptions.snapshotTransfer` applied). */
  readonly snapshotTransfer: SnapshotTransferConfig;
  readonly stats: {
    readonly events: number;
    readonly committedIndex: number;
    readonly operationsOk: number;
    readonly operationsUnknown: number;
    readonly operationsFailed: number;
    readonly elections: number;
    /** Ticks from healing until the liveness marker committed (-1 when it did not). */
    readonly livenessTicks: number;
  };
}

/** An invariant broke. Carries a precise message; the simulator turns it into a result. */
export class SimulationViolation extends Error {
  override readonly name = 'SimulationViolation';
}

const TICK_MS = 10;
const FAULT_STEP_MS = 20;
const LATENCY_MS_MIN = 1;
const LATENCY_MS_MAX = 5;
const LONG_DELAY_MS_MAX = 150;
const SYNC_MS_MIN = 1;
const SYNC_MS_MAX = 4;
const CLIENT_TIMEOUT_MS = 1_500;
const KEYS = ['x', 'y', 'z'];
/** Node ids beyond the initial ones that membership changes may add (each id is used once). */
const SPARE_NODES = 6;
/** Voter counts the random membership changes stay within. */
const VOTERS_MIN = 2;
const VOTERS_MAX = 5;

/**
 * Whether every quorum of `a` intersects every quorum of `b` (a quorum of a joint configuration is
 * a majority of both halves). Sufficient condition checked: some half of `a` and some half of `b`
 * have intersecting majorities, which holds for every change Raft allows (a single-server change,
 * C_old -> C_old,new, C_old,new -> C_new) and fails for a multi-voter change made directly.
 */
export function quorumsIntersect(a: ConfState, b: ConfState): boolean {
  const halves = (c: ConfState): (readonly NodeId[])[] =>
    c.votersOutgoing.length > 0 ? [c.voters, c.votersOutgoing] : [c.voters];
  for (const x of halves(a)) for (const y of halves(b)) if (majoritiesIntersect(x, y)) return true;
  return false;
}

/** Whether every majority of `x` intersects every majority of `y`. */
function majoritiesIntersect(x: readonly NodeId[], y: readonly NodeId[]): boolean {
  const shared = x.filter((id) => y.includes(id)).length;
  // Disjoint majorities exist iff each side can fill its majority from its own ids plus its part of the shared ones.
  const needX = Math.max(0, Math.floor(x.length / 2) + 1 - (x.length - shared));
  const needY = Math.max(0, Math.floor(y.length / 2) + 1 - (y.length - shared));
  return needX + needY > shared;
}

/** A membership procedure in progress, driven one step per fault step on whoever leads. */
interface MembershipOperation {
  readonly kind: 'add' | 'remove' | 'replace';
  /** The node added (add, replace). */
  readonly added: NodeId | null;
  /** The voter removed (remove, replace). */
  readonly removed: NodeId | null;
  /** Whether `removed` was the leader when its removal was proposed. */
  isLeaderRemoved: boolean;
  /** Replace: promote `added` and remove `removed` in one joint change (else two single-server ones). */
  readonly isJoint: boolean;
  /** The joint change was accepted (the replacement went through C_old,new). */
  isJointProposed: boolean;
}

/** A binary min-heap of events ordered by (time, sequence): ties run in scheduling order. */
class EventQueue {
  private readonly times: number[] = [];
  private readonly seqs: number[] = [];
  private readonly fns: (() => void)[] = [];
  private seq = 0;

  get size(): number {
    return this.fns.length;
  }

  push(time: number, fn: () => void): void {
    let i = this.fns.length;
    const seq = this.seq++;
    this.times.push(time);
    this.seqs.push(seq);
    this.fns.push(fn);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.less(parent, time, seq)) break;
      this.move(parent, i);
      i = parent;
    }
    this.times[i] = time;
    this.seqs[i] = seq;
    this.fns[i] = fn;
  }

  peekTime(): number {
    return this.times[0];
  }

  pop(): () => void {
    const top = this.fns[0];
    const lastTime = this.times.pop()!;
    const lastSeq = this.seqs.pop()!;
    const lastFn = this.fns.pop()!;
    const n = this.fns.length;
    if (n > 0) {
      let i = 0;
      while (true) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && this.lessIdx(r, l) ? r : l;
        if (this.less(c, lastTime, lastSeq)) {
          this.move(c, i);
          i = c;
        } else break;
      }
      this.times[i] = lastTime;
      this.seqs[i] = lastSeq;
      this.fns[i] = lastFn;
    }
    return top;
  }

  private less(i: number, time: number, seq: number): boolean {
    return this.times[i] < time || (this.times[i] === time && this.seqs[i] < seq);
  }
  private lessIdx(i: number, j: number): boolean {
    return this.less(i, this.times[j], this.seqs[j]);
  }
  private move(from: number, to: number): void {
    this.times[to] = this.times[from];
    this.seqs[to] = this.seqs[from];
    this.fns[to] = this.fns[from];
  }
}

interface DurableImage {
  hardState: HardState;
  /** The latest snapshot (or compaction point); entries[i] has index offset + 1 + i. */
  snapshot: SnapshotMeta | null;
  entries: Entry[];
}

function offsetOf(image: DurableImage): number {
  return image.snapshot?.index ?? 0;
}

function lastIndexOf(image: DurableImage): number {
  return offsetOf(image) + image.entries.length;
}

/** Whether the image holds entry `index` of `term` (an index inside the snapshot counts as held). */
function isHeld(image: DurableImage, index: number, term: number): boolean {
  const offset = offsetOf(image);
  if (index <= offset) return true;
  const e = image.entries[index - offset - 1];
  return e !== undefined && e.term === term;
}

/**
 * A snapshot this leader streams to one follower. The image is taken (serialized and cut into
 * chunks) when the transfer starts and never changes, as `RaftNode` reads an opened snapshot.
 */
interface OutgoingTransfer {
  readonly to: NodeId;
  /** The leader's term when the transfer started: it ends with that leadership. */
  readonly term: number;
  readonly meta: SnapshotMeta;
  readonly chunks: readonly Uint8Array[];
  /** Next chunk to send. */
  nextSeq: number;
  /** Highest chunk the follower acknowledged (all before it arrived too); -1 for none. */
  ackedSeq: number;
  /** Chunks below this were sent at least once (to count resends). */
  sentSeqEnd: number;
  /** The receiver's epoch (see `IncomingTransfer.epoch`) of the latest acknowledgement; -1 for none. */
  receiverEpoch: number;
  lastProgressMs: number;
  idleRounds: number;
}

/** A snapshot this follower receives: the chunks that arrived in order, held until the last one. */
interface IncomingTransfer {
  readonly from: NodeId;
  /** Highest message term seen for this transfer (a newer transfer must have a term at least as high). */
  term: number;
  readonly meta: SnapshotMeta;
  readonly chunks: Uint8Array[];
  /**
   * Distinct for every transfer a node ever took part in (across restarts). Acks carry it (in the
   * `commit` field, unused by MsgSnapResp), a restart request carries the next one: so a restart
   * request overtaken by a later ack, in a reordering network, is recognised as stale.
   */
  readonly epoch: number;
}

interface PendingWrite {
  readonly rd: Ready;
}

interface ClientOperation {
  readonly client: number;
  readonly command: KvCommand;
  readonly call: number;
  isDone: boolean;
}

interface PendingProposal {
  readonly term: number;
  readonly operation: ClientOperation;
}

class SimNode {
  core: RaftCore | null = null;
  /** Bumped on every crash so that events of a previous incarnation are ignored. */
  incarnation = 0;
  readonly durable: DiskImage;
  readonly kv = new KvStore();
  /** Writes handed out by Ready and not yet part of a sync. */
  queued: PendingWrite[] = [];
  /** Writes in the sync in flight. */
  syncing: PendingWrite[] | null = null;
  stalledUntilMs = 0;
  isSyncFailing = false;
  /** Highest commit index seen in this incarnation. */
  commitSeen = 0;
  proposals = new Map<number, PendingProposal>();
  reads = new Map<number, ClientOperation>();
  readsReady: { index: number; operation: ClientOperation }[] = [];
  /** Term in which this node was last seen leader, to spot new leaderships. */
  leaderTermSeen = -1;
  /** Set while the driver drains this node's Readies. */
  isDraining = false;
  /** Snapshot transfers this leader streams, by follower. Volatile: lost in a crash. */
  outgoing = new Map<NodeId, OutgoingTransfer>();
  /** The snapshot transfer this node receives (at most one). Volatile: lost in a crash. */
  incoming: IncomingTransfer | null = null;
  /** The epoch the next incoming transfer gets. Survives crashes (a restarted node never reuses one). */
  transferEpochNext = 0;
  /** Whether a membership change brought this node in (spare nodes wait outside until added). */
  isActive = false;
  /** Removed from the group by a committed change and shut down for good. */
  isRetired = false;

  constructor(
    readonly id: NodeId,
    readonly index: number,
  ) {
    this.durable = { hardState: { term: 0, vote: null, commit: 0 }, snapshot: null, entries: [] };
  }
}

type DiskImage = DurableImage;

interface Client {
  readonly id: number;
  guess: NodeId | null;
  sequence: number;
  current: ClientOperation | null;
}

/** Runs one seed. Never throws for a Raft bug: violations (and core assertions) come back in the result. */
export function runSimulation(options: SimulationOptions): SimulationResult {
  return new Simulation(options).run();
}

class Simulation {
  private readonly rng: SeededRandom;
  /** Picks joint or single-server replacement (see `isJointReplaceEnabled`) without touching `rng`. */
  private readonly jointRng: SeededRandom;
  /**
   * Snapshot transfer parameters and the network faults of chunks and their acks: a stream of
   * their own, so that chunking does not shift the draws of the fault schedule and workload.
   */
  private readonly chunkRng: SeededRandom;
  private readonly snapshotTransfer: SnapshotTransferConfig;
  private readonly queue = new EventQueue();
  private nowMs = 0;
  private readonly nodes: SimNode[] = [];
  private readonly byId = new Map<NodeId, SimNode>();
  private readonly conf: ConfState;
  private readonly rates: FaultRates;
  private readonly tally: FaultTally;
  private readonly isTraceEnabled: boolean;
  private readonly trace: string[] = [];
  private readonly traceLinesMax: number;
  /** Directed links that are cut: `${from}>${to}`. */
  private readonly cut = new Set<string>();
  private isHealed = false;
  private events = 0;
  private elections = 0;
  private livenessTicks = -1;
  /** term -> leader id. */
  private readonly leaders = new Map<number, NodeId>();
  /** `${node}@${term}` -> the candidate it granted its vote to. */
  private readonly votes = new Map<string, NodeId>();
  /** (index:term) -> the entry's predecessor term and payload, for log matching. */
  private readonly entryRegistry = new Map<string, { prevTerm: number; data: Uint8Array; type: EntryType }>();
  /** The configuration of the committed log prefix (to shut down removed members). */
  private committedConf: ConfState;
  /** committed[i] = term of the entry committed at index i (index 0 unused). */
  private readonly committed: number[] = [0];
  /**
   * commitTerms[i] = the term in which index i was first seen committed: the committing leader's
   * term (commit information always starts at the leader that counted the quorum).
   */
  private readonly commitTerms: number[] = [0];
  /** applied[i] = the entry applied at index i by the first node to apply it. */
  private readonly applied: Entry[] = [];
  /** digests[i] = the state machine's digest after applying index i, on the first node to do so. */
  private readonly digests: number[] = [0];
  private readonly history: HistoryOperation[] = [];
  private readonly clients: Client[] = [];
  private operationsOk = 0;
  private operationsUnknown = 0;
  private operationsFailed = 0;
  private requestIds = 0;
  /** Per directed link, the send sequence of the last delivered message (to count reorders). */
  private readonly lastDelivered = new Map<string, number>();
  private sendSeq = 0;
  private readonly coreConfig: Omit<CoreConfig, 'id' | 'random'>;
  /** Entries kept after a compaction point; 0 when this seed does not compact. */
  private readonly logEntriesKeep: number;
  private membership: MembershipOperation | null = null;
  /** Next spare node to add. */
  private spareNext: number;

  constructor(private readonly options: SimulationOptions) {
    this.rng = new SeededRandom(options.seed, 0);
    this.jointRng = new SeededRandom(options.seed, 1);
    this.chunkRng = new SeededRandom(options.seed, 2);
    const c = this.chunkRng;
    this.snapshotTransfer = {
      chunkBytes: c.pick([8, 16, 32, 64]),
      chunksInflightMax: c.pick([1, 2, 4]),
      idleTicks: c.pick([3, 5, 10]),
      idleRoundsMax: c.pick([2, 3, 5]),
      midTransferCrashRate: c.chance(0.5) ? 0.05 + c.nextFloat() * 0.25 : 0,
      ...options.snapshotTransfer,
    };
    const count = options.nodeCount ?? 3;
    for (let i = 0; i < count + SPARE_NODES; i++) {
      const node = new SimNode(`n${i + 1}`, i);
      node.isActive = i < count;
      this.nodes.push(node);
      this.byId.set(node.id, node);
    }
    this.spareNext = count;
    // Every node (spares too) boots with the initial configuration, as `RaftNode` does for a joining
    // node: it is no voter there, so it stays passive until the leader reaches it.
    this.conf = {
      voters: this.nodes.filter((n) => n.isActive).map((n) => n.id),
      learners: [],
      votersOutgoing: [],
      learnersNext: [],
    };
    this.committedConf = this.conf;
    const r = this.rng;
    // Each seed draws its own fault mix, so across seeds every combination shows up.
    this.rates = {
      dropRate: r.chance(0.7) ? r.nextFloat() * 0.15 : 0,
      duplicateRate: r.chance(0.6) ? r.nextFloat() * 0.08 : 0,
      longDelayRate: r.chance(0.6) ? r.nextFloat() * 0.1 : 0,
      partitionRate: r.chance(0.7) ? 0.01 + r.nextFloat() * 0.04 : 0,
      crashRate: r.chance(0.7) ? 0.005 + r.nextFloat() * 0.03 : 0,
      stallRate: r.chance(0.6) ? 0.005 + r.nextFloat() * 0.03 : 0,
      fsyncFailureRate: r.chance(0.5) ? 0.005 + r.nextFloat() * 0.02 : 0,
      transferRate: r.chance(0.5) ? 0.005 + r.nextFloat() * 0.02 : 0,
      membershipRate: r.chance(0.7) ? 0.01 + r.nextFloat() * 0.04 : 0,
      ...options.faults,
    };
    this.coreConfig = {
      electionTimeoutTicks: 10,
      heartbeatTicks: r.pick([1, 2, 3]),
      isPreVoteEnabled: r.chance(0.75),
      isCheckQuorumEnabled: r.chance(0.75),
      isProposalForwardingEnabled: false,
      inflightMessagesMax: r.pick([1, 4, 256]),
      inflightBytesMax: r.pick([512, 1 << 20]),
      entryBytesMax: 4096,
      appendBatchBytesMax: r.pick([256, 64 * 1024]),
      uncommittedBytesMax: 64 * 1024,
      leaseTicks: 0,
      applyBatchBytesMax: r.pick([256, 64 * 1024]),
      // From a stream of its own: drawing it from `r` would shift every later draw of the seed.
      isCommitPiggybackEnabled: new SeededRandom(options.seed, 3).chance(0.5),
      ...options.coreConfig,
    };
    this.logEntriesKeep = options.logEntriesKeep ?? (r.chance(0.75) ? r.pick([2, 8, 32]) : 0);
    this.tally = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as FaultTally;
    this.isTraceEnabled = options.isTraceEnabled ?? false;
    this.traceLinesMax = options.traceLinesMax ?? 400;
    for (let i = 0; i < (options.clientCount ?? 3); i++) {
      this.clients.push({ id: i + 1, guess: null, sequence: 0, current: null });
    }
  }

  run(): SimulationResult {
    let violation: string | null = null;
    let inconclusive: string | null = null;
    try {
      this.simulate();
      const result = checkLinearizable(this.history, { stepsMax: 300_000 });
      if (!result.ok) {
        if (result.kind === 'violation')
          throw new SimulationViolation(`history not linearizable: ${result.explanation}`);
        inconclusive = result.explanation;
      }
    } catch (err) {
      if (err instanceof SimulationViolation) violation = err.message;
      else if (err instanceof Error && err.name === 'RaftAssertionError') violation = `core assertion: ${err.message}`;
      else if (err instanceof Error) violation = `unexpected error: ${err.stack ?? err.message}`;
      else throw err;
      this.log(`VIOLATION ${violation}`);
    }
    const committedIndex = this.committed.length - 1;
    return {
      seed: this.options.seed,
      violation,
      inconclusive,
      tally: this.tally,
      history: this.history,
      trace: this.trace,
      coreConfig: this.coreConfig,
      snapshotTransfer: this.snapshotTransfer,
      stats: {
        events: this.events,
        committedIndex,
        operationsOk: this.operationsOk,
        operationsUnknown: this.operationsUnknown,
        operationsFailed: this.operationsFailed,
        elections: this.elections,
        livenessTicks: this.livenessTicks,
      },
    };
  }

  private simulate(): void {
    const safetyMs = this.options.safetyMs ?? 3_000;
    const livenessMs = (this.options.livenessTicksMax ?? 200) * TICK_MS;
    for (const node of this.nodes) if (node.isActive) this.start(node);
    for (const client of this.clients) this.at(this.rng.between(0, 50), () => this.clientNext(client));
    for (let t = FAULT_STEP_MS; t < safetyMs; t += FAULT_STEP_MS) this.at(t, () => this.injectFaults());
    this.at(safetyMs, () => this.heal());
    const endMs = safetyMs + livenessMs;
    let livenessMarker: { index: number; term: number; node: SimNode } | null = null;
    let livenessDoneMs = -1;
    // The liveness probe: once healed, propose a marker on whoever leads, and wait for its commit.
    const probe = (): void => {
      if (livenessDoneMs >= 0) return;
      if (livenessMarker !== null) {
        const { node, index, term } = livenessMarker;
        // The global registry, not the leader's log: the marker may already be compacted away.
        if (this.committed[index] === term) {
          livenessDoneMs = this.nowMs;
          this.livenessTicks = Math.ceil((this.nowMs - safetyMs) / TICK_MS);
          this.log(`liveness: marker ${index}@${term} committed on ${node.id}`);
          return;
        }
        if (node.core === null || node.core.role !== 'leader' || node.core.term !== term) livenessMarker = null;
      }
      if (livenessMarker === null) {
        const leader = this.nodes.find((n) => n.core !== null && n.core.role === 'leader');
        if (leader !== undefined) {
          const data = encodeKvCommand({ op: 'write', key: 'liveness', value: `m${this.nowMs}`, id: -1 });
          const result = leader.core!.propose([data]);
          if (result.code === null) livenessMarker = { index: result.index, term: result.term, node: leader };
          this.afterInput(leader);
        }
      }
      if (this.nowMs + TICK_MS <= endMs) this.at(this.nowMs + TICK_MS, probe);
    };
    this.at(safetyMs + 1, probe);
    while (this.queue.size > 0 && this.queue.peekTime() <= endMs && livenessDoneMs < 0) {
      this.nowMs = this.queue.peekTime();
      const fn = this.queue.pop();
      this.events++;
      fn();
    }
    if (livenessDoneMs < 0) {
      const roles = this.activeNodes().map((n) => {
        const core = n.core;
        if (core === null) return `${n.id}:down`;
        let text = `${n.id}:${core.role}@${core.term} last=${core.log.lastIndex()} commit=${core.log.committed}`;
        if (core.role === 'leader') {
          const progress = [...core.progress]
            .filter(([id]) => id !== n.id)
            .map(
              ([id, pr]) =>
                `${id}{state=${pr.state} match=${pr.match} next=${pr.next} paused=${pr.isPaused()} inflight=${pr.inflights.count}}`,
            );
          text += ` progress ${progress.join(' ')}`;
        }
        return text;
      });
      throw new SimulationViolation(
        `liveness: no new proposal committed within ${livenessMs / TICK_MS} ticks after healing (${roles.join(' ')})`,
      );
    }
    // Operations still open have an unknown outcome.
    for (const client of this.clients) if (client.current !== null) this.finishUnknown(client);
  }

  // ─── Scheduling and tracing ──────────────────────────────────────────────────────────────────

  private at(timeMs: number, fn: () => void): void {
    this.queue.push(timeMs, fn);
  }

  private log(line: string): void {
    if (!this.isTraceEnabled) return;
    this.trace.push(`${String(this.nowMs).padStart(6)}ms ${line}`);
    if (this.trace.length > this.traceLinesMax * 2) this.trace.splice(0, this.trace.length - this.traceLinesMax);
  }

  // ─── Nodes: start, crash, tick ───────────────────────────────────────────────────────────────

  private start(node: SimNode): void {
    const durable = node.durable;
    const lastDurable = lastIndexOf(durable);
    if (node.kv.appliedIndex > lastDurable) {
      throw new SimulationViolation(
        `${node.id} applied index ${node.kv.appliedIndex} beyond its durable log ${lastDurable}: applied an entry that was not durable`,
      );
    }
    node.core = new RaftCore(
      {
        ...this.coreConfig,
        id: node.id,
        random: new SeededRandom(this.options.seed, 1000 + node.index * 97 + node.incarnation),
      },
      {
        hardState: durable.hardState,
        snapshot: durable.snapshot,
        entries: durable.entries.slice(),
        appliedIndex: node.kv.appliedIndex,
        conf: durable.snapshot?.conf ?? this.conf,
      },
    );
    node.commitSeen = node.core.log.committed;
    if (node.commitSeen < durable.hardState.commit) {
      throw new SimulationViolation(
        `${node.id} restarted with commit ${node.commitSeen} below its durable ${durable.hardState.commit}`,
      );
    }
    node.leaderTermSeen = -1;
    const incarnation = node.incarnation;
    const phase = this.rng.between(0, TICK_MS - 1);
    const tick = (): void => {
      if (node.incarnation !== incarnation) return;
      node.core!.tick();
      this.afterInput(node);
      if (node.core !== null && node.outgoing.size > 0) this.checkTransferTimeouts(node);
      if (node.core !== null) this.maybeCompact(node);
      this.at(this.nowMs + TICK_MS, tick);
    };
    this.at(this.nowMs + phase + 1, tick);
    this.log(
      `${node.id} start term=${durable.hardState.term} vote=${durable.hardState.vote} last=${lastDurable} applied=${node.kv.appliedIndex}`,
    );
  }

  private crash(node: SimNode, reason: string): void {
    if (node.core === null) return;
    this.tally['node-crashed']++;
    const isLosingWrites = node.queued.some(hasWrite) || (node.syncing !== null && node.syncing.some(hasWrite));
    if (isLosingWrites) this.tally['unsynced-writes-lost']++;
    this.log(`${node.id} CRASH (${reason})${isLosingWrites ? ', unsynced writes lost' : ''}`);
    this.stop(node);
  }

  /** Stops a removed member for good (no restart is pending once its incarnation moved on). */
  private shutDown(node: SimNode): void {
    if (node.core === null) node.incarnation++;
    else this.stop(node);
  }

  private stop(node: SimNode): void {
    node.core = null;
    node.incarnation++;
    node.queued = [];
    node.syncing = null;
    node.stalledUntilMs = 0;
    node.isSyncFailing = false;
    node.proposals.clear();
    node.reads.clear();
    node.readsReady = [];
    if (node.outgoing.size > 0) {
      // A crashed sender abandons its transfers; the next leader starts over.
      this.tally['snapshot-transfer-abandoned'] += node.outgoing.size;
      node.outgoing.clear();
    }
    // A partial incoming transfer is lost: the next chunk's ack asks the sender to start over.
    if (node.incoming !== null) {
      this.log(
        `${node.id} loses its partial snapshot at ${node.incoming.meta.index} from ${node.incoming.from} (${node.incoming.chunks.length} chunk(s))`,
      );
      node.incoming = null;
    }
  }

  private restartLater(node: SimNode, downMs: number): void {
    const incarnation = node.incarnation;
    this.at(this.nowMs + downMs, () => {
      if (node.incarnation === incarnation && node.core === null) this.start(node);
    });
  }

  // ─── The driver: Ready handling ──────────────────────────────────────────────────────────────

  /** After any input to a node's core: drain its Readies and check invariants. */
  private afterInput(node: SimNode): void {
    const core = node.core;
    if (core === null) return;
    // Not re-entrant: a sync completing inside the loop below calls back here, and the loop picks
    // up whatever that produced (so committed entries are applied in order).
    if (node.isDraining) return;
    node.isDraining = true;
    try {
      this.drain(node, core);
    } finally {
      node.isDraining = false;
    }
    if (node.core === core) {
      if (node.outgoing.size > 0) this.closeUnneededTransfers(node, core);
      this.checkNode(node);
    }
  }

  private drain(node: SimNode, core: RaftCore): void {
    let guard = 0;
    while (core.hasReady()) {
      if (++guard > 10_000) throw new SimulationViolation(`${node.id}: hasReady() never became false`);
      const rd = core.ready();
      this.checkNewEntries(node, rd);
      for (const m of rd.messages) this.send(m);
      if (this.options.driverBug === 'ack-before-fsync') for (const m of rd.messagesAfterPersist) this.send(m);
      const isWriteNeeded = rd.entries.length > 0 || rd.hardState !== null;
      // A Ready with nothing to write still waits behind earlier writes, to keep `persisted` in order.
      const isBehindWrites = node.queued.length > 0 || node.syncing !== null;
      if (isWriteNeeded || rd.messagesAfterPersist.length > 0 || isBehindWrites) {
        node.queued.push({ rd });
        this.maybeStartSync(node);
      } else {
        core.persisted(rd);
      }
      this.apply(node, rd);
      this.serveReads(node, rd);
      this.handleSnapshots(node, rd);
      if (node.core !== core) return;
    }
  }

  private maybeStartSync(node: SimNode): void {
    if (node.syncing !== null || node.queued.length === 0 || node.core === null) return;
    if (!node.queued.some(hasWrite) && node.queued.length > 0) {
      // Nothing to write: only messages waiting for earlier writes, which are all durable now.
      const batch = node.queued;
      node.queued = [];
      this.completeWrites(node, batch);
      return;
    }
    const batch = node.queued;
    node.queued = [];
    node.syncing = batch;
    const incarnation = node.incarnation;
    const delayMs = this.rng.between(SYNC_MS_MIN, SYNC_MS_MAX);
    const finish = (): void => {
      if (node.incarnation !== incarnation) return;
      if (this.nowMs < node.stalledUntilMs) {
        this.at(node.stalledUntilMs, finish);
        return;
      }
      if (node.isSyncFailing) {
        // fsync failed: what it covered may or may not be on disk. The node must not acknowledge
        // anything; it crashes, and on restart finds only what earlier syncs made durable.
        this.tally['fsync-failed']++;
        this.crash(node, 'fsync failed');
        this.restartLater(node, this.rng.between(20, 200));
        return;
      }
      node.syncing = null;
      for (const write of batch) {
        writeDurable(node.durable, write.rd);
        // A durable vote is a promise: the node must never vote otherwise in that term.
        if (write.rd.hardState !== null) this.checkVote(node, write.rd.hardState);
      }
      this.log(
        `${node.id} synced ${batch.length} write(s), durable last=${lastIndexOf(node.durable)} term=${node.durable.hardState.term}`,
      );
      this.completeWrites(node, batch);
      this.maybeStartSync(node);
    };
    this.at(this.nowMs + delayMs, finish);
  }

  private completeWrites(node: SimNode, batch: readonly PendingWrite[]): void {
    const core = node.core!;
    for (const write of batch) {
      core.persisted(write.rd);
      if (this.options.driverBug === 'ack-before-fsync') continue; // already sent (the bug)
      for (const m of write.rd.messagesAfterPersist) this.send(m);
    }
    this.afterInput(node);
  }

  private apply(node: SimNode, rd: Ready): void {
    const entries = rd.committedEntries;
    if (entries.length === 0) return;
    const core = node.core!;
    for (const entry of entries) {
      // State machine safety: every node applies the same entry at an index.
      const first = this.applied[entry.index];
      if (first === undefined) this.applied[entry.index] = entry;
      else if (first.term !== entry.term || !sameBytes(first.data, entry.data)) {
        throw new SimulationViolation(
          `state machine safety: ${node.id} applies ${entry.index}@${entry.term} but ${entry.index}@${first.term} was applied elsewhere`,
        );
      }
      if (entry.index > lastIndexOf(node.durable)) {
        throw new SimulationViolation(
          `${node.id} was handed entry ${entry.index} to apply before it was durable locally`,
        );
      }
      const result = node.kv.apply(entry);
      this.checkDigest(node, entry.index, 'after applying');
      const pending = node.proposals.get(entry.index);
      if (pending !== undefined) {
        node.proposals.delete(entry.index);
        if (pending.term === entry.term) this.finishOk(pending.operation, result);
        else this.finishFailed(pending.operation, 'overwritten by another leader');
      }
    }
    core.appliedTo(entries[entries.length - 1].index);
  }

  private serveReads(node: SimNode, rd: Ready): void {
    for (const state of rd.readStates) {
      const operation = node.reads.get(state.requestId);
      if (operation === undefined) continue;
      node.reads.delete(state.requestId);
      node.readsReady.push({ index: state.index, operation });
    }
    for (const id of rd.droppedReads) {
      const operation = node.reads.get(id);
      if (operation === undefined) continue;
      node.reads.delete(id);
      this.finishFailed(operation, 'read dropped');
    }
    if (node.readsReady.length > 0) {
      const applied = node.kv.appliedIndex;
      node.readsReady = node.readsReady.filter(({ index, operation }) => {
        if (applied < index) return true;
        const value = node.kv.values.get(operation.command.key) ?? null;
        this.finishOk(operation, { id: operation.command.id, value });
        return false;
      });
    }
  }

  // ─── Compaction and snapshots ────────────────────────────────────────────────────────────────

  /** Compacts applied, durable entries past the keep threshold (durably at once, as a record). */
  private maybeCompact(node: SimNode): void {
    const keep = this.logEntriesKeep;
    const core = node.core!;
    if (keep === 0) return;
    const upTo = Math.min(node.kv.appliedIndex, core.log.stableIndex);
    if (upTo - (core.log.firstIndex() - 1) <= 2 * keep) return;
    const index = upTo - keep;
    const meta = core.compact(index);
    const image = node.durable;
    image.entries = image.entries.slice(index - offsetOf(image));
    image.snapshot = meta;
    this.tally['log-compacted']++;
    this.log(`${node.id} compacted to ${index}@${meta.term}`);
  }

  private handleSnapshots(node: SimNode, rd: Ready): void {
    for (const to of rd.snapshotsToSend) this.startTransfer(node, to);
    for (const m of rd.snapshotAcks) this.onSnapshotAck(node, m);
    for (const m of rd.snapshotChunks) this.onSnapshotChunk(node, m);
  }

  /**
   * Leader: starts streaming a snapshot of the applied state to `to`. The image is taken now and
   * cut into chunks; each chunk crosses the faulty network on its own (lost, duplicated, delayed,
   * reordered, cut by partitions), at most `chunksInflightMax` unacknowledged at a time.
   */
  private startTransfer(node: SimNode, to: NodeId): void {
    const core = node.core!;
    const previous = node.outgoing.get(to);
    if (previous !== undefined) this.log(`${node.id} replaces its transfer to ${to} at ${previous.meta.index}`);
    const meta = core.snapshotMetaAt(node.kv.appliedIndex);
    const image = this.options.driverBug === 'empty-snapshot' ? new KvStore().serialize() : node.kv.serialize();
    const chunkBytes = this.snapshotTransfer.chunkBytes;
    const chunks: Uint8Array[] = [];
    for (let at = 0; at < image.length || chunks.length === 0; at += chunkBytes) {
      chunks.push(image.slice(at, at + chunkBytes));
    }
    const out: OutgoingTransfer = {
      to,
      term: core.term,
      meta,
      chunks,
      nextSeq: 0,
      ackedSeq: -1,
      sentSeqEnd: 0,
      receiverEpoch: -1,
      lastProgressMs: this.nowMs,
      idleRounds: 0,
    };
    node.outgoing.set(to, out);
    this.tally['snapshot-sent']++;
    this.log(`${node.id} sends ${to} a snapshot at ${meta.index}@${meta.term} in ${chunks.length} chunk(s)`);
    this.pumpTransfer(node, out);
  }

  /** Sends chunks until the window is full or the last chunk is out. */
  private pumpTransfer(node: SimNode, out: OutgoingTransfer): void {
    const core = node.core!;
    const window = this.snapshotTransfer.chunksInflightMax;
    while (out.nextSeq < out.chunks.length && out.nextSeq - out.ackedSeq - 1 < window) {
      const seq = out.nextSeq++;
      this.tally['snapshot-chunk-sent']++;
      if (seq < out.sentSeqEnd) this.tally['snapshot-chunk-resent']++;
      else out.sentSeqEnd = seq + 1;
      this.send(
        {
          type: MessageType.Snap,
          from: node.id,
          to: out.to,
          term: out.term,
          logTerm: out.meta.term,
          index: out.meta.index,
          entries: [],
          commit: 0,
          reject: false,
          rejectHint: 0,
          context: seq,
          snapshot: { meta: out.meta, seq, data: out.chunks[seq], isLast: seq === out.chunks.length - 1 },
        },
        this.chunkRng,
      );
      if (node.core !== core) return;
    }
  }

  /** Leader: a follower acknowledged chunk `m.context` (and every one before it), or asked to start over. */
  private onSnapshotAck(node: SimNode, m: Message): void {
    const out = node.outgoing.get(m.from);
    if (out === undefined || out.meta.index !== m.index) return;
    if (m.reject && (out.ackedSeq < 0 || m.commit <= out.receiverEpoch)) {
      // Chunk 0 did not arrive yet (the idle period resends from chunk 0 once, rather than once per
      // chunk in flight), or the request predates an acknowledgement of this transfer: stale.
      return;
    }
    if (!m.reject && m.commit > out.receiverEpoch) out.receiverEpoch = m.commit;
    out.lastProgressMs = this.nowMs;
    out.idleRounds = 0;
    if (m.reject) {
      // The follower lost what it acknowledged (it restarted, or a newer transfer replaced it).
      this.tally['snapshot-transfer-restarted']++;
      this.log(`${node.id} restarts its transfer to ${m.from} from chunk 0 (asked at ${m.context})`);
      out.nextSeq = 0;
      out.ackedSeq = -1;
      this.pumpTransfer(node, out);
      return;
    }
    if (m.context > out.ackedSeq) out.ackedSeq = Math.min(m.context, out.chunks.length - 1);
    if (out.nextSeq <= out.ackedSeq) out.nextSeq = out.ackedSeq + 1;
    if (out.ackedSeq === out.chunks.length - 1) {
      // The last chunk is acknowledged only once installed: probe the follower from there on.
      node.outgoing.delete(m.from);
      this.log(`${node.id}: ${m.from} installed the snapshot at ${out.meta.index}`);
      node.core!.reportSnapshot(m.from, true);
      return;
    }
    this.pumpTransfer(node, out);
  }

  /** Leader, on each tick: resume a stalled transfer from the last acknowledged chunk, or give it up. */
  private checkTransferTimeouts(node: SimNode): void {
    const core = node.core!;
    const { idleTicks, idleRoundsMax } = this.snapshotTransfer;
    for (const out of [...node.outgoing.values()]) {
      if (this.nowMs - out.lastProgressMs < idleTicks * TICK_MS) continue;
      out.lastProgressMs = this.nowMs;
      out.idleRounds++;
      if (out.idleRounds >= idleRoundsMax) {
        node.outgoing.delete(out.to);
        this.tally['snapshot-transfer-abandoned']++;
        this.log(`${node.id} abandons its stalled transfer to ${out.to} at ${out.meta.index}`);
        core.reportSnapshot(out.to, false);
        this.afterInput(node);
        if (node.core !== core) return;
        continue;
      }
      // Idle, not failed: resume after the last chunk the follower acknowledged.
      if (out.ackedSeq >= 0) this.tally['snapshot-transfer-resumed']++;
      this.log(`${node.id} resumes its transfer to ${out.to} from chunk ${out.ackedSeq + 1}`);
      out.nextSeq = out.ackedSeq + 1;
      this.pumpTransfer(node, out);
      if (node.core !== core) return;
    }
  }

  /** Leader: transfers end with the leadership, and when the follower no longer needs them. */
  private closeUnneededTransfers(node: SimNode, core: RaftCore): void {
    for (const out of [...node.outgoing.values()]) {
      if (core.role !== 'leader' || core.term !== out.term) {
        node.outgoing.delete(out.to);
        this.tally['snapshot-transfer-abandoned']++;
        this.log(`${node.id} abandons its transfer to ${out.to}: no longer leader of term ${out.term}`);
      } else if (core.progress.get(out.to)?.state !== ProgressState.Snapshot) {
        // It caught up otherwise (or the core gave up on it): nothing to report.
        node.outgoing.delete(out.to);
        this.log(`${node.id} closes its transfer to ${out.to}: no longer needed`);
      }
    }
  }

  /**
   * Follower: one chunk. Chunks are taken in order only; a duplicate or a chunk past a gap is
   * answered with the highest chunk held (the sender resumes after it once idle). The last chunk
   * installs the snapshot and only then is acknowledged.
   */
  private onSnapshotChunk(node: SimNode, m: Message): void {
    const core = node.core!;
    const chunk = m.snapshot!;
    const meta = chunk.meta;
    let inc = node.incoming;
    if (inc !== null && (inc.from !== m.from || inc.meta.index !== meta.index || inc.meta.term !== meta.term)) {
      // Another transfer: a newer one (later term, or the same leader's later snapshot) replaces
      // the partial one; a chunk of an older one (delayed in the network) is ignored.
      const isNewer = m.term > inc.term || (m.term === inc.term && meta.index > inc.meta.index);
      if (!isNewer) return;
      this.log(
        `${node.id} drops its partial snapshot at ${inc.meta.index} from ${inc.from} for ${meta.index} from ${m.from}`,
      );
      node.incoming = inc = null;
    }
    if (inc === null) {
      if (chunk.seq !== 0) {
        // We lost this transfer (a restart, or it was replaced): ask the sender to start over.
        this.sendSnapshotAck(node, m.from, meta.index, chunk.seq, true, node.transferEpochNext);
        return;
      }
      inc = { from: m.from, term: m.term, meta, chunks: [], epoch: node.transferEpochNext++ };
      node.incoming = inc;
    }
    if (m.term > inc.term) inc.term = m.term;
    const expectedSeq = inc.chunks.length;
    const isGapAccepted = this.options.driverBug === 'snapshot-chunk-gap' && chunk.seq > expectedSeq;
    if (chunk.seq !== expectedSeq && !isGapAccepted) {
      if (expectedSeq > 0) this.sendSnapshotAck(node, m.from, meta.index, expectedSeq - 1, false, inc.epoch);
      return;
    }
    if (!chunk.isLast) {
      inc.chunks.push(chunk.data);
      this.sendSnapshotAck(node, m.from, meta.index, chunk.seq, false, inc.epoch);
      return;
    }
    // Installing is ordered after earlier writes; while some are in flight, the last chunk is not
    // taken (the sender resends it after an idle period).
    if (node.queued.length > 0 || node.syncing !== null) return;
    node.incoming = null;
    if (core.isSnapshotUseful(meta)) {
      const data = concatBytes([...inc.chunks, chunk.data]);
      const isKeepingEntries = core.log.matchTerm(meta.index, meta.term);
      const image = node.durable;
      image.entries = isKeepingEntries ? image.entries.filter((e) => e.index > meta.index) : [];
      image.snapshot = meta;
      try {
        node.kv.restore(data, meta);
      } catch (err) {
        throw new SimulationViolation(
          `${node.id} installs a corrupt snapshot at ${meta.index}@${meta.term} from ${m.from} (${data.length} bytes): ${err instanceof Error ? err.message : String(err)}`,
        );
      }
      this.checkDigest(node, meta.index, 'after installing a snapshot at');
      core.installSnapshot(meta, isKeepingEntries, m.from);
      this.tally['snapshot-installed']++;
      this.log(`${node.id} installed a snapshot at ${meta.index}@${meta.term} from ${m.from}`);
    } else {
      // Applied past it meanwhile: acknowledge anyway, so the sender stops and probes.
      this.log(`${node.id} drops the snapshot at ${meta.index} from ${m.from}: no longer useful`);
    }
    this.sendSnapshotAck(node, m.from, meta.index, chunk.seq, false, inc.epoch);
  }

  /** Acknowledges chunk `seq` and every one before it of transfer `epoch`, or (`isRestart`) asks to start over. */
  private sendSnapshotAck(
    node: SimNode,
    to: NodeId,
    index: number,
    seq: number,
    isRestart: boolean,
    epoch: number,
  ): void {
    this.send(
      {
        type: MessageType.SnapResp,
        from: node.id,
        to,
        term: node.core!.term,
        logTerm: 0,
        index,
        entries: [],
        commit: epoch,
        reject: isRestart,
        rejectHint: 0,
        context: seq,
      },
      this.chunkRng,
    );
  }

  // ─── Invariants ──────────────────────────────────────────────────────────────────────────────

  private checkNewEntries(node: SimNode, rd: Ready): void {
    const core = node.core!;
    for (let i = 0; i < rd.entries.length; i++) {
      const e = rd.entries[i];
      const prevTerm = i === 0 ? core.log.term(e.index - 1) : rd.entries[i - 1].term;
      const key = `${e.index}:${e.term}`;
      const known = this.entryRegistry.get(key);
      if (e.type === EntryType.ConfChange) this.checkConfChange(node, e);
      if (known === undefined) this.entryRegistry.set(key, { prevTerm, data: e.data, type: e.type });
      else if (known.prevTerm !== prevTerm || !sameBytes(known.data, e.data)) {
        // Log matching: an (index, term) pair identifies one entry and, inductively, the whole prefix.
        throw new SimulationViolation(
          `log matching: ${node.id} has ${key} after term ${prevTerm}, but another log has ${key} after term ${known.prevTerm}${sameBytes(known.data, e.data) ? '' : ' with a different payload'}`,
        );
      }
    }
  }

  /** Replicas agree on the whole state machine state at every index (not only on the entries). */
  private checkDigest(node: SimNode, index: number, what: string): void {
    const known = this.digests[index];
    if (known === undefined) {
      this.digests[index] = node.kv.digest;
    } else if (known !== node.kv.digest) {
      throw new SimulationViolation(
        `state machine safety: ${node.id}'s state ${what} ${index} differs from another replica's`,
      );
    }
  }

  private checkVote(node: SimNode, hardState: HardState): void {
    if (hardState.vote === null) return;
    const key = `${node.id}@${hardState.term}`;
    const previous = this.votes.get(key);
    if (previous === undefined) this.votes.set(key, hardState.vote);
    else if (previous !== hardState.vote) {
      throw new SimulationViolation(
        `${node.id} voted twice in term ${hardState.term}: for ${previous} and for ${hardState.vote}`,
      );
    }
  }

  private checkNode(node: SimNode): void {
    const core = node.core!;
    if (core.role === 'leader') {
      const leader = this.leaders.get(core.term);
      if (leader === undefined) {
        this.leaders.set(core.term, node.id);
        this.elections++;
        this.log(`${node.id} LEADER term=${core.term} last=${core.log.lastIndex()}`);
        // A leader's term must be durable on itself before it acts in it: else a crash restarts it
        // in the previous term, free to win this term again with another log (seed 15305).
        if (node.durable.hardState.term < core.term) {
          throw new SimulationViolation(
            `${node.id} leads term ${core.term} while its durable term is ${node.durable.hardState.term}`,
          );
        }
        this.checkElectionQuorum(node);
        // Leader completeness (Raft §5.4): the leader of term T holds every entry committed in a
        // term below T. (A stale leader of a lower term may exist after a later commit: it is
        // harmless, no node of the higher term accepts its messages.)
        for (let i = core.log.firstIndex(); i < this.committed.length; i++) {
          if (this.commitTerms[i] >= core.term) continue;
          if (core.log.term(i) !== this.committed[i]) {
            throw new SimulationViolation(
              `leader completeness: ${node.id} leads term ${core.term} without committed entry ${i}@${this.committed[i]} (has term ${core.log.term(i)})`,
            );
          }
        }
      } else if (leader !== node.id) {
        throw new SimulationViolation(`two leaders in term ${core.term}: ${leader} and ${node.id}`);
      }
    }
    const commit = core.log.committed;
    if (commit < node.commitSeen) {
      throw new SimulationViolation(`${node.id} commit index went back from ${node.commitSeen} to ${commit}`);
    }
    if (commit > node.commitSeen) {
      for (let i = node.commitSeen + 1; i <= commit; i++) {
        const term = core.log.term(i);
        // Inside an installed snapshot: committed elsewhere first (a snapshot holds only applied state).
        if (term < 0 && i < this.committed.length) continue;
        if (i < this.committed.length) {
          if (this.committed[i] !== term) {
            throw new SimulationViolation(
              `${node.id} commits ${i}@${term} but ${i}@${this.committed[i]} was committed before`,
            );
          }
        } else {
          if (i !== this.committed.length) throw new SimulationViolation(`commit gap at ${i}`);
          // A newly committed entry must be durable on a majority of the leader's configuration
          // (of both halves while joint): the acks it counted promise it.
          const conf = core.conf();
          const isChecked = !(this.options.disabledChecks ?? []).includes('commit-durability');
          for (const voters of conf.votersOutgoing.length > 0 ? [conf.voters, conf.votersOutgoing] : [conf.voters]) {
            let durableCopies = 0;
            for (const id of voters) if (isHeld(this.byId.get(id)!.durable, i, term)) durableCopies++;
            if (isChecked && durableCopies < Math.floor(voters.length / 2) + 1) {
              throw new SimulationViolation(
                `${node.id} commits ${i}@${term} but only ${durableCopies} node(s) hold it durably (voters ${voters.join(',')})`,
              );
            }
          }
          this.committed.push(term);
          this.commitTerms.push(core.term);
          const entry = this.entryRegistry.get(`${i}:${term}`);
          if (entry?.type === EntryType.ConfChange) this.onConfCommitted(entry.data);
        }
      }
      node.commitSeen = commit;
    }
  }

  /**
   * Every configuration change appended to any log must be one the core's rules allow, and keep
   * the quorum overlap property: any quorum of the configuration before it intersects any quorum of
   * the one after (a single-server change, or entering/leaving a joint configuration). Since a
   * configuration takes effect when appended, this is what keeps two configurations from both
   * forming a majority in one term.
   */
  private checkConfChange(node: SimNode, e: Entry): void {
    const before = node.core!.confAt(e.index - 1);
    const request = decodeConfChange(e.data);
    if (request === null) throw new SimulationViolation(`${node.id} appends a malformed conf change at ${e.index}`);
    const after = applyConfChange(before, request);
    if (typeof after === 'string') {
      throw new SimulationViolation(`${node.id} appends an invalid conf change at ${e.index}: ${after}`);
    }
    if (!quorumsIntersect(before, after)) {
      throw new SimulationViolation(
        `conf change at ${e.index}@${e.term} on ${node.id}: quorums of ${describeConf(before)} and ${describeConf(after)} may be disjoint`,
      );
    }
  }

  /**
   * A new leader holds durable votes of a quorum of its own configuration (a majority of each half
   * while joint). With the overlap check on every configuration change, this is what makes two
   * configurations unable to both elect a leader in one term: two winning quorums would need a node
   * that voted twice in the term, which the one-vote check forbids.
   */
  private checkElectionQuorum(node: SimNode): void {
    if ((this.options.disabledChecks ?? []).includes('election-quorum')) return;
    const core = node.core!;
    const conf = core.conf();
    for (const voters of conf.votersOutgoing.length > 0 ? [conf.voters, conf.votersOutgoing] : [conf.voters]) {
      // The candidate's own vote counts only once durable too: a leader that loses its term in a
      // crash can win the same term again with another log (seed 15305, before the core waited).
      const granted = voters.filter((id) => this.votes.get(`${id}@${core.term}`) === node.id);
      if (granted.length < Math.floor(voters.length / 2) + 1) {
        throw new SimulationViolation(
          `${node.id} leads term ${core.term} with durable votes of ${granted.join(',') || 'nobody'} only, not a majority of ${describeConf(conf)}`,
        );
      }
    }
  }

  /** A conf change committed: members it removed for good are shut down (as an operator would). */
  private onConfCommitted(data: Uint8Array): void {
    const next = applyConfChange(this.committedConf, decodeConfChange(data)!);
    if (typeof next === 'string') throw new SimulationViolation(`committed conf change is invalid: ${next}`);
    this.committedConf = next;
    this.log(`committed conf ${describeConf(next)}`);
    const members = new Set([...next.voters, ...next.votersOutgoing, ...next.learners, ...next.learnersNext]);
    for (const node of this.nodes) {
      if (!node.isActive || node.isRetired || members.has(node.id)) continue;
      node.isRetired = true;
      // A little later, so that a removed leader can still pass on the commit before it goes.
      this.at(this.nowMs + this.rng.between(20, 200), () => {
        this.log(`${node.id} shut down (removed from the group)`);
        this.shutDown(node);
      });
    }
  }

  /** Nodes that are part of the run now: initial or added, not shut down after removal. */
  private activeNodes(): SimNode[] {
    return this.nodes.filter((n) => n.isActive && !n.isRetired);
  }

  /** Starts, or drives one step of, a random membership change on the current leader. */
  private stepMembership(leader: SimNode | undefined): void {
    const r = this.rng;
    if (this.membership === null) {
      if (!r.chance(this.rates.membershipRate) || leader === undefined) return;
      const conf = leader.core!.conf();
      const voters = conf.voters;
      const isSpareLeft = this.spareNext < this.nodes.length;
      const kinds: MembershipOperation['kind'][] = [];
      if (isSpareLeft && voters.length < VOTERS_MAX) kinds.push('add');
      if (voters.length > VOTERS_MIN) kinds.push('remove');
      if (isSpareLeft) kinds.push('replace');
      if (kinds.length === 0 || conf.votersOutgoing.length > 0) return;
      const kind = r.pick(kinds);
      // The leader itself in a third of removals, to exercise a leader stepping down after its removal.
      const removed = kind === 'add' ? null : r.chance(0.35) ? leader.id : r.pick(voters);
      let added: NodeId | null = null;
      if (kind !== 'remove') {
        const node = this.nodes[this.spareNext++];
        node.isActive = true;
        this.start(node);
        added = node.id;
      }
      const isJoint = kind === 'replace' && (this.options.isJointReplaceEnabled ?? this.jointRng.chance(0.5));
      this.membership = { kind, added, removed, isLeaderRemoved: false, isJoint, isJointProposed: false };
      this.log(
        `membership: ${kind}${added === null ? '' : ` +${added}`}${removed === null ? '' : ` -${removed}`}${isJoint ? ' (joint)' : ''}`,
      );
    }
    const op = this.membership;
    if (leader === undefined) return;
    const core = leader.core!;
    const conf = core.conf();
    // One change at a time: wait until the last one (and the leave of a joint configuration) committed.
    if (core.lastConfIndex() > core.log.committed || conf.votersOutgoing.length > 0) return;
    const isMember = (id: NodeId): boolean => conf.voters.includes(id) || conf.learners.includes(id);
    let changes: ConfChangeItem[];
    if (op.added !== null && !isMember(op.added)) changes = [{ type: 'add-learner', id: op.added }];
    else if (op.added !== null && conf.learners.includes(op.added)) {
      // Promote only a learner that caught up with the commit index (as `RaftNode` waits for).
      const progress = core.progress.get(op.added);
      if (progress === undefined || progress.match < core.log.committed) return;
      changes = [{ type: 'add-voter', id: op.added }];
      if (op.isJoint && op.removed !== null && conf.voters.includes(op.removed)) {
        changes.push({ type: 'remove', id: op.removed });
      }
    } else if (op.removed !== null && isMember(op.removed)) changes = [{ type: 'remove', id: op.removed }];
    else {
      this.tally[op.kind === 'add' ? 'member-added' : op.kind === 'remove' ? 'member-removed' : 'member-replaced']++;
      if (op.isLeaderRemoved) this.tally['leader-removed']++;
      if (op.isJointProposed) this.tally['member-replaced-joint']++;
      this.log(`membership: ${op.kind} done, conf ${describeConf(conf)}`);
      this.membership = null;
      return;
    }
    const result = core.proposeConfChange({ changes });
    const text = changes.map((c) => `${c.type} ${c.id}`).join(', ');
    if (result.code !== null) this.tally['conf-change-refused']++;
    else {
      if (changes.some((c) => c.type === 'remove' && c.id === leader.id)) op.isLeaderRemoved = true;
      if (changes.length > 1) op.isJointProposed = true;
    }
    this.log(`${leader.id} proposes ${text}: ${result.code ?? `accepted at ${result.index}`}`);
    this.afterInput(leader);
  }

  // ─── Network ─────────────────────────────────────────────────────────────────────────────────

  /** Sends `m` over the faulty network, drawing its faults from `r` (chunks use their own stream). */
  private send(m: Message, r: SeededRandom = this.rng): void {
    const link = `${m.from}>${m.to}`;
    if (!this.isHealed && r.chance(this.rates.dropRate)) {
      this.tally['message-dropped']++;
      if (m.type === MessageType.Snap) {
        this.tally['snapshot-chunk-lost']++;
        if (this.isTraceEnabled) this.log(`${m.from}->${m.to} lost ${describeMessage(m)}`);
      }
      return;
    }
    const copies = !this.isHealed && r.chance(this.rates.duplicateRate) ? 2 : 1;
    if (copies === 2) this.tally['message-duplicated']++;
    const seq = this.sendSeq++;
    for (let c = 0; c < copies; c++) {
      let delayMs = r.between(LATENCY_MS_MIN, LATENCY_MS_MAX);
      if (!this.isHealed && r.chance(this.rates.longDelayRate)) {
        this.tally['message-delayed']++;
        delayMs += r.between(1, LONG_DELAY_MS_MAX);
      }
      this.at(this.nowMs + delayMs, () => this.deliver(m, link, seq));
    }
  }

  private deliver(m: Message, link: string, seq: number): void {
    if (this.cut.has(link)) {
      this.tally['message-dropped']++;
      if (m.type === MessageType.Snap) {
        this.tally['snapshot-chunk-lost']++;
        if (this.isTraceEnabled) this.log(`${m.from}->${m.to} lost (partition) ${describeMessage(m)}`);
      }
      return;
    }
    const node = this.byId.get(m.to);
    if (node === undefined || node.core === null) return;
    const last = this.lastDelivered.get(link) ?? -1;
    if (seq < last) this.tally['message-reordered']++;
    else this.lastDelivered.set(link, seq);
    if (this.isTraceEnabled) this.log(`${m.from}->${m.to} ${describeMessage(m)}`);
    node.core.step(m);
    this.afterInput(node);
  }

  // ─── Faults ──────────────────────────────────────────────────────────────────────────────────

  private injectFaults(): void {
    const r = this.rng;
    const rates = this.rates;
    const nodes = this.activeNodes();
    if (r.chance(rates.partitionRate)) this.partition();
    if (r.chance(rates.crashRate)) {
      const node = r.pick(nodes);
      if (node.core !== null) {
        this.crash(node, 'injected');
        this.restartLater(node, r.between(20, 400));
      }
    }
    if (r.chance(rates.stallRate)) {
      const node = r.pick(nodes);
      if (node.core !== null) {
        this.tally['disk-stalled']++;
        node.stalledUntilMs = this.nowMs + r.between(10, 300);
        this.log(`${node.id} disk stalls until ${node.stalledUntilMs}ms`);
      }
    }
    if (r.chance(rates.fsyncFailureRate)) {
      const node = r.pick(nodes);
      if (node.core !== null) {
        node.isSyncFailing = true;
        this.log(`${node.id} next fsync will fail`);
      }
    }
    if (r.chance(rates.transferRate)) {
      const leader = nodes.find((n) => n.core !== null && n.core.role === 'leader');
      if (leader !== undefined) {
        const to = r.pick(nodes.filter((n) => n !== leader)).id;
        const result = leader.core!.transferLeadership(to);
        if (result.code === null) this.tally['leadership-transfer']++;
        this.log(`${leader.id} transfer leadership to ${to}: ${result.code ?? 'accepted'}`);
        this.afterInput(leader);
      }
    }
    this.stepMembership(nodes.find((n) => n.core !== null && n.core.role === 'leader'));
    this.crashMidTransfer();
  }

  /** Crashes a node in the middle of a snapshot transfer (draws from the chunk stream only). */
  private crashMidTransfer(): void {
    const c = this.chunkRng;
    const rate = this.snapshotTransfer.midTransferCrashRate;
    if (rate === 0) return;
    const busy = this.activeNodes().filter((n) => n.core !== null && (n.incoming !== null || n.outgoing.size > 0));
    if (busy.length === 0 || !c.chance(rate)) return;
    const node = c.pick(busy);
    this.tally['crash-mid-transfer']++;
    this.crash(node, node.incoming !== null ? 'mid-transfer, receiving' : 'mid-transfer, sending');
    this.restartLater(node, c.between(20, 200));
  }

  private partition(): void {
    const r = this.rng;
    const ids = this.activeNodes().map((n) => n.id);
    const isolated = r.pick(ids);
    const durationMs = r.between(50, 600);
    const links: string[] = [];
    if (r.chance(0.5)) {
      this.tally['partition-symmetric']++;
      for (const other of ids) if (other !== isolated) links.push(`${isolated}>${other}`, `${other}>${isolated}`);
      this.log(`partition ${isolated} | ${ids.filter((i) => i !== isolated).join(' ')} for ${durationMs}ms`);
    } else {
      this.tally['partition-asymmetric']++;
      const other = r.pick(ids.filter((i) => i !== isolated));
      const isOutbound = r.chance(0.5);
      links.push(isOutbound ? `${isolated}>${other}` : `${other}>${isolated}`);
      this.log(`partition one-way ${links[0]} for ${durationMs}ms`);
    }
    for (const link of links) this.cut.add(link);
    this.at(this.nowMs + durationMs, () => {
      for (const link of links) this.cut.delete(link);
    });
  }

  private heal(): void {
    this.isHealed = true;
    this.cut.clear();
    this.log('HEAL: partitions removed, no more drops, stalls or fsync failures; down nodes restart');
    // A membership change still under way is abandoned (a learner may stay a learner).
    this.membership = null;
    for (const node of this.activeNodes()) {
      node.stalledUntilMs = 0;
      node.isSyncFailing = false;
      if (node.core === null) {
        node.incarnation++;
        this.start(node);
      }
    }
  }

  // ─── Clients ─────────────────────────────────────────────────────────────────────────────────

  private clientNext(client: Client): void {
    if (client.current !== null) return;
    const r = this.rng;
    const key = r.pick(KEYS);
    const id = client.id * 1_000_000 + ++client.sequence;
    const kind = r.nextInt(4);
    const command: KvCommand =
      kind < 2 ? { op: 'write', key, value: `c${client.id}.${client.sequence}`, id } : { op: 'read', key, id };
    const isReadIndex = kind === 3;
    const operation: ClientOperation = { client: client.id, command, call: this.nowMs, isDone: false };
    client.current = operation;
    const target = client.guess !== null && r.chance(0.9) ? this.byId.get(client.guess)! : r.pick(this.activeNodes());
    // The request reaches the node after a network latency (clients are outside the partitions).
    this.at(this.nowMs + r.between(LATENCY_MS_MIN, LATENCY_MS_MAX), () => {
      if (operation.isDone) return;
      const core = target.core;
      if (core === null) {
        this.finishFailed(operation, 'connection refused');
        return;
      }
      if (isReadIndex && this.options.driverBug === 'stale-reads') {
        const value = target.kv.values.get(command.key) ?? null;
        this.finishOk(operation, { id: command.id, value });
      } else if (isReadIndex) {
        const requestId = ++this.requestIds;
        const result = core.readIndex(requestId);
        if (result.code !== null) {
          client.guess = result.leaderHint;
          this.finishFailed(operation, result.code);
        } else target.reads.set(requestId, operation);
      } else {
        const result = core.propose([encodeKvCommand(command)]);
        if (result.code !== null) {
          client.guess = result.leaderHint;
          this.finishFailed(operation, result.code);
        } else {
          client.guess = target.id;
          target.proposals.set(result.index, { term: result.term, operation });
        }
      }
      this.afterInput(target);
    });
    this.at(this.nowMs + CLIENT_TIMEOUT_MS, () => {
      if (client.current === operation) this.finishUnknown(client);
    });
  }

  private clientOf(operation: ClientOperation): Client {
    return this.clients[operation.client - 1];
  }

  private record(operation: ClientOperation, value: string | null, ret: number | null): void {
    const c = operation.command;
    this.history.push({
      client: operation.client,
      op: c.op,
      key: c.key,
      value: c.op === 'write' ? c.value : value,
      call: operation.call,
      return: ret,
    });
  }

  private finishOk(operation: ClientOperation, result: KvResult | undefined): void {
    if (operation.isDone) return;
    operation.isDone = true;
    if (result === undefined || result.id !== operation.command.id) {
      throw new SimulationViolation(`client ${operation.client} got a result for another command`);
    }
    this.operationsOk++;
    // The reply reaches the client after a latency; the operation returns then.
    this.record(operation, result.value, this.nowMs + 1);
    this.log(`client ${operation.client} ${describeCommand(operation.command)} -> ${JSON.stringify(result.value)}`);
    this.releaseClient(operation, 1);
  }

  private finishFailed(operation: ClientOperation, reason: string): void {
    if (operation.isDone) return;
    operation.isDone = true;
    this.operationsFailed++;
    // A refused operation had no effect: it is left out of the history.
    this.log(`client ${operation.client} ${describeCommand(operation.command)} failed: ${reason}`);
    this.releaseClient(operation, 5 + this.rng.nextInt(20));
  }

  private finishUnknown(client: Client): void {
    const operation = client.current!;
    if (!operation.isDone) {
      operation.isDone = true;
      this.operationsUnknown++;
      this.record(operation, null, null);
      this.log(`client ${operation.client} ${describeCommand(operation.command)} timed out (outcome unknown)`);
    }
    client.guess = null;
    client.current = null;
    this.at(this.nowMs + 1, () => this.clientNext(client));
  }

  private releaseClient(operation: ClientOperation, thinkMs: number): void {
    const client = this.clientOf(operation);
    if (client.current !== operation) return;
    client.current = null;
    this.at(this.nowMs + thinkMs, () => this.clientNext(client));
  }
}

function hasWrite(write: PendingWrite): boolean {
  return write.rd.entries.length > 0 || write.rd.hardState !== null;
}

function writeDurable(image: DiskImage, rd: Ready): void {
  if (rd.entries.length > 0) {
    const first = rd.entries[0].index;
    const offset = offsetOf(image);
    if (first > lastIndexOf(image) + 1 || first <= offset) {
      throw new SimulationViolation(`driver bug: write at ${first} outside (${offset}, ${lastIndexOf(image) + 1}]`);
    }
    image.entries.length = first - 1 - offset;
    for (const e of rd.entries) image.entries.push(e);
  }
  if (rd.hardState !== null) image.hardState = rd.hardState;
}

function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function describeConf(c: ConfState): string {
  const parts = [`voters=${c.voters.join(',')}`];
  if (c.votersOutgoing.length > 0) parts.push(`outgoing=${c.votersOutgoing.join(',')}`);
  if (c.learners.length > 0) parts.push(`learners=${c.learners.join(',')}`);
  return `{${parts.join(' ')}}`;
}

function describeCommand(c: KvCommand): string {
  return c.op === 'write' ? `write ${c.key}=${c.value}` : `read ${c.key}`;
}

function describeMessage(m: Message): string {
  const parts = [`${messageTypeName(m.type)} t${m.term}`];
  if (m.type === MessageType.App) {
    parts.push(`prev=${m.index}@${m.logTerm} n=${m.entries.length} commit=${m.commit}`);
  } else if (m.type === MessageType.AppResp) {
    parts.push(`index=${m.index}${m.reject ? ` reject hint=${m.rejectHint}@${m.logTerm}` : ''}`);
  } else if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
    parts.push(`last=${m.index}@${m.logTerm}`);
  } else if (m.type === MessageType.VoteResp || m.type === MessageType.PreVoteResp) {
    parts.push(m.reject ? 'reject' : 'grant');
  } else if (m.type === MessageType.Heartbeat) {
    parts.push(`commit=${m.commit}`);
  } else if (m.type === MessageType.Snap) {
    const chunk = m.snapshot!;
    parts.push(`at=${chunk.meta.index}@${chunk.meta.term} chunk=${chunk.seq}${chunk.isLast ? ' last' : ''}`);
  } else if (m.type === MessageType.SnapResp) {
    parts.push(`at=${m.index} ${m.reject ? 'restart' : 'ack'}=${m.context}`);
  }
  return parts.join(' ');
}

/** Describes an entry payload for traces (KV commands decoded, no-ops named). */
export function describeEntry(entry: Entry): string {
  if (entry.type !== EntryType.Normal) return `${entry.index}@${entry.term} conf-change`;
  if (entry.data.length === 0) return `${entry.index}@${entry.term} no-op`;
  try {
    return `${entry.index}@${entry.term} ${describeCommand(decodeKvCommand(entry.data))}`;
  } catch {
    return `${entry.index}@${entry.term} ${entry.data.length} bytes`;
  }
}
