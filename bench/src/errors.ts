/**
 * The one error class of the benchmark harness. Every failure the harness reports carries a stable
 * string `code` (listed in docs/errors.md, section "Benchmark harness") so scripts can match on it.
 */
export type BenchErrorCode =
  | 'BENCH_ARGS_INVALID'
  | 'BENCH_PROCESS_FAILED'
  | 'BENCH_STARTUP_TIMEOUT'
  | 'BENCH_WORKLOAD_FAILED'
  | 'BENCH_FIO_OUTPUT_INVALID'
  | 'BENCH_PROC_STAT_INVALID';

/** Base error of `@rdl/bench`: `code` is stable, `cause` keeps the underlying error. */
export class BenchError extends Error {
  /** Stable machine-readable code; match on this, never on the message. */
  readonly code: BenchErrorCode;

  constructor(code: BenchErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BenchError';
    this.code = code;
  }
}
