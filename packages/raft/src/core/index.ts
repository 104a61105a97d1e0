/**
 * The pure Raft core: everything a driver (the async `RaftNode`, the simulator, the benchmark)
 * needs to run Raft without IO. See {@link RaftCore} and the persistence contract on {@link Ready}.
 */
export { RaftCore } from './raft.js';
export type {
  CoreConfig,
  CoreState,
  ForwardResult,
  ProposeResult,
  RaftCoreCode,
  ReadState,
  Ready,
  RequestResult,
  Role,
} from './raft.js';
export { PENDING_READS_MAX } from './raft.js';
export {
  MessageType,
  CAMPAIGN_TRANSFER,
  CONTEXT_NEED_SNAPSHOT,
  PropRejectReason,
  messageTypeName,
  isWellFormedMessage,
} from './messages.js';
export type { Message, SnapshotChunk } from './messages.js';
export { RaftLog, ENTRY_OVERHEAD_BYTES, entryBytes } from './log.js';
export { Progress, ProgressState, Inflights } from './progress.js';
export { VoteResult, majority, majorityValue, jointMajorityValue, voteResult, jointVoteResult } from './quorum.js';
export { RaftAssertionError, assert } from './assert.js';
export { applyConfChange, decodeConfChange, encodeConfChange, isJoint } from './confchange.js';
export type { ConfChangeItem, ConfChangeRequest } from './confchange.js';
