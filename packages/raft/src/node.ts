/**
 * `RaftNode`: the asynchronous driver around the pure {@link RaftCore}. It feeds the core with
 * ticks from a {@link Clock}, messages from a {@link Transport} and batched proposals and reads,
 * and carries out each {@link Ready} under its persistence contract:
 *
 * - `messages` go to the transport at once (the leader's appends included: its own fsync runs in
 *   parallel with replication);
 * - `entries` + `hardState` are written by one `Storage.append` at a time, in order; everything
 *   that arrives while a write is in flight is grouped into the next one (group commit);
 * - `messagesAfterPersist` leave only once that write (and every earlier one) is durable;
 * - `committedEntries` are applied through `StateMachine.apply` in batches, and the proposer's
 *   `propose()` promise resolves with its entry's result.
 */
import type {
  ConfState,
  Clock,
  Entry,
  HardState,
  NodeId,
  Random,
  SnapshotMeta,
  SnapshotReader,
  SnapshotWriter,
  StateMachine,
  Storage,
  Transport,
} from './api.js';
import type { ConfChangeItem, Message, Ready, RaftCoreCode, Role } from './core/index.js';
import { MessageType, RaftCore, isJoint, isWellFormedMessage } from './core/index.js';
import { RaftError, RaftErrorCode } from './errors.js';

/** Tunables of a Raft node. Validated once by `RaftNode.create`, then frozen. */
export interface RaftConfig {
  /** Real time per tick. Default 50. */
  tickIntervalMs: number;
  /** Election timeout in ticks; each node draws its timeout in [e, 2e). Default 10. */
  electionTimeoutTicks: number;
  /** Heartbeat interval in ticks, below the election timeout. Default 1. */
  heartbeatTicks: number;
  /** Pre-vote (Raft §9.6): a node campaigns only if a majority would vote for it. Default true. */
  isPreVoteEnabled: boolean;
  /** Check-quorum: a leader steps down without a live quorum; followers in contact with one ignore votes. Default true. */
  isCheckQuorumEnabled: boolean;
  /** Followers forward proposals to the leader, instead of failing fast with RAFT_NOT_LEADER. Default false. */
  isProposalForwardingEnabled: boolean;
  /** Appends in flight per follower. Default 256. */
  inflightMessagesMax: number;
  /** Bytes in flight per follower. Default 32 MiB. */
  inflightBytesMax: number;
  /** Largest entry payload accepted (RAFT_ENTRY_TOO_LARGE). Default 4 MiB. */
  entryBytesMax: number;
  /** Largest append message payload. Default 1 MiB. */
  appendBatchBytesMax: number;
  /** Uncommitted bytes a leader accepts before refusing proposals (RAFT_UNCOMMITTED_LIMIT). Default 64 MiB. */
  uncommittedBytesMax: number;
  /** Serve reads from a leader lease instead of a quorum round (needs check-quorum). Default false. */
  isLeaseReadEnabled: boolean;
  /** Most clock-rate drift between nodes over one election timeout; the lease is shortened by it. Default 100. */
  clockDriftBoundMs: number;
  /** Most bytes of committed entries applied in one `StateMachine.apply` call. Default 4 MiB. */
  applyBatchBytesMax: number;
  /**
   * The leader tells followers a new commit index only with its next append or heartbeat, instead
   * of an extra (often empty) append per advance, each answered by a reply. Followers then apply
   * up to one heartbeat interval later; the leader's commits, acknowledgements and ReadIndex reads
   * do not wait for that. Default true.
   */
  isCommitPiggybackEnabled: boolean;
  /** Applied entries kept in the log before it is compacted (by count). Default 50,000. */
  logEntriesMax: number;
  /** Bytes of applied entries kept in the log before it is compacted (by size). Default 256 MiB. */
  logBytesMax: number;
  /** Applied entries left in the log after a compaction, for followers slightly behind. Default 5,000. */
  logEntriesKeep: number;
  /** Bytes per snapshot chunk. Default 1 MiB. */
  snapshotChunkBytes: number;
  /** Snapshot chunks in flight per follower (back-pressure). Default 4. */
  snapshotChunksInflightMax: number;
  /** Ticks without an acknowledged chunk before resending from the last acknowledged one. Default 20. */
  snapshotIdleTicks: number;
  /** Idle periods in a row after which a snapshot transfer is abandoned. Default 3. */
  snapshotIdleRoundsMax: number;
  /** Ticks a learner gets to catch up before promotion fails with RAFT_LEARNER_BEHIND. Default 200. */
  learnerCatchUpTicksMax: number;
  /**
   * Entries this node may hold appended but not yet applied before it refuses proposals with
   * RAFT_UNCOMMITTED_LIMIT: back-pressure from a slow state machine. Default 100,000.
   */
  applyBacklogEntriesMax: number;
}

/** The defaults of {@link RaftConfig}. */
export const defaultRaftConfig: Readonly<RaftConfig> = Object.freeze({
  tickIntervalMs: 50,
  electionTimeoutTicks: 10,
  heartbeatTicks: 1,
  isPreVoteEnabled: true,
  isCheckQuorumEnabled: true,
  isProposalForwardingEnabled: false,
  inflightMessagesMax: 256,
  inflightBytesMax: 32 * 1024 * 1024,
  entryBytesMax: 4 * 1024 * 1024,
  appendBatchBytesMax: 1024 * 1024,
  uncommittedBytesMax: 64 * 1024 * 1024,
  isLeaseReadEnabled: false,
  clockDriftBoundMs: 100,
  applyBatchBytesMax: 4 * 1024 * 1024,
  isCommitPiggybackEnabled: true,
  logEntriesMax: 50_000,
  logBytesMax: 256 * 1024 * 1024,
  logEntriesKeep: 5_000,
  snapshotChunkBytes: 1024 * 1024,
  snapshotChunksInflightMax: 4,
  snapshotIdleTicks: 20,
  snapshotIdleRoundsMax: 3,
  learnerCatchUpTicksMax: 200,
  applyBacklogEntriesMax: 100_000,
});

/** Hooks for metrics. All optional; they must not throw. */
export interface RaftObserver {
  onLeaderChange?(leader: NodeId | null, term: number): void;
  onFsync?(durationMs: number, entries: number, bytes: number): void;
  onCommit?(commitIndex: number): void;
  onApply?(durationMs: number, entries: number): void;
  /** The node stopped because storage or the state machine failed (RAFT_STORAGE_FAILED). */
  onFatal?(error: RaftError): void;
}

/** The logger a node writes to (pino's, or anything shaped like it). */
export interface RaftLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface RaftNodeOptions {
  id: NodeId;
  /**
   * The group's initial voters (self included, unless `isJoining`); used only when storage holds no
   * snapshot. Every member must be given the same list: the log's membership changes apply to it.
   */
  peers: readonly NodeId[];
  /**
   * This node joins an existing group (it is not among `peers`): it stays passive until the leader
   * adds it (`addLearner`, `replaceMember`) and replicates the log or a snapshot to it.
   */
  isJoining?: boolean;
  storage: Storage;
  transport: Transport;
  stateMachine: StateMachine;
  clock: Clock;
  random: Random;
  config?: Partial<RaftConfig>;
  logger?: RaftLogger;
  observer?: RaftObserver;
}

export interface FollowerStatus {
  match: number;
  next: number;
  state: 'probe' | 'replicate' | 'snapshot';
  isActive: boolean;
}

export interface RaftStatus {
  id: NodeId;
  role: Role | 'learner';
  term: number;
  leader: NodeId | null;
  commitIndex: number;
  appliedIndex: number;
  lastIndex: number;
  conf: ConfState;
  /** Only on the leader: every other member's replication progress. */
  progress: Record<NodeId, FollowerStatus>;
}

interface Pending {
  term: number;
  resolve: (value: unknown) => void;
  reject: (error: RaftError) => void;
  isSettled: boolean;
  /** Another proposal that got the same index in another term (see `track`). */
  next: Pending | null;
  /** Removes the abort listener, if the caller passed a signal (see `onAbort`). */
  removeAbortListener: (() => void) | null;
}

/**
 * Receives the outcome of each proposal of `RaftNode.proposeMany`: `error` null and the state
 * machine's result for the entry, or the error (with `propose`'s codes). Called once per proposal.
 */
export type ProposalCallback = (slot: number, error: RaftError | null, result: unknown) => void;

/**
 * A proposal of `proposeMany`: one object per proposal, sharing the caller's callback (no promise
 * or resolver closures of its own). Satisfies `Pending`: `resolve` and `reject` are methods.
 */
class BatchPending implements Pending {
  term = 0;
  isSettled = false;
  next: Pending | null = null;
  removeAbortListener: (() => void) | null = null;
  constructor(
    private readonly slot: number,
    private readonly onResult: ProposalCallback,
  ) {}
  resolve(value: unknown): void {
    this.onResult(this.slot, null, value);
  }
  reject(error: RaftError): void {
    this.onResult(this.slot, error, undefined);
  }
}

interface Waiter {
  resolve: () => void;
  reject: (error: RaftError) => void;
  isSettled: boolean;
  removeAbortListener: (() => void) | null;
}

/** A write to Storage other than an append, run in order with the appends. */
interface StorageJob {
  readonly run: () => Promise<void>;
}

/** A snapshot this leader streams to one follower. */
interface OutgoingSnapshot {
  readonly to: NodeId;
  readonly term: number;
  readonly meta: SnapshotMeta;
  reader: SnapshotReader | null;
  /** positions[seq] is the reader position chunk `seq` starts at, for resuming after a loss. */
  readonly positions: (Uint8Array | null)[];
  nextSeq: number;
  nextPosition: Uint8Array | null;
  isLastSent: boolean;
  ackedSeq: number;
  isReading: boolean;
  lastProgressTick: number;
  idleRounds: number;
  isClosed: boolean;
}

/** A snapshot this follower receives. */
interface IncomingSnapshot {
  readonly from: NodeId;
  readonly meta: SnapshotMeta;
  writer: SnapshotWriter | null;
  expectedSeq: number;
  chain: Promise<void>;
  isClosed: boolean;
  /** The last chunk arrived and the install (log record, commit) is under way: never abort it. */
  isInstalling: boolean;
}

interface ForwardBatch {
  pendings: Pending[];
  sentTick: number;
}

const NO_LOGGER: RaftLogger = { debug() {}, info() {}, warn() {}, error() {} };

function validateConfig(partial: Partial<RaftConfig> | undefined): Readonly<RaftConfig> {
  const c: RaftConfig = { ...defaultRaftConfig, ...(partial ?? {}) };
  const problems: string[] = [];
  const positiveInts: (keyof RaftConfig)[] = [
    'tickIntervalMs',
    'electionTimeoutTicks',
    'heartbeatTicks',
    'inflightMessagesMax',
    'inflightBytesMax',
    'entryBytesMax',
    'appendBatchBytesMax',
    'uncommittedBytesMax',
    'applyBatchBytesMax',
    'logEntriesMax',
    'logBytesMax',
    'snapshotChunkBytes',
    'snapshotChunksInflightMax',
    'snapshotIdleTicks',
    'snapshotIdleRoundsMax',
    'learnerCatchUpTicksMax',
    'applyBacklogEntriesMax',
  ];
  for (const key of positiveInts) {
    const v = c[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) problems.push(`${key} must be a positive integer`);
  }
  for (const key of [
    'isPreVoteEnabled',
    'isCheckQuorumEnabled',
    'isProposalForwardingEnabled',
    'isLeaseReadEnabled',
    'isCommitPiggybackEnabled',
  ] as const) {
    if (typeof c[key] !== 'boolean') problems.push(`${key} must be a boolean`);
  }
  if (typeof c.clockDriftBoundMs !== 'number' || !(c.clockDriftBoundMs >= 0)) {
    problems.push('clockDriftBoundMs must be a number >= 0');
  }
  if (c.heartbeatTicks >= c.electionTimeoutTicks) problems.push('heartbeatTicks must be below electionTimeoutTicks');
  if (!Number.isSafeInteger(c.logEntriesKeep) || c.logEntriesKeep < 0 || c.logEntriesKeep >= c.logEntriesMax) {
    problems.push('logEntriesKeep must be an integer >= 0 and below logEntriesMax');
  }
  if (c.entryBytesMax > c.uncommittedBytesMax) problems.push('entryBytesMax must not exceed uncommittedBytesMax');
  if (c.isLeaseReadEnabled) {
    if (!c.isCheckQuorumEnabled) problems.push('isLeaseReadEnabled requires isCheckQuorumEnabled');
    if (leaseTicksOf(c) <= 1)
      problems.push('clockDriftBoundMs leaves no lease: it must be well below the election timeout');
  }
  if (problems.length > 0) {
    throw new RaftError(RaftErrorCode.ConfigInvalid, `invalid Raft config: ${problems.join('; ')}`);
  }
  return Object.freeze(c);
}

function leaseTicksOf(c: RaftConfig): number {
  return c.electionTimeoutTicks - Math.ceil(c.clockDriftBoundMs / c.tickIntervalMs);
}

/** The async Raft driver. See the module comment for what it guarantees. */
export class RaftNode {
  private readonly core: RaftCore;
  private readonly config: Readonly<RaftConfig>;
  private readonly log: RaftLogger;
  private readonly observer: RaftObserver;
  private readonly storage: Storage;
  private readonly transport: Transport;
  private readonly stateMachine: StateMachine;
  private readonly clock: Clock;

  private isStarted = false;
  private isStopped = false;
  private isScheduled = false;
  private cancelTick: (() => void) | null = null;
  private tickCount = 0;
  /** Clock time up to which ticks have been given to the core. */
  private lastTickMs = 0;

  // Proposals waiting for the next loop turn, then by log index until applied.
  private proposalData: Uint8Array[] = [];
  private proposalPendings: Pending[] = [];
  private proposalBytes = 0;
  private readonly byIndex = new Map<number, Pending>();
  private readonly forwards = new Map<number, ForwardBatch>();
  private forwardSeq = 0;

  // Reads waiting for the next loop turn, then for their read state, then for the applied index.
  private readWaiters: Waiter[] = [];
  private readonly readBatches = new Map<number, Waiter[]>();
  private readSeq = 0;
  private readsReady: { index: number; waiters: Waiter[] }[] = [];

  private transfer: { to: NodeId; waiter: Waiter; startTick: number } | null = null;
  /** Membership procedures waiting for a condition (a learner caught up, a joint configuration left). */
  private conditions: { check: () => boolean; waiter: Waiter; deadlineTick: number; onTimeout: () => RaftError }[] = [];

  // Persistence: Readies waiting for their write, in order; one write in flight at most.
  private persistQueue: (Ready | StorageJob)[] = [];
  private isAppending = false;
  private appendDone: Promise<void> = Promise.resolve();

  // Apply: committed entries waiting, one apply in flight at most.
  private applyQueue: (readonly Entry[])[] = [];
  private isApplying = false;
  private applyDone: Promise<void> = Promise.resolve();
  private appliedIndex: number;
  /** Applies are held while a snapshot is opened (it must capture the applied index) or installed. */
  private applyHolds = 0;
  /** Applied entries and bytes in the log since the last compaction. */
  private logAppliedEntries = 0;
  private logAppliedBytes = 0;
  private isCompacting = false;
  private readonly outgoing = new Map<NodeId, OutgoingSnapshot>();
  private incoming: IncomingSnapshot | null = null;

  private lastLeader: NodeId | null = null;
  private lastTerm = -1;
  private lastCommit = 0;

  private constructor(options: RaftNodeOptions, config: Readonly<RaftConfig>, core: RaftCore, applied: number) {
    this.core = core;
    this.config = config;
    this.log = options.logger ?? NO_LOGGER;
    this.observer = options.observer ?? {};
    this.storage = options.storage;
    this.transport = options.transport;
    this.stateMachine = options.stateMachine;
    this.clock = options.clock;
    this.appliedIndex = applied;
    this.lastCommit = core.log.committed;
  }

  /**
   * Validates the config (RAFT_CONFIG_INVALID), loads storage and the state machine's applied index
   * and builds the node. Nothing is sent or ticked before `start()`.
   */
  static async create(options: RaftNodeOptions): Promise<RaftNode> {
    const config = validateConfig(options.config);
    if (options.peers.includes(options.id) === (options.isJoining === true)) {
      throw new RaftError(
        RaftErrorCode.ConfigInvalid,
        options.isJoining === true
          ? `a joining node ${options.id} must not be among the initial peers`
          : `peers must include this node's id ${options.id}`,
      );
    }
    let persisted;
    let applied;
    try {
      persisted = await options.storage.load();
      applied = await options.stateMachine.appliedIndex();
    } catch (cause) {
      throw new RaftError(RaftErrorCode.StorageFailed, 'loading the Raft state failed', { cause });
    }
    const conf: ConfState = persisted.snapshot?.conf ?? {
      voters: [...new Set(options.peers)],
      learners: [],
      votersOutgoing: [],
      learnersNext: [],
    };
    const core = new RaftCore(
      {
        id: options.id,
        electionTimeoutTicks: config.electionTimeoutTicks,
        heartbeatTicks: config.heartbeatTicks,
        isPreVoteEnabled: config.isPreVoteEnabled,
        isCheckQuorumEnabled: config.isCheckQuorumEnabled,
        isProposalForwardingEnabled: config.isProposalForwardingEnabled,
        inflightMessagesMax: config.inflightMessagesMax,
        inflightBytesMax: config.inflightBytesMax,
        entryBytesMax: config.entryBytesMax,
        appendBatchBytesMax: config.appendBatchBytesMax,
        uncommittedBytesMax: config.uncommittedBytesMax,
        leaseTicks: config.isLeaseReadEnabled ? leaseTicksOf(config) : 0,
        applyBatchBytesMax: config.applyBatchBytesMax,
        isCommitPiggybackEnabled: config.isCommitPiggybackEnabled,
        random: options.random,
      },
      {
        hardState: persisted.hardState,
        snapshot: persisted.snapshot,
        entries: persisted.entries,
        appliedIndex: applied,
        conf,
      },
    );
    const node = new RaftNode(options, config, core, Math.max(applied, persisted.snapshot?.index ?? 0));
    node.log.info(
      { id: options.id, term: core.term, lastIndex: core.log.lastIndex(), commit: core.log.committed, applied },
      'raft node loaded',
    );
    return node;
  }

  /** Starts ticking and handling messages. Idempotent. */
  start(): void {
    if (this.isStarted || this.isStopped) return;
    this.isStarted = true;
    this.transport.onMessage((m) => this.onMessage(m));
    this.lastTickMs = this.clock.now();
    this.cancelTick = this.clock.setInterval(() => this.onTick(), this.config.tickIntervalMs);
    this.schedule();
  }

  /**
   * Stops the node: no more ticks, messages or writes; pending proposals, reads and transfers fail
   * with RAFT_STOPPED. Resolves once the write and apply in flight (if any) have settled, so the
   * caller may close storage.
   */
  async stop(): Promise<void> {
    if (!this.isStopped) this.halt(new RaftError(RaftErrorCode.Stopped, 'the Raft node stopped'));
    await Promise.allSettled([this.appendDone, this.applyDone]);
  }

  /**
   * Proposes a command. Resolves with `StateMachine.apply`'s result for its entry once committed
   * and applied on this node. Fails fast on a follower with RAFT_NOT_LEADER (with `leaderHint`)
   * unless forwarding is enabled; RAFT_ENTRY_TOO_LARGE, RAFT_UNCOMMITTED_LIMIT,
   * RAFT_PROPOSAL_DROPPED (leadership moved or a transfer is under way; the entry was not applied),
   * RAFT_ABORTED (signal; the outcome is then unknown), RAFT_STOPPED.
   */
  propose(data: Uint8Array, options?: { signal?: AbortSignal }): Promise<unknown> {
    const refusal = this.checkProposal(data);
    if (refusal !== null) return Promise.reject(refusal);
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(new RaftError(RaftErrorCode.Aborted, 'proposal aborted'));
    return new Promise<unknown>((resolve, reject) => {
      const pending: Pending = { term: 0, resolve, reject, isSettled: false, next: null, removeAbortListener: null };
      if (signal !== undefined) this.onAbort(signal, pending, 'proposal aborted; it may or may not be applied');
      this.proposalData.push(data);
      this.proposalPendings.push(pending);
      this.proposalBytes += data.byteLength + 16;
      this.schedule();
    });
  }

  /**
   * Proposes several commands, in order, with `propose`'s checks and outcomes for each, reported
   * through `onResult(slot, error, result)` where `slot` is the command's position in `data`
   * (a refused one may be reported before this returns; the others after they are applied). No
   * promise per command: for callers proposing many at once (the block API's Io batches). No
   * abort signal: the caller's own deadline stops waiting, the outcome then being unknown.
   */
  proposeMany(data: readonly Uint8Array[], onResult: ProposalCallback): void {
    let queued = 0;
    for (let i = 0; i < data.length; i++) {
      const command = data[i];
      const refusal = this.checkProposal(command);
      if (refusal !== null) {
        onResult(i, refusal, undefined);
        continue;
      }
      this.proposalData.push(command);
      this.proposalPendings.push(new BatchPending(i, onResult));
      this.proposalBytes += command.byteLength + 16;
      queued++;
    }
    if (queued > 0) this.schedule();
  }

  /** Why a proposal of `data` cannot be taken now (propose's fail-fast codes), or null. */
  private checkProposal(data: Uint8Array): RaftError | null {
    if (this.isStopped) return new RaftError(RaftErrorCode.Stopped, 'the Raft node stopped');
    if (!(data instanceof Uint8Array)) {
      return new RaftError(RaftErrorCode.ProposalDropped, 'a proposal must be a Uint8Array');
    }
    if (data.byteLength > this.config.entryBytesMax) {
      return new RaftError(
        RaftErrorCode.EntryTooLarge,
        `entry of ${data.byteLength} bytes exceeds entryBytesMax ${this.config.entryBytesMax}`,
      );
    }
    const role = this.core.role;
    if (role !== 'leader' && !(this.config.isProposalForwardingEnabled && this.core.lead !== null)) {
      return this.notLeader();
    }
    // Empty proposals still count (16 bytes each), so the waiting buffer is bounded in entries too.
    if (this.proposalBytes + data.byteLength + 16 > this.config.uncommittedBytesMax) {
      return new RaftError(RaftErrorCode.UncommittedLimit, 'too many bytes proposed and not yet appended');
    }
    if (
      this.core.log.lastIndex() + this.proposalData.length - this.appliedIndex >=
      this.config.applyBacklogEntriesMax
    ) {
      return new RaftError(
        RaftErrorCode.UncommittedLimit,
        'too many entries waiting to be applied (slow state machine)',
      );
    }
    return null;
  }

  /**
   * Confirms a linearizable read point: resolves once this node, as leader, confirmed its
   * leadership with a quorum (or holds a valid lease, if enabled) and applied up to the commit
   * index it had when the read arrived. Fails with RAFT_NOT_LEADER elsewhere or if leadership is
   * lost meanwhile.
   */
  readIndex(options?: { signal?: AbortSignal }): Promise<void> {
    if (this.isStopped) return Promise.reject(new RaftError(RaftErrorCode.Stopped, 'the Raft node stopped'));
    if (this.core.role !== 'leader') return Promise.reject(this.notLeader());
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(new RaftError(RaftErrorCode.Aborted, 'read aborted'));
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, isSettled: false, removeAbortListener: null };
      if (signal !== undefined) this.onAbort(signal, waiter, 'read aborted');
      this.readWaiters.push(waiter);
      this.schedule();
    });
  }

  /**
   * Hands leadership to `to` (a voter): resolves once `to` is known leader; fails with
   * RAFT_NOT_LEADER if this node is not leader, RAFT_TRANSFER_FAILED if `to` is not a voter or the
   * transfer did not complete within an election timeout.
   */
  transferLeadership(to: NodeId, options?: { signal?: AbortSignal }): Promise<void> {
    if (this.isStopped) return Promise.reject(new RaftError(RaftErrorCode.Stopped, 'the Raft node stopped'));
    if (to === this.core.id && this.core.role === 'leader') return Promise.resolve();
    const result = this.core.transferLeadership(to);
    if (result.code !== null) return Promise.reject(this.coded(result.code, `cannot transfer leadership to ${to}`));
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, isSettled: false, removeAbortListener: null };
      if (options?.signal !== undefined) this.onAbort(options.signal, waiter, 'transfer aborted');
      if (this.transfer !== null) this.settle(this.transfer.waiter, this.coded('RAFT_TRANSFER_FAILED', 'superseded'));
      this.transfer = { to, waiter, startTick: this.tickCount };
      this.schedule();
    });
  }

  /**
   * Proposes a membership change (leader only) and resolves with the configuration once its entry
   * is applied here. One voter added or removed is a single-server change; more go through joint
   * consensus, which the leader leaves by itself (see `replaceMember` to wait for that).
   * RAFT_CONF_CHANGE_PENDING: another change is uncommitted or the leader has not yet committed an
   * entry of its term (retry shortly); RAFT_CONF_CHANGE_INVALID: the change is impossible.
   */
  changeMembership(changes: readonly ConfChangeItem[], options?: { signal?: AbortSignal }): Promise<ConfState> {
    if (this.isStopped) return Promise.reject(new RaftError(RaftErrorCode.Stopped, 'the Raft node stopped'));
    const request = { changes: [...changes] };
    const result = this.core.proposeConfChange(request);
    if (result.code !== null) {
      const why = result.code === 'RAFT_CONF_CHANGE_INVALID' ? `: ${this.core.explainConfChange(request)}` : '';
      return Promise.reject(this.coded(result.code, `membership change refused${why}`, result.leaderHint));
    }
    this.schedule();
    return new Promise<ConfState>((resolve, reject) => {
      const pending: Pending = {
        term: 0,
        resolve: () => resolve(this.core.confAt(result.index)),
        reject,
        isSettled: false,
        next: null,
        removeAbortListener: null,
      };
      if (options?.signal !== undefined) this.onAbort(options.signal, pending, 'membership change aborted');
      this.track(result.index, result.term, pending);
    });
  }

  /** Adds `id` as a learner: it receives the log but does not vote. */
  addLearner(id: NodeId, options?: { signal?: AbortSignal }): Promise<ConfState> {
    return this.changeMembership([{ type: 'add-learner', id }], options);
  }

  /** Removes a voter or learner (the leader itself included: it steps down once this commits). */
  removeMember(id: NodeId, options?: { signal?: AbortSignal }): Promise<ConfState> {
    return this.changeMembership([{ type: 'remove', id }], options);
  }

  /**
   * Promotes learner `id` to voter once it has caught up (its match reaches the commit index at
   * the time of the call), so that it does not hold back commits as a new voter. RAFT_LEARNER_BEHIND
   * if it does not catch up within `learnerCatchUpTicksMax` ticks.
   */
  async promoteLearner(id: NodeId, options?: { signal?: AbortSignal }): Promise<ConfState> {
    await this.waitForCatchUp(id, options);
    return this.changeMembership([{ type: 'add-voter', id }], options);
  }

  /**
   * Replaces member `oldId` by `newId` without losing availability — the procedure for a lost or
   * moved region: (1) add `newId` as a learner; (2) wait until it caught up (a snapshot if needed);
   * (3) one joint-consensus change adds `newId` as voter and removes `oldId`; (4) wait until the
   * leader has left the joint configuration. Run it on the leader; if `oldId` is the leader, it
   * steps down at the end and the others elect a new one.
   */
  async replaceMember(oldId: NodeId, newId: NodeId, options?: { signal?: AbortSignal }): Promise<ConfState> {
    const conf = this.core.conf();
    if (!conf.learners.includes(newId)) await this.addLearner(newId, options);
    await this.waitForCatchUp(newId, options);
    await this.changeMembership(
      [
        { type: 'add-voter', id: newId },
        { type: 'remove', id: oldId },
      ],
      options,
    );
    await this.waitFor(
      () => !isJoint(this.core.conf()) && this.core.lastConfIndex() <= this.appliedIndex,
      () => this.coded('RAFT_CONF_CHANGE_PENDING', 'the joint configuration was not left in time'),
      options,
    );
    return this.core.conf();
  }

  private waitForCatchUp(id: NodeId, options?: { signal?: AbortSignal }): Promise<void> {
    const target = this.core.log.committed;
    return this.waitFor(
      () => {
        if (this.core.role !== 'leader') throw this.notLeader();
        const pr = this.core.progress.get(id);
        return pr !== undefined && pr.match >= target;
      },
      () => new RaftError(RaftErrorCode.LearnerBehind, `${id} did not catch up with index ${target} in time`),
      options,
    );
  }

  /** Resolves once `check()` holds (evaluated after every loop turn and tick), or times out. */
  private waitFor(check: () => boolean, onTimeout: () => RaftError, options?: { signal?: AbortSignal }): Promise<void> {
    if (this.isStopped) return Promise.reject(new RaftError(RaftErrorCode.Stopped, 'the Raft node stopped'));
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, isSettled: false, removeAbortListener: null };
      if (options?.signal !== undefined) this.onAbort(options.signal, waiter, 'aborted');
      this.conditions.push({
        check,
        waiter,
        deadlineTick: this.tickCount + this.config.learnerCatchUpTicksMax,
        onTimeout,
      });
      this.schedule();
      this.checkConditions();
    });
  }

  private checkConditions(): void {
    if (this.conditions.length === 0) return;
    const remaining: typeof this.conditions = [];
    for (const c of this.conditions) {
      if (c.waiter.isSettled) continue;
      try {
        if (c.check()) this.settle(c.waiter, null);
        else if (this.tickCount > c.deadlineTick) this.settle(c.waiter, c.onTimeout());
        else remaining.push(c);
      } catch (error) {
        this.settle(c.waiter, error as RaftError);
      }
    }
    this.conditions = remaining;
  }

  /**
   * Reads log entries [lo, hi] (clipped to the last index) from memory, e.g. for debugging or a
   * change feed. RAFT_LOG_COMPACTED when `lo` is below the first index still in the log: that
   * prefix lives only in the state machine's snapshot now.
   */
  readEntries(lo: number, hi: number): readonly Entry[] {
    const log = this.core.log;
    if (!Number.isSafeInteger(lo) || !Number.isSafeInteger(hi) || lo < log.firstIndex()) {
      throw new RaftError(
        RaftErrorCode.LogCompacted,
        `entries from ${lo} are compacted; the log starts at ${log.firstIndex()}`,
      );
    }
    const last = Math.min(hi, log.lastIndex());
    return last < lo ? [] : log.slice(lo, last, Infinity);
  }

  /** A snapshot of the node's state, for health checks and metrics. */
  status(): RaftStatus {
    const core = this.core;
    const progress: Record<NodeId, FollowerStatus> = {};
    if (core.role === 'leader') {
      for (const [id, pr] of core.progress) {
        if (id === core.id) continue;
        progress[id] = { match: pr.match, next: pr.next, state: pr.state, isActive: pr.isRecentActive };
      }
    }
    return {
      id: core.id,
      role: core.isVoter() ? core.role : 'learner',
      term: core.term,
      leader: core.lead,
      commitIndex: core.log.committed,
      appliedIndex: this.appliedIndex,
      lastIndex: core.log.lastIndex(),
      conf: core.conf(),
      progress,
    };
  }

  // ─── Loop ─────────────────────────────────────────────────────────────────────────────────────

  private schedule(): void {
    if (this.isScheduled || !this.isStarted || this.isStopped) return;
    this.isScheduled = true;
    queueMicrotask(() => this.run());
  }

  /**
   * Ticks the core once per `tickIntervalMs` of clock time elapsed, not once per timer firing: a
   * starved event loop fires interval timers late and drops the missed firings, and counting
   * firings would stretch election timeouts (and shorten nothing a lease relies on) by that factor.
   * A burst is capped at half an election timeout; time beyond it is dropped and the lease, which
   * is counted in ticks, is forgotten.
   */
  private onTick(): void {
    if (this.isStopped) return;
    const intervalMs = this.config.tickIntervalMs;
    const now = this.clock.now();
    let due = Math.floor((now - this.lastTickMs) / intervalMs);
    if (due <= 0) return;
    // At most half an election timeout per firing: between two bursts the messages that arrived
    // are processed, so a starved leader never runs two check-quorum rounds (and a follower never
    // a whole election timeout) without seeing the heartbeats and acks sent meanwhile. Time beyond
    // the cap is dropped, not carried over.
    const dueMax = Math.max(1, Math.floor(this.config.electionTimeoutTicks / 2));
    if (due > dueMax) {
      due = dueMax;
      this.lastTickMs = now;
      this.core.expireLease();
    } else {
      this.lastTickMs += due * intervalMs;
    }
    for (let i = 0; i < due; i++) {
      this.tickCount++;
      try {
        this.core.tick();
      } catch (error) {
        this.fatal(error, 'raft core invariant violated');
        return;
      }
    }
    this.expireForwards();
    if (this.outgoing.size > 0) this.checkSnapshotTimeouts();
    this.run();
  }

  private onMessage(m: unknown): void {
    if (this.isStopped) return;
    if (!isWellFormedMessage(m, this.core.id)) {
      this.log.warn({ from: (m as { from?: unknown } | null)?.from }, 'dropping a malformed raft message');
      return;
    }
    try {
      this.core.step(m);
    } catch (error) {
      // A broken core invariant (a peer claiming a commit that contradicts our log, or a bug):
      // halt rather than risk acknowledging something wrong, and never throw into the transport.
      this.fatal(error, 'raft core invariant violated');
      return;
    }
    this.schedule();
  }

  private run(): void {
    this.isScheduled = false;
    if (this.isStopped) return;
    try {
      this.flushProposals();
      this.flushReads();
      // Each ready() drains everything pending; a handful of rounds settles any follow-ups.
      for (let round = 0; round < 16 && this.core.hasReady(); round++) this.handleReady(this.core.ready());
      this.observe();
      // Still more (committed entries beyond one apply batch per round): continue on the next turn.
      if (this.core.hasReady()) this.schedule();
    } catch (error) {
      // A broken core invariant: stop rather than risk acknowledging something wrong.
      this.fatal(error, 'raft core invariant violated');
    }
  }

  private flushProposals(): void {
    if (this.proposalData.length === 0) return;
    const data = this.proposalData;
    const pendings = this.proposalPendings;
    this.proposalData = [];
    this.proposalPendings = [];
    this.proposalBytes = 0;
    const batchBytesMax = this.config.appendBatchBytesMax;
    let start = 0;
    while (start < data.length) {
      let end = start;
      let bytes = 0;
      while (end < data.length && (end === start || bytes + data[end].byteLength + 16 <= batchBytesMax)) {
        bytes += data[end].byteLength + 16;
        end++;
      }
      const chunk = start === 0 && end === data.length ? data : data.slice(start, end);
      const forwardId = ++this.forwardSeq;
      const result = this.core.propose(chunk, forwardId);
      if (result.code !== null) {
        const error = this.coded(result.code, 'proposal refused', result.leaderHint);
        for (let i = start; i < end; i++) this.settle(pendings[i], error);
      } else if (result.isForwarded) {
        this.forwards.set(forwardId, { pendings: pendings.slice(start, end), sentTick: this.tickCount });
      } else {
        for (let i = start; i < end; i++) this.track(result.index + (i - start), result.term, pendings[i]);
      }
      start = end;
    }
  }

  /** Waits for the entry at `index` of `term` to be applied. */
  private track(index: number, term: number, pending: Pending): void {
    pending.term = term;
    const existing = this.byIndex.get(index);
    // Another proposal may hold this index from an earlier term whose entry may yet be committed
    // by another leader; chain them and let the applied entry's term decide.
    if (existing !== undefined) pending.next = existing;
    this.byIndex.set(index, pending);
  }

  private flushReads(): void {
    if (this.readWaiters.length === 0) return;
    const waiters = this.readWaiters;
    this.readWaiters = [];
    const id = ++this.readSeq;
    const result = this.core.readIndex(id);
    if (result.code !== null) {
      const error = this.coded(result.code, 'read refused', result.leaderHint);
      for (const w of waiters) this.settle(w, error);
      return;
    }
    this.readBatches.set(id, waiters);
  }

  private handleReady(rd: Ready): void {
    if (rd.messages.length > 0) this.transport.send(rd.messages);
    const hasWrite = rd.entries.length > 0 || rd.hardState !== null;
    if (hasWrite || this.isAppending || this.persistQueue.length > 0) {
      this.persistQueue.push(rd);
      this.pumpPersist();
    } else {
      // Nothing to write and nothing written ahead of it: everything earlier is already durable.
      this.core.persisted(rd);
      if (rd.messagesAfterPersist.length > 0) this.transport.send(rd.messagesAfterPersist);
    }
    if (rd.committedEntries.length > 0) {
      this.applyQueue.push(rd.committedEntries);
      this.pumpApply();
    }
    for (const rs of rd.readStates) {
      const waiters = this.readBatches.get(rs.requestId);
      if (waiters === undefined) continue;
      this.readBatches.delete(rs.requestId);
      this.readsReady.push({ index: rs.index, waiters });
    }
    for (const id of rd.droppedReads) {
      const waiters = this.readBatches.get(id);
      if (waiters === undefined) continue;
      this.readBatches.delete(id);
      const error = this.notLeader();
      for (const w of waiters) this.settle(w, error);
    }
    for (const fr of rd.forwardResults) {
      const batch = this.forwards.get(fr.forwardId);
      if (batch === undefined) continue;
      this.forwards.delete(fr.forwardId);
      if (fr.code !== null) {
        const error = this.coded(fr.code, 'forwarded proposal refused by the leader', fr.leaderHint);
        for (const p of batch.pendings) this.settle(p, error);
      } else {
        for (let i = 0; i < batch.pendings.length; i++) this.track(fr.index + i, fr.term, batch.pendings[i]);
      }
    }
    for (const to of rd.snapshotsToSend) this.startSnapshot(to);
    for (const m of rd.snapshotAcks) this.onSnapshotAck(m);
    for (const m of rd.snapshotChunks) this.onSnapshotChunk(m);
    this.releaseReads();
  }

  private pumpPersist(): void {
    if (this.isAppending || this.persistQueue.length === 0 || this.isStopped) return;
    const head = this.persistQueue[0];
    if (!('entries' in head)) {
      // A snapshot or compaction record: written alone, after every earlier append.
      this.persistQueue.shift();
      this.isAppending = true;
      this.appendDone = head.run().then(
        () => {
          this.isAppending = false;
          if (this.isStopped) return;
          this.pumpPersist();
          this.run();
        },
        (cause: unknown) => {
          this.isAppending = false;
          this.fatal(cause, 'Storage.applySnapshot failed');
        },
      );
      return;
    }
    let n = 0;
    while (n < this.persistQueue.length && 'entries' in this.persistQueue[n]) n++;
    const batch = this.persistQueue.splice(0, n) as Ready[];
    let entries: readonly Entry[] = [];
    let isOwned = false;
    let hardState: HardState | null = null;
    for (const rd of batch) {
      if (rd.hardState !== null) hardState = rd.hardState;
      if (rd.entries.length === 0) continue;
      if (entries.length === 0) {
        entries = rd.entries;
        continue;
      }
      const merged: Entry[] = isOwned ? (entries as Entry[]) : entries.slice();
      isOwned = true;
      // A later Ready may replace a suffix of an earlier one (a follower's conflict truncation).
      const cut = rd.entries[0].index - merged[0].index;
      if (cut < merged.length) merged.length = Math.max(0, cut);
      for (const e of rd.entries) merged.push(e);
      entries = merged;
    }
    if (entries.length === 0 && hardState === null) {
      this.finishPersist(batch);
      this.pumpPersist();
      return;
    }
    this.isAppending = true;
    const startMs = this.clock.now();
    let bytes = 0;
    if (this.observer.onFsync !== undefined) for (const e of entries) bytes += e.data.byteLength;
    const count = entries.length;
    this.appendDone = this.storage.append(entries, hardState).then(
      () => {
        this.isAppending = false;
        if (this.isStopped) return;
        this.observer.onFsync?.(this.clock.now() - startMs, count, bytes);
        this.finishPersist(batch);
        this.pumpPersist();
        this.run();
      },
      (cause: unknown) => {
        this.isAppending = false;
        this.fatal(cause, 'Storage.append failed');
      },
    );
  }

  /** Runs `job` as a storage write in order with the appends; resolves when it is done. */
  private storageJob(job: () => Promise<void>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.persistQueue.push({
        run: () =>
          job().then(resolve, (error: unknown) => {
            reject(error);
            throw error;
          }),
      });
      this.pumpPersist();
    });
  }

  private finishPersist(batch: readonly Ready[]): void {
    const after: Message[] = [];
    for (const rd of batch) {
      this.core.persisted(rd);
      for (const m of rd.messagesAfterPersist) after.push(m);
    }
    if (after.length > 0) this.transport.send(after);
  }

  private pumpApply(): void {
    if (this.isApplying || this.applyHolds > 0 || this.applyQueue.length === 0 || this.isStopped) return;
    let entries = this.applyQueue.shift()!;
    let bytes = 0;
    if (this.applyQueue.length > 0) for (const e of entries) bytes += e.data.byteLength;
    // Merge small batches that queued up behind a slow apply, within the apply byte limit.
    while (this.applyQueue.length > 0) {
      let next = 0;
      for (const e of this.applyQueue[0]) next += e.data.byteLength;
      if (bytes + next > this.config.applyBatchBytesMax) break;
      entries = entries.concat(this.applyQueue.shift()!);
      bytes += next;
    }
    this.isApplying = true;
    const startMs = this.clock.now();
    const batch = entries;
    this.applyDone = this.stateMachine.apply(batch).then(
      (results) => {
        this.isApplying = false;
        if (this.isStopped) return;
        this.observer.onApply?.(this.clock.now() - startMs, batch.length);
        this.completeApply(batch, results);
        this.pumpApply();
        this.run();
      },
      (cause: unknown) => {
        this.isApplying = false;
        this.fatal(cause, 'StateMachine.apply failed');
      },
    );
  }

  private completeApply(entries: readonly Entry[], results: readonly unknown[]): void {
    // A node with no proposals of its own waiting (a follower, usually) skips the lookups.
    const count = this.byIndex.size === 0 ? 0 : entries.length;
    for (let i = 0; i < count; i++) {
      const e = entries[i];
      const head = this.byIndex.get(e.index);
      if (head === undefined) continue;
      this.byIndex.delete(e.index);
      for (let p: Pending | null = head; p !== null; p = p.next) {
        if (p.term === e.term) {
          if (!p.isSettled) {
            p.isSettled = true;
            if (p.removeAbortListener !== null) {
              p.removeAbortListener();
              p.removeAbortListener = null;
            }
            p.resolve(results[i]);
          }
        } else {
          this.settle(p, new RaftError(RaftErrorCode.ProposalDropped, 'another entry was committed at this index'));
        }
      }
    }
    const last = entries[entries.length - 1].index;
    this.appliedIndex = last;
    this.core.appliedTo(last);
    this.logAppliedEntries += entries.length;
    for (const e of entries) this.logAppliedBytes += e.data.byteLength;
    this.releaseReads();
    this.maybeCompact();
  }

  /**
   * Compacts the log once it holds more than `logEntriesMax` applied entries or `logBytesMax`
   * applied bytes: the state machine's durable state stands in for them (a follower that needs them
   * gets a snapshot). Keeps the last `logEntriesKeep` applied entries for followers slightly behind.
   */
  private maybeCompact(): void {
    if (this.isCompacting) return;
    const isOverCount = this.logAppliedEntries > this.config.logEntriesMax;
    const isOverBytes = this.logAppliedBytes > this.config.logBytesMax;
    if (!isOverCount && !isOverBytes) return;
    const index = Math.min(
      isOverBytes ? this.appliedIndex : this.appliedIndex - this.config.logEntriesKeep,
      this.core.log.stableIndex,
    );
    if (index <= this.core.log.firstIndex() - 1) return;
    const meta = this.core.compact(index);
    this.logAppliedEntries = this.appliedIndex - index;
    this.logAppliedBytes = isOverBytes ? 0 : this.logAppliedBytes;
    this.isCompacting = true;
    void this.storageJob(() => this.storage.applySnapshot(meta, true)).then(
      () => {
        this.isCompacting = false;
        this.log.debug({ index }, 'raft log compacted');
      },
      () => {
        // fatal() already halted the node.
      },
    );
  }

  // ─── Snapshot transfer ────────────────────────────────────────────────────────────────────────

  /** Leader: starts streaming a snapshot of the applied state to `to`. */
  private startSnapshot(to: NodeId): void {
    const previous = this.outgoing.get(to);
    if (previous !== undefined) this.closeOutgoing(previous);
    const core = this.core;
    // Hold applies so the snapshot is opened exactly at the applied index its metadata names.
    this.applyHolds++;
    const open = async (): Promise<void> => {
      try {
        await this.applyDone;
        if (this.isStopped || core.role !== 'leader') {
          core.reportSnapshot(to, false);
          return;
        }
        const meta = core.snapshotMetaAt(this.appliedIndex);
        const reader = await this.stateMachine.openSnapshot(meta);
        const out: OutgoingSnapshot = {
          to,
          term: core.term,
          meta,
          reader,
          positions: [],
          nextSeq: 0,
          nextPosition: null,
          isLastSent: false,
          ackedSeq: -1,
          isReading: false,
          lastProgressTick: this.tickCount,
          idleRounds: 0,
          isClosed: false,
        };
        this.outgoing.set(to, out);
        this.log.info({ to, index: meta.index, term: meta.term }, 'sending a snapshot');
        this.pumpSnapshot(out);
      } finally {
        this.applyHolds--;
        this.pumpApply();
      }
    };
    open().catch((cause: unknown) => {
      this.log.warn({ err: cause, to }, 'opening a snapshot failed');
      core.reportSnapshot(to, false);
      this.schedule();
    });
  }

  /** Reads and sends chunks until the inflight window is full or the last chunk is out. */
  private pumpSnapshot(out: OutgoingSnapshot): void {
    if (out.isClosed || out.isReading || out.isLastSent || out.reader === null) return;
    if (out.nextSeq - out.ackedSeq - 1 >= this.config.snapshotChunksInflightMax) return;
    if (this.core.role !== 'leader' || this.core.term !== out.term) {
      this.closeOutgoing(out);
      return;
    }
    out.isReading = true;
    const seq = out.nextSeq;
    const position = out.nextPosition;
    out.reader.read(position, this.config.snapshotChunkBytes).then(
      ({ data, next }) => {
        out.isReading = false;
        if (out.isClosed || this.isStopped) return;
        out.positions[seq] = position;
        out.nextSeq = seq + 1;
        out.nextPosition = next;
        out.isLastSent = next === null;
        const m: Message = {
          type: MessageType.Snap,
          from: this.core.id,
          to: out.to,
          term: out.term,
          logTerm: out.meta.term,
          index: out.meta.index,
          entries: [],
          commit: 0,
          reject: false,
          rejectHint: 0,
          context: seq,
          snapshot: { meta: out.meta, seq, data, isLast: next === null },
        };
        this.transport.send([m]);
        this.pumpSnapshot(out);
      },
      (cause: unknown) => {
        out.isReading = false;
        this.log.warn({ err: cause, to: out.to }, 'reading a snapshot failed');
        this.closeOutgoing(out);
        this.core.reportSnapshot(out.to, false);
        this.schedule();
      },
    );
  }

  /** Leader: a follower acknowledged chunk `m.context` (or asked to restart). */
  private onSnapshotAck(m: Message): void {
    const out = this.outgoing.get(m.from);
    if (out === undefined || out.meta.index !== m.index) return;
    out.lastProgressTick = this.tickCount;
    out.idleRounds = 0;
    if (m.reject) {
      // The follower lost the transfer (it restarted): start again from the beginning.
      this.rewind(out, 0);
      return;
    }
    if (m.context > out.ackedSeq) out.ackedSeq = m.context;
    if (out.isLastSent && out.ackedSeq === out.nextSeq - 1) {
      // Installed (the last chunk is acked after the install): probe the follower from there on,
      // in case its append response was lost.
      this.closeOutgoing(out);
      this.core.reportSnapshot(out.to, true);
      this.schedule();
      return;
    }
    this.pumpSnapshot(out);
  }

  private rewind(out: OutgoingSnapshot, seq: number): void {
    out.nextSeq = seq;
    out.nextPosition = seq === 0 ? null : (out.positions[seq] ?? null);
    out.ackedSeq = seq - 1;
    out.isLastSent = false;
    this.pumpSnapshot(out);
  }

  /** On each tick: resume stalled transfers from the last acknowledged chunk, or give up. */
  private checkSnapshotTimeouts(): void {
    for (const out of this.outgoing.values()) {
      if (this.tickCount - out.lastProgressTick < this.config.snapshotIdleTicks) continue;
      out.lastProgressTick = this.tickCount;
      out.idleRounds++;
      if (out.idleRounds >= this.config.snapshotIdleRoundsMax || this.core.role !== 'leader') {
        this.log.warn({ to: out.to, index: out.meta.index }, 'snapshot transfer stalled; abandoned');
        this.closeOutgoing(out);
        this.core.reportSnapshot(out.to, false);
        continue;
      }
      // Idle, not failed: resume after the last chunk the follower acknowledged.
      if (!out.isReading) this.rewind(out, out.ackedSeq + 1);
    }
  }

  private closeOutgoing(out: OutgoingSnapshot): void {
    if (out.isClosed) return;
    out.isClosed = true;
    if (this.outgoing.get(out.to) === out) this.outgoing.delete(out.to);
    const reader = out.reader;
    out.reader = null;
    if (reader !== null) reader.close().catch(() => {});
  }

  /** Follower: one chunk of a snapshot, written in order; the last one installs it. */
  private onSnapshotChunk(m: Message): void {
    const chunk = m.snapshot!;
    const meta = chunk.meta;
    let inc = this.incoming;
    if (inc !== null && inc.isInstalling) return; // the sender retries after its idle timeout
    if (inc !== null && (inc.meta.index !== meta.index || inc.meta.term !== meta.term || inc.from !== m.from)) {
      if (chunk.seq !== 0) return; // a chunk of a transfer we are not in: the sender times out
      this.closeIncoming(inc);
      inc = null;
    }
    if (inc === null) {
      if (chunk.seq !== 0) {
        // We lost this transfer (a restart): ask the leader to start over.
        this.sendSnapshotAck(m.from, meta.index, chunk.seq, true);
        return;
      }
      inc = {
        from: m.from,
        meta,
        writer: null,
        expectedSeq: 0,
        chain: Promise.resolve(),
        isClosed: false,
        isInstalling: false,
      };
      this.incoming = inc;
    }
    const transfer = inc;
    transfer.chain = transfer.chain
      .then(async () => {
        if (transfer.isClosed || this.isStopped) return;
        if (chunk.seq < transfer.expectedSeq) {
          this.sendSnapshotAck(m.from, meta.index, chunk.seq, false); // a resend: ack again
          return;
        }
        if (chunk.seq > transfer.expectedSeq) return; // a gap: the leader resumes after an idle timeout
        if (transfer.writer === null) transfer.writer = await this.stateMachine.beginRestore(meta);
        await transfer.writer.write(chunk.data);
        transfer.expectedSeq++;
        if (chunk.isLast) {
          // The last chunk is acknowledged only once installed: the leader then resumes appends.
          transfer.isInstalling = true;
          await this.installIncoming(transfer);
        }
        this.sendSnapshotAck(m.from, meta.index, chunk.seq, false);
      })
      .catch((cause: unknown) => {
        this.log.warn({ err: cause, from: m.from }, 'receiving a snapshot failed');
        this.closeIncoming(transfer);
      });
  }

  private async installIncoming(inc: IncomingSnapshot): Promise<void> {
    const core = this.core;
    const meta = inc.meta;
    this.applyHolds++;
    try {
      await this.applyDone;
      if (!core.isSnapshotUseful(meta)) {
        this.closeIncoming(inc);
        return;
      }
      const isKeepingEntries = core.log.matchTerm(meta.index, meta.term);
      // Record the snapshot in the log first, then switch the state machine: a crash in between
      // leaves a state machine behind the log's start, which the core detects at boot and repairs
      // by asking the leader for a snapshot again.
      await this.storageJob(() => this.storage.applySnapshot(meta, isKeepingEntries));
      try {
        await inc.writer!.commit();
      } catch (cause) {
        // The log already starts after the snapshot: this node cannot go on with its old state.
        // Halting is safe; at the next boot the core sees the state machine behind the log start.
        this.fatal(cause, 'SnapshotWriter.commit failed after the log recorded the snapshot');
        return;
      }
      inc.writer = null;
      this.closeIncoming(inc);
      core.installSnapshot(meta, isKeepingEntries, inc.from);
      this.appliedIndex = meta.index;
      this.logAppliedEntries = 0;
      this.logAppliedBytes = 0;
      // Entries handed out to apply at or below the snapshot are part of it now.
      this.applyQueue = this.applyQueue
        .map((batch) => batch.filter((e) => e.index > meta.index))
        .filter((batch) => batch.length > 0);
      for (const [index, p] of this.byIndex) {
        if (index > meta.index) continue;
        this.byIndex.delete(index);
        for (let q: Pending | null = p; q !== null; q = q.next) {
          this.settle(
            q,
            new RaftError(RaftErrorCode.ProposalDropped, 'a snapshot replaced this entry; its outcome is unknown'),
          );
        }
      }
      this.log.info({ index: meta.index, term: meta.term, from: inc.from }, 'installed a snapshot');
    } finally {
      this.applyHolds--;
      this.pumpApply();
      this.run();
    }
  }

  private closeIncoming(inc: IncomingSnapshot): void {
    if (inc.isClosed) return;
    inc.isClosed = true;
    if (this.incoming === inc) this.incoming = null;
    const writer = inc.writer;
    inc.writer = null;
    if (writer !== null) writer.abort().catch(() => {});
  }

  private sendSnapshotAck(to: NodeId, index: number, seq: number, isRestart: boolean): void {
    this.transport.send([
      {
        type: MessageType.SnapResp,
        from: this.core.id,
        to,
        term: this.core.term,
        logTerm: 0,
        index,
        entries: [],
        commit: 0,
        reject: isRestart,
        rejectHint: 0,
        context: seq,
      } satisfies Message,
    ]);
  }

  private releaseReads(): void {
    if (this.readsReady.length === 0) return;
    let n = 0;
    for (; n < this.readsReady.length && this.readsReady[n].index <= this.appliedIndex; n++) {
      for (const w of this.readsReady[n].waiters) {
        if (!w.isSettled) this.settle(w, null);
      }
    }
    if (n > 0) this.readsReady.splice(0, n);
  }

  private expireForwards(): void {
    if (this.forwards.size === 0 && this.transfer === null) return;
    const limit = 2 * this.config.electionTimeoutTicks;
    for (const [id, batch] of this.forwards) {
      if (this.tickCount - batch.sentTick < limit) continue;
      this.forwards.delete(id);
      const error = new RaftError(
        RaftErrorCode.ProposalDropped,
        'no answer from the leader to a forwarded proposal; it may or may not be applied',
      );
      for (const p of batch.pendings) this.settle(p, error);
    }
  }

  /** Leader changes, commits and the transfer's outcome, reported after each loop turn. */
  private observe(): void {
    const core = this.core;
    this.checkConditions();
    for (const out of this.outgoing.values()) {
      // The follower no longer needs this snapshot (it caught up otherwise, or we lost leadership).
      if (core.role !== 'leader' || core.progress.get(out.to)?.state !== 'snapshot') this.closeOutgoing(out);
    }
    if (core.lead !== this.lastLeader || core.term !== this.lastTerm) {
      if (core.lead !== this.lastLeader) {
        this.log.info({ leader: core.lead, term: core.term, role: core.role }, 'raft leader changed');
        this.observer.onLeaderChange?.(core.lead, core.term);
      }
      this.lastLeader = core.lead;
      this.lastTerm = core.term;
    }
    if (core.log.committed !== this.lastCommit) {
      this.lastCommit = core.log.committed;
      this.observer.onCommit?.(this.lastCommit);
    }
    const t = this.transfer;
    if (t !== null) {
      if (t.waiter.isSettled) this.transfer = null;
      else if (core.lead === t.to && core.role !== 'leader') {
        this.transfer = null;
        this.settle(t.waiter, null);
      } else if (
        (core.role === 'leader' && core.leadTransferee !== t.to) ||
        (core.lead !== null && core.lead !== t.to && core.role !== 'leader') ||
        this.tickCount - t.startTick > 2 * this.config.electionTimeoutTicks
      ) {
        this.transfer = null;
        this.settle(t.waiter, this.coded('RAFT_TRANSFER_FAILED', `leadership did not move to ${t.to}`));
      }
    }
  }

  // ─── Errors and shutdown ──────────────────────────────────────────────────────────────────────

  private notLeader(): RaftError {
    return new RaftError(RaftErrorCode.NotLeader, `node ${this.core.id} is not the leader`, {
      leaderHint: this.core.lead,
    });
  }

  private coded(code: RaftCoreCode, message: string, leaderHint: NodeId | null = this.core.lead): RaftError {
    if (code === 'RAFT_NOT_LEADER') return new RaftError(code, `${message}: not the leader`, { leaderHint });
    return new RaftError(code, message, { leaderHint });
  }

  /** Settles a waiter once: with `error`, or successfully when `error` is null. */
  private settle(w: Waiter | Pending, error: RaftError | null): void {
    if (w.isSettled) return;
    w.isSettled = true;
    if (w.removeAbortListener !== null) {
      w.removeAbortListener();
      w.removeAbortListener = null;
    }
    if (error === null) (w as Waiter).resolve();
    else w.reject(error);
  }

  /**
   * Settles `w` with RAFT_ABORTED when `signal` aborts. The listener is removed when `w` settles
   * otherwise: callers may pass one long-lived signal (a stream's) to many calls, which must not
   * accumulate a listener per call.
   */
  private onAbort(signal: AbortSignal, w: Waiter | Pending, message: string): void {
    const listener = (): void => this.settle(w, new RaftError(RaftErrorCode.Aborted, message));
    signal.addEventListener('abort', listener, { once: true });
    w.removeAbortListener = () => signal.removeEventListener('abort', listener);
  }

  /**
   * Halts the node for good: storage or state-machine failures (RAFT_STORAGE_FAILED), or a broken
   * core invariant (RAFT_STOPPED, the assertion as cause).
   */
  private fatal(cause: unknown, message: string): void {
    const code = message.startsWith('raft core invariant') ? RaftErrorCode.Stopped : RaftErrorCode.StorageFailed;
    const error = new RaftError(code, message, { cause });
    this.log.error({ err: cause }, message);
    this.halt(error);
    this.observer.onFatal?.(error);
  }

  private halt(error: RaftError): void {
    if (this.isStopped) return;
    this.isStopped = true;
    this.cancelTick?.();
    this.cancelTick = null;
    for (const p of this.proposalPendings) this.settle(p, error);
    this.proposalPendings = [];
    this.proposalData = [];
    for (const p of this.byIndex.values()) {
      for (let q: Pending | null = p; q !== null; q = q.next) this.settle(q, error);
    }
    this.byIndex.clear();
    for (const batch of this.forwards.values()) for (const p of batch.pendings) this.settle(p, error);
    this.forwards.clear();
    for (const w of this.readWaiters) this.settle(w, error);
    this.readWaiters = [];
    for (const ws of this.readBatches.values()) for (const w of ws) this.settle(w, error);
    this.readBatches.clear();
    for (const r of this.readsReady) for (const w of r.waiters) this.settle(w, error);
    this.readsReady = [];
    if (this.transfer !== null) this.settle(this.transfer.waiter, error);
    this.transfer = null;
    for (const c of this.conditions) this.settle(c.waiter, error);
    this.conditions = [];
    for (const out of [...this.outgoing.values()]) this.closeOutgoing(out);
    if (this.incoming !== null) this.closeIncoming(this.incoming);
  }
}
