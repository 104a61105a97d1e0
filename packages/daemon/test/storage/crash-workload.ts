/**
 * The workload of the crash test, shared by the test and the child process it kills: a
 * deterministic log of overlapping writes (command `index` depends only on `index`), a byte model
 * of the volume after any prefix of it, and the child's main loop, which appends to the Raft log
 * store and applies with a lag, the way the Raft driver does.
 */
import { BlockStateMachine } from '../../src/storage/block-store.js';
import { encodeCommand, type Command } from '../../src/storage/commands.js';
import { join } from 'node:path';
import { openDatabase, type Database } from '../../src/storage/database.js';
import { openRaftLog } from '../../src/storage/wal-migration.js';
import type { WalLogStore } from '../../src/storage/wal-log-store.js';
import type { Entry } from '../../src/storage/raft-api.js';
import { randomBytes, seededRandom } from './helpers.js';

export const VOLUME_SIZE_BYTES = 64 * 4096;
const SESSION = 'e'.repeat(32);

/** Command number `index` of the log (1: create the volume; then overlapping writes). */
export function commandAt(index: number): Command {
  if (index === 1) return { type: 'createVolume', name: 'v', sizeBytes: VOLUME_SIZE_BYTES, createdAtMs: 0 };
  const next = seededRandom(index);
  const length = 1 + next(9000);
  const offset = next(VOLUME_SIZE_BYTES - length);
  return {
    type: 'write',
    volume: 'v',
    offset,
    data: randomBytes(length, index),
    session: SESSION,
    seq: index,
    ackedBelow: Math.max(1, index - 16),
    atMs: index,
  };
}

/** 1 MiB segments: the workload's few MiB of log roll over several times. */
export const CRASH_SEGMENT_BYTES = 1024 * 1024;

/** Opens the workload's storage in `directory`: LevelDB in `db/`, the WAL in `wal/`, wired like the daemon. */
export async function openStorage(
  directory: string,
): Promise<{ db: Database; logStore: WalLogStore; machine: BlockStateMachine; close(): Promise<void> }> {
  const db = await openDatabase(join(directory, 'db'));
  const { store: logStore } = await openRaftLog(join(directory, 'wal'), db, { segmentBytes: CRASH_SEGMENT_BYTES });
  const machine = await BlockStateMachine.open(db, { log: logStore });
  logStore.setStateBarrier((index) => machine.whenDurableThrough(index));
  return {
    db,
    logStore,
    machine,
    async close() {
      await logStore.close();
      await machine.close();
      await db.close();
    },
  };
}

export function entryAt(index: number): Entry {
  return { index, term: 1, type: 0, data: encodeCommand(commandAt(index)) };
}

/** The volume's bytes after applying entries 1..index. */
export function modelAt(index: number): Uint8Array {
  const model = new Uint8Array(VOLUME_SIZE_BYTES);
  for (let i = 2; i <= index; i++) {
    const command = commandAt(i);
    if (command.type === 'write') model.set(command.data, command.offset);
  }
  return model;
}

/** Where the child kills itself: while an append or while an apply is in flight. */
export type KillPhase = 'append' | 'apply';

/**
 * The child: appends and applies, printing `{ applied, last }` after each round, until its applied
 * index would reach `killAtApplied`; then it starts that step (an append or an apply, as `phase`
 * says) and kills itself with SIGKILL while the step's LevelDB writes are in flight.
 */
async function runChild(directory: string, seed: number, killAtApplied: number, phase: KillPhase): Promise<void> {
  const { logStore, machine } = await openStorage(directory);
  const state = await logStore.load();
  let last = state.entries.length > 0 ? state.entries[state.entries.length - 1].index : 0;
  let applied = await machine.appliedIndex();
  const next = seededRandom(seed);
  // Die after `hops` turns of the event loop, so that different cycles die at different points
  // of the step (before its LevelDB write starts, between writes, after some completed).
  const die = (hops: number): void => {
    setImmediate(() => (hops <= 1 ? process.kill(process.pid, 'SIGKILL') : die(hops - 1)));
  };
  while (true) {
    const count = 1 + next(8);
    const entries: Entry[] = [];
    for (let i = 1; i <= count; i++) entries.push(entryAt(last + i));
    // Apply with a lag of 0..24 entries, as committed entries trail appended ones.
    const target = Math.max(applied, last + count - next(25));
    const isLastRound = target >= killAtApplied;
    const appended = logStore.append(entries, { term: 1, vote: null, commit: applied });
    if (isLastRound && phase === 'append') die([1, 20, 80, 300][seed % 4]);
    await appended;
    last += count;
    if (target > applied) {
      const batch: Entry[] = [];
      for (let index = applied + 1; index <= target; index++) batch.push(entryAt(index));
      const applying = machine.apply(batch);
      if (isLastRound) die([1, 20, 80, 300][seed % 4]);
      const results = (await applying) as { ok: boolean }[];
      if (!results.every((result) => result.ok)) throw new Error(`apply failed: ${JSON.stringify(results)}`);
      // apply() resolves before its batch lands (write-behind): report it applied once it landed.
      await machine.whenWritten();
      applied = target;
    }
    process.stdout.write(`${JSON.stringify({ applied, last })}\n`);
  }
}

if (process.argv[2] === 'child') {
  const [directory, seed, killAtApplied, phase] = process.argv.slice(3);
  runChild(directory, Number(seed), Number(killAtApplied), phase as KillPhase).catch((error: unknown) => {
    process.stderr.write(`${String((error as Error).stack ?? error)}\n`);
    process.exit(1);
  });
}
