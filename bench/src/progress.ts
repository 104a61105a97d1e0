import cliProgress from 'cli-progress';

/** Progress of one workload: a bar on a terminal, one line per workload otherwise. */
export interface WorkloadProgress {
  /** Measured operations so far and the measured time they took. */
  update(measuredOps: number, measuredMs: number): void;
  finish(summary: string): void;
}

/**
 * Starts the progress display of one workload lasting `totalMs` (warm-up included). On a TTY a
 * cli-progress bar advances with time and shows the live ops/s; elsewhere (CI logs) only the start
 * and the final line are printed.
 */
export function startProgress(label: string, totalMs: number): WorkloadProgress {
  const isTty = process.stderr.isTTY === true;
  if (!isTty) {
    process.stderr.write(`bench: ${label} ...\n`);
    return {
      update: () => undefined,
      finish: (summary) => process.stderr.write(`bench: ${label}: ${summary}\n`),
    };
  }
  const bar = new cliProgress.SingleBar(
    {
      format: ' {label} [{bar}] {percentage}% | {opsPerSecond} ops/s',
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: true,
    },
    cliProgress.Presets.shades_classic,
  );
  const startMs = performance.now();
  bar.start(100, 0, { label: label.padEnd(28), opsPerSecond: '-' });
  // Time drives the bar so that it also moves for fio workloads, which report nothing live.
  const timer = setInterval(() => {
    bar.update(Math.min(100, Math.floor((100 * (performance.now() - startMs)) / totalMs)));
  }, 250);
  return {
    update(measuredOps, measuredMs) {
      if (measuredMs > 0) bar.update({ opsPerSecond: Math.round((measuredOps * 1000) / measuredMs) });
    },
    finish(summary) {
      clearInterval(timer);
      bar.stop();
      process.stderr.write(` ${label}: ${summary}\n`);
    },
  };
}
