// Proves the core's side of log compaction and snapshots (Raft paper §7) by driving RaftCores over a
// synchronous in-memory network: a leader whose log no longer holds what a follower needs asks
// its driver to send a snapshot (and stops appending to it); a follower that already holds the
// snapshot's last entry commits instead of restoring; an installed snapshot replaces a conflicting
// log and resumes replication; a node whose state machine is behind its log asks for a snapshot.
import test from 'ava';
import type { Message } from '../../src/core/index.js';
import { CONTEXT_NEED_SNAPSHOT, MessageType, ProgressState, RaftCore } from '../../src/core/index.js';
import { Network, coreConfig } from './harness.js';

const ids = ['a', 'b', 'c'];

function snapMessage(from: string, to: string, term: number, index: number, logTerm: number): Message {
  return {
    type: MessageType.Snap,
    from,
    to,
    term,
    logTerm,
    index,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    context: 0,
    snapshot: {
      meta: { index, term: logTerm, conf: { voters: ids, learners: [], votersOutgoing: [], learnersNext: [] } },
      seq: 0,
      data: new Uint8Array(0),
      isLast: true,
    },
  };
}

test('§7 "the leader must occasionally send snapshots to followers that lag behind": compacted entries turn into a snapshot request', (t) => {
  const net = new Network(ids);
  net.elect('a');
  net.isolate('c');
  for (let i = 0; i < 10; i++) net.propose('a', `x${i}`);
  const a = net.core('a');
  const meta = a.compact(8);
  t.deepEqual(meta.index, 8);
  t.is(meta.term, 1);
  t.is(a.log.firstIndex(), 9);
  net.heal();
  net.tick(2, ['a']);
  t.is(a.progress.get('c')!.state, ProgressState.Snapshot);
  // No append reached c while it waits for the snapshot.
  t.is(net.core('c').log.lastIndex(), 1);
});

test('the snapshot request appears in Ready.snapshotsToSend exactly once', (t) => {
  const net = new Network(ids);
  net.elect('a');
  net.isolate('c');
  for (let i = 0; i < 5; i++) net.propose('a', `x${i}`);
  const a = net.core('a');
  a.compact(5);
  net.heal();
  const requests: string[] = [];
  for (let i = 0; i < 3; i++) {
    a.tick();
    for (let round = 0; round < 100; round++) {
      while (a.hasReady()) {
        const rd = a.ready();
        requests.push(...rd.snapshotsToSend);
        for (const m of rd.messages) net.queue.push(m);
        a.advance(rd);
        for (const m of rd.messagesAfterPersist) net.queue.push(m);
      }
      for (const id of ['b', 'c']) net.process(id);
      const m = net.queue.shift();
      if (m === undefined) break;
      net.core(m.to).step(m);
    }
  }
  t.deepEqual(requests, ['c']);
});

test("a follower that already holds the snapshot's last entry commits up to it instead of restoring", (t) => {
  const net = new Network(ids);
  net.elect('a');
  net.propose('a', 'x', 'y');
  const b = net.core('b');
  // b holds index 3 of term 1 but may not know it committed yet: simulate a snapshot at 3.
  b.step(snapMessage('a', 'b', 1, 3, 1));
  const rd = b.ready();
  t.deepEqual(rd.snapshotChunks, [], 'nothing to restore');
  t.is(b.log.committed, 3);
});

test('§7 "the follower discards its entire log; it is all superseded by the snapshot" when the log conflicts', (t) => {
  const net = new Network(ids);
  net.elect('a');
  net.isolate('a');
  net.propose('a', 'lost1', 'lost2');
  net.tick(25, ['b', 'c']);
  const leader = net.leaders().find((id) => id !== 'a')!;
  for (let i = 0; i < 5; i++) net.propose(leader, `k${i}`);
  const l = net.core(leader);
  const meta = l.compact(l.log.applied);
  const a = net.core('a');
  a.step(snapMessage(leader, 'a', l.term, meta.index, meta.term));
  const rd = a.ready();
  t.is(rd.snapshotChunks.length, 1, 'the chunk is handed to the driver');
  a.advance(rd);
  t.true(a.isSnapshotUseful(meta));
  a.installSnapshot(meta, a.log.matchTerm(meta.index, meta.term), leader);
  t.is(a.log.firstIndex(), meta.index + 1);
  t.is(a.log.lastIndex(), meta.index, 'the conflicting suffix is gone');
  t.is(a.log.committed, meta.index);
  t.is(a.log.applied, meta.index);
  const reply = a.ready().messages.find((m) => m.type === MessageType.AppResp);
  t.is(reply?.index, meta.index);
  // Replication resumes from the snapshot.
  net.heal();
  net.nodes.get('a')!.stored = [];
  net.queue.push(reply!);
  net.stabilize();
  net.propose(leader, 'after');
  net.tick(2);
  t.is(a.log.lastIndex(), l.log.lastIndex());
  t.is(l.progress.get('a')!.state, ProgressState.Replicate);
});

test('a node whose state machine is behind its log start applies nothing, does not campaign, and asks for a snapshot', (t) => {
  const conf = { voters: ids, learners: [], votersOutgoing: [], learnersNext: [] };
  const core = new RaftCore(coreConfig('b'), {
    hardState: { term: 1, vote: null, commit: 12 },
    snapshot: { index: 10, term: 1, conf },
    entries: [
      { index: 11, term: 1, type: 0, data: new Uint8Array(0) },
      { index: 12, term: 1, type: 0, data: new Uint8Array(0) },
    ],
    appliedIndex: 4, // crashed between recording the snapshot and committing it to the state machine
    conf,
  });
  t.true(core.isSnapshotNeeded);
  t.false(core.isPromotable());
  for (let i = 0; i < 40; i++) core.tick();
  t.is(core.role, 'follower');
  core.step({
    type: MessageType.App,
    from: 'a',
    to: 'b',
    term: 2,
    logTerm: 1,
    index: 12,
    entries: [],
    commit: 12,
    reject: false,
    rejectHint: 0,
    context: 0,
  });
  const rd = core.ready();
  t.deepEqual(rd.committedEntries, []);
  const resp = rd.messagesAfterPersist.find((m) => m.type === MessageType.AppResp);
  t.is(resp?.context, CONTEXT_NEED_SNAPSHOT);
  core.installSnapshot({ index: 12, term: 1, conf }, true, 'a');
  t.false(core.isSnapshotNeeded);
  t.is(core.log.applied, 12);
});

test('the leader answers a NEED_SNAPSHOT reply by requesting a snapshot for that follower', (t) => {
  const net = new Network(ids);
  net.elect('a');
  const a = net.core('a');
  a.step({
    type: MessageType.AppResp,
    from: 'b',
    to: 'a',
    term: 1,
    logTerm: 0,
    index: 1,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    context: CONTEXT_NEED_SNAPSHOT,
  });
  t.is(a.progress.get('b')!.state, ProgressState.Snapshot);
  t.deepEqual(a.ready().snapshotsToSend, ['b']);
});

test('a failed snapshot is reported: the follower is probed again after its next heartbeat reply', (t) => {
  const net = new Network(ids);
  net.elect('a');
  net.isolate('c');
  for (let i = 0; i < 5; i++) net.propose('a', `x${i}`);
  const a = net.core('a');
  a.compact(6);
  net.heal();
  net.tick(1, ['a']);
  t.is(a.progress.get('c')!.state, ProgressState.Snapshot);
  a.reportSnapshot('c', false);
  t.is(a.progress.get('c')!.state, ProgressState.Probe);
  t.true(a.progress.get('c')!.isPaused(), 'no immediate retry');
  net.tick(1, ['a']);
  t.is(a.progress.get('c')!.state, ProgressState.Snapshot, 'still behind the log start: a new snapshot is requested');
});

test('a follower whose snapshot ack does not raise its match (it had acked that index before) leaves the Snapshot state', (t) => {
  const net = new Network(ids);
  net.elect('a');
  net.propose('a', 'x');
  const a = net.core('a');
  const match = a.progress.get('b')!.match;
  a.step({
    type: MessageType.AppResp,
    from: 'b',
    to: 'a',
    term: 1,
    logTerm: 0,
    index: match,
    entries: [],
    commit: 0,
    reject: true,
    rejectHint: 0,
    context: CONTEXT_NEED_SNAPSHOT,
  });
  t.is(a.progress.get('b')!.state, ProgressState.Snapshot);
  a.step({
    type: MessageType.AppResp,
    from: 'b',
    to: 'a',
    term: 1,
    logTerm: 0,
    index: match,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    context: 0,
  });
  t.is(a.progress.get('b')!.state, ProgressState.Replicate);
});

test("a follower that installed a snapshot older than the leader's log start gets a newer one", (t) => {
  const net = new Network(ids);
  net.elect('a');
  net.isolate('c');
  for (let i = 0; i < 10; i++) net.propose('a', `x${i}`);
  const a = net.core('a');
  a.compact(8);
  net.heal();
  net.tick(2, ['a']);
  const pr = a.progress.get('c')!;
  t.is(pr.state, ProgressState.Snapshot);
  const sent = pr.pendingSnapshot;
  // Meanwhile the leader writes more and compacts past the snapshot being sent.
  net.isolate('c');
  for (let i = 0; i < 5; i++) net.propose('a', `y${i}`);
  a.compact(a.log.applied);
  net.process('a');
  a.step({
    type: MessageType.AppResp,
    from: 'c',
    to: 'a',
    term: a.term,
    logTerm: 0,
    index: sent,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    context: 0,
  });
  t.is(pr.state, ProgressState.Snapshot);
  t.true(pr.pendingSnapshot > sent, 'a newer snapshot was requested');
  t.deepEqual(a.ready().snapshotsToSend, ['c']);
});

test('a leader waiting for a snapshot install learns from a heartbeat reply that it happened (the append response was lost)', (t) => {
  const net = new Network(ids);
  net.elect('a');
  net.isolate('c');
  for (let i = 0; i < 6; i++) net.propose('a', `x${i}`);
  const a = net.core('a');
  const meta = a.compact(a.log.applied);
  net.heal();
  net.tick(2, ['a']);
  t.is(a.progress.get('c')!.state, ProgressState.Snapshot);
  // c installs the snapshot (as its driver would), but its append response is lost.
  const c = net.core('c');
  c.step(snapMessage('a', 'c', a.term, meta.index, meta.term));
  net.process('c');
  c.installSnapshot(meta, false, 'a');
  c.ready(); // the append response: dropped
  net.queue.length = 0;
  net.tick(2, ['a']);
  t.is(a.progress.get('c')!.state, ProgressState.Replicate);
  net.propose('a', 'after');
  t.is(c.log.lastIndex(), a.log.lastIndex());
});
