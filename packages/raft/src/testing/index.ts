/**
 * `@rdl/raft/testing`: the tools that prove a Raft implementation (and a storage) correct:
 * the linearizability checker, history parsing, in-memory storage and state machine, the storage
 * compliance suite and the deterministic cluster simulator.
 */
export { checkLinearizable } from './lincheck.js';
export type { HistoryOperation, LincheckOptions, LincheckResult } from './lincheck.js';
export { parseHistory } from './history.js';
export type { ParseHistoryResult } from './history.js';
