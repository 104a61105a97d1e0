/**
 * Runs ranges of simulator seeds and aggregates their tallies: shared by the `npm run sim` CLI and
 * the test suite. A failing seed is re-run with tracing on (the run is deterministic, so the trace
 * is the trace of the failure).
 */
import { FAULT_KINDS, runSimulation } from './simulator.js';
import type { FaultTally, SimulationOptions } from './simulator.js';

/** One failing seed: what broke and the trace of its last events. */
export interface SeedFailure {
  readonly seed: number;
  readonly violation: string;
  readonly trace: readonly string[];
}

/** Aggregate of a range of seeds. */
export interface SeedsSummary {
  readonly tally: FaultTally;
  readonly failures: readonly SeedFailure[];
  readonly stats: {
    events: number;
    operationsOk: number;
    operationsUnknown: number;
    operationsFailed: number;
    elections: number;
    inconclusive: number;
  };
}

/** Options of {@link runSeeds}. */
export interface RunSeedsOptions {
  readonly seedStart: number;
  readonly seeds: number;
  /** Extra options for every run (fault overrides, durations). */
  readonly simulation?: Omit<SimulationOptions, 'seed'>;
  readonly onFailure?: (failure: SeedFailure) => void;
  readonly onProgress?: (done: number) => void;
}

/** Runs seeds `seedStart .. seedStart + seeds - 1` one after the other. */
export function runSeeds(options: RunSeedsOptions): SeedsSummary {
  const tally = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as FaultTally;
  const failures: SeedFailure[] = [];
  const stats = {
    events: 0,
    operationsOk: 0,
    operationsUnknown: 0,
    operationsFailed: 0,
    elections: 0,
    inconclusive: 0,
  };
  for (let i = 0; i < options.seeds; i++) {
    const seed = options.seedStart + i;
    const result = runSimulation({ ...options.simulation, seed });
    for (const kind of FAULT_KINDS) tally[kind] += result.tally[kind];
    stats.events += result.stats.events;
    stats.operationsOk += result.stats.operationsOk;
    stats.operationsUnknown += result.stats.operationsUnknown;
    stats.operationsFailed += result.stats.operationsFailed;
    stats.elections += result.stats.elections;
    if (result.inconclusive !== null) stats.inconclusive++;
    if (result.violation !== null) {
      const traced = runSimulation({ ...options.simulation, seed, isTraceEnabled: true });
      const failure = { seed, violation: result.violation, trace: traced.trace };
      failures.push(failure);
      options.onFailure?.(failure);
    }
    if (options.onProgress !== undefined && (i + 1) % 100 === 0) options.onProgress(i + 1);
  }
  return { tally, failures, stats };
}
