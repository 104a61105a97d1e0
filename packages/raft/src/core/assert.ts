/**
 * Assertions for broken invariants. They stay on in production: a Raft node whose invariants no
 * longer hold must crash loudly rather than acknowledge or apply something wrong.
 */

/** Thrown when an invariant of the core does not hold: a bug, never bad input. */
export class RaftAssertionError extends Error {
  override readonly name = 'RaftAssertionError';
}

/** Throws {@link RaftAssertionError} with `message` unless `condition` holds. */
export function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new RaftAssertionError(message);
}
