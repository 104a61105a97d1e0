/**
 * The `@rdl/raft` contract types this directory implements, in one place (so the storage modules
 * name one import, and tests can use them without depending on the rest of `@rdl/raft`).
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
} from '@rdl/raft';
import type { EntryType } from '@rdl/raft';

/**
 * `EntryType.Normal` of `@rdl/raft` (a command for the state machine), as a literal so that the
 * storage modules load without evaluating the Raft package. The declared type makes tsc check it.
 */
export const ENTRY_TYPE_NORMAL: (typeof EntryType)['Normal'] = 0;
