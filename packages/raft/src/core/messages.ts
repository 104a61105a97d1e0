/**
 * The messages the Raft core exchanges, in etcd-raft vocabulary. Every message has every field
 * (unused ones hold 0, false or an empty array) so that V8 sees one object shape on the hot path
 * and msgpackr encodes it without special cases.
 */
import type { Entry, NodeId, RaftMessage, SnapshotMeta } from '../api.js';

/** The `type` of a {@link Message}. Values are part of the wire format: never renumber. */
export const MessageType = {
  /** Append entries (and carry the commit index). `index`/`logTerm` identify the entry before `entries`. */
  App: 1,
  /** Reply to App. `index` is the last index now matching; on `reject`, `rejectHint`/`logTerm` give the follower's conflict hint. */
  AppResp: 2,
  /** Request a vote. `index`/`logTerm` describe the candidate's last entry; `context` 1 means a leadership transfer. */
  Vote: 3,
  /** Reply to Vote. `reject` false grants the vote. */
  VoteResp: 4,
  /** Pre-vote: "would you vote for me at `term`?", sent without changing the sender's term. */
  PreVote: 5,
  /** Reply to PreVote. */
  PreVoteResp: 6,
  /** Leader liveness and commit propagation. `commit` is at most the follower's match; `context` is the heartbeat round. */
  Heartbeat: 7,
  /** Reply to Heartbeat, echoing its `context` (the round) so the leader can confirm reads and leases. */
  HeartbeatResp: 8,
  /** Leadership transfer: the receiver campaigns at once, bypassing pre-vote and leases. */
  TimeoutNow: 9,
  /** A proposal forwarded by a follower to the leader. `context` identifies it at the proposer. */
  Prop: 10,
  /** The leader's answer to Prop: `index`/`logTerm` of the first appended entry, or `reject` with a reason in `rejectHint`. */
  PropResp: 11,
  /** One chunk of a snapshot (`snapshot` field); `index`/`logTerm` are the snapshot's. Sent by the leader's driver. */
  Snap: 12,
  /** Acknowledges snapshot chunk `context` (its sequence number) of the snapshot at `index`; `reject` asks to restart from the beginning. */
  SnapResp: 13,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

/** A rejected AppResp with this context asks the leader for a snapshot: the node's state machine is behind its log. */
export const CONTEXT_NEED_SNAPSHOT = 2;

/** A chunk of a snapshot in flight, carried by MsgSnap. */
export interface SnapshotChunk {
  readonly meta: SnapshotMeta;
  /** Position of this chunk (null for the first); sequence `seq` starting at 0. */
  readonly seq: number;
  readonly data: Uint8Array;
  /** Whether this is the last chunk. */
  readonly isLast: boolean;
}

/** `Vote`/`PreVote` context value marking a campaign started by a leadership transfer. */
export const CAMPAIGN_TRANSFER = 1;

/** The reasons a leader rejects a forwarded proposal, carried in `PropResp.rejectHint`. */
export const PropRejectReason = {
  NotLeader: 1,
  Dropped: 2,
  UncommittedLimit: 3,
  EntryTooLarge: 4,
  BatchTooLarge: 5,
} as const;

/** A Raft message. Plain data: safe to encode with msgpackr and to route by `to`. */
export interface Message extends RaftMessage {
  readonly type: MessageType;
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
  /** Term of the entry at `index` (App, Vote, PreVote) or of the conflict hint (rejected AppResp). */
  readonly logTerm: number;
  /** Index: see each {@link MessageType}. */
  readonly index: number;
  /** Entries carried by App and Prop. Payloads are shared by reference, never copied. */
  readonly entries: readonly Entry[];
  /** The sender's commit index (App, Heartbeat). */
  readonly commit: number;
  readonly reject: boolean;
  /** On a rejected AppResp: the follower's suggested probe index. On PropResp: a {@link PropRejectReason}. */
  readonly rejectHint: number;
  /** Heartbeat round, campaign kind or forwarded-proposal id (see each type). */
  readonly context: number;
  /** Only on Snap. */
  readonly snapshot?: SnapshotChunk;
}

/** A name for a message type, for logs and transcripts. */
export function messageTypeName(type: number): string {
  for (const [name, value] of Object.entries(MessageType)) if (value === type) return `Msg${name}`;
  return `Msg?${type}`;
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/**
 * Whether `m` (decoded from the wire) is a message the core can step without tripping an
 * assertion: known type, counts where counts belong, and for App entries that are contiguous after
 * `index` with terms not above the message's term. A driver drops anything else.
 */
export function isWellFormedMessage(m: unknown, to: string): m is Message {
  if (typeof m !== 'object' || m === null) return false;
  const x = m as Record<string, unknown>;
  if (typeof x.type !== 'number' || x.type < MessageType.App || x.type > MessageType.SnapResp) return false;
  if (typeof x.from !== 'string' || x.to !== to || x.from === to) return false;
  if (!isCount(x.term) || !isCount(x.logTerm) || !isCount(x.index) || !isCount(x.commit)) return false;
  if (!isCount(x.rejectHint) || !isCount(x.context) || typeof x.reject !== 'boolean') return false;
  if (!Array.isArray(x.entries)) return false;
  if (x.type === MessageType.Snap && !isWellFormedChunk(x.snapshot, x.index as number, x.logTerm as number))
    return false;
  const entries = x.entries as unknown[];
  if (entries.length > 0 && x.type !== MessageType.App && x.type !== MessageType.Prop) return false;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i] as Record<string, unknown> | null;
    if (typeof e !== 'object' || e === null || !(e.data instanceof Uint8Array)) return false;
    if (!isCount(e.term) || !isCount(e.index) || (e.type !== 0 && e.type !== 1)) return false;
    if (x.type === MessageType.App) {
      // Contiguous after `index`, terms non-decreasing from `logTerm` and never above the sender's term.
      const previousTerm = i === 0 ? x.logTerm : (entries[i - 1] as { term: number }).term;
      if (e.index !== x.index + 1 + i || e.term > x.term || e.term < previousTerm) return false;
    }
  }
  return true;
}

function isNodeIdList(value: unknown): boolean {
  return Array.isArray(value) && value.every((v) => typeof v === 'string');
}

function isWellFormedChunk(value: unknown, index: number, term: number): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const c = value as Record<string, unknown>;
  if (!isCount(c.seq) || !(c.data instanceof Uint8Array) || typeof c.isLast !== 'boolean') return false;
  const meta = c.meta as Record<string, unknown> | null;
  if (typeof meta !== 'object' || meta === null || meta.index !== index || meta.term !== term) return false;
  const conf = meta.conf as Record<string, unknown> | null;
  return (
    typeof conf === 'object' &&
    conf !== null &&
    isNodeIdList(conf.voters) &&
    isNodeIdList(conf.learners) &&
    isNodeIdList(conf.votersOutgoing) &&
    isNodeIdList(conf.learnersNext)
  );
}
