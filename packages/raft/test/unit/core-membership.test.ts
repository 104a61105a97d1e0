// Proves the membership-change rules of the Raft core (dissertation chapter 4) on a synchronous
// in-memory network: learners replicate without voting, a single-server change takes effect when
// appended, one change at a time, a new leader commits an entry of its term first, joint consensus
// needs both majorities and is left automatically, a removed leader steps down once the change
// commits, a voter left out by an uncommitted configuration may still campaign (§4.2.2), and a
// truncated ConfChange entry takes its change with it.
import test from 'ava';
import type { ConfChangeRequest } from '../../src/core/index.js';
import { MessageType, RaftCore } from '../../src/core/index.js';
import { Network, coreConfig } from './harness.js';

const add = (id: string): ConfChangeRequest => ({ changes: [{ type: 'add-voter', id }] });
const learner = (id: string): ConfChangeRequest => ({ changes: [{ type: 'add-learner', id }] });
const remove = (id: string): ConfChangeRequest => ({ changes: [{ type: 'remove', id }] });

test('§4.2.1 learners "receive the log but do not vote": a learner catches up, never counts toward commit, never campaigns', (t) => {
  const net = new Network(['a', 'b', 'c', 'd'], {}, ['a', 'b', 'c']);
  net.elect('a');
  t.is(net.core('a').proposeConfChange(learner('d')).code, null);
  net.stabilize();
  net.propose('a', 'x');
  t.is(net.core('d').log.lastIndex(), net.core('a').log.lastIndex(), 'd replicates');
  t.deepEqual(net.core('d').conf().learners, ['d']);
  t.false(net.core('d').isPromotable());
  // With b and c cut off, a and learner d are not a majority: nothing commits.
  net.isolate('b');
  net.isolate('c');
  const before = net.core('a').log.committed;
  net.propose('a', 'y');
  t.is(net.core('a').log.committed, before);
  net.tick(50, ['d']);
  t.is(net.core('d').role, 'follower', 'a learner does not campaign');
});

test('§4.1 "The new configuration takes effect on each server as soon as it is added to that server\'s log"', (t) => {
  const net = new Network(['a', 'b', 'c', 'd'], {}, ['a', 'b', 'c']);
  net.elect('a');
  net.isolate('b');
  net.isolate('c');
  const a = net.core('a');
  t.is(a.proposeConfChange(add('d')).code, null);
  t.deepEqual([...a.conf().voters].sort(), ['a', 'b', 'c', 'd'], 'in effect on the leader before commit');
  net.stabilize();
  t.deepEqual([...net.core('d').conf().voters].sort(), ['a', 'b', 'c', 'd'], 'and on d once appended');
  t.true(a.log.committed < a.log.lastIndex(), 'a and d are not a majority of four');
  net.heal();
  net.tick(2);
  t.is(a.log.committed, a.log.lastIndex());
});

test('§4.1 "a leader ... does not begin a new configuration change until the previous one has committed" (RAFT_CONF_CHANGE_PENDING)', (t) => {
  const net = new Network(['a', 'b', 'c', 'd', 'e'], {}, ['a', 'b', 'c']);
  net.elect('a');
  net.isolate('b');
  net.isolate('c');
  const a = net.core('a');
  t.is(a.proposeConfChange(add('d')).code, null);
  t.is(a.proposeConfChange(add('e')).code, 'RAFT_CONF_CHANGE_PENDING');
  net.heal();
  net.tick(2);
  t.is(a.proposeConfChange(add('e')).code, null);
});

test('§4.1 errata: a new leader must commit an entry of its own term before a configuration change', (t) => {
  const core = new RaftCore(coreConfig('a'), {
    hardState: { term: 0, vote: null, commit: 0 },
    snapshot: null,
    entries: [],
    appliedIndex: 0,
    conf: { voters: ['a', 'b', 'c'], learners: [], votersOutgoing: [], learnersNext: [] },
  });
  core.campaign();
  core.persisted(core.ready());
  core.step({
    type: MessageType.VoteResp,
    from: 'b',
    to: 'a',
    term: 1,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    context: 0,
  });
  t.is(core.role, 'leader');
  t.is(core.proposeConfChange(add('d')).code, 'RAFT_CONF_CHANGE_PENDING', 'its no-op is not committed yet');
});

test('an impossible change is refused with RAFT_CONF_CHANGE_INVALID', (t) => {
  const net = new Network(['a', 'b', 'c']);
  net.elect('a');
  const a = net.core('a');
  t.is(a.proposeConfChange(add('b')).code, 'RAFT_CONF_CHANGE_INVALID');
  t.is(a.proposeConfChange(remove('z')).code, 'RAFT_CONF_CHANGE_INVALID');
  t.is(a.proposeConfChange({ changes: [] }).code, 'RAFT_CONF_CHANGE_INVALID');
  t.is(net.core('b').proposeConfChange(add('d')).code, 'RAFT_NOT_LEADER');
});

test('§4.3 joint consensus: replacing two voters at once goes through C_old,new (both majorities) and is left automatically', (t) => {
  const net = new Network(['a', 'b', 'c', 'd', 'e'], {}, ['a', 'b', 'c']);
  net.elect('a');
  const a = net.core('a');
  const r = a.proposeConfChange({
    changes: [
      { type: 'add-voter', id: 'd' },
      { type: 'add-voter', id: 'e' },
      { type: 'remove', id: 'c' },
    ],
  });
  t.is(r.code, null);
  t.deepEqual([...a.conf().votersOutgoing].sort(), ['a', 'b', 'c'], 'joint: the old voters still decide');
  // Cut the new members: the old majority alone cannot commit the joint entry.
  net.isolate('d');
  net.isolate('e');
  net.stabilize();
  t.true(a.log.committed < r.index, 'C_new has no majority without d and e');
  net.heal();
  net.tick(3);
  t.true(a.log.committed > r.index, 'joint entry and the automatic leave entry committed');
  t.deepEqual(a.conf().votersOutgoing, []);
  t.deepEqual([...a.conf().voters].sort(), ['a', 'b', 'd', 'e']);
  t.deepEqual([...net.core('e').conf().voters].sort(), ['a', 'b', 'd', 'e']);
});

test('§4.2.2 a leader removed from the configuration steps down once the change commits', (t) => {
  const net = new Network(['a', 'b', 'c']);
  net.elect('a');
  const a = net.core('a');
  t.is(a.proposeConfChange(remove('a')).code, null);
  t.is(a.role, 'leader', 'still manages the cluster while the change is uncommitted');
  net.stabilize();
  t.is(a.role, 'follower');
  t.false(a.isPromotable());
  net.tick(40);
  const leader = net.leaders()[0];
  t.true(leader === 'b' || leader === 'c');
  t.deepEqual([...net.core(leader).conf().voters].sort(), ['b', 'c']);
});

test('§4.2.2 a voter left out by an uncommitted configuration still campaigns until the change commits', (t) => {
  // Figure 4.6: a removes itself from {a, b}; the append never reaches b, and b's campaign deposes a.
  const net = new Network(['a', 'b']);
  net.elect('a');
  const a = net.core('a');
  net.cutOneWay('a', 'b');
  t.is(a.proposeConfChange(remove('a')).code, null);
  net.stabilize();
  net.core('b').campaign();
  net.stabilize();
  t.is(a.role, 'follower');
  t.deepEqual(a.conf().voters, ['b'], 'a holds the change that leaves it out');
  t.true(a.lastConfIndex() > a.log.committed, 'not committed: b has not got it');
  t.false(a.isVoter());
  t.true(a.isPromotable(), '"it might still be needed until the Cnew entry is committed"');
  t.is(net.leaders().length, 0, 'b cannot win: it needs the vote of a, whose log is longer');
  net.heal();
  net.tick(60);
  t.true(a.lastConfIndex() <= a.log.committed, 'a was elected, committed its removal and stepped down');
  t.is(a.role, 'follower');
  t.false(a.isPromotable(), 'a removed node that knows its removal committed never campaigns');
  t.deepEqual(net.leaders(), ['b']);
});

test("a ConfChange entry truncated from a follower's log takes its change with it", (t) => {
  const voters = ['a', 'b', 'c', 'e', 'f'];
  const net = new Network([...voters, 'd'], {}, voters);
  net.elect('a');
  for (const id of ['c', 'd', 'e', 'f']) net.isolate('a', id);
  net.cutOneWay('b', 'a'); // b receives the change but a never learns it
  net.core('a').proposeConfChange(learner('d'));
  net.stabilize();
  t.deepEqual(net.core('b').conf().learners, ['d']);
  // a is cut off; c leads term 2 with e and f, without the change, and overwrites b's suffix.
  net.heal();
  net.isolate('a');
  net.isolate('b');
  net.core('c').campaign();
  net.stabilize();
  t.is(net.core('c').role, 'leader');
  net.propose('c', 'overwrite');
  net.heal();
  net.isolate('a');
  net.tick(3, ['b', 'c']);
  t.deepEqual(net.core('b').conf().learners, [], 'the uncommitted change was truncated');
  t.is(net.core('b').log.lastIndex(), net.core('c').log.lastIndex());
});
