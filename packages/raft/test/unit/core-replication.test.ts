// Proves the log-replication and commit rules of the Raft core (Raft paper §5.3, §5.4.2, §8 and the
// parallel-fsync rule of §10.2.1) by driving RaftCores over a synchronous in-memory network and
// holding back individual nodes' writes to observe what happens before their fsync completes.
import test from 'ava';
import type { Entry } from '../../src/api.js';
import type { Message } from '../../src/core/index.js';
import { MessageType, ProgressState, RaftCore } from '../../src/core/index.js';
import { Network, coreConfig, text } from './harness.js';

function entry(index: number, term: number): Entry {
  return { index, term, type: 0, data: new Uint8Array(0) };
}

function msg(type: Message['type'], from: string, term: number, index: number): Message {
  return {
    type,
    from,
    to: 'a',
    term,
    logTerm: 0,
    index,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    context: 0,
  };
}

const ids = ['a', 'b', 'c'];

test('§8 "a leader ... commit a blank no-op entry into the log at the start of its term"', (t) => {
  const net = new Network(ids);
  net.elect('a');
  const a = net.nodes.get('a')!;
  t.is(a.stored.length, 1);
  t.is(a.stored[0].data.byteLength, 0);
  t.is(a.stored[0].term, 1);
  t.is(net.core('a').log.committed, 1);
  t.is(net.core('b').log.committed, 1);
});

test('§5.3 "Once the entry has been safely replicated, the leader applies the entry"; followers apply in the same order', (t) => {
  const net = new Network(ids);
  net.elect('a');
  const r = net.propose('a', 'x', 'y');
  t.is(r.code, null);
  t.is(r.index, 2);
  net.tick(2);
  for (const id of ids) {
    const n = net.nodes.get(id)!;
    t.deepEqual(n.applied.map(text), ['', 'x', 'y'], id);
  }
});

test('§10.2.1 the leader writes its log in parallel with replication and counts itself only after its own write is durable', (t) => {
  const net = new Network(ids);
  net.elect('a');
  const a = net.nodes.get('a')!;
  net.isolate('a', 'c'); // only b acknowledges: a's own ack is needed for a majority
  a.isHoldingWrites = true;
  net.propose('a', 'x');
  const appSent = net.sent.filter((m) => m.type === MessageType.App && m.entries.length > 0 && m.to === 'b');
  t.true(appSent.length > 0, "the leader's append left before its own fsync");
  t.is(net.core('b').log.lastIndex(), 2, 'b appended');
  t.is(net.core('a').log.committed, 1, 'not committed: the leader has not fsynced');
  net.releaseWrites('a');
  net.stabilize();
  t.is(net.core('a').log.committed, 2);
});

test('with both followers acknowledging, an entry commits even before the leader fsyncs (a majority is durable)', (t) => {
  const net = new Network(ids);
  net.elect('a');
  net.nodes.get('a')!.isHoldingWrites = true;
  net.propose('a', 'x');
  t.is(net.core('a').log.committed, 2);
  t.is(net.nodes.get('a')!.applied.length, 1, 'but the leader applies only what it has durable');
  net.releaseWrites('a');
  net.stabilize();
  t.is(net.nodes.get('a')!.applied.length, 2);
});

test('persistence contract: a follower acknowledges an append only after it is durable', (t) => {
  const net = new Network(ids);
  net.elect('a');
  net.isolate('a', 'c');
  const b = net.nodes.get('b')!;
  b.isHoldingWrites = true;
  net.propose('a', 'x');
  t.is(net.core('b').log.lastIndex(), 2);
  t.is(net.core('a').progress.get('b')!.match, 1, 'no ack yet');
  t.is(net.core('a').log.committed, 1);
  net.releaseWrites('b');
  net.stabilize();
  t.is(net.core('a').progress.get('b')!.match, 2);
  t.is(net.core('a').log.committed, 2);
});

test('§5.3 "the leader handles inconsistencies by forcing the followers\' logs to duplicate its own" (conflicting suffix overwritten)', (t) => {
  const net = new Network(ids);
  net.elect('a');
  net.isolate('a');
  net.propose('a', 'lost1', 'lost2', 'lost3'); // only a has these (term 1)
  net.tick(25, ['b', 'c']);
  const leader = net.leaders().find((id) => id !== 'a')!;
  net.propose(leader, 'kept');
  net.heal();
  net.tick(3);
  const want = net.nodes.get(leader)!.stored.map((e) => `${e.term}:${text(e)}`);
  t.deepEqual(
    net.nodes.get('a')!.stored.map((e) => `${e.term}:${text(e)}`),
    want,
  );
  t.false(want.includes('1:lost1'));
});

test('§5.3 fast back-off: "the follower can include the term of the conflicting entry and the first index it stores for that term" — one round trip skips a whole conflicting term', (t) => {
  const net = new Network(ids);
  net.elect('a');
  net.propose('a', 'base');
  net.isolate('a');
  net.propose('a', ...Array.from({ length: 50 }, (_, i) => `lost${i}`)); // a alone: term 1, 3..52
  net.tick(25, ['b', 'c']);
  const x = net.leaders().find((id) => id !== 'a')!;
  const y = x === 'b' ? 'c' : 'b';
  net.propose(x, ...Array.from({ length: 100 }, (_, i) => `new${i}`)); // on x and y: term 2
  // y now leads with a's vote: its first probe to a starts ~100 entries past a's divergence.
  net.heal();
  net.isolate(x);
  const before = net.sent.length;
  net.elect(y);
  t.is(net.core(y).role, 'leader');
  net.tick(2, ['a', y]);
  const rejects = net.sent.slice(before).filter((m) => m.type === MessageType.AppResp && m.reject && m.from === 'a');
  t.true(rejects.length >= 1, 'a had a conflicting suffix');
  t.true(rejects.length <= 2, `needed ${rejects.length} rejections to skip 50 conflicting and 100 missing entries`);
  t.is(net.core('a').log.lastIndex(), net.core(y).log.lastIndex());
  t.is(net.core('a').log.term(3), net.core(y).log.term(3));
});

test('§5.4.2 "Raft never commits log entries from previous terms by counting replicas" (Figure 8)', (t) => {
  // a restarts with x (index 2, term 1) that was never committed, wins term 2 and appends its no-op
  // (index 3). x reaching a majority must not commit it; the no-op reaching a majority commits both.
  const core = new RaftCore(coreConfig('a'), {
    hardState: { term: 1, vote: null, commit: 1 },
    snapshot: null,
    entries: [entry(1, 1), entry(2, 1)],
    appliedIndex: 1,
    conf: { voters: ids, learners: [], votersOutgoing: [], learnersNext: [] },
  });
  core.campaign();
  core.persisted(core.ready());
  core.step(msg(MessageType.VoteResp, 'b', 2, 0));
  t.is(core.role, 'leader');
  const noop = core.ready(); // the no-op, not yet durable on a
  t.is(noop.entries[0].index, 3);
  core.step(msg(MessageType.AppResp, 'b', 2, 2));
  t.is(core.progress.get('b')!.match, 2);
  t.is(core.log.committed, 1, 'x sits on a and b (a majority) but is of an earlier term');
  core.step(msg(MessageType.AppResp, 'b', 2, 3));
  t.is(core.log.committed, 1, "the no-op is on b only: a's copy is not durable yet");
  core.persisted(noop);
  t.is(core.log.committed, 3, 'the no-op of term 2 commits, and x with it');
});

test('flow control: at most inflightMessagesMax appends are in flight to a follower', (t) => {
  const net = new Network(ids, { inflightMessagesMax: 4, appendBatchBytesMax: 20 });
  net.elect('a');
  net.isolate('a', 'b');
  net.isolate('a', 'c');
  const a = net.core('a');
  const before = net.sent.length;
  // b is in Replicate after the election; propose many one-entry batches.
  for (let i = 0; i < 20; i++) a.propose([new Uint8Array(4)]);
  net.process('a');
  const apps = net.sent.slice(before).filter((m) => m.type === MessageType.App && m.to === 'b' && m.entries.length > 0);
  t.is(a.progress.get('b')!.state, ProgressState.Replicate);
  t.is(apps.length, 4, 'the window of 4 appends is full');
  t.true(
    apps.every((m) => m.entries.length === 1),
    'appendBatchBytesMax keeps one 20-byte entry per message',
  );
});

test('flow control: at most inflightBytesMax bytes are in flight to a follower', (t) => {
  const net = new Network(ids, { inflightBytesMax: 100, appendBatchBytesMax: 60 });
  net.elect('a');
  net.isolate('a', 'b');
  net.isolate('a', 'c');
  const a = net.core('a');
  const before = net.sent.length;
  for (let i = 0; i < 10; i++) a.propose([new Uint8Array(34)]); // 50 bytes each with overhead
  net.process('a');
  const apps = net.sent.slice(before).filter((m) => m.type === MessageType.App && m.to === 'b' && m.entries.length > 0);
  t.is(apps.length, 2, '2 x 50 bytes fill the 100-byte window');
  t.is(a.progress.get('b')!.inflights.bytes, 100);
});

test('pipelining: a follower in Replicate gets several appends before any reply, and batching groups proposals', (t) => {
  const net = new Network(ids);
  net.elect('a');
  net.isolate('a', 'b');
  const a = net.core('a');
  const before = net.sent.length;
  a.propose([new Uint8Array(1), new Uint8Array(1), new Uint8Array(1)]);
  a.propose([new Uint8Array(1)]);
  net.process('a');
  const apps = net.sent.slice(before).filter((m) => m.type === MessageType.App && m.to === 'b' && m.entries.length > 0);
  t.deepEqual(
    apps.map((m) => m.entries.length),
    [3, 1],
  );
});

test('a follower in Probe gets one append at a time until it answers', (t) => {
  const net = new Network(ids);
  net.isolate('c');
  net.elect('a');
  const a = net.core('a');
  t.is(a.progress.get('c')!.state, ProgressState.Probe);
  for (let i = 0; i < 5; i++) a.propose([new Uint8Array(1)]);
  net.process('a');
  const apps = net.sent.filter((m) => m.type === MessageType.App && m.to === 'c');
  t.is(apps.length, 1);
});

test('a lost append with a full window is recovered: a heartbeat reply frees a slot and the gap is probed', (t) => {
  const net = new Network(ids, { inflightMessagesMax: 1 });
  net.elect('a');
  const a = net.core('a');
  net.cutOneWay('a', 'b');
  a.propose([bytes1()]); // lost on the way to b: b's window (1) is now full
  net.stabilize();
  t.true(a.progress.get('b')!.isPaused());
  net.heal();
  a.propose([bytes1()]); // cannot go out: the window is full
  net.stabilize();
  t.is(net.core('b').log.lastIndex(), 1);
  net.tick(3, ['a']);
  t.is(net.core('b').log.lastIndex(), 3, 'b caught up after the next heartbeat reply');
  t.is(a.progress.get('b')!.match, 3);
});

function bytes1(): Uint8Array {
  return new Uint8Array(1);
}
