#!/usr/bin/env node
import { execFileSync } from 'node:child_process';
import { accessSync, constants as fsConstants, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';

import { missingNodeFlags } from '@rdl/daemon';

import { parseArgs } from './args.js';
import type { BenchOptions } from './args.js';
import { BenchError } from './errors.js';
import { probeDisk, runFio } from './fio.js';
import { BENCH_NODE_FLAGS } from './node-flags.js';
import type { DiskProbe } from './fio.js';
import { runLoopWorkload } from './loop-workload.js';
import { isInstalled, stopAll, trackTempDir } from './processes.js';
import { startProgress } from './progress.js';
import {
  commitFollows,
  evaluateTargets,
  formatCommitFollows,
  formatCount,
  formatStagesTable,
  formatTable,
  formatTargets,
} from './report.js';
import type { Outcome } from './report.js';
import { summarise } from './stats.js';
import type { Figure } from './stats.js';
import { etcdRunner, nbdkitRunner } from './systems.js';
import type { RunningSystem, SystemRunner } from './systems.js';
import { rdlRunner, rdlLeaderRegion } from './rdl/system.js';
import { rows, selectWorkloads, workloadsOf } from './workloads.js';
import { breakdownBetween } from './rdl/metrics.js';
import type { DaemonSnapshot } from './rdl/metrics.js';
import type { LoopWorkload, Workload } from './workloads.js';

/** The machine the figures were measured on. */
function describeMachine(): Record<string, string | number> {
  const tryRun = (command: string, args: string[]): string => {
    try {
      return execFileSync(command, args, { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] })
        .trim()
        .split('\n')[0];
    } catch {
      return 'not installed';
    }
  };
  return {
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    tmpFilesystem: tryRun('findmnt', ['-n', '-o', 'FSTYPE', '--target', os.tmpdir()]),
    tmpDevice: tryRun('findmnt', ['-n', '-o', 'SOURCE', '--target', os.tmpdir()]),
    kernel: os.release(),
    // Other work on the machine skews every figure; the load at the start says how much there was.
    loadAverage1mAtStart: Math.round(os.loadavg()[0] * 100) / 100,
    node: process.version,
    // The load generator's own node flags (BENCH_NODE_FLAGS under `npm run bench`).
    nodeFlags: process.execArgv.join(' ') || 'none',
    etcd: tryRun('etcd', ['--version']),
    nbdkit: tryRun('nbdkit', ['--version']),
    fio: tryRun('fio', ['--version']),
  };
}

function describeError(err: unknown): string {
  if (err instanceof BenchError) return `${err.code}: ${err.message}`;
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return `${code === undefined ? 'ERROR' : String(code)}: ${err.message}`;
  }
  return String(err);
}

/** Suffix of the 1-in-flight write measured without emulated latency, as the --rtt baseline. */
const noRttSuffix = '-no-rtt';

async function runWorkload(
  workload: Workload,
  running: RunningSystem,
  options: BenchOptions,
  run: number,
  label: string,
): Promise<Figure> {
  const progress = startProgress(`${label} (run ${run})`, options.warmupMs + options.durationMs);
  // The leader's own histograms at the edges of the window say where the time went (rdl only).
  let stagesBefore: Promise<DaemonSnapshot[] | null> | null = null;
  let stagesAfter: Promise<DaemonSnapshot[] | null> | null = null;
  const sample = running.sampleStages;
  const onWindowStart = (): void => {
    if (sample !== undefined) stagesBefore = sample().catch(() => null);
  };
  const onWindowEnd = (): void => {
    if (sample !== undefined) stagesAfter = sample().catch(() => null);
  };
  try {
    let figure: Figure;
    if (workload.kind === 'loop') {
      if (running.blockTarget === null) throw new Error(`${workload.system} offers no block target`);
      figure = await runLoopWorkload(workload, running.blockTarget, {
        warmupMs: options.warmupMs,
        durationMs: options.durationMs,
        opsMax: options.opsMax,
        volumeBytes: options.volumeBytes,
        serverPids: running.serverPids,
        seed: 1000 * run + workload.concurrency,
        onProgress: (ops, ms) => progress.update(ops, ms),
        onWindowStart,
        onWindowEnd,
      });
    } else {
      if (running.nbdUri === null) {
        throw new BenchError('BENCH_PROCESS_FAILED', running.nbdError ?? `${workload.system} offers no NBD export`);
      }
      figure = await runFio(
        workload.job,
        running.nbdUri,
        { warmupMs: options.warmupMs, durationMs: options.durationMs },
        join(os.tmpdir(), `rdl-bench-fio-${process.pid}.json`),
        running.fioServerPids,
        { onStart: onWindowStart, onEnd: onWindowEnd },
      );
    }
    const before = await (stagesBefore ?? Promise.resolve(null));
    const after = await (stagesAfter ?? Promise.resolve(null));
    if (before !== null && after !== null) {
      figure = { ...figure, stages: breakdownBetween(before, after) };
    }
    progress.finish(
      `${Math.round(figure.opsPerSecond)} ops/s, p50 ${(figure.latencyUs.p50 / 1000).toFixed(2)} ms, p99 ${(figure.latencyUs.p99 / 1000).toFixed(2)} ms`,
    );
    return figure;
  } catch (err) {
    progress.finish(`failed: ${describeError(err)}`);
    throw err;
  }
}

/**
 * Drives a freshly started system with unmeasured 4 KiB IO (70% reads, 16 in flight) for
 * `systemWarmupMs`: V8 compiles the daemons' and the clients' hot code only after it ran many times,
 * and without this the first workload of a fresh cluster (the 1-in-flight write) measured code
 * still in the interpreter (p50 5-6 ms where a warm cluster does 2-3 ms). Every system with a
 * block target gets the same warm-up (etcd's Node client is JIT-compiled too).
 */
async function warmUpSystem(system: string, running: RunningSystem, options: BenchOptions, run: number): Promise<void> {
  if (options.systemWarmupMs <= 0 || running.blockTarget === null || (system !== 'rdl' && system !== 'etcd')) return;
  const progress = startProgress(`${system} warm-up (run ${run})`, options.systemWarmupMs);
  const workload: LoopWorkload = {
    kind: 'loop',
    name: `${system}-warmup`,
    system,
    op: 'mixed',
    readPercent: 70,
    sizeBytes: 4096,
    concurrency: 16,
    pattern: 'random',
  };
  try {
    const half = options.systemWarmupMs / 2;
    const figure = await runLoopWorkload(workload, running.blockTarget, {
      warmupMs: half,
      durationMs: half,
      opsMax: options.opsMax,
      volumeBytes: options.volumeBytes,
      serverPids: running.serverPids,
      seed: 999_000 + run,
      onProgress: (ops, ms) => progress.update(ops, ms),
    });
    progress.finish(`${Math.round(figure.opsPerSecond)} ops/s (not reported)`);
  } catch (err) {
    // A failing warm-up shows up again, measured, in the workloads: do not stop here.
    progress.finish(`failed: ${describeError(err)}`);
  }
}

async function main(): Promise<number> {
  let options: BenchOptions;
  let selected: Set<string>;
  try {
    options = parseArgs(process.argv.slice(2));
    // Inside the try: an unknown or empty selection is a usage error (exit 2) like a bad flag.
    selected = selectWorkloads(options.only, options.isPeers);
  } catch (err) {
    if ((err as { code?: unknown }).code === 'commander.helpDisplayed') return 0;
    process.stderr.write(`bench: ${describeError(err)}\n`);
    return 2;
  }
  // rdld reads it from the environment the bench passes on: all three daemons would get one WAL
  // directory, and the binding would refuse two of them (DAEMON_WAL_MISMATCH).
  if (process.env.RDL_STORAGE_WAL_DIR !== undefined && process.env.RDL_STORAGE_WAL_DIR !== '') {
    process.stderr.write(
      'bench: BENCH_ARGS_INVALID: RDL_STORAGE_WAL_DIR would give the three daemons one WAL directory; use --wal-dir DIR (one directory per daemon under DIR)\n',
    );
    return 2;
  }
  if (options.walRoot !== null) {
    try {
      accessSync(options.walRoot, fsConstants.W_OK | fsConstants.X_OK);
      if (!statSync(options.walRoot).isDirectory()) throw new Error('not a directory');
    } catch (err) {
      process.stderr.write(
        `bench: BENCH_ARGS_INVALID: --wal-dir ${options.walRoot} is not a writable directory (${(err as Error).message})\n`,
      );
      return 2;
    }
  }
  const runners: SystemRunner[] = [etcdRunner, nbdkitRunner, rdlRunner];
  const figures = new Map<string, Figure[]>();
  const notes = new Map<string, Outcome>();
  const descriptions = new Map<string, string>();
  const startedAt = new Date().toISOString();
  const machine = describeMachine();
  // The disk's own fdatasync speed right now: every durable figure below is bounded by it.
  let disk: DiskProbe | null = null;
  // With --wal-dir, the WALs' device too: their flushes are what every acknowledgement waits for.
  let walDisk: DiskProbe | null = null;
  if (isInstalled('fio')) {
    for (const [root, what] of [
      [os.tmpdir(), 'disk'],
      ...(options.walRoot === null ? [] : [[options.walRoot, 'WAL disk']]),
    ] as const) {
      const probeDir = mkdtempSync(join(root, 'rdl-bench-disk-'));
      try {
        const probe = await probeDisk(probeDir, options.isQuick ? 1000 : 3000);
        if (what === 'disk') disk = probe;
        else walDisk = probe;
      } catch (err) {
        process.stderr.write(`bench: ${what} probe failed: ${describeError(err)}\n`);
      } finally {
        rmSync(probeDir, { recursive: true, force: true });
      }
    }
  }
  const missingFlags = missingNodeFlags(process.execArgv, BENCH_NODE_FLAGS);
  if (missingFlags.length > 0) {
    process.stderr.write(
      `bench: warning: this process runs without ${missingFlags.join(' ')}: its own garbage collection takes CPU from the systems measured (npm run bench passes it)\n`,
    );
  }
  process.stderr.write(
    `bench: ${options.runs} run(s), ${options.systemWarmupMs / 1000} s warm-up per started system, ${options.warmupMs / 1000} s warm-up + ${options.durationMs / 1000} s per workload, ` +
      `${selected.size} workload(s)${options.rtt === null ? '' : `, emulated RTT ${options.rtt.map((p) => `${p.a}-${p.b}=${p.rttMs}ms`).join(',')}`}\n`,
  );

  /**
   * Starts one system, runs `workloads` on it, and stops it (also on failure). Figures and notes are
   * recorded under the workload's name plus `suffix`.
   */
  const runSystem = async (
    runner: SystemRunner,
    selectedWorkloads: Workload[],
    run: number,
    rtt: BenchOptions['rtt'],
    suffix = '',
  ): Promise<void> => {
    let workloads = selectedWorkloads;
    if (workloads.length === 0) return;
    const needs = {
      needsBlockTarget: workloads.some((w) => w.kind === 'loop'),
      needsNbd: workloads.some((w) => w.kind === 'fio'),
    };
    const reason = runner.unavailableReason(needs);
    if (reason !== null) {
      if (run === 1) process.stderr.write(`bench: ${runner.system}: skipped: ${reason}\n`);
      for (const w of workloads) notes.set(w.name + suffix, { status: 'skipped', reason });
      return;
    }
    // Without fio the NBD workloads cannot run on any system: skip them and say so.
    if (needs.needsNbd && !isInstalled('fio')) {
      if (run === 1) process.stderr.write(`bench: ${runner.system}: NBD workloads skipped: fio not installed\n`);
      for (const w of workloads.filter((x) => x.kind === 'fio')) {
        notes.set(w.name + suffix, { status: 'skipped', reason: 'fio not installed' });
      }
      workloads = workloads.filter((x) => x.kind !== 'fio');
      needs.needsNbd = false;
      if (workloads.length === 0) return;
    }
    const workDir = mkdtempSync(join(os.tmpdir(), `rdl-bench-${runner.system}-`));
    // nbdkit has no log of its own: only the consensus systems get a WAL directory.
    const walDir =
      options.walRoot === null || runner.system === 'nbdkit'
        ? null
        : mkdtempSync(join(options.walRoot, `rdl-bench-${runner.system}-wal-`));
    const directories = walDir === null ? [workDir] : [workDir, walDir];
    const untracks = options.isKeepData ? [] : directories.map((d) => trackTempDir(d));
    const cleanUp = (): void => {
      if (!options.isKeepData) for (const d of directories) rmSync(d, { recursive: true, force: true });
      for (const untrack of untracks) untrack();
    };
    let running: RunningSystem;
    try {
      running = await runner.start({ workDir, walDir, volumeBytes: options.volumeBytes, rtt, ...needs });
    } catch (err) {
      process.stderr.write(`bench: ${runner.system}: failed to start: ${describeError(err)}\n`);
      for (const w of workloads) {
        notes.set(w.name + suffix, { status: 'failed', reason: `start: ${describeError(err).split('\n')[0]}` });
      }
      cleanUp();
      return;
    }
    if (suffix === '') descriptions.set(runner.system, running.description);
    process.stderr.write(`bench: ${runner.system}${suffix}: ${running.description}\n`);
    try {
      await warmUpSystem(runner.system, running, options, run);
      for (const workload of workloads) {
        const name = workload.name + suffix;
        try {
          const figure = await runWorkload(workload, running, options, run, name);
          figures.set(name, [...(figures.get(name) ?? []), figure]);
        } catch (err) {
          notes.set(name, { status: 'failed', reason: describeError(err).split('\n')[0] });
        }
      }
    } finally {
      await running.stop();
      if (options.isKeepData) {
        const wal = walDir === null ? '' : ` (WALs in ${walDir})`;
        process.stderr.write(`bench: ${runner.system}: data and logs kept in ${workDir}${wal}\n`);
      }
      cleanUp();
    }
  };

  const qd1 = rows.find((row) => row.rdl.name === 'sdk-write-4k-qd1')!.rdl;
  const isRttBaselineNeeded = options.rtt !== null && selected.has(qd1.name);
  for (let run = 1; run <= options.runs; run++) {
    for (const runner of runners) {
      await runSystem(runner, workloadsOf(runner.system, selected), run, runner.system === 'rdl' ? options.rtt : null);
    }
    // The commit-latency claim needs the same write without emulated latency, on a fresh cluster.
    if (isRttBaselineNeeded) await runSystem(rdlRunner, [qd1], run, null, noRttSuffix);
  }

  const outcomes = new Map<string, Outcome>();
  for (const [name, note] of notes) outcomes.set(name, note);
  // A workload that succeeded in some runs reports the median of those.
  for (const [name, list] of figures) outcomes.set(name, { status: 'ok', summary: summarise(list) });

  const table = formatTable(rows, outcomes);
  const stagesTable = formatStagesTable(rows, outcomes);
  const verdicts = evaluateTargets(outcomes);
  let rttSentence: string | null = null;
  if (options.rtt !== null) {
    const delayed = outcomes.get(qd1.name);
    const baseline = outcomes.get(qd1.name + noRttSuffix);
    if (delayed?.status === 'ok') {
      const baselineMs = baseline?.status === 'ok' ? baseline.summary.latencyUs.p50 / 1000 : null;
      rttSentence = formatCommitFollows(
        commitFollows(rdlLeaderRegion, options.rtt, delayed.summary.latencyUs.p50 / 1000, baselineMs),
      );
    }
  }
  const out = process.stdout;
  out.write(`\n${table}\n`);
  if (stagesTable !== null)
    out.write(`\nWhere the time goes on the rdl leader (its /metrics histograms):\n\n${stagesTable}\n`);
  out.write(`\nTargets (issue 6):\n${formatTargets(verdicts)}\n`);
  if (options.rtt !== null) {
    out.write(`\nRegion latency emulated between the rdl daemons only; the peers run on plain loopback.\n`);
  }
  if (rttSentence !== null) out.write(`Region latency: ${rttSentence}\n`);
  out.write(
    `\nMachine: ${machine.cpus} CPUs (${machine.cpuModel}), ${machine.memoryGiB} GiB, ${machine.tmpFilesystem} on ${machine.tmpDevice}, load average ${machine.loadAverage1mAtStart} at start, bench node flags ${machine.nodeFlags}; ` +
      `${options.runs} run(s), median shown, spread = half the min-max range of ops/s.\n`,
  );
  for (const [probe, what] of [
    [disk, 'Disk'],
    [walDisk, `WAL disk (--wal-dir ${options.walRoot})`],
  ] as const) {
    if (probe === null) continue;
    out.write(
      `${what} at start: ${formatCount(probe.writesPerSecond)} 4 KiB writes/s with fdatasync after each ` +
        `(flush p50 ${(probe.flushP50Us / 1000).toFixed(2)} ms, p99 ${(probe.flushP99Us / 1000).toFixed(2)} ms).\n`,
    );
  }
  for (const [system, description] of descriptions) out.write(`- ${system}: ${description}\n`);

  if (options.jsonPath !== null) {
    const json = {
      startedAt,
      finishedAt: new Date().toISOString(),
      options,
      machine,
      disk,
      walDisk,
      systems: Object.fromEntries(descriptions),
      workloads: Object.fromEntries(
        [...outcomes].map(([name, outcome]) => [name, { ...outcome, runs: figures.get(name) ?? [] }]),
      ),
      targets: verdicts,
      regionLatency: rttSentence,
      table,
      stagesTable,
    };
    writeFileSync(options.jsonPath, `${JSON.stringify(json, null, 2)}\n`);
    process.stderr.write(`bench: figures written to ${options.jsonPath}\n`);
  }
  // Peers may be missing or fail (reported above); rdl's own workloads must all succeed.
  const rdlFailures = [...outcomes].filter(
    ([name, o]) => o.status === 'failed' && rows.some((row) => row.rdl.name === name),
  );
  if (rdlFailures.length > 0) {
    process.stderr.write(`bench: ${rdlFailures.length} rdl workload(s) failed\n`);
    return 1;
  }
  return 0;
}

main()
  .then(async (code) => {
    await stopAll();
    process.exitCode = code;
  })
  .catch(async (err: unknown) => {
    process.stderr.write(`bench: ${describeError(err)}\n`);
    await stopAll();
    process.exitCode = 1;
  });
