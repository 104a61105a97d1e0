// Proves log compaction and chunked snapshot transfer through the RaftNode driver on fakes (manual
// clock, hub transport with a drop filter, in-memory storage and a state machine whose snapshot is
// read in 64-byte chunks): the log stays bounded, a follower cut off while the leader compacted
// catches up by snapshot and ends with the same state, a lost chunk is resent from the last
// acknowledged chunk after an idle period instead of restarting, and a restart restores the state.
import test from 'ava';
import type { RaftMessage } from '../../src/api.js';
import { MessageType } from '../../src/core/index.js';
import type { Message } from '../../src/core/index.js';
import { RaftNode } from '../../src/index.js';
import type { RaftConfig } from '../../src/index.js';
import { seededRandom } from './harness.js';
import { EchoMachine, Hub, ManualClock, MemoryStorage } from './node-fakes.js';

const ids = ['geneva', 'gland', 'lucerne'];
const config: Partial<RaftConfig> = {
  logEntriesMax: 20,
  logEntriesKeep: 5,
  snapshotChunkBytes: 64,
  snapshotChunksInflightMax: 2,
  snapshotIdleTicks: 5,
};

async function yieldTurns(n = 10): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

async function cluster() {
  const clock = new ManualClock();
  const hub = new Hub();
  const nodes = new Map<string, { node: RaftNode; storage: MemoryStorage; sm: EchoMachine }>();
  async function boot(id: string, storage: MemoryStorage, sm: EchoMachine): Promise<void> {
    const node = await RaftNode.create({
      id,
      peers: ids,
      storage,
      transport: hub.transport(id),
      stateMachine: sm,
      clock,
      random: seededRandom(ids.indexOf(id) + 5),
      config,
    });
    nodes.set(id, { node, storage, sm });
    node.start();
  }
  for (const id of ids) await boot(id, new MemoryStorage(), new EchoMachine());
  async function until(cond: () => boolean, ticksMax = 400): Promise<void> {
    for (let i = 0; i < ticksMax; i++) {
      if (cond()) return;
      clock.advance(50);
      await yieldTurns(5);
    }
    if (!cond()) throw new Error('condition not reached');
  }
  const leader = (): string | undefined => [...nodes].find(([, n]) => n.node.status().role === 'leader')?.[0];
  return { clock, hub, nodes, until, leader, boot };
}

async function writeMany(node: RaftNode, prefix: string, count: number): Promise<void> {
  for (let i = 0; i < count; i += 10) {
    await Promise.all(
      Array.from({ length: Math.min(10, count - i) }, (_, k) =>
        node.propose(new TextEncoder().encode(`${prefix}${i + k}`)),
      ),
    );
  }
}

test('§7 compaction keeps the log bounded, and a follower behind the log start catches up by a chunked snapshot', async (t) => {
  const c = await cluster();
  await c.until(() => c.leader() !== undefined);
  const leaderId = c.leader()!;
  const lagging = ids.find((id) => id !== leaderId)!;
  c.hub.down.add(lagging);
  const leader = c.nodes.get(leaderId)!;
  await writeMany(leader.node, 'v', 60);
  await c.until(() => leader.storage.snapshot !== null);
  t.true(leader.storage.snapshot!.index > 20, 'the leader compacted its log');
  t.true(leader.storage.entries.length <= 30, `stored log bounded (${leader.storage.entries.length} entries)`);
  const error = t.throws(() => leader.node.readEntries(1, 5));
  t.is((error as { code?: string }).code, 'RAFT_LOG_COMPACTED');
  const last = leader.node.status().lastIndex;
  t.deepEqual(
    leader.node.readEntries(last, last + 5).map((e) => e.index),
    [last],
  );
  let snapChunks = 0;
  c.hub.filter = (m: RaftMessage) => {
    if (m.type === MessageType.Snap) snapChunks++;
    return true;
  };
  c.hub.down.delete(lagging);
  const follower = c.nodes.get(lagging)!;
  await c.until(() => follower.sm.log.length === 60);
  t.deepEqual(follower.sm.log, leader.sm.log);
  t.is(follower.sm.restoresCommitted, 1);
  t.true(snapChunks > 3, `streamed in ${snapChunks} chunks`);
  await writeMany(leader.node, 'after', 3);
  await c.until(() => follower.sm.log.length === 63);
  t.deepEqual(follower.sm.log, leader.sm.log);
  for (const n of c.nodes.values()) await n.node.stop();
});

test('a lost chunk is resent from the last acknowledged chunk after an idle period (resume, not restart)', async (t) => {
  const c = await cluster();
  await c.until(() => c.leader() !== undefined);
  const leaderId = c.leader()!;
  const lagging = ids.find((id) => id !== leaderId)!;
  c.hub.down.add(lagging);
  const leader = c.nodes.get(leaderId)!;
  await writeMany(leader.node, 'value-', 60);
  await c.until(() => leader.storage.snapshot !== null);
  const sentSeqs: number[] = [];
  let isDropped = false;
  c.hub.filter = (m: RaftMessage) => {
    if (m.type !== MessageType.Snap) return true;
    const seq = (m as Message).context;
    sentSeqs.push(seq);
    if (seq === 2 && !isDropped) {
      isDropped = true;
      return false;
    }
    return true;
  };
  c.hub.down.delete(lagging);
  const follower = c.nodes.get(lagging)!;
  await c.until(() => follower.sm.log.length === 60);
  t.deepEqual(follower.sm.log, leader.sm.log);
  t.true(isDropped);
  t.is(sentSeqs.filter((s) => s === 0).length, 1, 'chunk 0 was sent once: the transfer resumed, not restarted');
  t.is(sentSeqs.filter((s) => s === 2).length, 2, 'the lost chunk was sent again');
  t.is(follower.sm.restoresBegun, 1);
  for (const n of c.nodes.values()) await n.node.stop();
});

test('restart from a compacted log plus its suffix restores the same state and keeps committing', async (t) => {
  const c = await cluster();
  await c.until(() => c.leader() !== undefined);
  const leaderId = c.leader()!;
  const leader = c.nodes.get(leaderId)!;
  await writeMany(leader.node, 'r', 50);
  await c.until(() => [...c.nodes.values()].every((n) => n.sm.log.length === 50 && n.storage.snapshot !== null));
  const victimId = ids.find((id) => id !== leaderId)!;
  const victim = c.nodes.get(victimId)!;
  await victim.node.stop();
  const before = [...victim.sm.log];
  await c.boot(victimId, victim.storage, victim.sm);
  const restarted = c.nodes.get(victimId)!;
  t.deepEqual(restarted.sm.log, before);
  t.is(restarted.node.status().appliedIndex, victim.sm.applied);
  await writeMany(leader.node, 'post', 5);
  await c.until(() => restarted.sm.log.length === 55);
  t.deepEqual(restarted.sm.log, leader.sm.log);
  for (const n of c.nodes.values()) await n.node.stop();
});

test('a crash between recording a received snapshot and committing it is repaired at boot by a new snapshot', async (t) => {
  const c = await cluster();
  await c.until(() => c.leader() !== undefined);
  const leaderId = c.leader()!;
  const leader = c.nodes.get(leaderId)!;
  await writeMany(leader.node, 'w', 40);
  await c.until(() => leader.storage.snapshot !== null && [...c.nodes.values()].every((n) => n.sm.log.length === 40));
  const victimId = ids.find((id) => id !== leaderId)!;
  const victim = c.nodes.get(victimId)!;
  await victim.node.stop();
  // Simulate the crash: the log records a snapshot past the state machine, which stayed behind.
  const meta = leader.storage.snapshot!;
  victim.storage.snapshot = meta;
  victim.storage.entries = [];
  victim.sm.applied = 3;
  victim.sm.log = victim.sm.log.slice(0, 2);
  await c.boot(victimId, victim.storage, victim.sm);
  const restarted = c.nodes.get(victimId)!;
  t.is(restarted.node.status().role, 'follower');
  await writeMany(leader.node, 'x', 2);
  await c.until(() => restarted.sm.log.length === 42);
  t.deepEqual(restarted.sm.log, leader.sm.log);
  t.true(restarted.sm.restoresCommitted >= 1, 'repaired by a snapshot');
  for (const n of c.nodes.values()) await n.node.stop();
});

test('a lost append response after a snapshot install does not leave the follower stuck', async (t) => {
  const c = await cluster();
  await c.until(() => c.leader() !== undefined);
  const leaderId = c.leader()!;
  const lagging = ids.find((id) => id !== leaderId)!;
  c.hub.down.add(lagging);
  const leader = c.nodes.get(leaderId)!;
  await writeMany(leader.node, 'z', 40);
  await c.until(() => leader.storage.snapshot !== null);
  let isSnapSeen = false;
  let droppedAppResp = 0;
  c.hub.filter = (m: RaftMessage) => {
    if (m.type === MessageType.Snap) isSnapSeen = true;
    if (isSnapSeen && droppedAppResp === 0 && m.from === lagging && m.type === MessageType.AppResp) {
      droppedAppResp++;
      return false;
    }
    return true;
  };
  c.hub.down.delete(lagging);
  const follower = c.nodes.get(lagging)!;
  await c.until(() => follower.sm.log.length === 40);
  t.is(droppedAppResp, 1);
  await writeMany(leader.node, 'more', 2);
  await c.until(() => follower.sm.log.length === 42);
  t.deepEqual(follower.sm.log, leader.sm.log);
  t.is(leader.node.status().progress[lagging].state, 'replicate');
  for (const n of c.nodes.values()) await n.node.stop();
});
