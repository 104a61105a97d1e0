// Proves the report's pure parts: HdrHistogram percentiles, the median and spread over runs, the
// number formats, the Markdown table (rdl next to its peer, with the ratio, and skipped peers
// named), the verdict on each issue-6 target, and which region pair the commit latency follows.
import test from 'ava';

import { parseRtt } from '../../src/args.js';
import {
  commitFollows,
  evaluateTargets,
  formatCommitFollows,
  formatLatencyUs,
  formatMegabytesPerSecond,
  formatRatio,
  formatTable,
} from '../../src/report.js';
import type { Outcome } from '../../src/report.js';
import { median, newLatencyHistogram, percentilesOf, summarise } from '../../src/stats.js';
import type { Figure } from '../../src/stats.js';
import { rows } from '../../src/workloads.js';

function figure(opsPerSecond: number, p50Us: number, p99Us: number, bytesPerOp = 4096): Figure {
  return {
    ops: opsPerSecond * 10,
    elapsedMs: 10_000,
    opsPerSecond,
    bytesPerSecond: opsPerSecond * bytesPerOp,
    latencyUs: { p50: p50Us, p99: p99Us, p999: p99Us * 2 },
    cpuSecondsPer1kOps: 0.25,
    errors: {},
  };
}

function ok(f: Figure): Outcome {
  return { status: 'ok', summary: summarise([f]) };
}

test('percentiles come from the HdrHistogram within its 3 significant digits', (t) => {
  const histogram = newLatencyHistogram();
  for (let us = 1; us <= 10_000; us++) histogram.recordValue(us);
  const p = percentilesOf(histogram);
  t.true(Math.abs(p.p50 - 5000) <= 5, `p50 ${p.p50}`);
  t.true(Math.abs(p.p99 - 9900) <= 10, `p99 ${p.p99}`);
  t.true(Math.abs(p.p999 - 9990) <= 10, `p99.9 ${p.p999}`);
});

test('median and spread over runs', (t) => {
  t.is(median([3, 1, 2]), 2);
  t.is(median([4, 1, 3, 2]), 2.5);
  t.throws(() => median([]));
  const summary = summarise([figure(900, 1000, 5000), figure(1000, 2000, 6000), figure(1200, 3000, 7000)]);
  t.is(summary.runs, 3);
  t.is(summary.opsPerSecond, 1000);
  t.is(summary.latencyUs.p50, 2000);
  t.is(summary.opsPerSecondMin, 900);
  t.is(summary.opsPerSecondMax, 1200);
  t.is(summary.spreadPercent, 15);
});

test('number formats', (t) => {
  t.is(formatLatencyUs(450), '0.45');
  t.is(formatLatencyUs(35_400), '35.4');
  t.is(formatLatencyUs(105_000), '105');
  t.is(formatMegabytesPerSecond(123_456_789), '123.5');
  t.is(formatRatio(6000, 1500), '4.00x');
  t.is(formatRatio(6000, null), '—');
  t.is(formatRatio(6000, 0), '—');
});

test('the table puts each rdl figure next to its peer with the ratio, and names skipped peers', (t) => {
  const outcomes = new Map<string, Outcome>([
    ['sdk-write-4k-qd64', ok(figure(6600, 9000, 20_000))],
    ['etcd-put-4k-qd64', ok(figure(1650, 35_000, 105_000))],
    ['nbd-randwrite-4k-qd32', ok(figure(6000, 4000, 9000))],
    ['nbdkit-randwrite-4k-qd32', { status: 'skipped', reason: 'nbdkit not installed' }],
  ]);
  const table = formatTable(rows, outcomes).split('\n');
  t.is(table.length, 2 + 2, 'header, separator and the two rows with something selected');
  const writeRow = table.find((l) => l.startsWith('| sdk-write-4k-qd64 '))!;
  t.regex(writeRow, /\| 6,600 \| 27\.0 \| 9\.00 \| 20\.0 \| 40\.0 \| 0\.250 \|/);
  t.regex(writeRow, /\| etcd-put-4k-qd64 \| 1,650 \|/);
  t.regex(writeRow, /\| 4\.00x \|$/);
  const nbdRow = table.find((l) => l.startsWith('| nbd-randwrite-4k-qd32 '))!;
  t.regex(nbdRow, /skipped: nbdkit not installed/);
  t.regex(nbdRow, /\| — \|$/);
});

test('targets: met, not met with the gap, and not measured', (t) => {
  const outcomes = new Map<string, Outcome>([
    ['sdk-write-4k-qd64', ok(figure(6600, 9000, 20_000))],
    ['etcd-put-4k-qd64', ok(figure(1650, 35_000, 105_000))],
    ['sdk-write-4k-qd1', ok(figure(500, 2000, 4000))],
    ['etcd-put-4k-qd1', ok(figure(310, 2900, 6000))],
    ['sdk-seqwrite-1m-qd4', ok(figure(120, 30_000, 50_000, 1024 * 1024))],
    ['sdk-read-4k-qd64', ok(figure(9000, 5000, 9000))],
  ]);
  const verdicts = evaluateTargets(outcomes);
  t.is(verdicts.length, 5);
  t.is(verdicts[0].status, 'met');
  t.regex(verdicts[0].detail, /4\.00x/);
  t.is(verdicts[1].status, 'not met');
  t.regex(verdicts[1].detail, /p50 2\.00 vs 2\.90 ms/);
  t.is(verdicts[2].status, 'not measured');
  t.is(verdicts[3].status, 'met');
  t.is(verdicts[4].status, 'not met');
  // Throughput alone is not enough: a higher p99 than etcd misses the first target.
  outcomes.set('sdk-write-4k-qd64', ok(figure(6600, 9000, 200_000)));
  t.is(evaluateTargets(outcomes)[0].status, 'not met');
});

test('with the leader in Geneva the commit should follow the Geneva-Gland round trip', (t) => {
  const rtt = parseRtt('geneva-gland=0.35ms,geneva-lucerne=2.5ms,gland-lucerne=2.4ms');
  // The emulation added 0.4 ms to a 1.0 ms baseline: that is Gland's round trip, not Lucerne's.
  const near = commitFollows('geneva', rtt, 1.4, 1.0);
  t.is(near.expectedFollower, 'gland');
  t.is(near.farFollower, 'lucerne');
  t.true(near.isFollowingNearest);
  t.regex(
    formatCommitFollows(near),
    /added 0\.40 ms, which follows the geneva–gland round trip \(0\.35 ms\), not the geneva–lucerne round trip \(2\.5 ms\)/,
  );
  // An added 2.4 ms means the commit waited for the far region.
  const far = commitFollows('geneva', rtt, 3.4, 1.0);
  t.is(far.verdict, 'far');
  t.false(far.isFollowingNearest);
  t.regex(formatCommitFollows(far), /closer to the geneva–lucerne round trip \(2\.5 ms\)/);
  // An added 15.5 ms is noise, not either round trip: no claim either way.
  const noisy = commitFollows('geneva', rtt, 24.89, 9.38);
  t.is(noisy.verdict, 'inconclusive');
  t.false(noisy.isFollowingNearest);
  t.regex(formatCommitFollows(noisy), /noise exceeds the effect/);
  // Without a baseline, only a p50 under the far round trip is evidence.
  t.true(commitFollows('geneva', rtt, 1.2, null).isFollowingNearest);
  t.false(commitFollows('geneva', rtt, 3.2, null).isFollowingNearest);
  // From Lucerne, the nearest follower is Gland (2.4 ms), not Geneva (2.5 ms).
  t.is(commitFollows('lucerne', rtt, 3.0, 0.6).expectedFollower, 'gland');
});
