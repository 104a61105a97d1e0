// Proves the per-stage breakdown read from the leader's Prometheus histograms: series of every
// label set are summed, the window is the difference of two scrapes, quantiles are interpolated
// inside buckets as histogram_quantile does, the stages are read from whichever daemon leads at the
// end of the window (with the leader changes seen), and the stage table reports the group-commit
// factor.
import test from 'ava';

import {
  breakdownBetween,
  histogramDelta,
  histogramQuantile,
  parseDaemonSnapshot,
  parseHistograms,
  stagesBetween,
} from '../../src/rdl/metrics.js';
import { formatStagesTable } from '../../src/report.js';
import type { Outcome } from '../../src/report.js';
import { summarise } from '../../src/stats.js';
import { rows } from '../../src/workloads.js';

function exposition(fsyncCounts: [number, number, number], ioCount: number): string {
  const [a, b, inf] = fsyncCounts;
  return [
    '# HELP rdl_raft_fsync_seconds Duration of one synced Raft log append.',
    '# TYPE rdl_raft_fsync_seconds histogram',
    `rdl_raft_fsync_seconds_bucket{le="0.001",region="geneva"} ${a}`,
    `rdl_raft_fsync_seconds_bucket{le="0.002",region="geneva"} ${b}`,
    `rdl_raft_fsync_seconds_bucket{le="+Inf",region="geneva"} ${inf}`,
    `rdl_raft_fsync_seconds_sum{region="geneva"} ${inf * 0.0015}`,
    `rdl_raft_fsync_seconds_count{region="geneva"} ${inf}`,
    `rdl_io_seconds_bucket{le="0.001",op="write",region="geneva"} ${ioCount}`,
    `rdl_io_seconds_bucket{le="+Inf",op="write",region="geneva"} ${ioCount}`,
    `rdl_io_seconds_bucket{le="0.001",op="read",region="geneva"} ${ioCount}`,
    `rdl_io_seconds_bucket{le="+Inf",op="read",region="geneva"} ${ioCount}`,
    `rdl_io_seconds_sum{op="write",region="geneva"} 0.1`,
    `rdl_io_seconds_count{op="write",region="geneva"} ${ioCount}`,
    `rdl_io_seconds_count{op="read",region="geneva"} ${ioCount}`,
    'rdl_raft_term{region="geneva"} 3',
  ].join('\n');
}

test('histograms are parsed and summed over label sets', (t) => {
  const parsed = parseHistograms(exposition([10, 30, 40], 5), ['rdl_raft_fsync_seconds', 'rdl_io_seconds']);
  const fsync = parsed.get('rdl_raft_fsync_seconds')!;
  t.deepEqual(fsync.buckets, [
    [0.001, 10],
    [0.002, 30],
    [Infinity, 40],
  ]);
  t.is(fsync.count, 40);
  t.is(parsed.get('rdl_io_seconds')!.count, 10, 'read and write series summed');
});

test('quantiles interpolate inside the bucket; empty histograms give null', (t) => {
  const sample = {
    buckets: [
      [0.001, 10],
      [0.002, 30],
      [Infinity, 40],
    ] as const,
    sum: 0,
    count: 40,
  };
  // Rank 20 of 40 is halfway through the (0.001, 0.002] bucket.
  t.is(histogramQuantile(sample, 0.5), 0.0015);
  t.is(histogramQuantile(sample, 0.125), 0.0005);
  // In the +Inf bucket: the highest finite bound.
  t.is(histogramQuantile(sample, 0.99), 0.002);
  t.is(histogramQuantile({ buckets: [[Infinity, 0]], sum: 0, count: 0 }, 0.5), null);
});

test('the window is the difference of two scrapes', (t) => {
  const names = ['rdl_raft_fsync_seconds', 'rdl_io_seconds'];
  const before = parseHistograms(exposition([10, 30, 40], 5), names);
  const after = parseHistograms(exposition([10, 130, 140], 205), names);
  const delta = histogramDelta(after.get('rdl_raft_fsync_seconds')!, before.get('rdl_raft_fsync_seconds'));
  t.is(delta.count, 100);
  t.deepEqual(delta.buckets[0], [0.001, 0]);
  const stages = stagesBetween(before, after);
  t.is(stages.fsync.count, 100);
  t.is(stages.fsync.p50Ms, 1.5);
  t.true(Math.abs(stages.fsync.meanMs - 1.5) < 1e-9);
  t.is(stages.io.count, 400);
  t.false('commit' in stages, 'a histogram the daemon does not export is left out');
});

test('the stage table shows operations per fsync (the group-commit factor)', (t) => {
  const stages = {
    leader: 'geneva',
    leaderChanges: 0,
    level0FilesMax: 5,
    compactionBoosts: 2,
    stages: {
      io: { count: 5000, meanMs: 9, p50Ms: 8, p99Ms: 20 },
      fsync: { count: 500, meanMs: 1.5, p50Ms: 1.4, p99Ms: 3 },
    },
  };
  const figure = {
    ops: 5000,
    elapsedMs: 5000,
    opsPerSecond: 1000,
    bytesPerSecond: 4096_000,
    latencyUs: { p50: 9000, p99: 21_000, p999: 30_000 },
    cpuSecondsPer1kOps: 1,
    errors: {},
    stages,
  };
  const outcomes = new Map<string, Outcome>([['sdk-write-4k-qd64', { status: 'ok', summary: summarise([figure]) }]]);
  const table = formatStagesTable(rows, outcomes)!;
  t.regex(
    table,
    /\| sdk-write-4k-qd64 \| 8\.00 \/ 20\.00 \| — \/ — \| 100 \| 1\.50 \| 10\.0 \| — \| 5 \(2\) \| geneva \(0\) \|/,
  );
  t.is(formatStagesTable(rows, new Map()), null);
});

test('the breakdown reads the daemon leading at the end of the window and counts leader changes', (t) => {
  const daemon = (
    region: string,
    isLeader: boolean,
    changes: number,
    fsync: [number, number, number],
    level0 = 0,
    boosts = 0,
  ) =>
    parseDaemonSnapshot(
      region,
      `${exposition(fsync, 0)}\nrdl_raft_is_leader{region="${region}"} ${isLeader ? 1 : 0}\n` +
        `rdl_raft_leader_changes_total{region="${region}"} ${changes}\n` +
        `rdl_leveldb_level0_files{region="${region}"} ${level0}\n` +
        `rdl_leveldb_compaction_boosts_total{region="${region}"} ${boosts}\n`,
    );
  const before = [daemon('geneva', true, 1, [0, 0, 0], 3, 4), daemon('gland', false, 1, [0, 0, 0], 9, 1)];
  // Leadership moved to gland during the window: its histograms are the ones that count.
  const after = [daemon('geneva', false, 2, [5, 5, 5], 6, 7), daemon('gland', true, 2, [10, 30, 40], 2, 2)];
  const breakdown = breakdownBetween(before, after);
  t.is(breakdown.leader, 'gland');
  t.is(breakdown.leaderChanges, 1);
  t.is(breakdown.stages.fsync.count, 40);
  // Compaction: the most level-0 files at the end (not at the start), boosts gained by all daemons.
  t.is(breakdown.level0FilesMax, 6);
  t.is(breakdown.compactionBoosts, 3 + 1);
  t.deepEqual(breakdownBetween([], []), {
    leader: null,
    leaderChanges: 0,
    level0FilesMax: 0,
    compactionBoosts: 0,
    stages: {},
  });
  // The leader did not answer the second scrape: no window to report, and no crash.
  t.deepEqual(breakdownBetween(before, []).stages, {});
  t.is(breakdownBetween(before, []).leader, 'geneva');
});
