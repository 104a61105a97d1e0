/**
 * The contract between the Raft driver (`RaftNode`, src/node.ts) and the world around it: the
 * shapes persisted by a `Storage`, carried by a `Transport`, applied by a `StateMachine` and timed by
 * a `Clock`. The daemon (LevelDB, gRPC) and the simulator (in-memory, virtual time) implement these.
 *
 * Everything here is plain data that msgpackr can encode as is: numbers, strings, arrays,
 * `Uint8Array`, `null`. No classes, no `undefined` that matters, no bigint.
 */

/** A member of the group. In rdl these are region names: `geneva`, `gland`, `lucerne`. */
export type NodeId = string;

/** What an entry carries. `Normal` holds state-machine commands; the others are Raft's own. */
export const EntryType = {
  /** An opaque command for the state machine (may be empty: the leader's no-op). */
  Normal: 0,
  /** A membership change (`ConfChange`, encoded by the core). Applied by the core, not the state machine. */
  ConfChange: 1,
} as const;
export type EntryType = (typeof EntryType)[keyof typeof EntryType];

/** One log entry. `index` starts at 1; index 0 term 0 is the empty log's sentinel. */
export interface Entry {
  readonly term: number;
  readonly index: number;
  readonly type: EntryType;
  /** The command. Empty for the no-op a new leader appends. */
  readonly data: Uint8Array;
}

/** The state that must be durable before any message that depends on it is sent. */
export interface HardState {
  readonly term: number;
  /** Who this node voted for in `term`, or null. */
  readonly vote: NodeId | null;
  /** Highest index known committed. Persisting it is an optimisation (it may lag), never a requirement. */
  readonly commit: number;
}

/** A group configuration. `votersOutgoing` is non-empty only while in a joint configuration. */
export interface ConfState {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
  readonly votersOutgoing: readonly NodeId[];
  /** Learners to be added when the joint configuration is left (voters being demoted). */
  readonly learnersNext: readonly NodeId[];
}

/** Describes the state-machine snapshot that replaces the log up to and including `index`. */
export interface SnapshotMeta {
  readonly index: number;
  readonly term: number;
  readonly conf: ConfState;
}

/**
 * A point-in-time snapshot being read by the leader, pulled chunk by chunk so it never has to fit
 * in memory. Reads are resumable: `position` is opaque and whatever the last acknowledged chunk
 * returned as `next` may be passed again after a dropped connection.
 */
export interface SnapshotReader {
  readonly meta: SnapshotMeta;
  /**
   * Reads the chunk that starts at `position` (null = the beginning), of at most about
   * `bytesMax` bytes. `next` is null after the last chunk.
   */
  read(position: Uint8Array | null, bytesMax: number): Promise<{ data: Uint8Array; next: Uint8Array | null }>;
  /** Releases the snapshot (a LevelDB snapshot, file handles). Idempotent. */
  close(): Promise<void>;
}

/** A snapshot being received by a follower, written chunk by chunk, in order. */
export interface SnapshotWriter {
  /** Writes the next chunk. Chunks arrive in the order the reader produced them. */
  write(data: Uint8Array): Promise<void>;
  /**
   * Makes the received state the state machine's state, durably and atomically: after a crash,
   * either the old state or the whole new one (with applied index = meta.index) is there.
   */
  commit(): Promise<void>;
  /** Discards a partial transfer. Idempotent. */
  abort(): Promise<void>;
}

/** The replicated application. Implemented by the daemon's block store and by the simulator's KV store. */
export interface StateMachine {
  /** The index of the last entry whose effects are durable in the state machine (read at start-up). */
  appliedIndex(): Promise<number>;
  /**
   * Applies committed entries, in log order, exactly once. The effects of the whole batch and the new
   * applied index (the last entry's index) must become durable atomically, so that a restart neither
   * re-applies nor skips an entry. Returns one result per entry (undefined for no-ops); the driver
   * hands result `i` to whoever proposed entry `i` on this node.
   * Entries of type ConfChange are passed too (so the applied index advances) and should be ignored.
   */
  apply(entries: readonly Entry[]): Promise<unknown[]>;
  /**
   * Opens a consistent snapshot of the state at the current applied index, which `meta.index`
   * names. The driver calls it with no `apply` in flight and starts none until it resolves, so the
   * applied index cannot move underneath it.
   */
  openSnapshot(meta: SnapshotMeta): Promise<SnapshotReader>;
  /**
   * Starts receiving a snapshot that will replace the whole state. The driver starts no `apply`
   * between the last chunk and `commit()`.
   */
  beginRestore(meta: SnapshotMeta): Promise<SnapshotWriter>;
}

/** What `Storage.load` returns at start-up. */
export interface PersistedState {
  readonly hardState: HardState;
  /** The latest snapshot's metadata (the log starts after `snapshot.index`), or null if none. */
  readonly snapshot: SnapshotMeta | null;
  /** The log after the snapshot (or from index 1), ascending and contiguous. */
  readonly entries: readonly Entry[];
}

/**
 * Durable storage of the Raft log and hard state. Writes must be durable (fsynced) when their
 * promise resolves; the driver never acknowledges anything that depends on an unresolved write.
 * Calls are issued one at a time in order (the driver never overlaps two writes), so an
 * implementation may group-commit by batching what arrives while a sync is in flight.
 */
export interface Storage {
  /** Reads everything persisted. Called once, before any other method. */
  load(): Promise<PersistedState>;
  /**
   * Durably appends `entries` (contiguous, ascending) and saves `hardState` (if not null) in one
   * synced write. An implementation may skip the fsync when `entries` is empty and only
   * `hardState.commit` changed (the commit index need not be durable; see `HardState.commit`), as
   * long as a later synced write makes it durable in order. If `entries[0].index` is at or below the last stored index, the stored suffix
   * from that index on is replaced (a follower truncating a conflicting suffix).
   */
  append(entries: readonly Entry[], hardState: HardState | null): Promise<void>;
  /**
   * Records `meta` as the snapshot the log starts after (returned by `load`) and drops every entry
   * with an index at or below `meta.index`. Entries above it are kept if `keepEntriesAfter` (our
   * entry at `meta.index` has `meta.term`), else the whole log is dropped. Durable when it resolves.
   *
   * Two callers: log compaction (`keepEntriesAfter` true; the state machine is already durable at
   * or past `meta.index`), and a follower installing a received snapshot, which calls it just
   * BEFORE `SnapshotWriter.commit()`. A crash between the two leaves a state machine behind the
   * log's start; at the next boot the core notices (applied index < snapshot index), applies
   * nothing and asks the leader for a snapshot again.
   */
  applySnapshot(meta: SnapshotMeta, keepEntriesAfter: boolean): Promise<void>;
  /** Drops entries at or below `index` (log compaction after a local snapshot). Need not fsync. */
  compact(index: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * Carries messages between nodes. Unreliable by contract: messages may be dropped, delayed,
 * duplicated or reordered, and Raft copes. `send` never blocks: a full per-peer queue drops.
 */
export interface Transport {
  /** Queues messages for delivery to `message.to`. Never throws for an unreachable peer. */
  send(messages: readonly RaftMessage[]): void;
  /** Registers the one handler for messages addressed to this node. */
  onMessage(handler: (message: RaftMessage) => void): void;
}

/**
 * A Raft message as it crosses the wire. The core defines the `type` values and the meaning of the
 * fields; transports treat it as opaque msgpack-able data and route it by `to`.
 */
export interface RaftMessage {
  readonly type: number;
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
  readonly [field: string]: unknown;
}

/** Time for the driver. The daemon uses the real clock; the simulator a virtual one. */
export interface Clock {
  /** Milliseconds, monotonic. */
  now(): number;
  /** Calls `fn` every `intervalMs` until the returned cancel function is called. */
  setInterval(fn: () => void, intervalMs: number): () => void;
  /** Calls `fn` once after `delayMs` unless cancelled. */
  setTimeout(fn: () => void, delayMs: number): () => void;
}

/** A source of randomness for the core (election timeouts). Seeded in tests. */
export interface Random {
  /** An integer uniformly drawn from [0, bound). */
  nextInt(bound: number): number;
}
