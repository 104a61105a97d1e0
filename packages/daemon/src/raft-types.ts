/**
 * The `@rdl/raft` API types the daemon uses, in one place. `@rdl/raft`'s index does not export
 * `api.ts` yet, so these are structural copies of packages/raft/src/api.ts (TypeScript checks
 * them structurally against the real ones wherever a daemon object meets the Raft node).
 * TODO(integration): replace with `export type { ... } from '@rdl/raft'` once it exports them.
 */

/** A member of the group: a region name. */
export type NodeId = string;

/** A Raft message as it crosses the wire (opaque to the transport, routed by `to`). */
export interface RaftMessage {
  readonly type: number;
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
  readonly [field: string]: unknown;
}

/** Carries messages between nodes; unreliable by contract; `send` never blocks. */
export interface Transport {
  send(messages: readonly RaftMessage[]): void;
  onMessage(handler: (message: RaftMessage) => void): void;
}
