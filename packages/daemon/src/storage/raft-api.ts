/**
 * The `@rdl/raft` contract types this directory implements, in one place. `@rdl/raft`'s index does
 * not export api.ts yet, so they are imported type-only from its source (erased at run time, and
 * resolved by tsc through the project reference); switch to `from '@rdl/raft'` once it does.
 */
export type {
  ConfState,
  Entry,
  HardState,
  PersistedState,
  SnapshotMeta,
  SnapshotReader,
  SnapshotWriter,
  StateMachine,
  Storage,
} from '../../../raft/src/api.js';

/** `EntryType.Normal` of `@rdl/raft` (a command for the state machine). */
export const ENTRY_TYPE_NORMAL = 0;
