import { readFileSync, rmSync } from 'node:fs';

import { cpuSecondsOf, cpuSecondsPer1kOps } from './cpu.js';
import { BenchError } from './errors.js';
import { runToCompletion } from './processes.js';
import type { Figure } from './stats.js';

/** One fio job against an NBD server (the same job runs against rdl's agent and nbdkit). */
export interface FioJob {
  readonly rw: 'randwrite' | 'randread' | 'write' | 'read';
  readonly blockSizeBytes: number;
  readonly iodepth: number;
}

/** Whether the job writes (and so asks for a flush after every write, `--fsync=1`). */
export function isWriteJob(job: FioJob): boolean {
  return job.rw === 'randwrite' || job.rw === 'write';
}

/** Timing of one fio run. */
export interface FioTiming {
  readonly warmupMs: number;
  readonly durationMs: number;
}

/**
 * The fio command line for `job` against `uri` (nbd://127.0.0.1:PORT/): the nbd engine, a flush
 * after every write so each write is durable before fio counts the next, JSON to `outputPath`, the
 * warm-up as fio's ramp time (excluded from its statistics), and a fixed random seed.
 */
export function buildFioArgs(job: FioJob, uri: string, timing: FioTiming, outputPath: string): string[] {
  const args = [
    '--name=bench',
    '--ioengine=nbd',
    `--uri=${uri}`,
    `--rw=${job.rw}`,
    `--bs=${job.blockSizeBytes}`,
    `--iodepth=${job.iodepth}`,
    '--time_based=1',
    `--ramp_time=${Math.round(timing.warmupMs)}ms`,
    `--runtime=${Math.round(timing.durationMs)}ms`,
    '--randseed=20261201',
    '--norandommap=1',
    '--percentile_list=50:99:99.9',
    '--output-format=json',
    `--output=${outputPath}`,
  ];
  // New random bytes for every write (fio otherwise fills its buffers once and only scrambles a few
  // bytes per IO): rdl's LevelDB compresses its table blocks, and repeated payloads would shrink
  // them several times over where a real volume's blocks would not (see PayloadSource).
  if (isWriteJob(job)) args.push('--fsync=1', '--refill_buffers=1');
  return args;
}

interface FioDirection {
  iops: number;
  bw_bytes: number;
  total_ios: number;
  runtime: number;
  clat_ns?: { percentile?: Record<string, number> };
}

/**
 * Extracts the figure of `job` from fio's JSON output (the text may start with fio's own log lines,
 * such as "fio: connected to NBD server"). Read latencies are fio's completion latencies. A write
 * is durable only once the flush after it completes, so a write job's latency percentiles are the
 * write's completion percentile PLUS the flush's (fio reports the two separately; their sum
 * approximates the percentile of the durable-write latency). The CPU figure is left null; the
 * caller measures the server's CPU.
 */
export function parseFioOutput(text: string, job: FioJob): Figure {
  const start = text.indexOf('{');
  if (start < 0) throw new BenchError('BENCH_FIO_OUTPUT_INVALID', 'fio wrote no JSON');
  let parsed: {
    jobs?: Array<{
      error?: number;
      read?: FioDirection;
      write?: FioDirection;
      sync?: { lat_ns?: { percentile?: Record<string, number> } };
    }>;
  };
  try {
    parsed = JSON.parse(text.slice(start)) as typeof parsed;
  } catch (err) {
    throw new BenchError('BENCH_FIO_OUTPUT_INVALID', 'fio output is not JSON', { cause: err });
  }
  const fioJob = parsed.jobs?.[0];
  if (fioJob === undefined) throw new BenchError('BENCH_FIO_OUTPUT_INVALID', 'fio output has no job');
  const direction = isWriteJob(job) ? fioJob.write : fioJob.read;
  if (direction === undefined || typeof direction.iops !== 'number') {
    throw new BenchError('BENCH_FIO_OUTPUT_INVALID', 'fio output has no figures for the job direction');
  }
  const percentiles = direction.clat_ns?.percentile ?? {};
  const flushPercentiles = (isWriteJob(job) ? fioJob.sync?.lat_ns?.percentile : undefined) ?? {};
  const us = (key: string): number => Math.round(((percentiles[key] ?? 0) + (flushPercentiles[key] ?? 0)) / 1000);
  const errors: Record<string, number> = {};
  if (fioJob.error !== undefined && fioJob.error !== 0) errors[`FIO_ERRNO_${fioJob.error}`] = 1;
  return {
    ops: direction.total_ios,
    elapsedMs: direction.runtime,
    opsPerSecond: direction.iops,
    bytesPerSecond: direction.bw_bytes,
    latencyUs: { p50: us('50.000000'), p99: us('99.000000'), p999: us('99.900000') },
    cpuSecondsPer1kOps: null,
    errors,
  };
}

/**
 * Runs fio once against `uri` and returns its figure, with the CPU seconds per 1,000 operations of
 * `serverPids` sampled at the end of the ramp and at the end of the runtime.
 */
export async function runFio(
  job: FioJob,
  uri: string,
  timing: FioTiming,
  outputPath: string,
  serverPids: readonly number[],
  window: { onStart?: () => void; onEnd?: () => void } = {},
): Promise<Figure> {
  // A stale file from an earlier job must never be read as this job's figures.
  rmSync(outputPath, { force: true });
  let cpuBefore: number | null = null;
  let cpuAfter: number | null = null;
  const startTimer = setTimeout(() => {
    cpuBefore = cpuSecondsOf(serverPids);
    window.onStart?.();
  }, timing.warmupMs);
  const endTimer = setTimeout(() => {
    cpuAfter = cpuSecondsOf(serverPids);
    window.onEnd?.();
  }, timing.warmupMs + timing.durationMs);
  let result;
  try {
    result = await runToCompletion(
      'fio',
      buildFioArgs(job, uri, timing, outputPath),
      timing.warmupMs + timing.durationMs + 60_000,
    );
  } finally {
    clearTimeout(startTimer);
    clearTimeout(endTimer);
  }
  if (result.code !== 0) {
    throw new BenchError(
      'BENCH_WORKLOAD_FAILED',
      `fio exited with ${result.code}: ${(result.stderr || result.stdout).trim().slice(-2000)}`,
    );
  }
  let text: string;
  try {
    text = readFileSync(outputPath, 'utf8');
  } catch (err) {
    throw new BenchError('BENCH_FIO_OUTPUT_INVALID', `fio wrote no output file ${outputPath}`, { cause: err });
  }
  rmSync(outputPath, { force: true });
  const figure = parseFioOutput(text, job);
  return { ...figure, cpuSecondsPer1kOps: cpuSecondsPer1kOps(cpuBefore, cpuAfter, figure.ops) };
}

/** The disk's durable-write speed measured next to the workloads: 4 KiB writes, each fdatasync'ed. */
export interface DiskProbe {
  readonly writesPerSecond: number;
  readonly flushP50Us: number;
  readonly flushP99Us: number;
}

/**
 * Parses the output of the disk probe (fio, sequential 4 KiB writes with `--fdatasync=1`): write
 * IOPS and the fdatasync latency percentiles.
 */
export function parseDiskProbe(text: string): DiskProbe {
  const start = text.indexOf('{');
  if (start < 0) throw new BenchError('BENCH_FIO_OUTPUT_INVALID', 'fio wrote no JSON');
  let parsed: {
    jobs?: Array<{ write?: { iops?: number }; sync?: { lat_ns?: { percentile?: Record<string, number> } } }>;
  };
  try {
    parsed = JSON.parse(text.slice(start)) as typeof parsed;
  } catch (err) {
    throw new BenchError('BENCH_FIO_OUTPUT_INVALID', 'fio output is not JSON', { cause: err });
  }
  const job = parsed.jobs?.[0];
  const percentiles = job?.sync?.lat_ns?.percentile;
  if (job?.write?.iops === undefined || percentiles === undefined) {
    throw new BenchError('BENCH_FIO_OUTPUT_INVALID', 'fio output has no write IOPS or sync latencies');
  }
  return {
    writesPerSecond: job.write.iops,
    flushP50Us: Math.round((percentiles['50.000000'] ?? 0) / 1000),
    flushP99Us: Math.round((percentiles['99.000000'] ?? 0) / 1000),
  };
}

/**
 * Measures the disk under `dir` for `durationMs`: fio writing 4 KiB blocks to a 16 MiB file with an
 * fdatasync after each (what one synced LevelDB append costs at best). Other load on the machine
 * shows up here first, so the report prints it next to the figures.
 */
export async function probeDisk(dir: string, durationMs: number): Promise<DiskProbe> {
  const path = `${dir}/disk-probe.bin`;
  const result = await runToCompletion(
    'fio',
    [
      '--name=disk-probe',
      `--filename=${path}`,
      '--rw=write',
      '--bs=4k',
      '--size=16M',
      '--fdatasync=1',
      '--time_based=1',
      `--runtime=${Math.round(durationMs)}ms`,
      '--output-format=json',
    ],
    durationMs + 30_000,
  );
  if (result.code !== 0) {
    throw new BenchError('BENCH_WORKLOAD_FAILED', `fio disk probe exited with ${result.code}: ${result.stderr.trim()}`);
  }
  return parseDiskProbe(result.stdout);
}
