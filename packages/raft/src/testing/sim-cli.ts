/**
 * `npm run sim -- --seeds N [--seed-start S]`: runs N seeds of the deterministic cluster simulator,
 * prints the tally of every fault kind injected, one line per failing seed with the command that
 * replays it, and ends with `N seeds, V violations`. Exit code 1 when any seed fails.
 * `--trace` prints the event trace of each failing seed. Members are replaced through a joint
 * configuration or by two single-server changes, picked at random per replacement;
 * `--joint-replace` / `--no-joint-replace` force one way. Each seed draws whether commit indexes
 * ride on the next append or heartbeat (`isCommitPiggybackEnabled`); `--commit-piggyback` /
 * `--no-commit-piggyback` force one way. A line sums up the chunked snapshot
 * transfers (chunks sent, resent and lost; transfers resumed, restarted and abandoned).
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import type { SimulationOptions } from './simulator.js';

type DriverBug = NonNullable<SimulationOptions['driverBug']>;
import { runSeeds } from './sim-runner.js';

function integer(min: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`must be an integer >= ${min}`);
    return n;
  };
}

interface CliOptions {
  seeds: number;
  seedStart: number;
  trace: boolean;
  quiet: boolean;
  /** Unset: each replacement picks joint or single-server changes at random. */
  jointReplace?: boolean;
  membership: boolean;
  /** Unset: each seed draws isCommitPiggybackEnabled. */
  commitPiggyback?: boolean;
  driverBug?: DriverBug;
}

const program = new Command()
  .name('rdl-sim')
  .description('Runs seeds of the deterministic Raft cluster simulator.')
  .option('--seeds <n>', 'how many seeds to run', integer(1), 100)
  .option('--seed-start <s>', 'first seed', integer(0), 1)
  .option('--trace', 'print the event trace of each failing seed', false)
  .option('--quiet', 'no progress output', false)
  .option('--joint-replace', 'replace members always through a joint configuration (add-voter + remove in one change)')
  .option('--no-joint-replace', 'replace members always by two single-server changes (promote, then remove)')
  .option('--commit-piggyback', 'every seed sends commit indexes only with appends and heartbeats')
  .option('--no-commit-piggyback', 'every seed sends an append per commit advance (the classic way)')
  .option('--no-membership', 'leave membership changes out of the fault mix (the fault mix of issue 2)')
  .addOption(
    new Option('--driver-bug <bug>', 'break the simulated driver on purpose (to see the checkers fire)').choices([
      'ack-before-fsync',
      'stale-reads',
      'empty-snapshot',
      'snapshot-chunk-gap',
    ]),
  )
  .action((options: CliOptions) => {
    const startedMs = performance.now();
    const jointFlag =
      options.jointReplace === undefined ? '' : options.jointReplace ? ' --joint-replace' : ' --no-joint-replace';
    const piggybackFlag =
      options.commitPiggyback === undefined
        ? ''
        : options.commitPiggyback
          ? ' --commit-piggyback'
          : ' --no-commit-piggyback';
    const flags = `${jointFlag}${piggybackFlag}${options.membership ? '' : ' --no-membership'}${options.driverBug === undefined ? '' : ` --driver-bug ${options.driverBug}`}`;
    const summary = runSeeds({
      seedStart: options.seedStart,
      seeds: options.seeds,
      simulation: {
        driverBug: options.driverBug,
        isJointReplaceEnabled: options.jointReplace,
        ...(options.membership ? {} : { faults: { membershipRate: 0 } }),
        ...(options.commitPiggyback === undefined
          ? {}
          : { coreConfig: { isCommitPiggybackEnabled: options.commitPiggyback } }),
      },
      onFailure: (failure) => {
        process.stdout.write(`seed ${failure.seed} FAILED: ${failure.violation}\n`);
        process.stdout.write(`  replay: npm run sim -- --seeds 1 --seed-start ${failure.seed}${flags} --trace\n`);
        if (options.trace) for (const line of failure.trace) process.stdout.write(`  | ${line}\n`);
      },
      onProgress:
        options.quiet || !process.stderr.isTTY
          ? undefined
          : (done) => process.stderr.write(`\r${done}/${options.seeds} seeds`),
    });
    if (!options.quiet && process.stderr.isTTY) process.stderr.write('\n');
    process.stdout.write('faults injected:\n');
    for (const [kind, count] of Object.entries(summary.tally)) {
      process.stdout.write(`  ${kind.padEnd(28)} ${count}\n`);
    }
    const t = summary.tally;
    process.stdout.write(
      `membership: ${t['member-added']} added, ${t['member-removed']} removed, ${t['member-replaced']} replaced ` +
        `(${t['member-replaced-joint']} through a joint configuration, ${t['leader-removed']} removing the leader), ` +
        `${t['conf-change-refused']} proposals refused; ` +
        `snapshots: ${t['snapshot-installed']} installed of ${t['snapshot-sent']} sent\n`,
    );
    process.stdout.write(
      `snapshot transfers: ${t['snapshot-chunk-sent']} chunks sent (${t['snapshot-chunk-resent']} resent, ` +
        `${t['snapshot-chunk-lost']} lost), ${t['snapshot-transfer-resumed']} resumed from the last acknowledged chunk, ` +
        `${t['snapshot-transfer-restarted']} restarted from chunk 0 (receiver restarted or replaced), ` +
        `${t['snapshot-transfer-abandoned']} abandoned (stalled, sender crashed or lost leadership)\n`,
    );
    const s = summary.stats;
    process.stdout.write(
      `workload: ${s.operationsOk} ok, ${s.operationsUnknown} unknown outcome, ${s.operationsFailed} refused; ` +
        `${s.elections} elections; ${s.inconclusive} inconclusive lincheck; ${s.events} events in ` +
        `${((performance.now() - startedMs) / 1000).toFixed(1)} s\n`,
    );
    process.stdout.write(`${options.seeds} seeds, ${summary.failures.length} violations\n`);
    process.exitCode = summary.failures.length > 0 ? 1 : 0;
  });

program.parse();
