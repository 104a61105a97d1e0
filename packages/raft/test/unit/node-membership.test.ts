// Proves the member-replacement procedure of RaftNode on fakes (manual clock, hub transport,
// in-memory storage and state machine): a joining node is added as learner, catches up (by
// snapshot when the log was compacted), is promoted through a joint configuration that removes the
// lost member, and the group keeps committing with the new membership; a learner that cannot catch
// up is not promoted (RAFT_LEARNER_BEHIND); bad changes fail with coded errors.
import test from 'ava';
import { RaftNode } from '../../src/index.js';
import type { RaftConfig } from '../../src/index.js';
import { seededRandom } from './harness.js';
import { EchoMachine, Hub, ManualClock, MemoryStorage } from './node-fakes.js';

const peers = ['geneva', 'gland', 'lucerne'];
const config: Partial<RaftConfig> = {
  logEntriesMax: 20,
  logEntriesKeep: 5,
  snapshotChunkBytes: 64,
  learnerCatchUpTicksMax: 60,
};

async function yieldTurns(n = 10): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

async function cluster() {
  const clock = new ManualClock();
  const hub = new Hub();
  const nodes = new Map<string, { node: RaftNode; sm: EchoMachine }>();
  async function boot(id: string, isJoining = false): Promise<void> {
    const sm = new EchoMachine();
    const node = await RaftNode.create({
      id,
      peers,
      isJoining,
      storage: new MemoryStorage(),
      transport: hub.transport(id),
      stateMachine: sm,
      clock,
      random: seededRandom(id.length * 31 + id.charCodeAt(0)),
      config,
    });
    nodes.set(id, { node, sm });
    node.start();
  }
  for (const id of peers) await boot(id);
  /** Runs the clock while `promise` is pending (bounded), then returns its outcome. */
  async function drive<T>(promise: Promise<T>, ticksMax = 600): Promise<T> {
    let isDone = false;
    const settled = promise.finally(() => {
      isDone = true;
    });
    settled.catch(() => {});
    for (let i = 0; i < ticksMax && !isDone; i++) {
      clock.advance(50);
      await yieldTurns(5);
    }
    return settled;
  }
  async function until(cond: () => boolean, ticksMax = 400): Promise<void> {
    for (let i = 0; i < ticksMax && !cond(); i++) {
      clock.advance(50);
      await yieldTurns(5);
    }
    if (!cond()) throw new Error('condition not reached');
  }
  const leader = (): string | undefined => [...nodes].find(([, n]) => n.node.status().role === 'leader')?.[0];
  return { hub, nodes, boot, drive, until, leader };
}

test('replaceMember: a lost region is replaced by a joining node (learner, catch-up by snapshot, joint change) without stopping writes', async (t) => {
  const c = await cluster();
  await c.until(() => c.leader() !== undefined);
  const leaderId = c.leader()!;
  const leader = c.nodes.get(leaderId)!.node;
  for (let i = 0; i < 40; i++) await c.drive(leader.propose(new TextEncoder().encode(`v${i}`)));
  const lost = peers.find((id) => id !== leaderId)!;
  c.hub.down.add(lost); // the region is gone
  await c.boot('zurich', true);
  t.is(c.nodes.get('zurich')!.node.status().role, 'learner', 'a joining node stays passive');
  const conf = await c.drive(leader.replaceMember(lost, 'zurich'));
  t.deepEqual(
    [...conf.voters].sort(),
    peers
      .filter((id) => id !== lost)
      .concat('zurich')
      .sort(),
  );
  t.deepEqual(conf.votersOutgoing, []);
  const zurich = c.nodes.get('zurich')!;
  t.is(await c.drive(leader.propose(new TextEncoder().encode('after'))), `applied:after@${leader.status().lastIndex}`);
  await c.until(() => zurich.node.status().appliedIndex === leader.status().appliedIndex);
  t.is(zurich.sm.restoresCommitted, 1, 'zurich caught up by snapshot (the log was compacted)');
  t.deepEqual(zurich.sm.log, c.nodes.get(leaderId)!.sm.log);
  t.is(zurich.node.status().role, 'follower');
  for (const n of c.nodes.values()) await n.node.stop();
});

test('promoteLearner refuses a learner that cannot catch up (RAFT_LEARNER_BEHIND)', async (t) => {
  const c = await cluster();
  await c.until(() => c.leader() !== undefined);
  const leader = c.nodes.get(c.leader()!)!.node;
  await c.drive(leader.propose(new Uint8Array([1])));
  await c.drive(leader.addLearner('zurich')); // no such process: it never answers
  const error = await t.throwsAsync(c.drive(leader.promoteLearner('zurich')));
  t.is((error as { code?: string }).code, 'RAFT_LEARNER_BEHIND');
  t.false(leader.status().conf.voters.includes('zurich'));
  for (const n of c.nodes.values()) await n.node.stop();
});

test('membership changes fail with coded errors: invalid, pending, not leader', async (t) => {
  const c = await cluster();
  await c.until(() => c.leader() !== undefined && [...c.nodes.values()].every((n) => n.node.status().leader !== null));
  const leaderId = c.leader()!;
  const leader = c.nodes.get(leaderId)!.node;
  await c.drive(leader.propose(new Uint8Array([1])));
  const invalid = await t.throwsAsync(leader.removeMember('nowhere'));
  t.is((invalid as { code?: string }).code, 'RAFT_CONF_CHANGE_INVALID');
  t.regex(invalid!.message, /not a member/);
  const first = leader.addLearner('x1');
  const pending = await t.throwsAsync(leader.addLearner('x2'));
  t.is((pending as { code?: string }).code, 'RAFT_CONF_CHANGE_PENDING');
  await c.drive(first);
  const follower = c.nodes.get(peers.find((id) => id !== leaderId)!)!.node;
  const notLeader = await t.throwsAsync(follower.addLearner('x3'));
  t.is((notLeader as { code?: string }).code, 'RAFT_NOT_LEADER');
  for (const n of c.nodes.values()) await n.node.stop();
});
