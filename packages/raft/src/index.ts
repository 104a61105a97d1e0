/**
 * `@rdl/raft`: a Raft library with a pure core and an async driver. The explicit export list is the
 * public API; `@rdl/raft/testing` adds the simulator and checkers.
 */
export type {
  NodeId,
  Entry,
  HardState,
  ConfState,
  SnapshotMeta,
  SnapshotReader,
  SnapshotWriter,
  StateMachine,
  PersistedState,
  Storage,
  Transport,
  RaftMessage,
  Clock,
  Random,
} from './api.js';
export { EntryType } from './api.js';
export { RaftError, RaftErrorCode } from './errors.js';
export { RaftNode, defaultRaftConfig } from './node.js';
export type { RaftConfig, RaftObserver, RaftLogger, RaftNodeOptions, RaftStatus, FollowerStatus } from './node.js';
export { RaftCore, MessageType, isWellFormedMessage, messageTypeName } from './core/index.js';
export type { Message, Ready, ReadState, CoreConfig, CoreState, Role, ConfChangeItem } from './core/index.js';

/** The package name, for logs. */
export const packageName = '@rdl/raft';
