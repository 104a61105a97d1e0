/**
 * `@rdl/raft/testing`: the tools that prove a Raft implementation (and a storage) correct:
 * the linearizability checker, history parsing, in-memory storage and state machine, the storage
 * compliance suite and the deterministic cluster simulator.
 */
export { checkLinearizable } from './lincheck.js';
export type { HistoryOperation, LincheckOptions, LincheckResult } from './lincheck.js';
export { parseHistory } from './history.js';
export type { ParseHistoryResult } from './history.js';
export { MemoryStorage, SimulatedDisk } from './memory-storage.js';
export type { DiskImage, SimulatedDiskOptions } from './memory-storage.js';
export { storageCompliance } from './storage-compliance.js';
export type { ComplianceAssertions, ComplianceTestFn, StorageUnderTest } from './storage-compliance.js';
export { KvStateMachine, KvStore, encodeKvCommand, decodeKvCommand } from './kv-state-machine.js';
export type { KvCommand, KvResult } from './kv-state-machine.js';
export { runSimulation, SimulationViolation, FAULT_KINDS, describeEntry } from './simulator.js';
export type { FaultKind, FaultRates, FaultTally, SimulationOptions, SimulationResult } from './simulator.js';
export { runSeeds } from './sim-runner.js';
export type { RunSeedsOptions, SeedFailure, SeedsSummary } from './sim-runner.js';
export { SeededRandom } from './random.js';
export { runInteraction, InteractionScriptError } from './interaction.js';
