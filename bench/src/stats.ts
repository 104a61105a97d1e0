import * as hdr from 'hdr-histogram-js';
import type { Histogram } from 'hdr-histogram-js';

import type { StageBreakdown } from './rdl/metrics.js';

/** Latencies are recorded in microseconds, from 1 µs up to this bound (60 s). */
export const latencyUsMax = 60_000_000;

/** A latency histogram in microseconds with 3 significant digits (HdrHistogram). */
export function newLatencyHistogram(): Histogram {
  return hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: latencyUsMax,
    numberOfSignificantValueDigits: 3,
    bitBucketSize: 32,
    useWebAssembly: false,
  });
}

/** Latency percentiles of one measurement, in microseconds. */
export interface LatencyPercentilesUs {
  readonly p50: number;
  readonly p99: number;
  readonly p999: number;
}

/** One measurement of one workload on one system (rdl or a peer) in one run. */
export interface Figure {
  /** Operations completed inside the measured window. */
  readonly ops: number;
  /** Length of the measured window. */
  readonly elapsedMs: number;
  readonly opsPerSecond: number;
  readonly bytesPerSecond: number;
  readonly latencyUs: LatencyPercentilesUs;
  /**
   * CPU seconds (user + system) the server processes spent per 1,000 operations in the window, or
   * null when it could not be measured.
   */
  readonly cpuSecondsPer1kOps: number | null;
  /** Operations that failed, by error code. */
  readonly errors: Readonly<Record<string, number>>;
  /**
   * rdl only: the leader's own latency histograms over the window (IO request, commit, fsync,
   * apply), from its /metrics, to show where the time goes.
   */
  readonly stages?: StageBreakdown;
}

/** Reads p50/p99/p99.9 from a histogram in microseconds. */
export function percentilesOf(histogram: Histogram): LatencyPercentilesUs {
  return {
    p50: histogram.getValueAtPercentile(50),
    p99: histogram.getValueAtPercentile(99),
    p999: histogram.getValueAtPercentile(99.9),
  };
}

/** Median of a non-empty list (mean of the two middle values for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new RangeError('median of an empty list');
  const sorted = [...values].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** A figure summarised over several runs: the median of each field and the spread of ops/s. */
export interface SummaryFigure extends Figure {
  readonly runs: number;
  /** Lowest and highest ops/s over the runs. */
  readonly opsPerSecondMin: number;
  readonly opsPerSecondMax: number;
  /** Half the min–max range of ops/s relative to the median, in percent (0 for a single run). */
  readonly spreadPercent: number;
}

/**
 * Summarises the figures of one workload over several runs: each field is the median over the runs,
 * errors are summed, and the spread of ops/s is reported.
 */
export function summarise(figures: readonly Figure[]): SummaryFigure {
  if (figures.length === 0) throw new RangeError('summarise of no figures');
  const pick = (f: (x: Figure) => number): number => median(figures.map(f));
  const cpus = figures.map((f) => f.cpuSecondsPer1kOps).filter((c): c is number => c !== null);
  const errors: Record<string, number> = {};
  for (const figure of figures) {
    for (const [code, count] of Object.entries(figure.errors)) errors[code] = (errors[code] ?? 0) + count;
  }
  const opsPerSecond = pick((f) => f.opsPerSecond);
  // Stage figures are not averaged: they come from the run closest to the median throughput.
  const representative = figures.reduce((best, f) =>
    Math.abs(f.opsPerSecond - opsPerSecond) < Math.abs(best.opsPerSecond - opsPerSecond) ? f : best,
  );
  const min = Math.min(...figures.map((f) => f.opsPerSecond));
  const max = Math.max(...figures.map((f) => f.opsPerSecond));
  return {
    runs: figures.length,
    ops: pick((f) => f.ops),
    elapsedMs: pick((f) => f.elapsedMs),
    opsPerSecond,
    bytesPerSecond: pick((f) => f.bytesPerSecond),
    latencyUs: {
      p50: pick((f) => f.latencyUs.p50),
      p99: pick((f) => f.latencyUs.p99),
      p999: pick((f) => f.latencyUs.p999),
    },
    cpuSecondsPer1kOps: cpus.length === 0 ? null : median(cpus),
    errors,
    ...(representative.stages === undefined ? {} : { stages: representative.stages }),
    opsPerSecondMin: min,
    opsPerSecondMax: max,
    spreadPercent: opsPerSecond > 0 ? (100 * (max - min)) / 2 / opsPerSecond : 0,
  };
}
