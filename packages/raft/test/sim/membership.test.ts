// Proves the simulator's membership-change coverage and its quorum-overlap check: the check
// accepts exactly the transitions Raft allows (single-server changes, entering and leaving a joint
// configuration) and rejects direct multi-voter changes whose majorities can be disjoint; a leader
// elected without durable votes of a quorum of its configuration is caught (vote grants sent
// before fsync, with the commit-durability check off so that this check is the one to fire); seeds
// with membership changes on add, remove and replace members (removing the leader too) and pass
// every invariant, while seeds with the rate at 0 change nothing; and the core bugs found with
// membership changes (a crash with joint replacement, elections deadlocked behind a stale voter, a
// follower stuck in the leader's Snapshot state) stay fixed: each regression seed failed before
// its fix.
import test from 'ava';
import type { ConfState } from '../../src/api.js';
import { quorumsIntersect, runSimulation } from '../../src/testing/simulator.js';
import type { FaultTally, SimulationOptions } from '../../src/testing/simulator.js';

// Regression seeds replay the scenario they were found in: with commit indexes sent eagerly (the
// simulator's draw of isCommitPiggybackEnabled came later and would change their schedule).
const AS_FOUND = { isCommitPiggybackEnabled: false };

function conf(voters: string[], votersOutgoing: string[] = []): ConfState {
  return { voters, learners: [], votersOutgoing, learnersNext: [] };
}

test('quorum overlap: single-server changes and joint enter/leave pass, direct multi-voter changes fail', (t) => {
  const abc = conf(['a', 'b', 'c']);
  t.true(quorumsIntersect(abc, conf(['a', 'b', 'c', 'd'])), 'add one voter');
  t.true(quorumsIntersect(abc, conf(['a', 'b'])), 'remove one voter');
  t.true(quorumsIntersect(conf(['a', 'b']), conf(['a'])), 'two voters to one');
  t.true(quorumsIntersect(abc, conf(['a', 'b', 'd'], ['a', 'b', 'c'])), 'enter joint');
  t.true(quorumsIntersect(conf(['a', 'b', 'd'], ['a', 'b', 'c']), conf(['a', 'b', 'd'])), 'leave joint');
  t.false(quorumsIntersect(abc, conf(['a', 'b', 'c', 'd', 'e'])), 'two voters added at once');
  t.false(quorumsIntersect(abc, conf(['a', 'd', 'e'])), 'two voters swapped at once');
  t.false(quorumsIntersect(conf(['a', 'b']), conf(['c', 'd'])), 'disjoint sets');
  t.false(
    quorumsIntersect(abc, conf(['a', 'd', 'e'], ['a', 'b', 'e'])),
    'joint that does not hold the old configuration',
  );
});

test('a leader elected on votes granted before fsync is caught by the election-quorum check', (t) => {
  let caught = 0;
  for (let seed = 1; seed <= 20; seed++) {
    const result = runSimulation({ seed, driverBug: 'ack-before-fsync', disabledChecks: ['commit-durability'] });
    if (
      result.violation !== null &&
      /leads term \d+ with durable votes of .* only, not a majority/.test(result.violation)
    ) {
      caught++;
    }
  }
  t.true(caught >= 10, `caught in ${caught} of 20 seeds`);
});

function sum(seeds: number[], options: Omit<SimulationOptions, 'seed'>): { tally: FaultTally; violations: string[] } {
  const violations: string[] = [];
  let tally: FaultTally | null = null;
  for (const seed of seeds) {
    const result = runSimulation({ ...options, seed });
    if (result.violation !== null) violations.push(`seed ${seed}: ${result.violation}`);
    if (tally === null) tally = { ...result.tally };
    else for (const [k, v] of Object.entries(result.tally)) tally[k as keyof FaultTally] += v;
  }
  return { tally: tally!, violations };
}

const SEEDS = Array.from({ length: 12 }, (_, i) => 500 + i);

test('seeds with membership changes add, remove, replace members and remove the leader, safely', (t) => {
  const { tally, violations } = sum(SEEDS, { faults: { membershipRate: 0.05 } });
  t.deepEqual(violations, []);
  t.true(tally['member-added'] > 0, 'added');
  t.true(tally['member-removed'] > 0, 'removed');
  t.true(tally['member-replaced'] > 0, 'replaced');
  t.true(tally['leader-removed'] > 0, 'leader removed');
  t.true(tally['member-replaced-joint'] > 0, 'replaced through a joint configuration');
  t.true(tally['member-replaced-joint'] < tally['member-replaced'], 'replaced by single-server changes');
});

test('replacements pick joint or single-server changes as told', (t) => {
  const always = sum(SEEDS, { faults: { membershipRate: 0.05 }, isJointReplaceEnabled: true });
  t.deepEqual(always.violations, []);
  t.true(always.tally['member-replaced'] > 0);
  t.is(always.tally['member-replaced-joint'], always.tally['member-replaced']);
  const never = sum(SEEDS, { faults: { membershipRate: 0.05 }, isJointReplaceEnabled: false });
  t.deepEqual(never.violations, []);
  t.true(never.tally['member-replaced'] > 0);
  t.is(never.tally['member-replaced-joint'], 0);
});

test('with the membership rate at 0 the simulator changes no membership', (t) => {
  const { tally, violations } = sum(SEEDS, { faults: { membershipRate: 0 } });
  t.deepEqual(violations, []);
  t.is(tally['member-added'] + tally['member-removed'] + tally['member-replaced'] + tally['leader-removed'], 0);
});

// Regression (seed 22 with joint replacement): when an append response of the voter being removed
// commits C_old,new, `maybeCommit` makes the leader leave the joint configuration, which drops that
// voter's Progress; `handleAppendResponse` then called `sendAppend` for it and read `isPaused` of
// undefined, crashing the leader.
test('replacing members through a joint configuration passes every check (seed 22)', (t) => {
  const result = runSimulation({ seed: 22, isJointReplaceEnabled: true, coreConfig: AS_FOUND });
  t.is(result.violation, null);
});

// Regression (seed 4589): a voter lagging with an older configuration, in which the candidate is no
// voter, reaches a higher term through failed elections; it silently dropped the candidate's
// lower-term MsgVote, so neither could ever win. The core now answers a lower-term MsgVote with a
// rejection carrying its term (Raft §5.1).
test('a candidate unknown to a stale higher-term voter is still elected after healing (seed 4589)', (t) => {
  const result = runSimulation({ seed: 4589, isJointReplaceEnabled: false, coreConfig: AS_FOUND });
  t.is(result.violation, null);
});

// Regression (seeds 9030 and 15518): a follower installed a snapshot while the leader compacted
// past the snapshot's index, and the follower's append response was lost; its heartbeat replies
// (its committed index, which reached the snapshot but not the leader's log start) left it in the
// leader's Snapshot state for ever, and with that follower needed for a quorum nothing committed
// after healing. The core now probes again (sending a newer snapshot) once a heartbeat reply shows
// the pending snapshot arrived.
for (const seed of [9030, 15518]) {
  test(`a follower that installed a snapshot the leader compacted past leaves the Snapshot state (seed ${seed})`, (t) => {
    const result = runSimulation({ seed, isJointReplaceEnabled: false, coreConfig: AS_FOUND });
    t.is(result.violation, null);
  });
}

// Regression (seeds 8624 and 14011): a voter whose log holds a configuration that leaves it out
// (the leave of a joint configuration in 8624, a single-server removal in 14011), not yet
// committed, with the longest log: the other voters, still in the older configuration, need its
// vote, which it refuses for their shorter logs, and it never campaigned (a node outside its
// latest configuration was not promotable), so nobody could be elected. Raft §4.2.2: such a
// server should still start elections until C_new is committed; it does now, leads without
// counting itself, commits C_new and steps down.
test('a voter removed by an uncommitted configuration still campaigns (seed 8624, joint replacement)', (t) => {
  const result = runSimulation({ seed: 8624, isJointReplaceEnabled: true, coreConfig: AS_FOUND });
  t.is(result.violation, null);
});

test('a voter removed by an uncommitted configuration still campaigns (seed 14011)', (t) => {
  const result = runSimulation({ seed: 14011, isJointReplaceEnabled: false, coreConfig: AS_FOUND });
  t.is(result.violation, null);
});
