/**
 * The `@rdl/raft` API types the daemon's own modules use, re-exported in one place so that the
 * transport and API code name them once.
 */
export type { NodeId, RaftMessage, Transport, RaftStatus } from '@rdl/raft';
