// Proves the leader-election rules of the Raft core (Raft paper §5.2, §5.4.1, dissertation §9.6
// pre-vote, §6.2 check-quorum) by driving RaftCores over a synchronous in-memory network
// (harness.ts) and asserting roles, terms and which messages leave before or after persistence.
import test from 'ava';
import { MessageType } from '../../src/core/index.js';
import { Network, coreConfig, seededRandom } from './harness.js';
import { RaftCore } from '../../src/core/index.js';

const ids = ['a', 'b', 'c'];

test('§5.2 "If a follower receives no communication over a period of time called the election timeout, then it ... begins an election"', (t) => {
  const net = new Network(ids);
  net.tick(25, ['a']); // only a's clock runs: it must time out within [10, 20) ticks
  t.is(net.core('a').role, 'leader');
  t.is(net.core('a').term, 1);
  t.deepEqual(net.leaders(), ['a']);
  t.is(net.core('b').lead, 'a');
});

test('§5.2 "Raft uses randomized election timeouts": each timeout is drawn in [e, 2e) from the injected random source', (t) => {
  const seen = new Set<number>();
  for (let seed = 1; seed <= 40; seed++) {
    const core = new RaftCore(coreConfig('a', { random: seededRandom(seed) }), {
      hardState: { term: 0, vote: null, commit: 0 },
      snapshot: null,
      entries: [],
      appliedIndex: 0,
      conf: { voters: ids, learners: [], votersOutgoing: [], learnersNext: [] },
    });
    let ticks = 0;
    while (core.role === 'follower' && ticks < 100) {
      core.tick();
      ticks++;
    }
    t.true(ticks >= 10 && ticks < 20, `timeout ${ticks}`);
    seen.add(ticks);
  }
  t.true(seen.size > 3, 'timeouts vary with the seed');
});

test('§5.2 "A candidate wins an election if it receives votes from a majority of the servers"', (t) => {
  const net = new Network(['a', 'b', 'c', 'd', 'e']);
  net.isolate('d');
  net.isolate('e');
  net.elect('a');
  t.is(net.core('a').role, 'leader', 'a, b, c are a majority of five');
  const net2 = new Network(['a', 'b', 'c', 'd', 'e']);
  net2.isolate('c');
  net2.isolate('d');
  net2.isolate('e');
  net2.elect('a');
  t.is(net2.core('a').role, 'candidate', 'two of five is not a majority');
});

test('§5.2 "each server will vote for at most one candidate in a given term"', (t) => {
  const net = new Network(ids);
  net.isolate('a', 'c');
  net.elect('a'); // a gets b's vote
  t.is(net.core('b').vote, 'a');
  // c campaigns in the same term 1 (its term is still 0 -> 1) and must not get b's vote.
  net.heal();
  net.core('b').step({
    type: MessageType.Vote,
    from: 'c',
    to: 'b',
    term: 1,
    logTerm: 1,
    index: 1,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    context: 0,
  });
  const rd = net.core('b').ready();
  const resp = [...rd.messages, ...rd.messagesAfterPersist].find((m) => m.type === MessageType.VoteResp);
  t.truthy(resp);
  t.true(resp!.reject);
  t.is(net.core('b').vote, 'a');
});

test('§5.4.1 "the voter denies its vote if its own log is more up-to-date than that of the candidate"', (t) => {
  const net = new Network(ids);
  net.elect('a');
  net.isolate('c');
  net.propose('a', 'x'); // a and b have index 2; c has only the no-op
  net.heal();
  // c campaigns: b must refuse (b's log is longer at the same last term).
  net.isolate('c', 'a');
  net.elect('c');
  t.not(net.core('c').role, 'leader');
  t.is(net.core('b').vote, null, 'b did not vote for c in its term');
});

test('persistence contract: a vote grant leaves only after the vote is durable (messagesAfterPersist)', (t) => {
  const net = new Network(ids);
  const b = net.nodes.get('b')!;
  net.isolate('c');
  b.isHoldingWrites = true;
  net.elect('a');
  t.is(net.core('a').role, 'candidate', 'b granted in memory, but its grant waits for the write');
  t.is(b.hardState.vote, null);
  net.releaseWrites('b');
  net.stabilize();
  t.is(b.hardState.vote, 'a');
  t.is(net.core('a').role, 'leader');
});

test('persistence contract: a candidate counts its own vote only once term and vote are durable', (t) => {
  const net = new Network(['a']);
  const a = net.nodes.get('a')!;
  a.isHoldingWrites = true;
  net.elect('a');
  t.is(net.core('a').role, 'candidate', 'single voter, but its vote is not on disk yet');
  net.releaseWrites('a');
  net.stabilize();
  t.is(net.core('a').role, 'leader');
  t.deepEqual(a.hardState, { term: 1, vote: 'a', commit: 0 });
});

test('§9.6 pre-vote: "a candidate would first ask other servers whether its log was up-to-date enough to get their vote" — a partitioned node does not inflate its term', (t) => {
  const net = new Network(ids, { isPreVoteEnabled: true });
  net.elect('a');
  t.is(net.core('a').term, 1);
  net.isolate('c');
  net.tick(100, ['c']);
  t.is(net.core('c').term, 1, 'pre-vote failed, so the term did not move');
  t.is(net.core('c').role, 'pre-candidate');
  net.heal();
  net.tick(3);
  t.is(net.core('a').role, 'leader', 'the healthy leader was not deposed');
  t.is(net.core('a').term, 1);
  t.is(net.core('c').lead, 'a');
});

test('without pre-vote the same partitioned node returns with a higher term and disrupts the leader (control)', (t) => {
  const net = new Network(ids);
  net.elect('a');
  net.isolate('c');
  net.tick(100, ['c']);
  t.true(net.core('c').term > 1);
  net.heal();
  net.tick(30);
  t.true(net.core('a').term > 1, 'the leader learned the higher term and was deposed');
});

test('§6.2 check-quorum: "a leader steps down if an election timeout elapses without a successful round of heartbeats to a majority"', (t) => {
  const net = new Network(ids, { isCheckQuorumEnabled: true, isPreVoteEnabled: true });
  net.elect('a');
  net.isolate('a');
  net.tick(21, ['a']);
  t.is(net.core('a').role, 'follower');
  t.is(net.core('a').lead, null);
});

test('without check-quorum an isolated leader stays leader (control)', (t) => {
  const net = new Network(ids);
  net.elect('a');
  net.isolate('a');
  net.tick(40, ['a']);
  t.is(net.core('a').role, 'leader');
});

test('§4.2.3 check-quorum lease: "if a server receives a RequestVote within the minimum election timeout of hearing from a current leader, it does not update its term or grant its vote"', (t) => {
  const net = new Network(ids, { isCheckQuorumEnabled: true });
  net.elect('a');
  net.isolate('c');
  net.tick(30, ['c']); // c campaigns alone at higher terms (no pre-vote)
  const cTerm = net.core('c').term;
  t.true(cTerm > 1);
  net.heal();
  net.core('c').campaign();
  net.stabilize();
  t.is(net.core('b').term <= cTerm, true);
  t.is(net.core('b').vote, 'a', 'b, in contact with a, ignored c');
});

test('a stale leader learns the new term from a follower reply and steps down', (t) => {
  const net = new Network(ids, { isCheckQuorumEnabled: true, isPreVoteEnabled: true });
  net.elect('a');
  net.isolate('a');
  net.tick(30, ['b', 'c']);
  const newLeader = net.leaders().find((id) => id !== 'a');
  t.truthy(newLeader);
  net.heal();
  net.propose('a', 'stale');
  net.stabilize();
  t.is(net.core('a').role, 'follower');
  t.is(net.core('a').lead === newLeader || net.core('a').lead === null, true);
});

test('lease reads: a node that just (re)started waits out one election timeout before voting, since it may have acknowledged a lease it forgot', (t) => {
  const b = new RaftCore(coreConfig('b', { isCheckQuorumEnabled: true, leaseTicks: 8 }), {
    hardState: { term: 1, vote: 'a', commit: 0 },
    snapshot: null,
    entries: [],
    appliedIndex: 0,
    conf: { voters: ids, learners: [], votersOutgoing: [], learnersNext: [] },
  });
  const vote = {
    type: MessageType.Vote,
    from: 'c',
    to: 'b',
    term: 5,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    context: 0,
  } as const;
  b.step(vote);
  t.is(b.term, 1, 'ignored right after boot');
  for (let i = 0; i < 10; i++) b.tick();
  b.step(vote);
  t.is(b.term, 5);
  t.is(b.vote, 'c');
});
