import type { Histogram } from 'hdr-histogram-js';

import { latencyUsMax, newLatencyHistogram, percentilesOf } from './stats.js';
import type { Figure } from './stats.js';

/** How one closed-loop workload runs. */
export interface ClosedLoopOptions {
  /** Requests in flight: this many workers, each with one outstanding request. */
  readonly concurrency: number;
  /** Not measured: lets caches, connections and leaders settle. */
  readonly warmupMs: number;
  /** The measured window, after the warm-up. */
  readonly durationMs: number;
  /** Most operations issued in total (warm-up included), whatever the time. */
  readonly opsMax: number;
  /** Failed operations tolerated before the workload stops early. */
  readonly errorsMax: number;
  /** Called when the measured window opens and closes (CPU sampling). */
  readonly onWindowStart?: () => void;
  readonly onWindowEnd?: () => void;
  /** Called about every 250 ms with the measured operations so far. */
  readonly onProgress?: (measuredOps: number, measuredMs: number) => void;
}

/**
 * One operation: `worker` is the worker's index, `seq` its own counter. Resolves with the number of
 * payload bytes moved; rejects on failure (the error's `code` is counted).
 */
export type Operation = (worker: number, seq: number) => Promise<number>;

/** The raw outcome of a closed-loop run (the CPU figure is added by the caller). */
export interface ClosedLoopResult {
  readonly ops: number;
  readonly bytes: number;
  readonly elapsedMs: number;
  readonly histogram: Histogram;
  readonly errors: Record<string, number>;
  /** The first error seen, kept to explain an early stop. */
  readonly firstError: unknown;
}

function codeOf(err: unknown): string {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    if (typeof code === 'string' || typeof code === 'number') return String(code);
  }
  return 'UNKNOWN';
}

const nowMs = (): number => performance.now();

/**
 * Runs `operation` from `concurrency` workers, each issuing its next request as soon as the previous
 * completes (a closed loop, so the offered load adapts to the system and queues stay bounded by
 * `concurrency`). Only completions inside the measured window count; their latencies go to an
 * HdrHistogram in microseconds. Stops at the end of the window, after `opsMax` operations or after
 * `errorsMax` failures, whichever comes first.
 */
export async function runClosedLoop(operation: Operation, options: ClosedLoopOptions): Promise<ClosedLoopResult> {
  const histogram = newLatencyHistogram();
  const errors: Record<string, number> = {};
  let firstError: unknown = null;
  let errorCount = 0;
  let issued = 0;
  let ops = 0;
  let bytes = 0;
  const startMs = nowMs();
  const windowStartMs = startMs + options.warmupMs;
  const windowEndMs = windowStartMs + options.durationMs;
  let isWindowOpen = false;
  let isStopped = false;

  const openWindow = (): void => {
    if (isWindowOpen) return;
    isWindowOpen = true;
    options.onWindowStart?.();
  };
  let isWindowClosed = false;
  const closeWindow = (): void => {
    if (isWindowClosed) return;
    openWindow();
    isWindowClosed = true;
    options.onWindowEnd?.();
  };
  // Open and close the window on time (CPU samples), whatever the operations are doing then.
  const windowTimer = setTimeout(openWindow, options.warmupMs);
  const windowEndTimer = setTimeout(closeWindow, options.warmupMs + options.durationMs);
  const progressTimer =
    options.onProgress === undefined
      ? null
      : setInterval(() => {
          const t = nowMs();
          options.onProgress!(ops, Math.max(0, Math.min(t, windowEndMs) - windowStartMs));
        }, 250);

  const worker = async (index: number): Promise<void> => {
    let seq = 0;
    while (!isStopped && issued < options.opsMax) {
      const t0 = nowMs();
      if (t0 >= windowEndMs) break;
      issued++;
      let moved = 0;
      let isOk = true;
      try {
        moved = await operation(index, seq++);
      } catch (err) {
        isOk = false;
        errorCount++;
        const code = codeOf(err);
        errors[code] = (errors[code] ?? 0) + 1;
        if (firstError === null) firstError = err;
        if (errorCount >= options.errorsMax) isStopped = true;
      }
      const t1 = nowMs();
      if (isOk && t1 >= windowStartMs && t1 < windowEndMs) {
        ops++;
        bytes += moved;
        histogram.recordValue(Math.min(latencyUsMax, Math.max(1, Math.round((t1 - t0) * 1000))));
      }
    }
  };

  try {
    const workers: Promise<void>[] = [];
    for (let i = 0; i < options.concurrency; i++) workers.push(worker(i));
    await Promise.all(workers);
  } finally {
    clearTimeout(windowTimer);
    clearTimeout(windowEndTimer);
    if (progressTimer !== null) clearInterval(progressTimer);
  }
  const endMs = nowMs();
  closeWindow();
  const elapsedMs = Math.max(1, Math.min(endMs, windowEndMs) - windowStartMs);
  return { ops, bytes, elapsedMs, histogram, errors, firstError };
}

/** Turns a closed-loop result and a CPU figure into a Figure. */
export function figureOf(result: ClosedLoopResult, cpuSecondsPer1kOps: number | null): Figure {
  const seconds = result.elapsedMs / 1000;
  return {
    ops: result.ops,
    elapsedMs: result.elapsedMs,
    opsPerSecond: result.ops / seconds,
    bytesPerSecond: result.bytes / seconds,
    latencyUs: result.ops > 0 ? percentilesOf(result.histogram) : { p50: 0, p99: 0, p999: 0 },
    cpuSecondsPer1kOps,
    errors: result.errors,
  };
}
