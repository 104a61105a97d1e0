/**
 * The compliance suite every {@link Storage} implementation must pass (the in-memory one here, the
 * daemon's LevelDB one). It registers tests on the caller's test function, so it runs under AVA (or
 * any runner with the same shape) next to the implementation's own tests.
 */
import type { ConfState, Entry, HardState, SnapshotMeta, Storage } from '../api.js';
import { EntryType } from '../api.js';

/** The assertions the suite uses; AVA's `ExecutionContext` provides them. */
export interface ComplianceAssertions {
  is(actual: unknown, expected: unknown, message?: string): unknown;
  deepEqual(actual: unknown, expected: unknown, message?: string): unknown;
  true(actual: unknown, message?: string): unknown;
  throwsAsync(thrower: Promise<unknown>, expectation?: undefined, message?: string): PromiseLike<unknown>;
}

/** A test-registering function: AVA's default export fits. */
export type ComplianceTestFn = (title: string, implementation: (t: ComplianceAssertions) => Promise<void>) => void;

/** One storage under test, opened on a fresh, empty location. */
export interface StorageUnderTest {
  readonly storage: Storage;
  /** Closes the current storage (cleanly) and opens a new one on the same location. */
  reopen(): Promise<Storage>;
  /** Closes whatever is open and removes the location. */
  cleanup(): Promise<void>;
}

const conf: ConfState = { voters: ['a', 'b', 'c'], learners: [], votersOutgoing: [], learnersNext: [] };

function entry(index: number, term: number, text = `e${index}t${term}`): Entry {
  return { index, term, type: EntryType.Normal, data: new TextEncoder().encode(text) };
}

function range(from: number, to: number, term: number): Entry[] {
  const entries: Entry[] = [];
  for (let i = from; i <= to; i++) entries.push(entry(i, term));
  return entries;
}

/** Entries as plain comparable tuples (data decoded), so a Buffer and a Uint8Array compare equal. */
function plain(entries: readonly Entry[]): [number, number, number, string][] {
  return entries.map((e) => [e.index, e.term, e.type, new TextDecoder().decode(e.data)]);
}

/**
 * Registers the storage compliance tests, prefixed with `prefix`. `open` is called once per test
 * and must return a storage on a fresh location, not yet loaded (the suite calls `load` first).
 */
export function storageCompliance(
  test: ComplianceTestFn,
  open: () => Promise<StorageUnderTest>,
  prefix = 'storage',
): void {
  const run = (title: string, body: (t: ComplianceAssertions, s: StorageUnderTest) => Promise<void>): void => {
    test(`${prefix}: ${title}`, async (t) => {
      const s = await open();
      try {
        await body(t, s);
      } finally {
        await s.cleanup();
      }
    });
  };

  run('a fresh storage loads an empty log, no snapshot and a zero hard state', async (t, s) => {
    const state = await s.storage.load();
    t.deepEqual(state.hardState, { term: 0, vote: null, commit: 0 });
    t.is(state.snapshot, null);
    t.deepEqual(plain(state.entries), []);
  });

  run('appended entries and hard state survive a reopen', async (t, s) => {
    await s.storage.load();
    const hardState: HardState = { term: 2, vote: 'b', commit: 3 };
    await s.storage.append([...range(1, 2, 1), ...range(3, 4, 2)], hardState);
    const reopened = await s.reopen();
    const state = await reopened.load();
    t.deepEqual(state.hardState, hardState);
    t.deepEqual(plain(state.entries), plain([...range(1, 2, 1), ...range(3, 4, 2)]));
  });

  run('entry data survives byte for byte, including empty and binary payloads', async (t, s) => {
    await s.storage.load();
    const binary = new Uint8Array(256).map((_, i) => i);
    await s.storage.append(
      [
        { index: 1, term: 1, type: EntryType.Normal, data: new Uint8Array(0) },
        { index: 2, term: 1, type: EntryType.ConfChange, data: binary },
      ],
      null,
    );
    const state = await (await s.reopen()).load();
    t.is(state.entries.length, 2);
    t.is(state.entries[0].data.length, 0);
    t.is(state.entries[1].type, EntryType.ConfChange);
    t.deepEqual([...state.entries[1].data], [...binary]);
  });

  run('an append with a null hard state keeps the previous hard state', async (t, s) => {
    await s.storage.load();
    await s.storage.append(range(1, 1, 1), { term: 1, vote: 'a', commit: 0 });
    await s.storage.append(range(2, 3, 1), null);
    const state = await (await s.reopen()).load();
    t.deepEqual(state.hardState, { term: 1, vote: 'a', commit: 0 });
    t.deepEqual(plain(state.entries), plain(range(1, 3, 1)));
  });

  run('a hard state alone (no entries) is saved', async (t, s) => {
    await s.storage.load();
    await s.storage.append([], { term: 5, vote: 'c', commit: 0 });
    const state = await (await s.reopen()).load();
    t.deepEqual(state.hardState, { term: 5, vote: 'c', commit: 0 });
    t.deepEqual(plain(state.entries), []);
  });

  run('an append at or below the last index replaces the conflicting suffix', async (t, s) => {
    await s.storage.load();
    await s.storage.append(range(1, 5, 1), null);
    await s.storage.append(range(3, 4, 2), { term: 2, vote: null, commit: 2 });
    let state = await s.storage.load();
    t.deepEqual(plain(state.entries), plain([...range(1, 2, 1), ...range(3, 4, 2)]), 'entry 5 of term 1 is gone');
    state = await (await s.reopen()).load();
    t.deepEqual(plain(state.entries), plain([...range(1, 2, 1), ...range(3, 4, 2)]), 'and stays gone after a reopen');
  });

  run('a replacing suffix may be longer than the one it replaces', async (t, s) => {
    await s.storage.load();
    await s.storage.append(range(1, 3, 1), null);
    await s.storage.append(range(2, 6, 3), null);
    const state = await (await s.reopen()).load();
    t.deepEqual(plain(state.entries), plain([...range(1, 1, 1), ...range(2, 6, 3)]));
  });

  run('replacing from index 1 replaces the whole log', async (t, s) => {
    await s.storage.load();
    await s.storage.append(range(1, 3, 1), null);
    await s.storage.append(range(1, 1, 2), null);
    const state = await (await s.reopen()).load();
    t.deepEqual(plain(state.entries), plain(range(1, 1, 2)));
  });

  run('applySnapshot keeping later entries drops those at or below the snapshot', async (t, s) => {
    await s.storage.load();
    await s.storage.append(range(1, 6, 1), { term: 1, vote: 'a', commit: 6 });
    const meta: SnapshotMeta = { index: 4, term: 1, conf };
    await s.storage.applySnapshot(meta, true);
    const state = await (await s.reopen()).load();
    t.deepEqual(state.snapshot, meta);
    t.deepEqual(plain(state.entries), plain(range(5, 6, 1)));
    t.deepEqual(state.hardState, { term: 1, vote: 'a', commit: 6 });
  });

  run('applySnapshot without keeping entries drops the whole log, and the log continues after it', async (t, s) => {
    await s.storage.load();
    await s.storage.append(range(1, 3, 1), null);
    const meta: SnapshotMeta = { index: 10, term: 3, conf };
    await s.storage.applySnapshot(meta, false);
    let state = await (await s.reopen()).load();
    t.deepEqual(state.snapshot, meta);
    t.deepEqual(plain(state.entries), []);
    const storage = await s.reopen();
    await storage.load();
    await storage.append(range(11, 12, 3), null);
    state = await (await s.reopen()).load();
    t.deepEqual(plain(state.entries), plain(range(11, 12, 3)));
  });

  run('a newer snapshot replaces an older one', async (t, s) => {
    await s.storage.load();
    await s.storage.append(range(1, 8, 1), null);
    await s.storage.applySnapshot({ index: 3, term: 1, conf }, true);
    const newer: SnapshotMeta = { index: 6, term: 1, conf: { ...conf, voters: ['a', 'b'] } };
    await s.storage.applySnapshot(newer, true);
    const state = await (await s.reopen()).load();
    t.deepEqual(state.snapshot, newer);
    t.deepEqual(plain(state.entries), plain(range(7, 8, 1)));
  });

  run('compact drops entries at or below the index and keeps the rest', async (t, s) => {
    await s.storage.load();
    await s.storage.append(range(1, 6, 1), null);
    await s.storage.applySnapshot({ index: 2, term: 1, conf }, true);
    await s.storage.compact(4);
    await s.storage.append(range(7, 7, 1), null); // a synced write after it makes it durable too
    const state = await (await s.reopen()).load();
    t.deepEqual(plain(state.entries), plain(range(5, 7, 1)));
  });

  run('an append that would leave a gap after the log is refused', async (t, s) => {
    await s.storage.load();
    await s.storage.append(range(1, 2, 1), null);
    await t.throwsAsync(s.storage.append(range(4, 5, 1), null));
  });

  run('many appends survive many reopens, matching a reference model', async (t, s) => {
    await s.storage.load();
    // A fixed pseudo-random walk of appends, truncations and hard states (mulberry32, seed 7).
    let seed = 7;
    const next = (bound: number): number => {
      seed = (seed + 0x6d2b79f5) | 0;
      let x = seed;
      x = Math.imul(x ^ (x >>> 15), x | 1);
      x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
      return ((x ^ (x >>> 14)) >>> 0) % bound;
    };
    let model: Entry[] = [];
    let hardState: HardState = { term: 0, vote: null, commit: 0 };
    let storage = s.storage;
    let term = 1;
    for (let round = 0; round < 40; round++) {
      const last = model.length;
      const from = Math.max(1, last + 1 - next(4));
      term += next(2);
      const batch = range(from, from + next(5), term);
      const isHardStateIncluded = next(2) === 0;
      if (isHardStateIncluded) hardState = { term, vote: next(2) === 0 ? null : 'b', commit: Math.min(from - 1, last) };
      await storage.append(batch, isHardStateIncluded ? hardState : null);
      model = [...model.slice(0, from - 1), ...batch];
      if (round % 7 === 6) {
        storage = await s.reopen();
        const state = await storage.load();
        t.deepEqual(plain(state.entries), plain(model), `round ${round}`);
        t.deepEqual(state.hardState, hardState, `round ${round}`);
      }
    }
  });
}
