/**
 * Majority arithmetic, for a simple configuration and a joint one (both majorities required).
 * Allocation-free on the hot path: the commit index is computed in a reused scratch array.
 */
import type { NodeId } from '../api.js';

/** The outcome of an election so far. */
export const VoteResult = { Pending: 0, Won: 1, Lost: 2 } as const;
export type VoteResult = (typeof VoteResult)[keyof typeof VoteResult];

const scratch: number[] = [];

/** Votes needed for a majority of `voterCount` (0 voters: a vacuous majority). */
export function majority(voterCount: number): number {
  return Math.floor(voterCount / 2) + 1;
}

/**
 * The highest value that a majority of `voters` has reached, per `valueOf` (e.g. the commit index
 * from match indexes). An empty configuration yields +Infinity so that it never constrains a joint
 * configuration's minimum.
 */
export function majorityValue(voters: readonly NodeId[], valueOf: (id: NodeId) => number): number {
  const n = voters.length;
  if (n === 0) return Infinity;
  if (n === 1) return valueOf(voters[0]);
  scratch.length = n;
  for (let i = 0; i < n; i++) scratch[i] = valueOf(voters[i]);
  // Insertion sort, descending: n is tiny (3 to 7).
  for (let i = 1; i < n; i++) {
    const v = scratch[i];
    let j = i - 1;
    while (j >= 0 && scratch[j] < v) {
      scratch[j + 1] = scratch[j];
      j--;
    }
    scratch[j + 1] = v;
  }
  return scratch[majority(n) - 1];
}

/** The joint value: both majorities must have reached it. */
export function jointMajorityValue(
  incoming: readonly NodeId[],
  outgoing: readonly NodeId[],
  valueOf: (id: NodeId) => number,
): number {
  return Math.min(majorityValue(incoming, valueOf), majorityValue(outgoing, valueOf));
}

/** The result of a vote in one simple configuration. */
export function voteResult(voters: readonly NodeId[], votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  if (voters.length === 0) return VoteResult.Won;
  let granted = 0;
  let missing = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === undefined) missing++;
    else if (v) granted++;
  }
  const q = majority(voters.length);
  if (granted >= q) return VoteResult.Won;
  if (granted + missing >= q) return VoteResult.Pending;
  return VoteResult.Lost;
}

/** The result of a vote in a joint configuration: won only if won in both. */
export function jointVoteResult(
  incoming: readonly NodeId[],
  outgoing: readonly NodeId[],
  votes: ReadonlyMap<NodeId, boolean>,
): VoteResult {
  const a = voteResult(incoming, votes);
  const b = voteResult(outgoing, votes);
  if (a === b) return a;
  if (a === VoteResult.Lost || b === VoteResult.Lost) return VoteResult.Lost;
  return VoteResult.Pending;
}
