/**
 * The one error class of `@rdl/raft`. Match errors on `err.code`, never on the message or class.
 * Every code is listed in docs/errors.md (a unit test checks it).
 */
import type { NodeId } from './api.js';

/** Every code a `RaftError` may carry. Stable within a major version. */
export const RaftErrorCode = {
  NotLeader: 'RAFT_NOT_LEADER',
  ProposalDropped: 'RAFT_PROPOSAL_DROPPED',
  EntryTooLarge: 'RAFT_ENTRY_TOO_LARGE',
  UncommittedLimit: 'RAFT_UNCOMMITTED_LIMIT',
  BatchTooLarge: 'RAFT_BATCH_TOO_LARGE',
  Stopped: 'RAFT_STOPPED',
  Aborted: 'RAFT_ABORTED',
  TransferFailed: 'RAFT_TRANSFER_FAILED',
  LogCompacted: 'RAFT_LOG_COMPACTED',
  StorageFailed: 'RAFT_STORAGE_FAILED',
  ConfigInvalid: 'RAFT_CONFIG_INVALID',
  ConfChangePending: 'RAFT_CONF_CHANGE_PENDING',
  ConfChangeInvalid: 'RAFT_CONF_CHANGE_INVALID',
  LearnerBehind: 'RAFT_LEARNER_BEHIND',
} as const;
export type RaftErrorCode = (typeof RaftErrorCode)[keyof typeof RaftErrorCode];

/** An error of the Raft library: a stable `code`, and for RAFT_NOT_LEADER the leader if known. */
export class RaftError extends Error {
  override readonly name = 'RaftError';
  readonly code: RaftErrorCode;
  /** The node believed to be leader (null if unknown), for redirecting a refused request. */
  readonly leaderHint: NodeId | null;

  constructor(code: RaftErrorCode, message: string, options?: { cause?: unknown; leaderHint?: NodeId | null }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.leaderHint = options?.leaderHint ?? null;
  }
}
