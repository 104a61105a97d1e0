// Proves isCommitPiggybackEnabled: when a quorum acknowledges an entry, the leader commits it
// without sending followers an extra append (and so without the reply each one costs); followers
// learn the commit index from the next append that carries entries or from the next heartbeat.
// The same scenario with the option off shows the empty appends it saves, so the test fails if
// the option stops changing what the leader sends.
import test from 'ava';
import { MessageType } from '../../src/core/index.js';
import { Network, text } from './harness.js';

const ids = ['a', 'b', 'c'];

/** Elects a, proposes one entry and delivers everything; returns the appends a sent meanwhile. */
function proposeOne(isCommitPiggybackEnabled: boolean): { net: Network; appends: number; emptyAppends: number } {
  const net = new Network(ids, { isCommitPiggybackEnabled });
  net.elect('a');
  const before = net.sent.length;
  net.propose('a', 'x'); // delivers everything until the network is quiet
  const sent = net.sent.slice(before).filter((m) => m.from === 'a' && m.type === MessageType.App);
  return { net, appends: sent.length, emptyAppends: sent.filter((m) => m.entries.length === 0).length };
}

test('off: every commit advance sends each follower an append, empty when it has nothing new', (t) => {
  const { net, appends, emptyAppends } = proposeOne(false);
  t.is(appends, 4, 'one append with the entry and one commit-only append per follower');
  t.is(emptyAppends, 2);
  for (const id of ids) t.deepEqual(net.nodes.get(id)!.applied.map(text), ['', 'x'], id);
});

test('on: the leader commits without commit-only appends; followers apply after the next heartbeat', (t) => {
  const { net, appends, emptyAppends } = proposeOne(true);
  t.is(appends, 2, 'only the appends that carry the entry');
  t.is(emptyAppends, 0);
  t.is(net.core('a').log.committed, 2, 'the leader committed the entry');
  t.deepEqual(net.nodes.get('a')!.applied.map(text), ['', 'x']);
  for (const id of ['b', 'c']) {
    t.is(net.core(id).log.committed, 1, `${id} has not heard of the commit yet`);
    t.deepEqual(net.nodes.get(id)!.applied.map(text), [''], id);
  }
  net.tick(1);
  for (const id of ['b', 'c']) {
    t.is(net.core(id).log.committed, 2, `${id} learned the commit index from the heartbeat`);
    t.deepEqual(net.nodes.get(id)!.applied.map(text), ['', 'x'], id);
  }
});

test('on: the commit index rides on the next append that carries entries', (t) => {
  const { net } = proposeOne(true);
  const before = net.sent.length;
  net.propose('a', 'y');
  const appends = net.sent.slice(before).filter((m) => m.from === 'a' && m.type === MessageType.App);
  t.is(appends.length, 2, 'again only the appends carrying the new entry');
  for (const m of appends) t.is(m.commit, 2, `the append to ${m.to} carries commit 2`);
  for (const id of ['b', 'c']) {
    t.deepEqual(net.nodes.get(id)!.applied.map(text), ['', 'x'], `${id} applied x on learning commit 2`);
    t.is(net.core(id).log.committed, 2);
  }
  t.is(net.core('a').log.committed, 3);
});
