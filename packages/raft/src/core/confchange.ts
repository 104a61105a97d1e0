/**
 * Membership changes: the ConfChange entry format and the pure function that applies one to a
 * configuration. One voter added or removed is a single-server change; anything larger goes
 * through joint consensus (dissertation §4.3): the first entry enters the joint configuration
 * (old and new voter sets both required for every majority), a second, empty one leaves it.
 */
import type { ConfState, NodeId } from '../api.js';

/** One change to the membership. */
export interface ConfChangeItem {
  /** `add-voter` adds a voter or promotes a learner; `add-learner` adds a non-voting member; `remove` removes any member. */
  readonly type: 'add-voter' | 'add-learner' | 'remove';
  readonly id: NodeId;
}

/** The payload of a ConfChange entry. No changes = leave the joint configuration. */
export interface ConfChangeRequest {
  readonly changes: readonly ConfChangeItem[];
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeConfChange(request: ConfChangeRequest): Uint8Array {
  return encoder.encode(JSON.stringify({ changes: request.changes.map((c) => ({ type: c.type, id: c.id })) }));
}

/** Decodes a ConfChange entry's data; null if it is not one this core wrote. */
export function decodeConfChange(data: Uint8Array): ConfChangeRequest | null {
  try {
    const value = JSON.parse(decoder.decode(data)) as { changes?: unknown };
    if (!Array.isArray(value.changes)) return null;
    for (const c of value.changes as { type?: unknown; id?: unknown }[]) {
      if (typeof c !== 'object' || c === null || typeof c.id !== 'string') return null;
      if (c.type !== 'add-voter' && c.type !== 'add-learner' && c.type !== 'remove') return null;
    }
    return { changes: value.changes as ConfChangeItem[] };
  } catch {
    return null;
  }
}

export function isJoint(conf: ConfState): boolean {
  return conf.votersOutgoing.length > 0;
}

/**
 * The configuration after `request`, or an error message. Rules: while joint, only leaving is
 * allowed; leaving needs a joint configuration; each id appears once; no change leaves the group
 * without voters; adding an existing voter, an existing learner as learner, or removing a
 * non-member is refused.
 */
export function applyConfChange(conf: ConfState, request: ConfChangeRequest): ConfState | string {
  if (request.changes.length === 0) {
    if (!isJoint(conf)) return 'not in a joint configuration: nothing to leave';
    const learners = [...new Set([...conf.learners, ...conf.learnersNext])].filter((id) => !conf.voters.includes(id));
    return { voters: [...conf.voters], learners, votersOutgoing: [], learnersNext: [] };
  }
  if (isJoint(conf)) return 'in a joint configuration: leave it before the next change';
  const seen = new Set<NodeId>();
  const voters = new Set(conf.voters);
  const learners = new Set(conf.learners);
  for (const change of request.changes) {
    if (seen.has(change.id)) return `${change.id} appears twice in one change`;
    seen.add(change.id);
    const isVoter = voters.has(change.id);
    const isLearner = learners.has(change.id);
    switch (change.type) {
      case 'add-voter':
        if (isVoter) return `${change.id} is already a voter`;
        learners.delete(change.id);
        voters.add(change.id);
        break;
      case 'add-learner':
        if (isVoter) return `${change.id} is a voter: demotion is not supported`;
        if (isLearner) return `${change.id} is already a learner`;
        learners.add(change.id);
        break;
      case 'remove':
        if (!isVoter && !isLearner) return `${change.id} is not a member`;
        voters.delete(change.id);
        learners.delete(change.id);
        break;
    }
  }
  if (voters.size === 0) return 'the change would leave no voter';
  let changed = 0;
  for (const id of voters) if (!conf.voters.includes(id)) changed++;
  for (const id of conf.voters) if (!voters.has(id)) changed++;
  if (changed <= 1) {
    // Raft §4.1: adding or removing a single voter keeps any old and new majorities overlapping.
    return { voters: [...voters], learners: [...learners], votersOutgoing: [], learnersNext: [] };
  }
  // Raft §4.3: larger changes go through the joint configuration C_old,new.
  return { voters: [...voters], learners: [...learners], votersOutgoing: [...conf.voters], learnersNext: [] };
}
