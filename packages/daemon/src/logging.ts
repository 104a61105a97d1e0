/**
 * Logging: one pino root logger per process, JSON lines on stdout, with `region` bound on every
 * line, and child loggers per module (`{ module: 'transport' }`). Never bind user-supplied keys:
 * request fields go under fixed names chosen here.
 */
import { pino } from 'pino';
import type { Logger, LevelWithSilent } from 'pino';

export type { Logger } from 'pino';

/** Log levels accepted by the config (`log.level`). */
export const logLevels: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Options of {@link createRootLogger}. */
export interface RootLoggerOptions {
  /** The region this daemon serves; bound on every line. */
  region: string;
  /** Minimum level written. */
  level: LevelWithSilent;
  /** Where lines go (default stdout, synchronously so that a crash does not lose the last lines). */
  destination?: pino.DestinationStream;
}

/**
 * Creates the process's root logger. Lines are JSON with `time` (ISO-8601), `level` as a label,
 * `region`, `pid`, and `msg`. The destination is written synchronously: rdld logs little on the
 * hot path (per-message detail is at debug/trace), and losing the line that explains a crash is
 * worse than a microsecond per line.
 */
export function createRootLogger(options: RootLoggerOptions): Logger {
  const destination = options.destination ?? pino.destination({ dest: 1, sync: true });
  return pino(
    {
      level: options.level,
      base: { region: options.region, pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}

/** A child logger for one module (`raft`, `transport`, `api`, `storage`, `metrics`, ...). */
export function moduleLogger(root: Logger, module: string): Logger {
  return root.child({ module });
}
