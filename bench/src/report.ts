import type { Region, RttPair } from './args.js';
import { regions, rttBetweenMs } from './args.js';
import type { SummaryFigure } from './stats.js';
import type { Row } from './workloads.js';

/** What happened to one workload over all runs. */
export type Outcome =
  | { readonly status: 'ok'; readonly summary: SummaryFigure }
  | { readonly status: 'skipped' | 'failed'; readonly reason: string };

/** Outcomes by workload name; a missing name was not selected. */
export type Outcomes = ReadonlyMap<string, Outcome>;

/** Formats an integer-ish count with thousands separators (`12,345`). */
export function formatCount(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

/** Formats microseconds as milliseconds with enough digits for sub-millisecond latencies. */
export function formatLatencyUs(us: number): string {
  const ms = us / 1000;
  return ms < 10 ? ms.toFixed(2) : ms < 100 ? ms.toFixed(1) : ms.toFixed(0);
}

/** Formats bytes per second as MB/s (10^6 bytes). */
export function formatMegabytesPerSecond(bytesPerSecond: number): string {
  const mb = bytesPerSecond / 1e6;
  return mb < 10 ? mb.toFixed(2) : mb.toFixed(1);
}

/** Formats rdl ops/s over the peer's as `2.35x`, or `—` when either is missing or zero. */
export function formatRatio(rdl: number | null, peer: number | null): string {
  if (rdl === null || peer === null || peer <= 0) return '—';
  return `${(rdl / peer).toFixed(2)}x`;
}

function summaryOf(outcomes: Outcomes, name: string | undefined): SummaryFigure | null {
  if (name === undefined) return null;
  const outcome = outcomes.get(name);
  return outcome !== undefined && outcome.status === 'ok' ? outcome.summary : null;
}

function figureCells(outcome: Outcome | undefined): string[] {
  if (outcome === undefined) return ['not run', '', '', '', '', '', ''];
  if (outcome.status !== 'ok') {
    // The full reason is in the progress log and the JSON; the table keeps a short one.
    const reason = outcome.reason.length > 60 ? `${outcome.reason.slice(0, 57)}...` : outcome.reason;
    return [`${outcome.status}: ${reason}`, '', '', '', '', '', ''];
  }
  const s = outcome.summary;
  return [
    formatCount(s.opsPerSecond),
    formatMegabytesPerSecond(s.bytesPerSecond),
    formatLatencyUs(s.latencyUs.p50),
    formatLatencyUs(s.latencyUs.p99),
    formatLatencyUs(s.latencyUs.p999),
    s.cpuSecondsPer1kOps === null ? '—' : s.cpuSecondsPer1kOps.toFixed(3),
    s.runs > 1 ? `±${s.spreadPercent.toFixed(0)}%` : '—',
  ];
}

/**
 * The report table in Markdown: each rdl workload with its figures, next to its peer's figures and
 * the ratio of rdl's ops/s to the peer's. Rows with nothing selected are left out. Latencies in ms.
 */
export function formatTable(rows: readonly Row[], outcomes: Outcomes): string {
  const header = [
    'Workload',
    'ops/s',
    'MB/s',
    'p50 ms',
    'p99 ms',
    'p99.9 ms',
    'CPU s/1k ops',
    'spread',
    'Peer',
    'peer ops/s',
    'peer MB/s',
    'peer p50',
    'peer p99',
    'peer p99.9',
    'peer CPU s/1k',
    'peer spread',
    'rdl/peer ops',
  ];
  const lines = [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`];
  for (const row of rows) {
    const rdlOutcome = outcomes.get(row.rdl.name);
    const peerOutcome = row.peer === null ? undefined : outcomes.get(row.peer.name);
    if (rdlOutcome === undefined && peerOutcome === undefined) continue;
    const rdl = summaryOf(outcomes, row.rdl.name);
    const peer = summaryOf(outcomes, row.peer?.name);
    const cells = [
      row.rdl.name,
      ...figureCells(rdlOutcome),
      row.peer === null ? '—' : row.peer.name,
      ...(row.peer === null ? ['', '', '', '', '', '', ''] : figureCells(peerOutcome)),
      formatRatio(rdl?.opsPerSecond ?? null, peer?.opsPerSecond ?? null),
    ];
    lines.push(`| ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

/**
 * Where the time of each rdl workload went on the leader, from its own histograms over the measured
 * window: IO request latency, propose-to-commit, the synced log appends (how many, how long, and
 * how many client operations each one carried: the group-commit factor) and the applies; and, over
 * all daemons, LevelDB's compaction backlog: the most level-0 files at the window's end and the
 * times a compaction thread got its priority back during it (LevelDB delays writes from 8 level-0
 * files and stops them at 12).
 */
export function formatStagesTable(rows: readonly Row[], outcomes: Outcomes): string | null {
  const header = [
    'Workload',
    'IO p50/p99 ms',
    'commit p50/p99 ms',
    'fsyncs/s',
    'fsync mean ms',
    'ops per fsync',
    'apply p50 ms',
    'L0 files (boosts)',
    'leader (changes)',
  ];
  const lines = [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`];
  const ms = (value: number | null | undefined): string => (value == null ? '—' : value.toFixed(2));
  for (const row of rows) {
    const summary = summaryOf(outcomes, row.rdl.name);
    const breakdown = summary?.stages;
    if (summary === null || breakdown === undefined) continue;
    const stages = breakdown.stages;
    const seconds = summary.elapsedMs / 1000;
    const fsync = stages.fsync;
    lines.push(
      `| ${[
        row.rdl.name,
        `${ms(stages.io?.p50Ms)} / ${ms(stages.io?.p99Ms)}`,
        `${ms(stages.commit?.p50Ms)} / ${ms(stages.commit?.p99Ms)}`,
        fsync === undefined ? '—' : formatCount(fsync.count / seconds),
        ms(fsync?.meanMs),
        fsync === undefined || fsync.count === 0 ? '—' : (summary.ops / fsync.count).toFixed(1),
        ms(stages.apply?.p50Ms),
        `${breakdown.level0FilesMax} (${breakdown.compactionBoosts})`,
        `${breakdown.leader ?? 'none'} (${breakdown.leaderChanges})`,
      ].join(' | ')} |`,
    );
  }
  return lines.length > 2 ? lines.join('\n') : null;
}

/** The verdict on one of issue 6's targets. */
export interface TargetVerdict {
  readonly target: string;
  readonly status: 'met' | 'not met' | 'not measured';
  readonly detail: string;
}

/**
 * Checks issue 6's targets against one report's outcomes (ratios within the same run):
 * 4 KiB writes at 64 in flight ≥ 4x etcd with a lower p99; at 1 in flight a p50 at most half of
 * etcd's; fio randwrite QD32 through NBD ≥ 0.6x nbdkit; 1 MiB sequential writes ≥ 100 MB/s;
 * linearizable 4 KiB reads at 64 in flight ≥ 10,000/s.
 */
export function evaluateTargets(outcomes: Outcomes): TargetVerdict[] {
  const get = (name: string): SummaryFigure | null => summaryOf(outcomes, name);
  const verdicts: TargetVerdict[] = [];
  const missing = (target: string, names: string[]): TargetVerdict => ({
    target,
    status: 'not measured',
    detail: `needs ${names.join(' and ')}`,
  });

  {
    const target = '4 KiB writes, 64 in flight (SDK): >= 4x etcd ops/s and a lower p99';
    const rdl = get('sdk-write-4k-qd64');
    const etcd = get('etcd-put-4k-qd64');
    if (rdl === null || etcd === null) verdicts.push(missing(target, ['sdk-write-4k-qd64', 'etcd-put-4k-qd64']));
    else {
      const ratio = rdl.opsPerSecond / etcd.opsPerSecond;
      const isMet = ratio >= 4 && rdl.latencyUs.p99 < etcd.latencyUs.p99;
      verdicts.push({
        target,
        status: isMet ? 'met' : 'not met',
        detail: `${ratio.toFixed(2)}x (${formatCount(rdl.opsPerSecond)} vs ${formatCount(etcd.opsPerSecond)} ops/s); p99 ${formatLatencyUs(rdl.latencyUs.p99)} vs ${formatLatencyUs(etcd.latencyUs.p99)} ms`,
      });
    }
  }
  {
    const target = '4 KiB writes, 1 in flight (SDK): p50 <= 0.5x etcd p50';
    const rdl = get('sdk-write-4k-qd1');
    const etcd = get('etcd-put-4k-qd1');
    if (rdl === null || etcd === null) verdicts.push(missing(target, ['sdk-write-4k-qd1', 'etcd-put-4k-qd1']));
    else {
      const ratio = rdl.latencyUs.p50 / etcd.latencyUs.p50;
      verdicts.push({
        target,
        status: ratio <= 0.5 ? 'met' : 'not met',
        detail: `p50 ${formatLatencyUs(rdl.latencyUs.p50)} vs ${formatLatencyUs(etcd.latencyUs.p50)} ms (${ratio.toFixed(2)}x)`,
      });
    }
  }
  {
    const target = 'fio 4 KiB randwrite QD32 through NBD: >= 0.6x nbdkit file plugin (flush after every write)';
    const rdl = get('nbd-randwrite-4k-qd32');
    const nbdkit = get('nbdkit-randwrite-4k-qd32');
    if (rdl === null || nbdkit === null) {
      verdicts.push(missing(target, ['nbd-randwrite-4k-qd32', 'nbdkit-randwrite-4k-qd32']));
    } else {
      const ratio = rdl.opsPerSecond / nbdkit.opsPerSecond;
      verdicts.push({
        target,
        status: ratio >= 0.6 ? 'met' : 'not met',
        detail: `${ratio.toFixed(2)}x (${formatCount(rdl.opsPerSecond)} vs ${formatCount(nbdkit.opsPerSecond)} IOPS)`,
      });
    }
  }
  {
    const target = '1 MiB sequential writes: >= 100 MB/s replicated';
    const sdk = get('sdk-seqwrite-1m-qd4');
    const nbd = get('nbd-seqwrite-1m-qd4');
    const best = [sdk, nbd].filter((s): s is SummaryFigure => s !== null);
    if (best.length === 0) verdicts.push(missing(target, ['sdk-seqwrite-1m-qd4 or nbd-seqwrite-1m-qd4']));
    else {
      const sdkText = sdk === null ? 'not run' : `${formatMegabytesPerSecond(sdk.bytesPerSecond)} MB/s`;
      const nbdText = nbd === null ? 'not run' : `${formatMegabytesPerSecond(nbd.bytesPerSecond)} MB/s`;
      // The SDK figure is the target's own measure; NBD is shown for reference.
      const measured = sdk ?? nbd!;
      verdicts.push({
        target,
        status: measured.bytesPerSecond >= 100e6 ? 'met' : 'not met',
        detail: `SDK ${sdkText}, NBD ${nbdText}`,
      });
    }
  }
  {
    const target = 'Linearizable 4 KiB reads, 64 in flight: >= 10,000/s';
    const rdl = get('sdk-read-4k-qd64');
    if (rdl === null) verdicts.push(missing(target, ['sdk-read-4k-qd64']));
    else {
      verdicts.push({
        target,
        status: rdl.opsPerSecond >= 10_000 ? 'met' : 'not met',
        detail: `${formatCount(rdl.opsPerSecond)} reads/s, p99 ${formatLatencyUs(rdl.latencyUs.p99)} ms`,
      });
    }
  }
  return verdicts;
}

/** Formats the target verdicts as a Markdown list. */
export function formatTargets(verdicts: readonly TargetVerdict[]): string {
  return verdicts.map((v) => `- **${v.status}** — ${v.target}: ${v.detail}`).join('\n');
}

/** Which round trip a leader's commit latency follows under emulated region latency. */
export interface CommitFollows {
  readonly leader: Region;
  /** 1-in-flight write p50 with the emulated round trips. */
  readonly p50Ms: number;
  /** The same without emulated latency (same machine, fresh cluster), or null if not measured. */
  readonly baselineP50Ms: number | null;
  /** The follower whose round trip the commit should wait for (the nearest: a quorum of 3 is 2). */
  readonly expectedFollower: Region;
  readonly expectedRttMs: number;
  /** The farthest follower, which the commit must NOT wait for. */
  readonly farFollower: Region;
  readonly farRttMs: number;
  /**
   * `near`: the latency the emulation added is closer to the near round trip than to the far one
   * (without a baseline: p50 is below the far round trip). `far`: closer to the far one.
   * `inconclusive`: the added latency is farther from both than they are from each other, i.e.
   * run-to-run noise is larger than the effect being measured.
   */
  readonly verdict: 'near' | 'far' | 'inconclusive';
  readonly isFollowingNearest: boolean;
}

/**
 * With three regions a commit needs the leader and one follower, so the latency the emulated
 * network adds to a write should be the round trip to the NEAREST follower. Compares the
 * 1-in-flight write p50 with emulation against the baseline without, and against the round trips
 * from `leader`.
 */
export function commitFollows(
  leader: Region,
  rtt: readonly RttPair[],
  p50Ms: number,
  baselineP50Ms: number | null,
): CommitFollows {
  const followers = regions
    .filter((r) => r !== leader)
    .map((r) => ({ region: r, rttMs: rttBetweenMs(rtt, leader, r) }))
    .sort((x, y) => x.rttMs - y.rttMs);
  const near = followers[0];
  const far = followers[followers.length - 1];
  const addedMs = baselineP50Ms === null ? null : p50Ms - baselineP50Ms;
  let verdict: CommitFollows['verdict'];
  if (addedMs === null) {
    verdict = p50Ms < far.rttMs ? 'near' : 'far';
  } else {
    const gapMs = far.rttMs - near.rttMs;
    const toNear = Math.abs(addedMs - near.rttMs);
    const toFar = Math.abs(addedMs - far.rttMs);
    verdict = toNear > gapMs && toFar > gapMs ? 'inconclusive' : toNear < toFar ? 'near' : 'far';
  }
  return {
    leader,
    p50Ms,
    baselineP50Ms,
    expectedFollower: near.region,
    expectedRttMs: near.rttMs,
    farFollower: far.region,
    farRttMs: far.rttMs,
    verdict,
    isFollowingNearest: verdict === 'near',
  };
}

/** One sentence on which region pair the commit latency follows. */
export function formatCommitFollows(c: CommitFollows): string {
  const near = `${c.leader}–${c.expectedFollower} round trip (${c.expectedRttMs} ms)`;
  const far = `${c.leader}–${c.farFollower} round trip (${c.farRttMs} ms)`;
  const measured =
    c.baselineP50Ms === null
      ? `4 KiB write p50 at 1 in flight is ${c.p50Ms.toFixed(2)} ms`
      : `4 KiB write p50 at 1 in flight is ${c.p50Ms.toFixed(2)} ms with emulated latency and ${c.baselineP50Ms.toFixed(2)} ms without; the emulation added ${(c.p50Ms - c.baselineP50Ms).toFixed(2)} ms`;
  const verdict =
    c.verdict === 'near'
      ? `which follows the ${near}, not the ${far}`
      : c.verdict === 'far'
        ? `which is closer to the ${far} than to the ${near}: the commit waited for the far region`
        : `which is farther from both the ${near} and the ${far} than they are from each other: run-to-run noise exceeds the effect, so this run shows neither`;
  return `Leader in ${c.leader}: ${measured}, ${verdict}.`;
}
