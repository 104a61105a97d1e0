/** Shared helpers of the storage tests: temp databases, a log builder, a seeded random source. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockStateMachine, type BlockStateMachineOptions } from '../../src/storage/block-store.js';
import { encodeCommand, type ApplyResult, type Command } from '../../src/storage/commands.js';
import { openDatabase, type Database } from '../../src/storage/database.js';
import type { Entry } from '../../src/storage/raft-api.js';

/** A temp directory with a database, and a way to remove both. */
export interface TempDatabase {
  directory: string;
  db: Database;
  /** Closes the current database and opens a new handle on the same directory. */
  reopen(): Promise<Database>;
  cleanup(): Promise<void>;
}

export async function tempDatabase(): Promise<TempDatabase> {
  const directory = await mkdtemp(join(tmpdir(), 'rdl-block-store-'));
  const handle: TempDatabase = {
    directory,
    db: await openDatabase(directory),
    async reopen() {
      await handle.db.close();
      handle.db = await openDatabase(directory);
      return handle.db;
    },
    async cleanup() {
      await handle.db.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
  return handle;
}

/** Builds a Raft log of commands (term 1, consecutive indexes). */
export class LogBuilder {
  readonly entries: Entry[] = [];

  add(command: Command): Entry {
    const entry: Entry = { index: this.entries.length + 1, term: 1, type: 0, data: encodeCommand(command) };
    this.entries.push(entry);
    return entry;
  }

  /** A leader's no-op. */
  noop(): Entry {
    const entry: Entry = { index: this.entries.length + 1, term: 1, type: 0, data: new Uint8Array(0) };
    this.entries.push(entry);
    return entry;
  }

  from(index: number): Entry[] {
    return this.entries.slice(index - 1);
  }
}

/** Applies `entries` starting at the machine's applied index + 1, in one call. */
export async function applyAll(machine: BlockStateMachine, entries: readonly Entry[]): Promise<ApplyResult[]> {
  return (await machine.apply(entries)) as ApplyResult[];
}

/** Applies one command as the next entry and returns its result. */
export async function applyOne(machine: BlockStateMachine, log: LogBuilder, command: Command): Promise<ApplyResult> {
  const entry = log.add(command);
  const [result] = await applyAll(machine, [entry]);
  return result;
}

export async function openMachine(db: Database, options: BlockStateMachineOptions = {}): Promise<BlockStateMachine> {
  return BlockStateMachine.open(db, options);
}

/** mulberry32: a small seeded generator, so failures replay. */
export function seededRandom(seed: number): (bound: number) => number {
  let state = seed | 0;
  return (bound: number) => {
    state = (state + 0x6d2b79f5) | 0;
    let x = state;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) % bound;
  };
}

/** Counts the keys of a database between two bounds. */
export async function countKeys(db: Database, gte: Buffer, lt: Buffer): Promise<number> {
  let count = 0;
  for await (const _key of db.keys({ gte, lt })) count++;
  return count;
}

/** `length` seeded pseudo-random bytes, never zero (so no block of them is thin by accident). Fast. */
export function randomBytes(length: number, seed: number): Uint8Array {
  const words = new Uint32Array(Math.ceil(length / 4));
  let x = (seed * 0x9e3779b9) | 1;
  for (let i = 0; i < words.length; i++) {
    // xorshift32; each byte's low bit is set so that no byte is zero.
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = (x | 0x01010101) >>> 0;
  }
  return new Uint8Array(words.buffer, 0, length);
}

/**
 * Compares byte arrays with memcmp and reports the first difference. (AVA's deepEqual walks a
 * large buffer byte by byte through its formatter: seconds per MiB.)
 */
export function sameBytes(
  t: { true(value: boolean, message?: string): unknown },
  actual: Uint8Array,
  expected: Uint8Array,
  message = '',
): void {
  const a = Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength);
  const b = Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength);
  if (a.equals(b)) {
    t.true(true, message);
    return;
  }
  let first = 0;
  while (first < Math.min(a.length, b.length) && a[first] === b[first]) first++;
  t.true(false, `${message} bytes differ: lengths ${a.length}/${b.length}, first difference at ${first}`);
}

/** A log entry whose payload (`size` bytes) is derived from its index and term, for WAL tests. */
export function patternEntry(index: number, term: number, size: number): Entry {
  return { index, term, type: 0, data: new Uint8Array(size).fill((index * 7 + term) & 0xff) };
}

/** `patternEntry`s for indexes `from..to` (inclusive), all of `term`. */
export function patternRange(from: number, to: number, term: number, size: number): Entry[] {
  const entries: Entry[] = [];
  for (let index = from; index <= to; index++) entries.push(patternEntry(index, term, size));
  return entries;
}

/** The indexes of `entries`, for readable assertions. */
export function indexes(entries: readonly Entry[]): number[] {
  return entries.map((e) => e.index);
}

/** Whether two logs hold the same entries (index, term, type and payload bytes). */
export function sameEntries(a: readonly Entry[], b: readonly Entry[]): boolean {
  return (
    a.length === b.length &&
    a.every(
      (e, i) =>
        e.index === b[i].index && e.term === b[i].term && e.type === b[i].type && Buffer.from(e.data).equals(b[i].data),
    )
  );
}
