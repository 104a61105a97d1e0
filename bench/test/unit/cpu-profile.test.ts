// Proves the CPU-profile summary used to explain what limits each figure: samples are weighted by
// the time delta that follows them, grouped by category (idle, GC, gRPC, serialization, LevelDB,
// Raft, daemon) and by function, on a small hand-written .cpuprofile.
import test from 'ava';

import { categoryOf, formatProfileSummary, summariseProfile } from '../../src/cpu-profile.js';

test('categories from function names and script URLs', (t) => {
  t.is(categoryOf('(idle)', ''), 'idle');
  t.is(categoryOf('(garbage collector)', ''), 'gc');
  t.is(categoryOf('write', 'file:///w/node_modules/@grpc/grpc-js/build/src/call.js'), 'grpc');
  t.is(categoryOf('pack', 'file:///w/node_modules/msgpackr/pack.js'), 'serialization');
  t.is(categoryOf('batch', 'file:///w/node_modules/classic-level/index.js'), 'leveldb');
  t.is(categoryOf('step', 'file:///w/packages/raft/dist/src/core/raft.js'), 'raft');
  t.is(categoryOf('apply', 'file:///w/packages/daemon/dist/src/storage/x.js'), 'daemon');
  t.is(categoryOf('writeSync', 'node:fs'), 'node-internal');
});

test('self time per category and per function', (t) => {
  const frame = (functionName: string, url: string) => ({ functionName, url, lineNumber: 9 });
  const profile = {
    nodes: [
      { id: 1, callFrame: frame('(idle)', '') },
      { id: 2, callFrame: frame('step', 'file:///w/packages/raft/dist/src/core/raft.js') },
      { id: 3, callFrame: frame('pack', 'file:///w/node_modules/msgpackr/pack.js') },
    ],
    samples: [1, 2, 2, 3],
    // Microseconds before each sample; each sample weighs the delta after it (the last weighs 0).
    timeDeltas: [0, 1000, 3000, 2000],
  };
  const summary = summariseProfile(profile);
  t.is(summary.totalMs, 6);
  t.deepEqual(summary.byCategoryMs, { idle: 1, raft: 5, serialization: 0 });
  t.is(summary.topFunctions[0].name, 'step core/raft.js:10');
  t.is(summary.topFunctions[0].selfMs, 5);
  t.regex(formatProfileSummary(summary), /raft\s+83\.3%/);
});
