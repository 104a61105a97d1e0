// Proves the read paths of the Raft core (dissertation §6.4 ReadIndex, §6.4.1 leases) on a
// synchronous in-memory network: a read index is released only after the leader committed an
// entry of its term and a quorum acknowledged a heartbeat round sent after the read arrived; a
// lease serves reads without a round only while it is valid, and never during a transfer.
import test from 'ava';
import { MessageType } from '../../src/core/index.js';
import { Network } from './harness.js';

const ids = ['a', 'b', 'c'];

function readStatesOf(net: Network, id: string): { requestId: number; index: number }[] {
  net.process(id);
  const n = net.nodes.get(id)!;
  const out = n.readStates;
  n.readStates = [];
  return out;
}

test('§6.4 "the leader ... must check whether it has been deposed ... by exchanging heartbeat messages with a majority" before serving a read', (t) => {
  const net = new Network(ids);
  net.elect('a');
  net.propose('a', 'x');
  const a = net.core('a');
  net.isolate('a');
  t.is(a.readIndex(7).code, null);
  net.tick(3, ['a']);
  t.deepEqual(readStatesOf(net, 'a'), [], 'no quorum answered: no read state');
  net.heal();
  net.tick(1, ['a']); // the next heartbeat round reaches b and c
  t.deepEqual(readStatesOf(net, 'a'), [{ requestId: 7, index: 2 }], 'the commit index when the read arrived');
});

test('§6.4 "if the leader has not yet marked an entry from its current term committed, it waits until it has done so"', (t) => {
  const net = new Network(ids);
  net.isolate('a', 'b');
  net.isolate('a', 'c');
  net.cutOneWay('b', 'a');
  // a wins with b's vote delivered by hand later; simpler: elect normally but hold a's own write
  // and cut the followers' acks, so the no-op stays uncommitted.
  net.heal();
  net.nodes.get('a')!.isHoldingWrites = true;
  net.cutOneWay('b', 'a');
  net.cutOneWay('c', 'a');
  const a = net.core('a');
  a.campaign();
  net.stabilize();
  t.is(a.role, 'candidate');
  // Grant the votes by hand (the cut links dropped them).
  net.releaseWrites('a');
  for (const from of ['b', 'c']) {
    a.step({
      type: MessageType.VoteResp,
      from,
      to: 'a',
      term: a.term,
      logTerm: 0,
      index: 0,
      entries: [],
      commit: 0,
      reject: false,
      rejectHint: 0,
      context: 0,
    });
  }
  t.is(a.role, 'leader');
  t.is(a.log.committed, 0);
  t.is(a.readIndex(5).code, null);
  // Heartbeat acks from everyone: still no read state, the no-op is not committed.
  const round = a.currentHeartbeatRound;
  for (const from of ['b', 'c']) {
    a.step({
      type: MessageType.HeartbeatResp,
      from,
      to: 'a',
      term: a.term,
      logTerm: 0,
      index: 0,
      entries: [],
      commit: 0,
      reject: false,
      rejectHint: 0,
      context: round,
    });
  }
  t.deepEqual(readStatesOf(net, 'a'), []);
  // The no-op commits: the read starts its own round, and completes on its acks.
  for (const from of ['b', 'c']) {
    a.step({
      type: MessageType.AppResp,
      from,
      to: 'a',
      term: a.term,
      logTerm: 0,
      index: 1,
      entries: [],
      commit: 0,
      reject: false,
      rejectHint: 0,
      context: 0,
    });
  }
  t.is(a.log.committed, 1);
  const round2 = a.currentHeartbeatRound;
  t.true(round2 > round, 'a fresh round was started for the read');
  a.step({
    type: MessageType.HeartbeatResp,
    from: 'b',
    to: 'a',
    term: a.term,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    context: round2,
  });
  t.deepEqual(readStatesOf(net, 'a'), [{ requestId: 5, index: 1 }]);
});

test('a heartbeat acknowledgement from before the read arrived does not confirm it', (t) => {
  const net = new Network(ids);
  net.elect('a');
  const a = net.core('a');
  const oldRound = a.currentHeartbeatRound;
  net.isolate('a');
  a.readIndex(9);
  a.step({
    type: MessageType.HeartbeatResp,
    from: 'b',
    to: 'a',
    term: a.term,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    context: oldRound,
  });
  t.deepEqual(readStatesOf(net, 'a'), []);
  a.step({
    type: MessageType.HeartbeatResp,
    from: 'b',
    to: 'a',
    term: a.term,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    context: a.currentHeartbeatRound,
  });
  t.deepEqual(readStatesOf(net, 'a'), [{ requestId: 9, index: 1 }]);
});

test('reads pending when leadership is lost are reported as dropped', (t) => {
  const net = new Network(ids);
  net.elect('a');
  const a = net.core('a');
  net.isolate('a');
  a.readIndex(3);
  a.step({
    type: MessageType.App,
    from: 'b',
    to: 'a',
    term: a.term + 1,
    logTerm: 1,
    index: 1,
    entries: [],
    commit: 1,
    reject: false,
    rejectHint: 0,
    context: 0,
  });
  const rd = a.ready();
  t.deepEqual(rd.droppedReads, [3]);
});

test('a follower refuses readIndex with RAFT_NOT_LEADER and the leader hint', (t) => {
  const net = new Network(ids);
  net.elect('a');
  t.deepEqual(net.core('b').readIndex(1), { code: 'RAFT_NOT_LEADER', leaderHint: 'a' });
});

test('§6.4.1 lease read: within the lease the leader serves a read without a heartbeat round; after it expires it needs one', (t) => {
  const net = new Network(ids, { isCheckQuorumEnabled: true, leaseTicks: 8 });
  net.elect('a');
  net.tick(1); // a round acknowledged by a quorum starts the lease
  const a = net.core('a');
  const roundBefore = a.currentHeartbeatRound;
  a.readIndex(1);
  t.is(a.currentHeartbeatRound, roundBefore, 'no heartbeat round was needed');
  t.deepEqual(readStatesOf(net, 'a'), [{ requestId: 1, index: 1 }]);
  net.isolate('a');
  for (let i = 0; i < 8; i++) a.tick(); // acks stop; the lease runs out
  net.queue.length = 0;
  readStatesOf(net, 'a');
  const roundLater = a.currentHeartbeatRound;
  a.readIndex(2);
  t.is(a.currentHeartbeatRound, roundLater + 1, 'expired lease: a quorum round is needed');
  t.deepEqual(readStatesOf(net, 'a'), []);
});

test('without leaseTicks every read takes a quorum round (control)', (t) => {
  const net = new Network(ids, { isCheckQuorumEnabled: true });
  net.elect('a');
  net.tick(1);
  const a = net.core('a');
  const roundBefore = a.currentHeartbeatRound;
  a.readIndex(1);
  t.is(a.currentHeartbeatRound, roundBefore + 1);
});

test('lease reads stop once the leader sent TimeoutNow (the target may win without waiting out the lease)', (t) => {
  const net = new Network(ids, { isCheckQuorumEnabled: true, leaseTicks: 8 });
  net.elect('a');
  net.tick(1);
  const a = net.core('a');
  net.isolate('b'); // b never becomes leader: a stays leader with a fresh lease from c
  a.transferLeadership('b'); // b is caught up: TimeoutNow goes out at once (and is lost)
  net.stabilize();
  net.tick(1, ['a']);
  t.is(a.role, 'leader');
  const round = a.currentHeartbeatRound;
  a.readIndex(4);
  t.is(a.currentHeartbeatRound, round + 1, 'fell back to a quorum round');
});
