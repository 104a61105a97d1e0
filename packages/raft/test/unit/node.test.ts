// Proves the RaftNode driver end to end on fakes (a manual clock, an in-memory hub transport, an
// in-memory storage that can stall writes, a state machine that echoes): election from ticks,
// propose() resolving with the proposer's apply result (and proposeMany calling back per command, in
// order, with refusals per command), fail-fast RAFT_NOT_LEADER with a leader
// hint, readIndex, leadership transfer, group commit of appends, RAFT_STOPPED on stop, and abort
// listeners removed once a call settles (no leak with one long-lived signal), and a follower whose
// event loop stalls not deposing a healthy leader.
import { getEventListeners, setMaxListeners } from 'node:events';
import test from 'ava';
import { MessageType, RaftNode } from '../../src/index.js';
import type { RaftConfig } from '../../src/index.js';
import { seededRandom } from './harness.js';
import { EchoMachine, Hub, ManualClock, MemoryStorage } from './node-fakes.js';

const ids = ['geneva', 'gland', 'lucerne'];

async function yieldTurns(n = 20): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

async function cluster(config: Partial<RaftConfig> = {}) {
  const clock = new ManualClock();
  const hub = new Hub();
  const nodes = new Map<string, { node: RaftNode; storage: MemoryStorage; sm: EchoMachine }>();
  for (const [i, id] of ids.entries()) {
    const storage = new MemoryStorage();
    const sm = new EchoMachine();
    const node = await RaftNode.create({
      id,
      peers: ids,
      storage,
      transport: hub.transport(id),
      stateMachine: sm,
      clock,
      random: seededRandom(i + 11),
      config,
    });
    nodes.set(id, { node, storage, sm });
  }
  for (const n of nodes.values()) n.node.start();
  /** Advances time tick by tick until `cond` holds (bounded). */
  async function until(cond: () => boolean, ticksMax = 200): Promise<void> {
    for (let i = 0; i < ticksMax; i++) {
      if (cond()) return;
      clock.advance(50);
      await yieldTurns(5);
    }
    if (!cond()) throw new Error('condition not reached');
  }
  function leader(): string | undefined {
    return [...nodes].find(([, n]) => n.node.status().role === 'leader')?.[0];
  }
  return { clock, hub, nodes, until, leader };
}

test('a cluster elects a leader from clock ticks and propose() resolves with the apply result', async (t) => {
  const c = await cluster();
  await c.until(() => c.leader() !== undefined);
  const leader = c.nodes.get(c.leader()!)!;
  const result = await leader.node.propose(new TextEncoder().encode('hello'));
  t.is(result, 'applied:hello@2');
  await c.until(() => [...c.nodes.values()].every((n) => n.sm.log.length === 1));
  for (const n of c.nodes.values()) t.deepEqual(n.sm.log, ['hello']);
  for (const n of c.nodes.values()) await n.node.stop();
});

test('a follower fails fast with RAFT_NOT_LEADER and names the leader', async (t) => {
  const c = await cluster();
  await c.until(() => c.leader() !== undefined && [...c.nodes.values()].every((n) => n.node.status().leader !== null));
  const leaderId = c.leader()!;
  const follower = [...c.nodes].find(([id]) => id !== leaderId)![1];
  const error = await t.throwsAsync(follower.node.propose(new Uint8Array([1])));
  t.is((error as { code?: string }).code, 'RAFT_NOT_LEADER');
  t.is((error as { leaderHint?: string }).leaderHint, leaderId);
  const readError = await t.throwsAsync(follower.node.readIndex());
  t.is((readError as { code?: string }).code, 'RAFT_NOT_LEADER');
  for (const n of c.nodes.values()) await n.node.stop();
});

test('proposal forwarding: a follower forwards and still resolves with its own entry result', async (t) => {
  const c = await cluster({ isProposalForwardingEnabled: true });
  await c.until(() => c.leader() !== undefined && [...c.nodes.values()].every((n) => n.node.status().leader !== null));
  const leaderId = c.leader()!;
  const follower = [...c.nodes].find(([id]) => id !== leaderId)![1];
  const p = follower.node.propose(new TextEncoder().encode('fwd'));
  await c.until(() => follower.sm.log.length === 1);
  t.is(await p, 'applied:fwd@2');
  for (const n of c.nodes.values()) await n.node.stop();
});

test('readIndex resolves on the leader after a quorum round and once applied', async (t) => {
  const c = await cluster();
  await c.until(() => c.leader() !== undefined);
  const leader = c.nodes.get(c.leader()!)!;
  await leader.node.propose(new TextEncoder().encode('w'));
  let isRead = false;
  const read = leader.node.readIndex().then(() => {
    isRead = true;
  });
  await c.until(() => isRead);
  await read;
  t.true(leader.node.status().appliedIndex >= 2);
  for (const n of c.nodes.values()) await n.node.stop();
});

test('entries proposed while the leader fsyncs are grouped into the next single append', async (t) => {
  const c = await cluster();
  await c.until(() => c.leader() !== undefined);
  const leader = c.nodes.get(c.leader()!)!;
  let release!: () => void;
  leader.storage.stall = new Promise<void>((resolve) => {
    release = resolve;
  });
  const first = leader.node.propose(new TextEncoder().encode('first'));
  await yieldTurns();
  const calls = leader.storage.appendCalls.length;
  const rest = Array.from({ length: 10 }, (_, i) => leader.node.propose(new TextEncoder().encode(`p${i}`)));
  await yieldTurns();
  t.is(leader.storage.appendCalls.length, calls, 'no second append while one is in flight');
  leader.storage.stall = null;
  release();
  await Promise.all([first, ...rest]);
  t.deepEqual(leader.storage.appendCalls.slice(calls), [10], 'the 10 waiting entries went in one write');
  for (const n of c.nodes.values()) await n.node.stop();
});

test('an entry is applied only once it is durable in the local log, even when followers committed it first', async (t) => {
  // With the leader's fsync in parallel with replication, two followers can commit an entry while
  // the leader's own append is still under way. Applying it then would let the state machine get
  // ahead of the local log: after a crash the applied index would point past the log's end.
  const c = await cluster();
  await c.until(() => c.leader() !== undefined);
  const leader = c.nodes.get(c.leader()!)!;
  await leader.node.propose(new TextEncoder().encode('warm-up'));
  let release!: () => void;
  leader.storage.stall = new Promise<void>((resolve) => {
    release = resolve;
  });
  const logged = leader.sm.log.length;
  const before = leader.node.status().lastIndex;
  const proposal = leader.node.propose(new TextEncoder().encode('x'));
  await c.until(() => leader.node.status().commitIndex > before);
  await yieldTurns();
  t.is(leader.sm.log.length, logged, 'committed by the followers but not applied before the local fsync');
  leader.storage.stall = null;
  release();
  await proposal;
  t.is(leader.sm.log.at(-1), 'x');
  for (const n of c.nodes.values()) await n.node.stop();
});

test('transferLeadership moves leadership to the target', async (t) => {
  const c = await cluster();
  await c.until(() => c.leader() !== undefined);
  const from = c.leader()!;
  const to = ids.find((id) => id !== from)!;
  const done = c.nodes.get(from)!.node.transferLeadership(to);
  let isDone = false;
  void done.then(() => (isDone = true));
  await c.until(() => isDone);
  await done;
  await c.until(() => c.leader() === to);
  t.is(c.leader(), to);
  for (const n of c.nodes.values()) await n.node.stop();
});

test('stop() fails pending proposals with RAFT_STOPPED', async (t) => {
  const c = await cluster();
  await c.until(() => c.leader() !== undefined);
  const leader = c.nodes.get(c.leader()!)!;
  for (const [id] of c.nodes) if (id !== c.leader()) c.hub.down.add(id);
  const p = leader.node.propose(new Uint8Array([1]));
  await yieldTurns();
  await leader.node.stop();
  const error = await t.throwsAsync(p);
  t.is((error as { code?: string }).code, 'RAFT_STOPPED');
  for (const n of c.nodes.values()) await n.node.stop();
});

test('proposeMany: one callback per command with its own entry result, in order; refusals per command', async (t) => {
  const c = await cluster({ entryBytesMax: 64 });
  await c.until(() => c.leader() !== undefined && [...c.nodes.values()].every((n) => n.node.status().leader !== null));
  const leader = c.nodes.get(c.leader()!)!;
  const encoder = new TextEncoder();
  const data = [encoder.encode('a'), new Uint8Array(65), encoder.encode('b'), encoder.encode('c')];
  const outcomes: { slot: number; code: string | null; result: unknown }[] = [];
  leader.node.proposeMany(data, (slot, error, result) => outcomes.push({ slot, code: error?.code ?? null, result }));
  t.deepEqual(
    outcomes,
    [{ slot: 1, code: 'RAFT_ENTRY_TOO_LARGE', result: undefined }],
    'a refusal is reported at once',
  );
  await c.until(() => outcomes.length === 4);
  // The noop of the term is entry 1, so a, b, c are 2, 3, 4: consecutive entries, in order.
  t.deepEqual(outcomes.slice(1), [
    { slot: 0, code: null, result: 'applied:a@2' },
    { slot: 2, code: null, result: 'applied:b@3' },
    { slot: 3, code: null, result: 'applied:c@4' },
  ]);
  const follower = [...c.nodes].find(([id]) => id !== c.leader())![1];
  const refused: (string | undefined)[] = [];
  follower.node.proposeMany([encoder.encode('x'), encoder.encode('y')], (_slot, error) => refused.push(error?.code));
  t.deepEqual(refused, ['RAFT_NOT_LEADER', 'RAFT_NOT_LEADER']);
  // Pending ones fail with RAFT_STOPPED when the node stops.
  for (const [id] of c.nodes) if (id !== c.leader()) c.hub.down.add(id);
  const stopped: (string | undefined)[] = [];
  leader.node.proposeMany([encoder.encode('z')], (_slot, error) => stopped.push(error?.code));
  await yieldTurns();
  await leader.node.stop();
  t.deepEqual(stopped, ['RAFT_STOPPED']);
  for (const n of c.nodes.values()) await n.node.stop();
});

test('create() rejects an invalid config with RAFT_CONFIG_INVALID listing every problem', async (t) => {
  const error = await t.throwsAsync(
    RaftNode.create({
      id: 'geneva',
      peers: ids,
      storage: new MemoryStorage(),
      transport: new Hub().transport('geneva'),
      stateMachine: new EchoMachine(),
      clock: new ManualClock(),
      random: seededRandom(1),
      config: { heartbeatTicks: 20, inflightMessagesMax: 0, isLeaseReadEnabled: true, isCheckQuorumEnabled: false },
    }),
  );
  t.is((error as { code?: string }).code, 'RAFT_CONFIG_INVALID');
  t.regex(error!.message, /heartbeatTicks/);
  t.regex(error!.message, /inflightMessagesMax/);
  t.regex(error!.message, /isCheckQuorumEnabled/);
});

test('lease reads (opt-in): within the lease readIndex resolves without a heartbeat round; by default it takes one', async (t) => {
  for (const isLease of [true, false]) {
    const c = await cluster({ isLeaseReadEnabled: isLease, clockDriftBoundMs: 100 });
    await c.until(() => c.leader() !== undefined);
    const leader = c.nodes.get(c.leader()!)!;
    await leader.node.propose(new Uint8Array([1]));
    c.clock.advance(50); // one heartbeat round acknowledged: the lease starts
    await yieldTurns();
    let heartbeats = 0;
    c.hub.filter = (m) => {
      if (m.type === MessageType.Heartbeat) heartbeats++;
      return true;
    };
    await leader.node.readIndex(); // no clock advance: only messages move
    t.is(heartbeats === 0, isLease, `lease=${String(isLease)}: ${heartbeats} heartbeats`);
    for (const n of c.nodes.values()) await n.node.stop();
  }
});

test('lease reads: after a starved event loop dropped clock time, the next read takes a heartbeat round', async (t) => {
  // The lease is counted in ticks; when the driver drops time beyond its per-firing cap (half an
  // election timeout), its ticks fall behind the clock that the followers' election timeouts run
  // on, so the lease must be forgotten. Election timeout 20 ticks: a lease of 18 would survive the
  // capped 10-tick burst if the driver did not expire it.
  for (const isStarved of [false, true]) {
    const c = await cluster({ isLeaseReadEnabled: true, clockDriftBoundMs: 100, electionTimeoutTicks: 20 });
    await c.until(() => c.leader() !== undefined);
    const leader = c.nodes.get(c.leader()!)!;
    await leader.node.propose(new Uint8Array([1]));
    c.clock.advance(50); // a heartbeat round acknowledged: the lease starts
    await yieldTurns();
    let heartbeats = 0;
    // From now on the followers are unreachable: only a lease can serve a read.
    c.hub.filter = (m) => {
      if (m.type === MessageType.Heartbeat) heartbeats++;
      return false;
    };
    if (isStarved) c.clock.stall(5_000); // five election timeouts without a timer firing
    heartbeats = 0;
    let isServed = false;
    const read = leader.node.readIndex().then(() => {
      isServed = true;
    });
    read.catch(() => undefined);
    await yieldTurns();
    t.is(isServed, !isStarved, isStarved ? 'no lease after dropped time' : 'the lease serves the read');
    // Without a lease the read asks a quorum: it sends a heartbeat round (dropped here).
    t.is(heartbeats > 0, isStarved);
    for (const n of c.nodes.values()) await n.node.stop();
  }
});

test('back-pressure: with the state machine stalled, proposals past applyBacklogEntriesMax fail with RAFT_UNCOMMITTED_LIMIT', async (t) => {
  const c = await cluster({ applyBacklogEntriesMax: 8 });
  await c.until(() => c.leader() !== undefined);
  const leader = c.nodes.get(c.leader()!)!;
  await leader.node.propose(new Uint8Array([0]));
  let release!: () => void;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  const apply = leader.sm.apply.bind(leader.sm);
  leader.sm.apply = async (entries) => {
    await gate;
    return apply(entries);
  };
  const accepted: Promise<unknown>[] = [];
  let refused: unknown = null;
  for (let i = 0; i < 20 && refused === null; i++) {
    const p = leader.node.propose(new Uint8Array([i]));
    p.catch((error: unknown) => {
      refused = error;
    });
    accepted.push(p);
    await yieldTurns(3);
  }
  t.is((refused as { code?: string } | null)?.code, 'RAFT_UNCOMMITTED_LIMIT');
  t.true(accepted.length <= 9, `${accepted.length} proposals before the refusal`);
  release();
  for (const n of c.nodes.values()) await n.node.stop();
});

test('one long-lived AbortSignal passed to many calls keeps no listener once they settled', async (t) => {
  // A caller (a client stream) may pass the same signal to every propose/readIndex; each call's
  // abort listener must go when the call settles, or they pile up until the signal aborts.
  const c = await cluster();
  await c.until(() => c.leader() !== undefined);
  const leader = c.nodes.get(c.leader()!)!;
  const controller = new AbortController();
  const signal = controller.signal;
  setMaxListeners(20_000, signal); // 10,000 calls do wait at once here, legitimately
  const proposals = Array.from({ length: 10_000 }, (_, i) =>
    leader.node.propose(new Uint8Array([i & 0xff]), { signal }),
  );
  t.true(getEventListeners(signal, 'abort').length > 0, 'listeners are registered while the calls wait');
  await Promise.all(proposals);
  await Promise.all(Array.from({ length: 100 }, () => leader.node.readIndex({ signal })));
  t.is(getEventListeners(signal, 'abort').length, 0);
  // Aborting still works for a call in flight, and its listener is gone afterwards too.
  let release!: () => void;
  leader.storage.stall = new Promise<void>((resolve) => {
    release = resolve;
  });
  const stuck = leader.node.propose(new Uint8Array([1]), { signal });
  controller.abort();
  const error = await t.throwsAsync(stuck);
  t.is((error as { code?: string }).code, 'RAFT_ABORTED');
  t.is(getEventListeners(signal, 'abort').length, 0);
  leader.storage.stall = null;
  release();
  for (const n of c.nodes.values()) await n.node.stop();
});

test('a follower whose event loop stalls does not depose a healthy leader (clock-time ticks, PreVote)', async (t) => {
  // 1 MiB writes can keep a follower's event loop busy past an election timeout. After the stall
  // Node runs the overdue tick before the heartbeats that waited in the socket, so (1) one stall
  // must not count as a whole election timeout of ticks, and (2) even a follower that does time out
  // (several stalls in a row) must not disrupt the leader: with PreVote the others, who hear from
  // the leader, refuse it, and it follows the leader again at the next heartbeat.
  const clocks = new Map(ids.map((id) => [id, new ManualClock()]));
  const hub = new Hub();
  const nodes = new Map<string, RaftNode>();
  for (const [i, id] of ids.entries()) {
    const node = await RaftNode.create({
      id,
      peers: ids,
      storage: new MemoryStorage(),
      transport: hub.transport(id),
      stateMachine: new EchoMachine(),
      clock: clocks.get(id)!,
      random: seededRandom(i + 31),
    });
    nodes.set(id, node);
    node.start();
  }
  const advanceAll = async (ticks: number, except: string | null = null): Promise<void> => {
    for (let i = 0; i < ticks; i++) {
      for (const [id, clock] of clocks) if (id !== except) clock.advance(50);
      await yieldTurns(5);
    }
  };
  for (let i = 0; i < 200 && ![...nodes.values()].some((n) => n.status().role === 'leader'); i++) await advanceAll(1);
  await advanceAll(5);
  const leaderId = [...nodes].find(([, n]) => n.status().role === 'leader')![0];
  const term = nodes.get(leaderId)!.status().term;
  const followerId = ids.find((id) => id !== leaderId)!;
  const follower = nodes.get(followerId)!;
  // Messages to the stalled follower wait, as they would in its socket, until its timer has fired.
  const held: (() => void)[] = [];
  const stallOnce = async (): Promise<void> => {
    const originalSend = hub.handlers.get(followerId)!;
    hub.filter = (m) => {
      if (m.to !== followerId) return true;
      held.push(() => originalSend(m));
      return false;
    };
    await advanceAll(40, followerId); // two election timeouts for everyone else
    clocks.get(followerId)!.stall(40 * 50); // the follower's overdue tick fires once
    await yieldTurns(5);
  };
  const release = async (): Promise<void> => {
    hub.filter = () => true;
    for (const deliver of held.splice(0)) deliver();
    await advanceAll(3);
  };
  await stallOnce();
  t.is(follower.status().role, 'follower', 'one stall counts at most half an election timeout');
  await release();
  // Several stalls in a row without the heartbeats in between: the follower times out.
  let stalls = 0;
  while (follower.status().role === 'follower' && stalls < 10) {
    await stallOnce();
    stalls++;
  }
  t.not(follower.status().role, 'follower', `campaigning after ${stalls} stalls in a row`);
  await release();
  await advanceAll(10);
  t.is(nodes.get(leaderId)!.status().role, 'leader');
  t.is(nodes.get(leaderId)!.status().term, term, 'no term change: PreVote refused the campaign');
  t.is(follower.status().role, 'follower');
  t.is(follower.status().leader, leaderId);
  for (const n of nodes.values()) await n.stop();
});
