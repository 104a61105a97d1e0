// Proves leadership transfer (dissertation §3.10), proposal forwarding vs fail-fast, and the
// proposal limits of the Raft core (entry size, batch size, uncommitted bytes) by driving RaftCores
// over a synchronous in-memory network and checking roles, codes and messages.
import test from 'ava';
import { MessageType } from '../../src/core/index.js';
import { Network } from './harness.js';

const ids = ['a', 'b', 'c'];
const bytes = (n: number): Uint8Array => new Uint8Array(n);

test('§3.10 "the prior leader sends ... entries to the target server" then "a TimeoutNow request", and the target wins', (t) => {
  const net = new Network(ids);
  net.elect('a');
  net.isolate('a', 'c');
  net.propose('a', 'x', 'y'); // c lags behind
  net.heal();
  const before = net.sent.length;
  t.is(net.core('a').transferLeadership('c').code, null);
  net.stabilize();
  const sent = net.sent.slice(before).filter((m) => m.from === 'a' && m.to === 'c');
  const firstTimeoutNow = sent.findIndex((m) => m.type === MessageType.TimeoutNow);
  t.true(firstTimeoutNow > 0, 'TimeoutNow went out');
  t.true(
    sent.slice(0, firstTimeoutNow).some((m) => m.type === MessageType.App && m.entries.length > 0),
    'after catching c up',
  );
  t.is(net.core('c').role, 'leader');
  t.is(net.core('a').lead, 'c');
});

test('§3.10 a transfer target campaigns even against followers inside a check-quorum lease', (t) => {
  const net = new Network(ids, { isCheckQuorumEnabled: true, isPreVoteEnabled: true });
  net.elect('a');
  net.tick(2);
  net.core('a').transferLeadership('b');
  net.stabilize();
  t.is(net.core('b').role, 'leader');
});

test('§3.10 "the prior leader stops accepting client requests" during a transfer (RAFT_PROPOSAL_DROPPED)', (t) => {
  const net = new Network(ids);
  net.elect('a');
  net.isolate('a', 'b');
  net.core('a').transferLeadership('b');
  const r = net.core('a').propose([bytes(1)]);
  t.is(r.code, 'RAFT_PROPOSAL_DROPPED');
});

test('§3.10 "If the transfer does not complete within ... an election timeout, the prior leader aborts the transfer and resumes accepting client requests"', (t) => {
  const net = new Network(ids);
  net.elect('a');
  net.isolate('a', 'b');
  const a = net.core('a');
  a.transferLeadership('b');
  t.is(a.leadTransferee, 'b');
  net.tick(10, ['a']);
  t.is(a.leadTransferee, null);
  t.is(a.role, 'leader');
  t.is(a.propose([bytes(1)]).code, null);
});

test('transfer to a non-member fails with RAFT_TRANSFER_FAILED; on a follower with RAFT_NOT_LEADER', (t) => {
  const net = new Network(ids);
  net.elect('a');
  t.is(net.core('a').transferLeadership('z').code, 'RAFT_TRANSFER_FAILED');
  t.deepEqual(net.core('b').transferLeadership('c'), { code: 'RAFT_NOT_LEADER', leaderHint: 'a' });
});

test('a follower fails fast with RAFT_NOT_LEADER and a leader hint when forwarding is off', (t) => {
  const net = new Network(ids);
  net.elect('a');
  const r = net.core('b').propose([bytes(1)]);
  t.is(r.code, 'RAFT_NOT_LEADER');
  t.is(r.leaderHint, 'a');
});

test('with forwarding on, a follower forwards to the leader and learns the index of its entry', (t) => {
  const net = new Network(ids, { isProposalForwardingEnabled: true });
  net.elect('a');
  const b = net.core('b');
  const r = b.propose([bytes(3), bytes(4)], 42);
  t.is(r.code, null);
  t.true(r.isForwarded);
  net.stabilize();
  const results = net.nodes.get('b')!.forwardResults;
  t.deepEqual(results, [{ forwardId: 42, index: 2, term: 1, code: null, leaderHint: 'a' }]);
  t.is(net.core('b').log.entry(3).data.byteLength, 4);
});

test('limit: an entry above entryBytesMax is refused with RAFT_ENTRY_TOO_LARGE', (t) => {
  const net = new Network(ids, { entryBytesMax: 100 });
  net.elect('a');
  t.is(net.core('a').propose([bytes(101)]).code, 'RAFT_ENTRY_TOO_LARGE');
  t.is(net.core('a').propose([bytes(100)]).code, null);
});

test('limit: a batch above appendBatchBytesMax is refused with RAFT_BATCH_TOO_LARGE', (t) => {
  const net = new Network(ids, { appendBatchBytesMax: 100 });
  net.elect('a');
  t.is(net.core('a').propose([bytes(40), bytes(40)]).code, 'RAFT_BATCH_TOO_LARGE');
  t.is(net.core('a').propose([bytes(30), bytes(30)]).code, null);
});

test('limit: the leader refuses proposals past uncommittedBytesMax with RAFT_UNCOMMITTED_LIMIT, and accepts again once they commit', (t) => {
  const net = new Network(ids, { uncommittedBytesMax: 200 });
  net.elect('a');
  net.isolate('a');
  const a = net.core('a');
  t.is(a.propose([bytes(84)]).code, null); // 100 with overhead
  t.is(a.propose([bytes(84)]).code, null); // 200
  t.is(a.propose([bytes(1)]).code, 'RAFT_UNCOMMITTED_LIMIT');
  net.heal();
  net.tick(2);
  t.is(a.uncommittedBytesCount, 0);
  t.is(a.propose([bytes(84)]).code, null);
});
