import { resolve as resolvePath } from 'node:path';
import { Command, CommanderError, InvalidArgumentError } from 'commander';

import { BenchError } from './errors.js';

/** The three regions of an rdl deployment, in the order the harness starts their daemons. */
export const regions = ['geneva', 'gland', 'lucerne'] as const;

/** A region name. */
export type Region = (typeof regions)[number];

/** One emulated round trip between two regions. */
export interface RttPair {
  readonly a: Region;
  readonly b: Region;
  readonly rttMs: number;
}

/** Validated, frozen options of one harness invocation. */
export interface BenchOptions {
  /** `--quick`: a few seconds per workload and one run (the CI smoke run). */
  readonly isQuick: boolean;
  /** Measured time per workload, after the warm-up. */
  readonly durationMs: number;
  /** Warm-up time per workload, not measured. */
  readonly warmupMs: number;
  /**
   * Warm-up of each freshly started system before its first workload (4 KiB mixed IO at 16 in
   * flight, not measured), so the first workload does not measure code the JIT has not compiled yet
   * (rdl's daemons, and the Node clients of rdl and etcd). 0 disables it.
   */
  readonly systemWarmupMs: number;
  /** Number of runs; the report shows the median and the spread. */
  readonly runs: number;
  /** Where to write the figures as JSON, or null. */
  readonly jsonPath: string | null;
  /** Selectors from `--only` (workload names or groups), or null for everything. */
  readonly only: readonly string[] | null;
  /** False with `--no-peers`: the selected rdl workloads run without their etcd/nbdkit rows (A/B runs). */
  readonly isPeers: boolean;
  /** Emulated region round trips, or null for plain loopback. */
  readonly rtt: readonly RttPair[] | null;
  /** Size of the volume (and of the nbdkit file) the workloads address. */
  readonly volumeBytes: number;
  /** Keep the temporary data directories and logs after the run (for debugging). */
  readonly isKeepData: boolean;
  /**
   * `--wal-dir`: an absolute directory under which each run's daemons keep their write-ahead logs
   * (rdld's `storage.wal_dir`, etcd's `--wal-dir`), e.g. on a second device; null keeps each WAL in
   * its data directory.
   */
  readonly walRoot: string | null;
  /** Most operations one workload issues, whatever its duration (a bound on every loop). */
  readonly opsMax: number;
}

function isRegion(value: string): value is Region {
  return (regions as readonly string[]).includes(value);
}

/**
 * Parses a duration such as `0.35ms`, `350us` or `2.5` (milliseconds when no unit) into
 * milliseconds. Throws BENCH_ARGS_INVALID on anything else.
 */
export function parseDurationMs(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|us|µs|s)?\s*$/.exec(text);
  if (match === null) {
    throw new BenchError('BENCH_ARGS_INVALID', `not a duration: "${text}" (expected e.g. 0.35ms, 350us)`);
  }
  const value = Number(match[1]);
  const unit = match[2] ?? 'ms';
  const factor = unit === 's' ? 1000 : unit === 'ms' ? 1 : 0.001;
  // Rounded to the nanosecond so that 350us is exactly 0.35 ms.
  return Math.round(value * factor * 1e6) / 1e6;
}

/**
 * Parses `--rtt geneva-gland=0.35ms,geneva-lucerne=2.5ms,gland-lucerne=2.4ms`. Each unordered pair
 * of distinct regions may appear once; pairs not given have no emulated delay.
 */
export function parseRtt(spec: string): RttPair[] {
  const pairs: RttPair[] = [];
  const seen = new Set<string>();
  for (const part of spec.split(',')) {
    const item = part.trim();
    if (item === '') continue;
    const match = /^([a-z]+)-([a-z]+)=(.+)$/.exec(item);
    if (match === null) {
      throw new BenchError('BENCH_ARGS_INVALID', `--rtt item "${item}" is not region-region=duration`);
    }
    const [, a, b, duration] = match;
    if (!isRegion(a) || !isRegion(b)) {
      throw new BenchError('BENCH_ARGS_INVALID', `--rtt item "${item}": regions must be among ${regions.join(', ')}`);
    }
    if (a === b) {
      throw new BenchError('BENCH_ARGS_INVALID', `--rtt item "${item}": a region has no round trip to itself`);
    }
    const key = [a, b].sort().join('-');
    if (seen.has(key)) {
      throw new BenchError('BENCH_ARGS_INVALID', `--rtt names the pair ${key} twice`);
    }
    seen.add(key);
    pairs.push({ a, b, rttMs: parseDurationMs(duration) });
  }
  if (pairs.length === 0) {
    throw new BenchError('BENCH_ARGS_INVALID', '--rtt is empty');
  }
  return pairs;
}

/** The round trip between two regions under `rtt` (0 when the pair is not given). */
export function rttBetweenMs(rtt: readonly RttPair[], a: Region, b: Region): number {
  const pair = rtt.find((p) => (p.a === a && p.b === b) || (p.a === b && p.b === a));
  return pair === undefined ? 0 : pair.rttMs;
}

/**
 * The one-way delays the daemon of `region` adds to its messages to each other region: half of the
 * round trip, so that a request and its reply together take the emulated round trip.
 */
export function oneWayDelaysMs(rtt: readonly RttPair[], region: Region): Map<Region, number> {
  const delays = new Map<Region, number>();
  for (const other of regions) {
    if (other === region) continue;
    const rttMs = rttBetweenMs(rtt, region, other);
    if (rttMs > 0) delays.set(other, rttMs / 2);
  }
  return delays;
}

function positiveNumber(text: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) {
    throw new InvalidArgumentError('expected a positive number');
  }
  return value;
}

function nonNegativeNumber(text: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0) {
    throw new InvalidArgumentError('expected a number >= 0');
  }
  return value;
}

function positiveInteger(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new InvalidArgumentError('expected a positive integer');
  }
  return value;
}

/** Default measured seconds per workload, and the smaller figures used by `--quick`. */
export const defaults = {
  durationS: 15,
  warmupS: 3,
  systemWarmupS: 10,
  runs: 3,
  quickDurationS: 3,
  quickWarmupS: 1,
  quickSystemWarmupS: 3,
  quickRuns: 1,
  volumeMib: 256,
  opsMax: 50_000_000,
} as const;

/**
 * Builds the commander program of `npm run bench`. Exposed so that tests parse exactly what the CLI
 * parses; `exitOverride` makes parse errors throw instead of exiting the process.
 */
export function buildProgram(): Command {
  return new Command('rdl-bench')
    .description(
      'Benchmarks three real rdld daemons (through the SDK and through NBD) side by side with etcd and nbdkit.',
    )
    .option('--quick', 'a few seconds per workload and one run (CI smoke run)', false)
    .option('--duration <seconds>', `measured seconds per workload (default ${defaults.durationS})`, positiveNumber)
    .option('--warmup <seconds>', `warm-up seconds per workload (default ${defaults.warmupS})`, positiveNumber)
    .option(
      '--system-warmup <seconds>',
      `unmeasured 4 KiB IO on each freshly started system before its first workload (default ${defaults.systemWarmupS}, ${defaults.quickSystemWarmupS} with --quick; 0 disables)`,
      nonNegativeNumber,
    )
    .option('--runs <n>', `number of runs; the median is reported (default ${defaults.runs})`, positiveInteger)
    .option('--json <file>', 'write all figures to this JSON file')
    .option('--only <workloads>', 'comma-separated workload names or groups (sdk, nbd, etcd, nbdkit, rdl, peers)')
    .option('--no-peers', 'run only the rdl side of the selected workloads (for A/B runs of rdl itself)')
    .option('--rtt <pairs>', 'emulated round trips, e.g. geneva-gland=0.35ms,geneva-lucerne=2.5ms,gland-lucerne=2.4ms')
    .option(
      '--volume-mib <n>',
      `size of the volume the workloads address (default ${defaults.volumeMib})`,
      positiveInteger,
    )
    .option('--keep-data', 'keep temporary data directories and logs', false)
    .option(
      '--wal-dir <dir>',
      "keep every daemon's write-ahead log (rdld's storage.wal_dir, etcd's --wal-dir) in a temporary directory under <dir>, e.g. on another device, instead of in its data directory",
    )
    .exitOverride()
    .configureOutput({ writeErr: () => undefined, writeOut: (s) => process.stdout.write(s) });
}

/**
 * Parses the user arguments (without `node` and the script) into validated, frozen options.
 * Throws BENCH_ARGS_INVALID with commander's message on any bad flag, and commander's own
 * `commander.helpDisplayed` error after printing `--help`.
 */
export function parseArgs(argv: readonly string[]): BenchOptions {
  const program = buildProgram();
  try {
    program.parse([...argv], { from: 'user' });
  } catch (err) {
    // --help is not an error: let the caller exit 0 after commander printed it.
    if (err instanceof CommanderError && err.code === 'commander.helpDisplayed') throw err;
    if (err instanceof CommanderError) {
      throw new BenchError('BENCH_ARGS_INVALID', err.message, { cause: err });
    }
    throw err;
  }
  const raw = program.opts<{
    quick: boolean;
    duration?: number;
    warmup?: number;
    systemWarmup?: number;
    runs?: number;
    json?: string;
    only?: string;
    peers: boolean;
    rtt?: string;
    volumeMib?: number;
    keepData: boolean;
    walDir?: string;
  }>();
  const isQuick = raw.quick;
  const only =
    raw.only === undefined
      ? null
      : raw.only
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s !== '');
  if (only !== null && only.length === 0) {
    throw new BenchError('BENCH_ARGS_INVALID', '--only is empty');
  }
  if (raw.walDir !== undefined && raw.walDir.trim() === '') {
    throw new BenchError('BENCH_ARGS_INVALID', '--wal-dir is empty');
  }
  const volumeMib = raw.volumeMib ?? defaults.volumeMib;
  return Object.freeze({
    isQuick,
    durationMs: 1000 * (raw.duration ?? (isQuick ? defaults.quickDurationS : defaults.durationS)),
    warmupMs: 1000 * (raw.warmup ?? (isQuick ? defaults.quickWarmupS : defaults.warmupS)),
    systemWarmupMs: 1000 * (raw.systemWarmup ?? (isQuick ? defaults.quickSystemWarmupS : defaults.systemWarmupS)),
    runs: raw.runs ?? (isQuick ? defaults.quickRuns : defaults.runs),
    jsonPath: raw.json ?? null,
    only: only === null ? null : Object.freeze(only),
    isPeers: raw.peers,
    rtt: raw.rtt === undefined ? null : Object.freeze(parseRtt(raw.rtt)),
    volumeBytes: volumeMib * 1024 * 1024,
    isKeepData: raw.keepData,
    walRoot: raw.walDir === undefined ? null : resolvePath(raw.walDir),
    opsMax: defaults.opsMax,
  });
}
