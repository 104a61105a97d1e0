/**
 * Shared by the seed-range test files: runs a range of simulator seeds and registers the checks on
 * the outcome, so AVA can run several ranges in parallel processes.
 */
import type { TestFn } from 'ava';
import { FAULT_KINDS } from '../../src/testing/simulator.js';
import { runSeeds } from '../../src/testing/sim-runner.js';
import type { SeedFailure } from '../../src/testing/sim-runner.js';

function describe(failures: readonly SeedFailure[]): string {
  return failures
    .slice(0, 5)
    .map(
      (f) =>
        `seed ${f.seed}: ${f.violation}\n  replay: npm run sim -- --seeds 1 --seed-start ${f.seed} --trace\n` +
        f.trace
          .slice(-30)
          .map((line) => `  | ${line}`)
          .join('\n'),
    )
    .join('\n');
}

/** Registers the safety, coverage and liveness tests of seeds [seedStart, seedStart + seeds). */
export function registerSeedRange(test: TestFn, seedStart: number, seeds: number): void {
  const summary = runSeeds({ seedStart, seeds });
  const isLiveness = (f: SeedFailure): boolean => f.violation.startsWith('liveness:');
  const safetyFailures = summary.failures.filter((f) => !isLiveness(f));
  const livenessFailures = summary.failures.filter(isLiveness);
  const range = `seeds ${seedStart}..${seedStart + seeds - 1}`;

  test(`${range}: no safety violation and linearizable histories under every fault kind`, (t) => {
    t.log(`${seeds} seeds, ${summary.failures.length} violations (${livenessFailures.length} liveness)`);
    t.log(JSON.stringify(summary.tally));
    t.deepEqual(safetyFailures, [], describe(safetyFailures));
    t.true(summary.stats.operationsOk > seeds * 50, 'clients completed operations');
  });

  test(`${range}: every fault kind was injected`, (t) => {
    for (const kind of FAULT_KINDS) t.true(summary.tally[kind] > 0, `${kind} never injected`);
  });

  // Liveness: this is how the simulator found the core bug of a Replicate window full of lost
  // appends never being freed (fixed in the core: a heartbeat reply frees one slot).
  test(`${range}: after healing, a leader commits a new proposal within the liveness bound`, (t) => {
    t.deepEqual(livenessFailures, [], describe(livenessFailures));
  });
}
