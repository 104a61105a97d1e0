/**
 * The Raft state machine: pure and synchronous, in the style of etcd's raft. Inputs are `step`
 * (a message from a peer), `tick` (one unit of logical time), `propose`, `readIndex` and
 * `transferLeadership`; the output is a {@link Ready} that the driver persists, sends and applies,
 * then acknowledges with `persisted` and `appliedTo` (or both at once with `advance`).
 *
 * No IO, timers, promises, clock or Math.random here: time arrives as ticks and randomness from
 * the injected {@link Random}, so a seed replays a run exactly.
 */
import type { ConfState, Entry, HardState, NodeId, Random, SnapshotMeta } from '../api.js';
import { EntryType } from '../api.js';
import { assert } from './assert.js';
import { ENTRY_OVERHEAD_BYTES, RaftLog } from './log.js';
import type { Message } from './messages.js';
import { CAMPAIGN_TRANSFER, CONTEXT_NEED_SNAPSHOT, MessageType, PropRejectReason } from './messages.js';
import { Progress, ProgressState } from './progress.js';
import { VoteResult, jointMajorityValue, jointVoteResult } from './quorum.js';
import type { ConfChangeRequest } from './confchange.js';
import { applyConfChange, decodeConfChange, encodeConfChange, isJoint } from './confchange.js';

/** A node's role. `pre-candidate` is a node running a pre-vote before a real campaign. */
export type Role = 'follower' | 'pre-candidate' | 'candidate' | 'leader';

/** The core's configuration. Validated by the driver (`RaftNode`); the core asserts the basics. */
export interface CoreConfig {
  readonly id: NodeId;
  /** Followers campaign after a random timeout in [e, 2e) ticks without hearing from a leader. */
  readonly electionTimeoutTicks: number;
  /** The leader sends heartbeats every this many ticks. Must be below electionTimeoutTicks. */
  readonly heartbeatTicks: number;
  readonly isPreVoteEnabled: boolean;
  readonly isCheckQuorumEnabled: boolean;
  /** Followers forward proposals to the leader instead of refusing them with RAFT_NOT_LEADER. */
  readonly isProposalForwardingEnabled: boolean;
  readonly inflightMessagesMax: number;
  readonly inflightBytesMax: number;
  readonly entryBytesMax: number;
  readonly appendBatchBytesMax: number;
  readonly uncommittedBytesMax: number;
  /**
   * Lease length in ticks for lease reads, already shortened by the clock-drift bound; 0 disables
   * lease reads. Requires check-quorum (followers in a lease refuse to vote).
   */
  readonly leaseTicks: number;
  /** Most bytes of committed entries handed out in one Ready. */
  readonly applyBatchBytesMax: number;
  /**
   * When the commit index advances, the leader tells followers only through messages it sends
   * anyway: the next append carrying entries, or the next heartbeat (which carries the commit
   * index). Without it, every advance sends an append to each follower, often empty, and each
   * such append costs a reply. Followers then apply up to a heartbeat interval later; nothing on
   * the leader waits for that (commit, acknowledgements and ReadIndex reads are decided there).
   */
  readonly isCommitPiggybackEnabled: boolean;
  readonly random: Random;
}

/** The state the core starts from, as loaded from Storage and the state machine. */
export interface CoreState {
  readonly hardState: HardState;
  readonly snapshot: SnapshotMeta | null;
  readonly entries: readonly Entry[];
  /** The state machine's durable applied index. */
  readonly appliedIndex: number;
  /** The configuration: from the snapshot, else the initial peers. */
  readonly conf: ConfState;
}

/** A confirmed linearizable read: once `index` is applied, the read `requestId` may be served. */
export interface ReadState {
  readonly requestId: number;
  readonly index: number;
}

/** The leader's answer to a proposal forwarded by this node (see `proposeForwarded`). */
export interface ForwardResult {
  /** The id passed to `propose` for the forwarded batch. */
  readonly forwardId: number;
  /** Index and term of the first entry of the batch in the leader's log, or 0 on refusal. */
  readonly index: number;
  readonly term: number;
  /** Null on success, else the error code the proposals fail with. */
  readonly code: RaftCoreCode | null;
  readonly leaderHint: NodeId | null;
}

/**
 * The output of the core, handed out by {@link RaftCore.ready}. The persistence contract, field by
 * field:
 *
 * 1. `messages` may be sent at once, before anything in this Ready is durable. They depend on no
 *    unsynced state: vote requests, heartbeats, rejections, and the leader's appends (the leader
 *    writes its own log in parallel with replicating it; it counts itself toward the commit quorum
 *    only after `persisted` reports its append durable).
 * 2. `entries` and `hardState` must be made durable (one synced write, entries replacing any stored
 *    suffix from `entries[0].index`) in Ready order: a later Ready's write must not start before an
 *    earlier one's, and must not become durable before it.
 * 3. `messagesAfterPersist` may be sent only after `entries` and `hardState` of this Ready AND of
 *    every earlier Ready are durable: vote grants and append acknowledgements promise durability.
 * 4. After the write, call `persisted(ready)` (this is where the leader's own ack and a
 *    candidate's own vote are counted).
 * 5. `committedEntries` are committed and durable locally: apply them in order (they may be applied
 *    while later Readies are still being persisted), then call `appliedTo(lastIndex)`.
 * 6. `readStates`: each read may be served once the applied index reaches its `index`.
 *    `droppedReads` lists read ids that will never be confirmed (leadership was lost): fail them.
 * 7. `forwardResults`: the leader's answers to proposals this follower forwarded.
 * 8. Snapshots (the driver streams them; the core decides when): `snapshotsToSend` lists followers
 *    that need a snapshot (open one at the applied index, stream it as MsgSnap chunks, and call
 *    `reportSnapshot(to, false)` if it fails); `snapshotAcks` are the followers' MsgSnapResp for
 *    that sender; `snapshotChunks` are MsgSnap chunks this follower should write (then, after the
 *    last one: `Storage.applySnapshot`, `SnapshotWriter.commit`, `installSnapshot`).
 */
export interface Ready {
  readonly entries: readonly Entry[];
  /** Null when term, vote (and, with entries, commit) did not change since the last Ready. */
  readonly hardState: HardState | null;
  readonly messages: readonly Message[];
  readonly messagesAfterPersist: readonly Message[];
  readonly committedEntries: readonly Entry[];
  readonly readStates: readonly ReadState[];
  readonly droppedReads: readonly number[];
  readonly forwardResults: readonly ForwardResult[];
  readonly snapshotsToSend: readonly NodeId[];
  readonly snapshotAcks: readonly Message[];
  readonly snapshotChunks: readonly Message[];
}

/** Codes the core reports for refused requests; the driver turns them into `RaftError`s. */
export type RaftCoreCode =
  | 'RAFT_CONF_CHANGE_PENDING'
  | 'RAFT_CONF_CHANGE_INVALID'
  | 'RAFT_NOT_LEADER'
  | 'RAFT_PROPOSAL_DROPPED'
  | 'RAFT_ENTRY_TOO_LARGE'
  | 'RAFT_UNCOMMITTED_LIMIT'
  | 'RAFT_BATCH_TOO_LARGE'
  | 'RAFT_TRANSFER_FAILED';

/**
 * The outcome of `propose`: on success (`code` null) the entries got indexes `index`,
 * `index + 1`, … in `term` (or, when forwarded, `isForwarded` is true and index/term are 0: the
 * answer arrives later as a {@link ForwardResult}).
 */
export interface ProposeResult {
  readonly code: RaftCoreCode | null;
  readonly index: number;
  readonly term: number;
  readonly isForwarded: boolean;
  readonly leaderHint: NodeId | null;
}

/** The outcome of `readIndex` and `transferLeadership`: null code when accepted. */
export interface RequestResult {
  readonly code: RaftCoreCode | null;
  readonly leaderHint: NodeId | null;
}

const NO_MESSAGES: readonly Message[] = Object.freeze([]);
const NO_ENTRIES: readonly Entry[] = Object.freeze([]);
const NO_NUMBERS: readonly number[] = Object.freeze([]);
const NO_READS: readonly ReadState[] = Object.freeze([]);
const NO_FORWARDS: readonly ForwardResult[] = Object.freeze([]);
const NO_IDS: readonly NodeId[] = Object.freeze([]);
const ACCEPTED: RequestResult = Object.freeze({ code: null, leaderHint: null });
/** Heartbeat rounds whose send tick is remembered, for leases. */
const ROUND_RING_SIZE = 1024;
/** Reads waiting for a quorum round or for the leader's first commit. */
export const PENDING_READS_MAX = 65536;

interface PendingRead {
  readonly requestId: number;
  readonly index: number;
  readonly round: number;
}

const REJECT_CODES: Record<number, RaftCoreCode> = {
  [PropRejectReason.NotLeader]: 'RAFT_NOT_LEADER',
  [PropRejectReason.Dropped]: 'RAFT_PROPOSAL_DROPPED',
  [PropRejectReason.UncommittedLimit]: 'RAFT_UNCOMMITTED_LIMIT',
  [PropRejectReason.EntryTooLarge]: 'RAFT_ENTRY_TOO_LARGE',
  [PropRejectReason.BatchTooLarge]: 'RAFT_BATCH_TOO_LARGE',
};

/** The Raft state machine. See the module comment and {@link Ready} for the contract. */
export class RaftCore {
  readonly id: NodeId;
  term = 0;
  vote: NodeId | null = null;
  /** The leader of the current term, when known. */
  lead: NodeId | null = null;
  role: Role = 'follower';
  readonly log: RaftLog;

  private readonly cfg: CoreConfig;
  private voters: NodeId[];
  private votersOutgoing: NodeId[];
  private learners: NodeId[];
  private learnersNext: NodeId[] = [];
  /** The configuration the log starts with (the snapshot's, or the initial one) and its index. */
  private baseConf: ConfState;
  private baseConfIndex: number;
  /**
   * Configurations from ConfChange entries still in the log, ascending. Raft §4.1: a server uses the
   * latest configuration in its log, committed or not; a truncated entry takes its change with it.
   */
  private configs: { index: number; term: number; conf: ConfState }[] = [];
  /** Progress of every member (voters and learners, self included), meaningful on the leader. */
  readonly progress = new Map<NodeId, Progress>();
  private readonly votes = new Map<NodeId, boolean>();

  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  /** Ticks since this node started: the time base of leases. */
  private tickCount = 0;
  /** The follower a leadership transfer is handing over to, or null. */
  leadTransferee: NodeId | null = null;
  /** Set once a TimeoutNow was sent in this term: lease reads are then unsafe for the rest of it. */
  private isLeaseRevoked = false;
  /** Started from a persisted term: it may have acknowledged a leader's lease before a crash. */
  private readonly hasBootedWithState: boolean;
  private uncommittedBytes = 0;
  /** The leader's appended batches not yet wholly committed: last index and bytes of each, FIFO. */
  private readonly uncommittedBatchLastIndexes: number[] = [];
  private readonly uncommittedBatchBytes: number[] = [];
  private uncommittedBatchHead = 0;

  private heartbeatRound = 0;
  private confirmedRound = 0;
  private readonly roundSentTicks: number[] = new Array<number>(ROUND_RING_SIZE).fill(-1);
  private leaseStartTick = -Infinity;
  private pendingReads: PendingRead[] = [];
  /** Reads arrived before the leader committed an entry of its term. */
  private readsBeforeCommit: number[] = [];

  private msgs: Message[] = [];
  private msgsAfterPersist: Message[] = [];
  private readStates: ReadState[] = [];
  private droppedReads: number[] = [];
  private forwardResults: ForwardResult[] = [];
  private snapshotsToSend: NodeId[] = [];
  private snapshotAcks: Message[] = [];
  private snapshotChunks: Message[] = [];
  /** The latest snapshot the log starts after (loaded, compacted to, or installed), or null. */
  snapshotMeta: SnapshotMeta | null;
  /**
   * The state machine is behind the log's snapshot (a crash between recording a received snapshot
   * and committing it): this node applies nothing and campaigns not until a leader sends one.
   */
  isSnapshotNeeded = false;
  /** The hard state last handed out (or loaded). */
  private prevHardState: HardState;

  private readonly matchOf = (id: NodeId): number => this.progress.get(id)!.match;
  private readonly roundOf = (id: NodeId): number =>
    id === this.id ? this.heartbeatRound : this.progress.get(id)!.ackedRound;

  constructor(config: CoreConfig, state: CoreState) {
    assert(config.heartbeatTicks > 0 && config.heartbeatTicks < config.electionTimeoutTicks, 'heartbeat < election');
    assert(config.inflightMessagesMax > 0 && config.inflightBytesMax > 0, 'inflight limits are positive');
    this.cfg = config;
    this.id = config.id;
    const snap = state.snapshot;
    this.log = new RaftLog(
      snap?.index ?? 0,
      snap?.term ?? 0,
      state.entries,
      state.hardState.commit,
      state.appliedIndex,
    );
    this.snapshotMeta = snap;
    this.hasBootedWithState = state.hardState.term > 0;
    this.isSnapshotNeeded = snap !== null && state.appliedIndex < snap.index;
    this.term = state.hardState.term;
    this.vote = state.hardState.vote;
    this.prevHardState = state.hardState;
    this.voters = [...state.conf.voters];
    this.votersOutgoing = [...state.conf.votersOutgoing];
    this.learners = [...state.conf.learners];
    this.learnersNext = [...state.conf.learnersNext];
    this.baseConf = state.conf;
    this.baseConfIndex = snap?.index ?? 0;
    for (const id of this.members()) {
      this.progress.set(id, new Progress(config.inflightMessagesMax, config.inflightBytesMax, !this.isVoterId(id)));
    }
    this.syncConfs(state.entries);
    this.becomeFollower(this.term, null);
  }

  // ─── Public inputs ────────────────────────────────────────────────────────────────────────────

  /** Advances logical time by one tick: elections, heartbeats, check-quorum, transfer timeouts. */
  tick(): void {
    this.tickCount++;
    if (this.role === 'leader') this.tickLeader();
    else this.tickElection();
  }

  /** Starts an election now (as if the election timeout elapsed). Ignored on a leader or a non-voter. */
  campaign(): void {
    this.hup(false);
  }

  /**
   * Proposes commands. On the leader they are appended in one batch; on a follower they are
   * forwarded (when enabled, tagged with `forwardId`) or refused with RAFT_NOT_LEADER.
   */
  propose(data: readonly Uint8Array[], forwardId = 0): ProposeResult {
    let bytes = 0;
    for (let i = 0; i < data.length; i++) {
      const size = data[i].byteLength + ENTRY_OVERHEAD_BYTES;
      if (data[i].byteLength > this.cfg.entryBytesMax) return this.refused('RAFT_ENTRY_TOO_LARGE');
      bytes += size;
    }
    if (bytes > this.cfg.appendBatchBytesMax && data.length > 1) return this.refused('RAFT_BATCH_TOO_LARGE');
    if (this.role !== 'leader') {
      if (this.cfg.isProposalForwardingEnabled && this.lead !== null && this.role === 'follower') {
        const entries: Entry[] = new Array<Entry>(data.length);
        for (let i = 0; i < data.length; i++) entries[i] = { term: 0, index: 0, type: EntryType.Normal, data: data[i] };
        this.send(MessageType.Prop, this.lead, 0, 0, entries, 0, false, 0, forwardId, false);
        return { code: null, index: 0, term: 0, isForwarded: true, leaderHint: this.lead };
      }
      return this.refused('RAFT_NOT_LEADER');
    }
    const reason = this.leaderAppendCheck(bytes);
    if (reason !== 0) return this.refused(REJECT_CODES[reason]);
    const index = this.appendLeaderEntries(data, EntryType.Normal, bytes);
    return { code: null, index, term: this.term, isForwarded: false, leaderHint: this.id };
  }

  /**
   * Proposes a membership change (leader only). Refused with RAFT_CONF_CHANGE_PENDING while another
   * change is uncommitted or before the leader committed an entry of its term (the single-server
   * change bug, dissertation §4.1 errata), and RAFT_CONF_CHANGE_INVALID for an impossible change.
   * The new configuration takes effect at once, when the entry is appended (§4.1).
   */
  proposeConfChange(request: ConfChangeRequest): ProposeResult {
    if (this.role !== 'leader') return this.refused('RAFT_NOT_LEADER');
    if (this.leadTransferee !== null) return this.refused('RAFT_PROPOSAL_DROPPED');
    if (this.log.term(this.log.committed) !== this.term || this.lastConfIndex() > this.log.committed) {
      return this.refused('RAFT_CONF_CHANGE_PENDING');
    }
    const next = applyConfChange(this.currentConf(), request);
    if (typeof next === 'string') return this.refused('RAFT_CONF_CHANGE_INVALID');
    return this.appendConfChange(request, next);
  }

  /** Why `request` would be refused as invalid right now, or null (for error messages). */
  explainConfChange(request: ConfChangeRequest): string | null {
    const next = applyConfChange(this.currentConf(), request);
    return typeof next === 'string' ? next : null;
  }

  /**
   * Requests a linearizable read point. On the leader the request completes later as a
   * {@link ReadState} (after a quorum heartbeat round, or at once under a valid lease) or as a
   * dropped read if leadership is lost. Elsewhere it is refused with RAFT_NOT_LEADER.
   */
  readIndex(requestId: number): RequestResult {
    if (this.role !== 'leader') return { code: 'RAFT_NOT_LEADER', leaderHint: this.lead };
    if (this.pendingReads.length + this.readsBeforeCommit.length >= PENDING_READS_MAX) {
      return { code: 'RAFT_PROPOSAL_DROPPED', leaderHint: this.id };
    }
    // Raft §6.4: the leader's commit index is only known to be current once it has committed an
    // entry of its own term (the no-op); until then reads wait.
    if (this.log.term(this.log.committed) !== this.term) {
      this.readsBeforeCommit.push(requestId);
      return ACCEPTED;
    }
    this.startRead(requestId);
    return ACCEPTED;
  }

  /**
   * Starts handing leadership to `to`: the leader stops accepting proposals, brings `to` up to date,
   * then sends it TimeoutNow. Aborted after an election timeout (see `leadTransferee`).
   */
  transferLeadership(to: NodeId): RequestResult {
    if (this.role !== 'leader') return { code: 'RAFT_NOT_LEADER', leaderHint: this.lead };
    if (to === this.id) return ACCEPTED;
    if (!this.voters.includes(to)) return { code: 'RAFT_TRANSFER_FAILED', leaderHint: this.id };
    if (this.leadTransferee === to) return ACCEPTED;
    this.leadTransferee = to;
    // The transfer gets one election timeout to complete.
    this.electionElapsed = 0;
    const pr = this.progress.get(to)!;
    if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(to);
    else this.sendAppend(to, true);
    return ACCEPTED;
  }

  /** Processes a message from a peer. Messages of any term, kind or order are accepted. */
  step(m: Message): void {
    if (m.term > this.term) {
      if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
        const isForced = m.context === CAMPAIGN_TRANSFER;
        // Raft §6 (check-quorum / leader stickiness): a node that heard from a leader within the
        // election timeout ignores vote requests, so a rejoining node cannot depose a live leader.
        // With lease reads, a node that just started may have acknowledged a leader's lease before
        // it crashed, and forgot: it also waits out one election timeout after boot before voting.
        const isInLease =
          this.cfg.isCheckQuorumEnabled &&
          ((this.lead !== null && this.electionElapsed < this.cfg.electionTimeoutTicks) ||
            (this.cfg.leaseTicks > 0 && this.hasBootedWithState && this.tickCount < this.cfg.electionTimeoutTicks));
        if (!isForced && isInLease) return;
      }
      if (m.type === MessageType.PreVote) {
        // A pre-vote never changes our term.
      } else if (m.type === MessageType.PreVoteResp && !m.reject) {
        // Granted pre-votes carry the future term; the pre-candidate's term is unchanged.
      } else if (m.type === MessageType.App || m.type === MessageType.Heartbeat || m.type === MessageType.Snap) {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, null);
      }
    } else if (m.term < this.term) {
      if (
        (this.cfg.isCheckQuorumEnabled || this.cfg.isPreVoteEnabled) &&
        (m.type === MessageType.App || m.type === MessageType.Heartbeat)
      ) {
        // A stale leader (e.g. behind a partition) learns our term and steps down. Without this, a
        // node whose term rose while pre-vote kept it from winning could never be caught up.
        this.send(MessageType.AppResp, m.from, 0, 0, NO_ENTRIES, 0, false, 0, 0, false);
      } else if (m.type === MessageType.PreVote) {
        this.send(MessageType.PreVoteResp, m.from, 0, 0, NO_ENTRIES, 0, true, 0, 0, false);
      } else if (m.type === MessageType.Vote) {
        // Raft §5.1: answer a stale candidate with our term so it updates its own. Dropping the
        // request silently could deadlock elections: a voter whose term rose through failed
        // elections (e.g. with an older configuration) would ignore every candidate (sim seed 4589).
        this.send(MessageType.VoteResp, m.from, 0, 0, NO_ENTRIES, 0, true, 0, 0, false);
      }
      return;
    }

    if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
      this.handleVoteRequest(m);
      return;
    }
    switch (this.role) {
      case 'leader':
        this.stepLeader(m);
        break;
      case 'candidate':
      case 'pre-candidate':
        this.stepCandidate(m);
        break;
      default:
        this.stepFollower(m);
    }
  }

  // ─── Ready ────────────────────────────────────────────────────────────────────────────────────

  /** Whether `ready()` would return anything. */
  hasReady(): boolean {
    return (
      this.log.lastIndex() > this.log.handedIndex ||
      this.msgs.length > 0 ||
      this.msgsAfterPersist.length > 0 ||
      (this.log.hasCommittedToHand() && !this.isSnapshotNeeded) ||
      this.readStates.length > 0 ||
      this.droppedReads.length > 0 ||
      this.forwardResults.length > 0 ||
      this.snapshotsToSend.length > 0 ||
      this.snapshotAcks.length > 0 ||
      this.snapshotChunks.length > 0 ||
      this.term !== this.prevHardState.term ||
      this.vote !== this.prevHardState.vote
    );
  }

  /**
   * Hands out everything new since the previous `ready()` (see {@link Ready} for what to do with
   * each field). May be called again before earlier Readies are persisted; it never repeats output.
   */
  ready(): Ready {
    const entries = this.log.takeUnstable();
    let hardState: HardState | null = null;
    const prev = this.prevHardState;
    if (
      this.term !== prev.term ||
      this.vote !== prev.vote ||
      (entries.length > 0 && this.log.committed !== prev.commit)
    ) {
      hardState = { term: this.term, vote: this.vote, commit: this.log.committed };
      this.prevHardState = hardState;
    }
    const rd: Ready = {
      entries,
      hardState,
      messages: this.msgs.length === 0 ? NO_MESSAGES : this.msgs,
      messagesAfterPersist: this.msgsAfterPersist.length === 0 ? NO_MESSAGES : this.msgsAfterPersist,
      committedEntries: this.isSnapshotNeeded ? NO_ENTRIES : this.log.takeCommitted(this.cfg.applyBatchBytesMax),
      readStates: this.readStates.length === 0 ? NO_READS : this.readStates,
      droppedReads: this.droppedReads.length === 0 ? NO_NUMBERS : this.droppedReads,
      forwardResults: this.forwardResults.length === 0 ? NO_FORWARDS : this.forwardResults,
      snapshotsToSend: this.snapshotsToSend.length === 0 ? NO_IDS : this.snapshotsToSend,
      snapshotAcks: this.snapshotAcks.length === 0 ? NO_MESSAGES : this.snapshotAcks,
      snapshotChunks: this.snapshotChunks.length === 0 ? NO_MESSAGES : this.snapshotChunks,
    };
    if (this.snapshotsToSend.length > 0) this.snapshotsToSend = [];
    if (this.snapshotAcks.length > 0) this.snapshotAcks = [];
    if (this.snapshotChunks.length > 0) this.snapshotChunks = [];
    if (this.msgs.length > 0) this.msgs = [];
    if (this.msgsAfterPersist.length > 0) this.msgsAfterPersist = [];
    if (this.readStates.length > 0) this.readStates = [];
    if (this.droppedReads.length > 0) this.droppedReads = [];
    if (this.forwardResults.length > 0) this.forwardResults = [];
    return rd;
  }

  /**
   * Reports that `rd.entries` and `rd.hardState` are durable. Call in Ready order, after the write
   * resolved and before (or while) sending `rd.messagesAfterPersist`.
   */
  persisted(rd: Ready): void {
    if (rd.entries.length > 0) {
      const last = rd.entries[rd.entries.length - 1];
      this.log.stableTo(last.index, last.term);
    }
    const hs = rd.hardState;
    if (hs !== null && this.role === 'candidate' && hs.term === this.term && hs.vote === this.id) {
      // Raft §5.2 with durable votes: the candidate's vote for itself counts once it is on disk.
      this.poll(this.id, true);
    }
    if (this.role === 'leader') {
      // The leader's own append counts toward the commit quorum only once durable.
      const self = this.progress.get(this.id);
      if (self !== undefined && self.maybeUpdate(this.log.stableIndex) && this.maybeCommit()) this.bcastCommit();
    }
  }

  /** Reports that the state machine applied (durably) every entry up to `index`. */
  appliedTo(index: number): void {
    this.log.appliedTo(index);
  }

  /** Shorthand for a synchronous driver: `persisted(rd)` then `appliedTo` the last committed entry. */
  advance(rd: Ready): void {
    this.persisted(rd);
    if (rd.committedEntries.length > 0) this.appliedTo(rd.committedEntries[rd.committedEntries.length - 1].index);
  }

  /**
   * Drops applied, durable entries at or below `index` from memory and returns the snapshot
   * metadata the log now starts after (record it with `Storage.applySnapshot(meta, true)` first).
   * Followers that still need those entries will get a snapshot instead.
   */
  compact(index: number): SnapshotMeta {
    if (index <= this.log.firstIndex() - 1) return this.snapshotMeta ?? this.snapshotMetaAt(index);
    const meta = this.snapshotMetaAt(index);
    this.log.compact(index);
    this.snapshotMeta = meta;
    this.baseConf = meta.conf;
    this.baseConfIndex = index;
    this.configs = this.configs.filter((c) => c.index > index);
    return meta;
  }

  /** The metadata of a snapshot of the state at `index` (which must still be in the log or be its start). */
  snapshotMetaAt(index: number): SnapshotMeta {
    const term = this.log.term(index);
    assert(term >= 0, `no term known for index ${index}`);
    return { index, term, conf: this.confAt(index) };
  }

  /**
   * Reports the end of a snapshot transfer to `to` that failed (or was abandoned). The follower is
   * probed again after its next heartbeat reply (and gets a new snapshot if it still needs one).
   */
  reportSnapshot(to: NodeId, isOk: boolean): void {
    const pr = this.progress.get(to);
    if (this.role !== 'leader' || pr === undefined || pr.state !== ProgressState.Snapshot) return;
    if (!isOk) pr.pendingSnapshot = 0;
    pr.becomeProbe();
    // Wait for a heartbeat reply (or the follower's ack) before probing, rather than spin.
    pr.isProbeSent = true;
  }

  /**
   * Whether a received snapshot at `meta` would move this node's state forward: false when the
   * state machine already applied up to it (then abort the restore rather than commit it).
   */
  isSnapshotUseful(meta: SnapshotMeta): boolean {
    return meta.index > this.log.applied || (this.isSnapshotNeeded && meta.index >= this.log.firstIndex() - 1);
  }

  /**
   * Installs a snapshot the state machine has committed and Storage has recorded
   * (`applySnapshot(meta, isKeepingEntries)`): the log restarts after it and the leader is told.
   */
  installSnapshot(meta: SnapshotMeta, isKeepingEntries: boolean, from: NodeId | null): void {
    this.log.restore(meta.index, meta.term, isKeepingEntries);
    this.snapshotMeta = meta;
    this.isSnapshotNeeded = false;
    this.baseConf = meta.conf;
    this.baseConfIndex = meta.index;
    this.configs = this.configs.filter((c) => c.index > meta.index && this.log.term(c.index) === c.term);
    this.applyConf(this.currentConf());
    if (from !== null) this.send(MessageType.AppResp, from, 0, meta.index, NO_ENTRIES, 0, false, 0, 0, false);
  }

  // ─── Introspection ────────────────────────────────────────────────────────────────────────────

  /** The current configuration. */
  conf(): ConfState {
    return {
      voters: [...this.voters],
      learners: [...this.learners],
      votersOutgoing: [...this.votersOutgoing],
      learnersNext: [...this.learnersNext],
    };
  }

  /** The index of the latest ConfChange entry in the log (or of the base configuration). */
  lastConfIndex(): number {
    return this.configs.length > 0 ? this.configs[this.configs.length - 1].index : this.baseConfIndex;
  }

  private currentConf(): ConfState {
    return this.configs.length > 0 ? this.configs[this.configs.length - 1].conf : this.baseConf;
  }

  /** The configuration in force at log index `index`. */
  confAt(index: number): ConfState {
    for (let i = this.configs.length - 1; i >= 0; i--) if (this.configs[i].index <= index) return this.configs[i].conf;
    return this.baseConf;
  }

  private appendConfChange(request: ConfChangeRequest, next: ConfState): ProposeResult {
    const index = this.log.lastIndex() + 1;
    this.configs.push({ index, term: this.term, conf: next });
    this.applyConf(next);
    const data = encodeConfChange(request);
    this.appendLeaderEntries([data], EntryType.ConfChange, data.byteLength + ENTRY_OVERHEAD_BYTES);
    return { code: null, index, term: this.term, isForwarded: false, leaderHint: this.id };
  }

  /**
   * Brings the configuration in line with the log after it changed: drops changes whose entries
   * were truncated, adds those among `entries` now in the log.
   */
  private syncConfs(entries: readonly Entry[]): void {
    let isChanged = false;
    while (this.configs.length > 0) {
      const last = this.configs[this.configs.length - 1];
      if (this.log.term(last.index) === last.term) break;
      this.configs.pop();
      isChanged = true;
    }
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i];
      if (e.type !== EntryType.ConfChange || e.index <= this.lastConfIndex()) continue;
      if (this.log.term(e.index) !== e.term) continue;
      const request = decodeConfChange(e.data);
      assert(request !== null, `malformed ConfChange entry at ${e.index}`);
      const next = applyConfChange(this.currentConf(), request);
      assert(typeof next !== 'string', `invalid ConfChange entry at ${e.index}: ${String(next)}`);
      this.configs.push({ index: e.index, term: e.term, conf: next });
      isChanged = true;
    }
    if (isChanged) this.applyConf(this.currentConf());
  }

  /** Whether this node is a voter of the current configuration. */
  isVoter(): boolean {
    return this.isVoterId(this.id);
  }

  /** Whether this node may campaign. */
  isPromotable(): boolean {
    return (this.isVoterId(this.id) || this.isNeededUntilCommitted()) && !this.isSnapshotNeeded;
  }

  /**
   * Raft §4.2.2: "a server that is not part of its own latest configuration should still start new
   * elections, as it might still be needed until the Cnew entry is committed"; its own vote counts
   * only where it is a voter. True when the latest configuration entry, which leaves this node
   * out, is past our commit index and the configuration before it names us a voter. Without this,
   * a voter that left C_old,new for C_new first, holding the longest log, refuses every candidate
   * still in the joint configuration and never campaigns itself (sim seed 8624): deadlock.
   */
  private isNeededUntilCommitted(): boolean {
    const n = this.configs.length;
    if (n === 0 || this.configs[n - 1].index <= this.log.committed) return false;
    const before = n >= 2 ? this.configs[n - 2].conf : this.baseConf;
    return before.voters.includes(this.id) || before.votersOutgoing.includes(this.id);
  }

  /** Replaces the configuration (from a snapshot), keeping the progress of members that stay. */
  private applyConf(conf: ConfState): void {
    this.voters = [...conf.voters];
    this.votersOutgoing = [...conf.votersOutgoing];
    this.learners = [...conf.learners];
    this.learnersNext = [...conf.learnersNext];
    const members = new Set(this.members());
    for (const id of [...this.progress.keys()]) if (!members.has(id)) this.progress.delete(id);
    for (const id of members) {
      if (this.progress.has(id)) continue;
      const pr = new Progress(this.cfg.inflightMessagesMax, this.cfg.inflightBytesMax, !this.isVoterId(id));
      pr.reset(this.log.lastIndex() + 1, 0);
      this.progress.set(id, pr);
    }
  }

  /** The leader's heartbeat round count (for tests of read confirmation). */
  get currentHeartbeatRound(): number {
    return this.heartbeatRound;
  }

  /** Bytes appended by this leader and not yet committed. */
  get uncommittedBytesCount(): number {
    return this.uncommittedBytes;
  }

  // ─── Roles ────────────────────────────────────────────────────────────────────────────────────

  private reset(term: number): void {
    if (term !== this.term) {
      this.term = term;
      this.vote = null;
    }
    this.lead = null;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeout =
      this.cfg.electionTimeoutTicks + this.cfg.random.nextInt(this.cfg.electionTimeoutTicks);
    this.leadTransferee = null;
    this.isLeaseRevoked = false;
    this.leaseStartTick = -Infinity;
    this.votes.clear();
    this.uncommittedBytes = 0;
    this.uncommittedBatchLastIndexes.length = 0;
    this.uncommittedBatchBytes.length = 0;
    this.uncommittedBatchHead = 0;
    this.heartbeatRound = 0;
    this.confirmedRound = 0;
    this.roundSentTicks.fill(-1);
    if (this.pendingReads.length > 0 || this.readsBeforeCommit.length > 0) {
      for (const r of this.pendingReads) this.droppedReads.push(r.requestId);
      for (const id of this.readsBeforeCommit) this.droppedReads.push(id);
      this.pendingReads = [];
      this.readsBeforeCommit = [];
    }
    const next = this.log.lastIndex() + 1;
    for (const [id, pr] of this.progress) {
      pr.reset(next, id === this.id ? this.log.stableIndex : 0);
    }
  }

  private becomeFollower(term: number, lead: NodeId | null): void {
    this.reset(term);
    this.role = 'follower';
    this.lead = lead;
  }

  private becomePreCandidate(): void {
    assert(this.role !== 'leader', 'a leader does not pre-campaign');
    // Pre-vote changes neither term nor vote: a partitioned node cannot inflate terms.
    this.votes.clear();
    this.role = 'pre-candidate';
    this.lead = null;
  }

  private becomeCandidate(): void {
    assert(this.role !== 'leader', 'a leader does not campaign');
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = 'candidate';
  }

  private becomeLeader(): void {
    assert(this.role === 'candidate', 'only a candidate becomes leader');
    this.reset(this.term);
    this.role = 'leader';
    this.lead = this.id;
    // A leader elected while its own removal is uncommitted (§4.2.2) has no progress of its own: it
    // does not count itself, and steps down once the change commits (see maybeCommit).
    const self = this.progress.get(this.id);
    if (self !== undefined) {
      self.becomeReplicate();
      self.maybeUpdate(this.log.stableIndex);
    }
    // Raft §5.4.2 / §8: entries of earlier terms are committed only through an entry of the
    // current term, so a new leader appends a no-op at once.
    this.appendLeaderEntries([new Uint8Array(0)], EntryType.Normal, ENTRY_OVERHEAD_BYTES);
  }

  private hup(isTransfer: boolean): void {
    if (this.role === 'leader' || !this.isPromotable()) return;
    if (this.cfg.isPreVoteEnabled && !isTransfer) this.startCampaign(true, false);
    else this.startCampaign(false, isTransfer);
  }

  private startCampaign(isPreVote: boolean, isTransfer: boolean): void {
    let voteTerm: number;
    let type: MessageType;
    if (isPreVote) {
      this.becomePreCandidate();
      voteTerm = this.term + 1;
      type = MessageType.PreVote;
      // A pre-vote promises nothing durable: count our own at once.
      if (this.poll(this.id, true)) return;
    } else {
      this.becomeCandidate();
      voteTerm = this.term;
      type = MessageType.Vote;
      // Our own vote is counted in `persisted`, once term and vote are durable.
    }
    const lastIndex = this.log.lastIndex();
    const lastTerm = this.log.lastTerm();
    for (const id of this.voterIds()) {
      if (id === this.id) continue;
      this.msgs.push(
        this.message(
          type,
          id,
          voteTerm,
          lastTerm,
          lastIndex,
          NO_ENTRIES,
          0,
          false,
          0,
          isTransfer ? CAMPAIGN_TRANSFER : 0,
        ),
      );
    }
  }

  /** Records a vote; returns true when the election was decided by it. */
  private poll(from: NodeId, isGranted: boolean): boolean {
    if (!this.votes.has(from)) this.votes.set(from, isGranted);
    const result = jointVoteResult(this.voters, this.votersOutgoing, this.votes);
    if (result === VoteResult.Won) {
      if (this.role === 'pre-candidate') this.startCampaign(false, false);
      else if (this.votes.get(this.id) !== true) {
        // Won on the other voters' grants alone, but our own term and vote are not durable yet: a
        // crash now would restart us in the previous term, free to win this term a second time
        // with another log (simulator seed 15305). Lead only once `persisted` counts our vote.
        return false;
      } else this.becomeLeader();
      return true;
    }
    if (result === VoteResult.Lost) {
      this.becomeFollower(this.term, null);
      return true;
    }
    return false;
  }

  // ─── Ticks ────────────────────────────────────────────────────────────────────────────────────

  private tickElection(): void {
    this.electionElapsed++;
    if (this.isPromotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.hup(false);
    }
  }

  private tickLeader(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.cfg.electionTimeoutTicks) {
      this.electionElapsed = 0;
      if (this.cfg.isCheckQuorumEnabled && !this.checkQuorumActive()) {
        // Raft §6.2: a leader that has not heard from a quorum for an election timeout steps down,
        // so clients find the real leader instead of waiting on a deposed one.
        this.becomeFollower(this.term, null);
        return;
      }
      // A transfer that has not completed within an election timeout is abandoned.
      this.leadTransferee = null;
    }
    if (this.heartbeatElapsed >= this.cfg.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.bcastHeartbeat();
    }
  }

  private checkQuorumActive(): boolean {
    let active = 0;
    let activeOutgoing = 0;
    for (const id of this.voters) {
      const pr = this.progress.get(id)!;
      if (id === this.id || pr.isRecentActive) active++;
    }
    for (const id of this.votersOutgoing) {
      const pr = this.progress.get(id)!;
      if (id === this.id || pr.isRecentActive) activeOutgoing++;
    }
    for (const [id, pr] of this.progress) if (id !== this.id) pr.isRecentActive = false;
    const isActive = (n: number, of: number): boolean => of === 0 || n >= Math.floor(of / 2) + 1;
    return isActive(active, this.voters.length) && isActive(activeOutgoing, this.votersOutgoing.length);
  }

  // ─── Message handling ─────────────────────────────────────────────────────────────────────────

  private handleVoteRequest(m: Message): void {
    const isPreVote = m.type === MessageType.PreVote;
    const respType = isPreVote ? MessageType.PreVoteResp : MessageType.VoteResp;
    const canVote =
      this.vote === m.from || (this.vote === null && this.lead === null) || (isPreVote && m.term > this.term);
    // Raft §5.4.1: grant only to a candidate whose log is at least as up-to-date as ours.
    if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
      if (isPreVote) {
        this.msgs.push(this.message(respType, m.from, m.term, 0, 0, NO_ENTRIES, 0, false, 0, 0));
      } else {
        this.electionElapsed = 0;
        this.vote = m.from;
        // The grant promises a durable vote: it leaves only after the hard state is synced.
        this.msgsAfterPersist.push(this.message(respType, m.from, this.term, 0, 0, NO_ENTRIES, 0, false, 0, 0));
      }
    } else {
      this.msgs.push(this.message(respType, m.from, this.term, 0, 0, NO_ENTRIES, 0, true, 0, 0));
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case MessageType.App:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleAppend(m);
        break;
      case MessageType.Heartbeat:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.log.commitTo(Math.min(m.commit, this.log.lastIndex()));
        // Report our committed and durable index: a leader waiting for us to install a snapshot
        // learns from it that we did, even if our append response was lost.
        this.send(
          MessageType.HeartbeatResp,
          m.from,
          0,
          this.isSnapshotNeeded ? 0 : Math.min(this.log.committed, this.log.stableIndex),
          NO_ENTRIES,
          0,
          false,
          0,
          m.context,
          false,
        );
        break;
      case MessageType.Snap:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleSnapshotChunk(m);
        break;
      case MessageType.TimeoutNow:
        // Raft §3.10: the leader asked us to take over; campaign now, bypassing pre-vote.
        this.hup(true);
        break;
      case MessageType.Prop:
        this.refuseForwardedProposal(m);
        break;
      case MessageType.PropResp:
        this.handlePropResp(m);
        break;
      default:
        break;
    }
  }

  /** A proposal forwarded to a node that is not the leader: refuse it, with our leader hint. */
  private refuseForwardedProposal(m: Message): void {
    this.send(MessageType.PropResp, m.from, 0, 0, NO_ENTRIES, 0, true, PropRejectReason.NotLeader, m.context, false);
  }

  private stepCandidate(m: Message): void {
    switch (m.type) {
      case MessageType.App:
        this.becomeFollower(m.term, m.from);
        this.handleAppend(m);
        break;
      case MessageType.Heartbeat:
      case MessageType.Snap:
        this.becomeFollower(m.term, m.from);
        this.stepFollower(m);
        break;
      case MessageType.VoteResp:
        if (this.role === 'candidate') this.poll(m.from, !m.reject);
        break;
      case MessageType.PreVoteResp:
        if (this.role === 'pre-candidate') this.poll(m.from, !m.reject);
        break;
      case MessageType.Prop:
        this.refuseForwardedProposal(m);
        break;
      case MessageType.PropResp:
        this.handlePropResp(m);
        break;
      default:
        break;
    }
  }

  private stepLeader(m: Message): void {
    const pr = this.progress.get(m.from);
    switch (m.type) {
      case MessageType.AppResp:
        if (pr !== undefined) this.handleAppendResponse(m, pr);
        break;
      case MessageType.HeartbeatResp:
        if (pr !== undefined) this.handleHeartbeatResponse(m, pr);
        break;
      case MessageType.Prop:
        this.handleForwardedProposal(m);
        break;
      case MessageType.SnapResp:
        if (pr !== undefined) {
          pr.isRecentActive = true;
          this.snapshotAcks.push(m);
        }
        break;
      default:
        break;
    }
  }

  private handleSnapshotChunk(m: Message): void {
    const meta = m.snapshot!.meta;
    if (!this.isSnapshotNeeded) {
      if (meta.index <= this.log.committed) {
        // Stale or redundant: tell the leader where we are so it stops sending.
        this.sendAfterPersist(MessageType.AppResp, m.from, 0, this.log.committed, false, 0);
        return;
      }
      if (this.log.matchTerm(meta.index, meta.term)) {
        // We hold the snapshot's last entry: commit up to it instead of restoring (etcd does the same).
        this.log.commitTo(meta.index);
        this.sendAfterPersist(MessageType.AppResp, m.from, 0, meta.index, false, 0);
        return;
      }
    }
    this.snapshotChunks.push(m);
  }

  private requestSnapshot(to: NodeId, pr: Progress): void {
    if (pr.state === ProgressState.Snapshot) return;
    pr.becomeSnapshot(this.log.applied);
    this.snapshotsToSend.push(to);
  }

  private handleAppend(m: Message): void {
    const log = this.log;
    if (m.index < log.committed) {
      this.sendAfterPersist(MessageType.AppResp, m.from, 0, log.committed, false, 0);
      return;
    }
    const lastNew = log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew >= 0) {
      this.syncConfs(m.entries);
      this.sendAfterPersist(MessageType.AppResp, m.from, 0, lastNew, false, 0);
      return;
    }
    // Raft §5.3 with the fast back-off of etcd: answer with the last index whose term is at most
    // the leader's term at m.index, so the leader skips a whole conflicting term in one round trip.
    const hint = log.findConflictByTerm(Math.min(m.index, log.lastIndex()), m.logTerm);
    this.sendAfterPersist(MessageType.AppResp, m.from, hint.term, m.index, true, hint.index);
  }

  private handleAppendResponse(m: Message, pr: Progress): void {
    pr.isRecentActive = true;
    if (m.context === CONTEXT_NEED_SNAPSHOT) {
      if (!m.reject && pr.maybeUpdate(m.index) && this.maybeCommit()) this.bcastCommit();
      this.requestSnapshot(m.from, pr);
      return;
    }
    if (m.reject) {
      let nextProbe = m.rejectHint;
      if (m.logTerm > 0) nextProbe = this.log.findConflictByTerm(m.rejectHint, m.logTerm).index;
      if (pr.maybeDecrTo(m.index, nextProbe)) {
        if (pr.state === ProgressState.Replicate) pr.becomeProbe();
        this.sendAppend(m.from, true);
      }
      return;
    }
    const wasPaused = pr.isPaused();
    const isUpdated = pr.maybeUpdate(m.index);
    if (pr.state === ProgressState.Snapshot) {
      // The follower installed a snapshot (or never needed it): once what it has reaches our log's
      // start, plain appends can take over. Its ack may not raise match (it acked this before).
      if (pr.match + 1 < this.log.firstIndex()) {
        if (pr.pendingSnapshot > 0 && m.index >= pr.pendingSnapshot) {
          // The snapshot arrived, but we compacted past it meanwhile: send a newer one.
          pr.becomeProbe();
          this.sendAppend(m.from, true);
        }
        return;
      }
      pr.pendingSnapshot = 0;
      pr.becomeProbe();
      pr.becomeReplicate();
    } else if (!isUpdated) {
      return;
    } else if (pr.state === ProgressState.Probe) {
      pr.becomeReplicate();
    } else {
      pr.inflights.freeLE(m.index);
    }
    if (this.maybeCommit()) this.bcastCommit();
    // A follower that was paused may have missed the latest commit index: tell it now, unless
    // commit indexes wait for the next append or heartbeat (isCommitPiggybackEnabled).
    else if (wasPaused && !this.cfg.isCommitPiggybackEnabled) this.sendAppend(m.from, true);
    // The commit may have applied a configuration change that removed the sender (leaving a joint
    // configuration) or this leader itself (sim seed 22 with --joint-replace): stop here then.
    if (this.role !== 'leader' || this.progress.get(m.from) !== pr) return;
    // Fill the pipeline with whatever else is waiting (bounded by the inflight window).
    while (this.sendAppend(m.from, false)) {
      /* keep sending */
    }
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) this.sendTimeoutNow(m.from);
  }

  private handleHeartbeatResponse(m: Message, pr: Progress): void {
    pr.isRecentActive = true;
    pr.isProbeSent = false;
    if (pr.state === ProgressState.Snapshot && m.index >= pr.match) {
      // The reply carries the follower's committed, durable prefix; committed entries are identical
      // everywhere, so that prefix is a safe match. It tells us the follower installed the snapshot
      // even when its append response was lost (and the driver need not report a success).
      if (m.index + 1 >= this.log.firstIndex()) {
        // It reaches our log start: appends can take over.
        pr.maybeUpdate(m.index);
        pr.pendingSnapshot = 0;
        pr.becomeProbe();
        pr.becomeReplicate();
      } else if (pr.pendingSnapshot > 0 && m.index >= pr.pendingSnapshot) {
        // The snapshot arrived, but we compacted past it meanwhile (sim seed 9030): probe from
        // there, which sends a newer snapshot. Waiting in Snapshot state would wait forever.
        pr.maybeUpdate(m.index);
        pr.becomeProbe();
      }
    }
    if (pr.state === ProgressState.Replicate && pr.inflights.isFull()) pr.inflights.freeFirstOne();
    if (pr.match < this.log.lastIndex()) this.sendAppend(m.from, true);
    if (m.context > pr.ackedRound && m.context <= this.heartbeatRound) {
      pr.ackedRound = m.context;
      this.advanceReads();
    }
  }

  private handleForwardedProposal(m: Message): void {
    const data: Uint8Array[] = new Array<Uint8Array>(m.entries.length);
    let bytes = 0;
    let reason = 0;
    for (let i = 0; i < m.entries.length; i++) {
      data[i] = m.entries[i].data;
      if (data[i].byteLength > this.cfg.entryBytesMax) reason = PropRejectReason.EntryTooLarge;
      bytes += data[i].byteLength + ENTRY_OVERHEAD_BYTES;
    }
    if (reason === 0 && bytes > this.cfg.appendBatchBytesMax && data.length > 1)
      reason = PropRejectReason.BatchTooLarge;
    if (reason === 0) reason = this.leaderAppendCheck(bytes);
    if (reason !== 0) {
      this.send(MessageType.PropResp, m.from, 0, 0, NO_ENTRIES, 0, true, reason, m.context, false);
      return;
    }
    const index = this.appendLeaderEntries(data, EntryType.Normal, bytes);
    this.send(MessageType.PropResp, m.from, this.term, index, NO_ENTRIES, 0, false, 0, m.context, false);
  }

  private handlePropResp(m: Message): void {
    this.forwardResults.push({
      forwardId: m.context,
      index: m.reject ? 0 : m.index,
      term: m.reject ? 0 : m.logTerm,
      code: m.reject ? (REJECT_CODES[m.rejectHint] ?? 'RAFT_PROPOSAL_DROPPED') : null,
      leaderHint: m.reject ? this.lead : m.from,
    });
  }

  // ─── Leader internals ─────────────────────────────────────────────────────────────────────────

  /** 0 when the leader may append `bytes` more, else a {@link PropRejectReason}. */
  private leaderAppendCheck(bytes: number): number {
    // During a transfer, new entries would keep the target from catching up (Raft §3.10).
    if (this.leadTransferee !== null) return PropRejectReason.Dropped;
    if (this.uncommittedBytes > 0 && this.uncommittedBytes + bytes > this.cfg.uncommittedBytesMax) {
      return PropRejectReason.UncommittedLimit;
    }
    return 0;
  }

  /** Appends entries with `data` to the leader's log and replicates them; returns the first index. */
  private appendLeaderEntries(data: readonly Uint8Array[], type: EntryType, bytes: number): number {
    const first = this.log.lastIndex() + 1;
    const term = this.term;
    for (let i = 0; i < data.length; i++) this.log.push({ term, index: first + i, type, data: data[i] });
    this.uncommittedBytes += bytes;
    this.uncommittedBatchLastIndexes.push(first + data.length - 1);
    this.uncommittedBatchBytes.push(bytes);
    // The leader's own progress is not advanced here: its append is not durable yet (see persisted).
    if (this.isSingleVoter()) return first;
    this.bcastAppend();
    return first;
  }

  /**
   * Releases the uncommitted-bytes budget of every appended batch now wholly committed: per batch
   * rather than per entry, so the commit path does not walk the entries again.
   */
  private releaseUncommitted(committed: number): void {
    const indexes = this.uncommittedBatchLastIndexes;
    let n = this.uncommittedBatchHead;
    while (n < indexes.length && indexes[n] <= committed) {
      this.uncommittedBytes -= this.uncommittedBatchBytes[n];
      n++;
    }
    if (n === indexes.length) {
      indexes.length = 0;
      this.uncommittedBatchBytes.length = 0;
      this.uncommittedBatchHead = 0;
    } else if (n > 1024) {
      indexes.splice(0, n);
      this.uncommittedBatchBytes.splice(0, n);
      this.uncommittedBatchHead = 0;
    } else {
      this.uncommittedBatchHead = n;
    }
  }

  private isSingleVoter(): boolean {
    return (
      this.voters.length === 1 &&
      this.voters[0] === this.id &&
      this.votersOutgoing.length === 0 &&
      this.progress.size === 1
    );
  }

  /** Advances the commit index if a quorum matches an entry of the current term. */
  private maybeCommit(): boolean {
    const index = jointMajorityValue(this.voters, this.votersOutgoing, this.matchOf);
    // Raft §5.4.2: only entries of the current term are committed by counting replicas.
    if (index <= this.log.committed || this.log.term(index) !== this.term) return false;
    const previous = this.log.committed;
    this.log.commitTo(index);
    this.releaseUncommitted(index);
    if (this.readsBeforeCommit.length > 0 && this.log.term(previous) !== this.term) {
      const waiting = this.readsBeforeCommit;
      this.readsBeforeCommit = [];
      for (const id of waiting) this.startRead(id);
    }
    if (this.lastConfIndex() <= index) {
      if (!this.isVoterId(this.id)) {
        // Raft §4.2.2: a leader removed from the configuration steps down once the change commits.
        this.becomeFollower(this.term, null);
        return true;
      }
      if (isJoint(this.currentConf()) && this.leadTransferee === null) {
        // §4.3: once C_old,new is committed, the leader moves on to C_new by itself.
        const leave: ConfChangeRequest = { changes: [] };
        this.appendConfChange(leave, applyConfChange(this.currentConf(), leave) as ConfState);
      }
    }
    return true;
  }

  private bcastAppend(): void {
    if (this.role !== 'leader') return;
    for (const id of this.progress.keys()) if (id !== this.id) this.sendAppend(id, true);
  }

  /**
   * Tells followers that the commit index advanced: an append to each (empty if need be), or with
   * `isCommitPiggybackEnabled` only the appends that carry entries; the others learn the commit
   * index from their next append or heartbeat.
   */
  private bcastCommit(): void {
    if (!this.cfg.isCommitPiggybackEnabled) {
      this.bcastAppend();
      return;
    }
    if (this.role !== 'leader') return;
    for (const id of this.progress.keys()) if (id !== this.id) this.sendAppend(id, false);
  }

  /**
   * Sends the next append to `to` unless its pipeline is paused. With `sendIfEmpty` false, only
   * sends when there are entries to carry. Returns whether a message was sent.
   */
  private sendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    // A member removed by a configuration change that just committed has no progress any more.
    const pr = this.progress.get(to);
    if (pr === undefined) return false;
    if (pr.isPaused()) return false;
    const log = this.log;
    const prevIndex = pr.next - 1;
    const prevTerm = log.term(prevIndex);
    if (prevTerm < 0) {
      // The entries this follower needs are compacted: it gets a snapshot instead.
      this.requestSnapshot(to, pr);
      return false;
    }
    const last = log.lastIndex();
    const entries = pr.next <= last ? log.slice(pr.next, last, this.cfg.appendBatchBytesMax) : NO_ENTRIES;
    if (entries.length === 0 && !sendIfEmpty) return false;
    this.msgs.push(
      this.message(MessageType.App, to, this.term, prevTerm, prevIndex, entries, log.committed, false, 0, 0),
    );
    if (entries.length > 0) {
      if (pr.state === ProgressState.Replicate) {
        const lastSent = entries[entries.length - 1].index;
        pr.next = lastSent + 1;
        pr.inflights.add(lastSent, log.lastSliceBytes);
      } else {
        pr.isProbeSent = true;
      }
    } else if (pr.state === ProgressState.Probe) {
      pr.isProbeSent = true;
    }
    return true;
  }

  private bcastHeartbeat(): void {
    const round = ++this.heartbeatRound;
    this.roundSentTicks[round % ROUND_RING_SIZE] = this.tickCount;
    for (const [id, pr] of this.progress) {
      if (id === this.id) continue;
      const commit = Math.min(pr.match, this.log.committed);
      this.msgs.push(this.message(MessageType.Heartbeat, id, this.term, 0, 0, NO_ENTRIES, commit, false, 0, round));
    }
    if (this.isSingleVoter()) this.advanceReads();
  }

  private sendTimeoutNow(to: NodeId): void {
    this.isLeaseRevoked = true;
    this.msgs.push(this.message(MessageType.TimeoutNow, to, this.term, 0, 0, NO_ENTRIES, 0, false, 0, 0));
  }

  /**
   * Forgets the leader's lease: the next read takes a quorum heartbeat round (which renews it). The
   * driver calls this when its ticks fell behind clock time (a starved event loop whose lost time
   * it dropped): a lease counted in ticks would then outlast the election timeout that followers,
   * ticking on real time, wait before electing someone else.
   */
  expireLease(): void {
    this.leaseStartTick = -Infinity;
  }

  private isLeaseValid(): boolean {
    return (
      this.cfg.leaseTicks > 0 &&
      !this.isLeaseRevoked &&
      this.leadTransferee === null &&
      // A tick may have almost elapsed when the round was sent: count it as a whole one.
      this.tickCount + 1 < this.leaseStartTick + this.cfg.leaseTicks
    );
  }

  private startRead(requestId: number): void {
    const index = this.log.committed;
    if (this.isSingleVoter() || this.isLeaseValid()) {
      this.readStates.push({ requestId, index });
      return;
    }
    // Raft §6.4: confirm leadership with a fresh heartbeat round acknowledged by a quorum.
    this.bcastHeartbeat();
    this.pendingReads.push({ requestId, index, round: this.heartbeatRound });
  }

  /** Releases reads whose heartbeat round a quorum acknowledged; renews the lease. */
  private advanceReads(): void {
    const round = jointMajorityValue(this.voters, this.votersOutgoing, this.roundOf);
    if (round <= this.confirmedRound) return;
    this.confirmedRound = round;
    if (round > this.heartbeatRound - ROUND_RING_SIZE) {
      const sent = this.roundSentTicks[round % ROUND_RING_SIZE];
      if (sent >= 0 && sent > this.leaseStartTick) this.leaseStartTick = sent;
    }
    if (this.pendingReads.length === 0) return;
    let n = 0;
    while (n < this.pendingReads.length && this.pendingReads[n].round <= round) {
      const r = this.pendingReads[n];
      this.readStates.push({ requestId: r.requestId, index: r.index });
      n++;
    }
    if (n > 0) this.pendingReads.splice(0, n);
  }

  // ─── Helpers ──────────────────────────────────────────────────────────────────────────────────

  private refused(code: RaftCoreCode): ProposeResult {
    return { code, index: 0, term: 0, isForwarded: false, leaderHint: this.role === 'leader' ? this.id : this.lead };
  }

  private members(): NodeId[] {
    const all = new Set<NodeId>([...this.voters, ...this.votersOutgoing, ...this.learners]);
    return [...all];
  }

  private voterIds(): NodeId[] {
    if (this.votersOutgoing.length === 0) return this.voters;
    return [...new Set([...this.voters, ...this.votersOutgoing])];
  }

  private isVoterId(id: NodeId): boolean {
    return this.voters.includes(id) || this.votersOutgoing.includes(id);
  }

  private message(
    type: MessageType,
    to: NodeId,
    term: number,
    logTerm: number,
    index: number,
    entries: readonly Entry[],
    commit: number,
    reject: boolean,
    rejectHint: number,
    context: number,
  ): Message {
    return { type, from: this.id, to, term, logTerm, index, entries, commit, reject, rejectHint, context };
  }

  /** Queues a message of the current term, to send at once or after persistence. */
  private send(
    type: MessageType,
    to: NodeId,
    logTerm: number,
    index: number,
    entries: readonly Entry[],
    commit: number,
    reject: boolean,
    rejectHint: number,
    context: number,
    isAfterPersist: boolean,
  ): void {
    const m = this.message(type, to, this.term, logTerm, index, entries, commit, reject, rejectHint, context);
    if (isAfterPersist) this.msgsAfterPersist.push(m);
    else this.msgs.push(m);
  }

  private sendAfterPersist(
    type: MessageType,
    to: NodeId,
    logTerm: number,
    index: number,
    reject: boolean,
    rejectHint: number,
  ): void {
    const context = this.isSnapshotNeeded && type === MessageType.AppResp ? CONTEXT_NEED_SNAPSHOT : 0;
    this.send(type, to, logTerm, index, NO_ENTRIES, 0, reject, rejectHint, context, true);
  }
}
