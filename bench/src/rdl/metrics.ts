import { get } from 'node:http';

/** A Prometheus histogram summed over its label sets: cumulative bucket counts by upper bound. */
export interface HistogramSample {
  /** `[upperBoundSeconds, cumulativeCount]`, ascending, ending with +Inf. */
  readonly buckets: ReadonlyArray<readonly [number, number]>;
  readonly sum: number;
  readonly count: number;
}

/** The histograms of one scrape, by metric name. */
export type MetricsSnapshot = ReadonlyMap<string, HistogramSample>;

/**
 * Parses the histograms named in `names` out of Prometheus text exposition, summing the series of
 * every label set (e.g. every `op` of `rdl_io_seconds`) bucket by bucket.
 */
export function parseHistograms(text: string, names: readonly string[]): Map<string, HistogramSample> {
  const acc = new Map<string, { buckets: Map<number, number>; sum: number; count: number }>();
  for (const name of names) acc.set(name, { buckets: new Map(), sum: 0, count: 0 });
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line === '') continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (match === null) continue;
    const [, metric, labels = '', valueText] = match;
    const value = Number(valueText);
    if (!Number.isFinite(value)) continue;
    for (const name of names) {
      const entry = acc.get(name)!;
      if (metric === `${name}_bucket`) {
        const le = /(?:^|,)le="([^"]+)"/.exec(labels)?.[1];
        if (le === undefined) continue;
        const bound = le === '+Inf' ? Infinity : Number(le);
        entry.buckets.set(bound, (entry.buckets.get(bound) ?? 0) + value);
      } else if (metric === `${name}_sum`) {
        entry.sum += value;
      } else if (metric === `${name}_count`) {
        entry.count += value;
      }
    }
  }
  const out = new Map<string, HistogramSample>();
  for (const [name, entry] of acc) {
    const buckets = [...entry.buckets].sort((a, b) => a[0] - b[0]);
    out.set(name, { buckets, sum: entry.sum, count: entry.count });
  }
  return out;
}

/** What happened between two scrapes of the same histogram (`after` minus `before`). */
export function histogramDelta(after: HistogramSample, before: HistogramSample | undefined): HistogramSample {
  if (before === undefined) return after;
  const previous = new Map(before.buckets);
  return {
    buckets: after.buckets.map(([bound, count]) => [bound, count - (previous.get(bound) ?? 0)] as const),
    sum: after.sum - before.sum,
    count: after.count - before.count,
  };
}

/**
 * The `q` quantile (0..1) of a histogram in seconds, interpolated linearly inside its bucket as
 * Prometheus' histogram_quantile does; null when the histogram is empty. A quantile in the +Inf
 * bucket reports the highest finite bound.
 */
export function histogramQuantile(sample: HistogramSample, q: number): number | null {
  const total = sample.buckets.length === 0 ? 0 : sample.buckets[sample.buckets.length - 1][1];
  if (total <= 0) return null;
  const rank = q * total;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const [bound, count] of sample.buckets) {
    if (count >= rank) {
      if (bound === Infinity) return lowerBound;
      const inBucket = count - lowerCount;
      return inBucket <= 0 ? bound : lowerBound + ((bound - lowerBound) * (rank - lowerCount)) / inBucket;
    }
    lowerBound = bound;
    lowerCount = count;
  }
  return lowerBound;
}

/** One stage of the write path on the leader during a measured window. */
export interface StageFigure {
  /** Observations in the window (e.g. fsyncs, applied batches, answered IO requests). */
  readonly count: number;
  readonly meanMs: number;
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
}

/** The leader's histograms the report breaks a workload's latency into. */
export const stageMetrics = {
  io: 'rdl_io_seconds',
  commit: 'rdl_raft_commit_seconds',
  fsync: 'rdl_raft_fsync_seconds',
  apply: 'rdl_raft_apply_seconds',
} as const;

/** The stage figures between two snapshots. */
export function stagesBetween(before: MetricsSnapshot, after: MetricsSnapshot): Record<string, StageFigure> {
  const out: Record<string, StageFigure> = {};
  for (const [stage, name] of Object.entries(stageMetrics)) {
    const end = after.get(name);
    if (end === undefined) continue;
    const delta = histogramDelta(end, before.get(name));
    const ms = (seconds: number | null): number | null => (seconds === null ? null : seconds * 1000);
    out[stage] = {
      count: delta.count,
      meanMs: delta.count > 0 ? (1000 * delta.sum) / delta.count : 0,
      p50Ms: ms(histogramQuantile(delta, 0.5)),
      p99Ms: ms(histogramQuantile(delta, 0.99)),
    };
  }
  return out;
}

/** Value of an unlabelled-or-summed gauge or counter in Prometheus text (0 when absent). */
export function parseScalar(text: string, name: string): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})?\s+(\S+)/.exec(line);
    if (match === null || match[1] !== name) continue;
    const value = Number(match[2]);
    if (Number.isFinite(value)) total += value;
  }
  return total;
}

/**
 * One daemon's scrape: its stage histograms, whether it leads, the leader changes it saw, and its
 * LevelDB compaction state (level-0 files; times the compaction thread got its priority back).
 */
export interface DaemonSnapshot {
  readonly region: string;
  readonly histograms: MetricsSnapshot;
  readonly isLeader: boolean;
  readonly leaderChanges: number;
  readonly level0Files: number;
  readonly compactionBoosts: number;
}

/** Parses one daemon's `/metrics` text. */
export function parseDaemonSnapshot(region: string, text: string): DaemonSnapshot {
  return {
    region,
    histograms: parseHistograms(text, Object.values(stageMetrics)),
    isLeader: parseScalar(text, 'rdl_raft_is_leader') > 0,
    leaderChanges: parseScalar(text, 'rdl_raft_leader_changes_total'),
    level0Files: parseScalar(text, 'rdl_leveldb_level0_files'),
    compactionBoosts: parseScalar(text, 'rdl_leveldb_compaction_boosts_total'),
  };
}

/** The leader's stage figures over a window, and whether leadership moved during it. */
export interface StageBreakdown {
  /** The daemon the stages were read from: the leader at the end of the window (null if none). */
  readonly leader: string | null;
  /** Most leader changes any daemon observed during the window. */
  readonly leaderChanges: number;
  /**
   * LevelDB's compaction backlog, over all daemons: the most level-0 files any of them held at the
   * end of the window, and how often their compaction threads got their priority back during it.
   */
  readonly level0FilesMax: number;
  readonly compactionBoosts: number;
  readonly stages: Record<string, StageFigure>;
}

/**
 * The stage figures of the daemon leading at the end of the window (or, failing that, at its
 * start), between two scrapes of every daemon. A client follows the leader, so that is where the
 * window's requests were served.
 */
export function breakdownBetween(before: readonly DaemonSnapshot[], after: readonly DaemonSnapshot[]): StageBreakdown {
  const leader = after.find((d) => d.isLeader) ?? before.find((d) => d.isLeader) ?? null;
  let leaderChanges = 0;
  let level0FilesMax = 0;
  let compactionBoosts = 0;
  for (const end of after) {
    level0FilesMax = Math.max(level0FilesMax, end.level0Files);
    const start = before.find((d) => d.region === end.region);
    if (start === undefined) continue;
    leaderChanges = Math.max(leaderChanges, end.leaderChanges - start.leaderChanges);
    compactionBoosts += Math.max(0, end.compactionBoosts - start.compactionBoosts);
  }
  const compaction = { level0FilesMax, compactionBoosts };
  if (leader === null) return { leader: null, leaderChanges, ...compaction, stages: {} };
  const start = before.find((d) => d.region === leader.region);
  const end = after.find((d) => d.region === leader.region);
  return {
    leader: leader.region,
    leaderChanges,
    ...compaction,
    // A daemon that did not answer one of the two scrapes has no window to report.
    stages: start === undefined || end === undefined ? {} : stagesBetween(start.histograms, end.histograms),
  };
}

/** Scrapes `GET /metrics` of a daemon on 127.0.0.1 (bounded to 5 s). */
export function scrapeDaemon(region: string, port: number): Promise<DaemonSnapshot> {
  return new Promise((resolve, reject) => {
    const request = get({ host: '127.0.0.1', port, path: '/metrics', timeout: 5000 }, (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        if (text.length < 8 * 1024 * 1024) text += chunk;
      });
      response.on('end', () => resolve(parseDaemonSnapshot(region, text)));
      response.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error('metrics scrape timed out')));
    request.on('error', reject);
  });
}

/** Scrapes every daemon; a daemon that does not answer is left out. */
export async function scrapeCluster(
  daemons: ReadonlyArray<{ region: string; port: number }>,
): Promise<DaemonSnapshot[]> {
  const results = await Promise.allSettled(daemons.map((d) => scrapeDaemon(d.region, d.port)));
  return results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
}
