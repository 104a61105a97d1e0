/**
 * LEGACY: the Raft log, hard state and snapshot metadata on LevelDB, as rdld kept them before the
 * write-ahead log (`wal-log-store.ts`). Only `wal-migration.ts` uses it now, to read the log of an
 * old data directory; it still implements the whole `Storage` contract (see `@rdl/raft` api.ts)
 * and keeps its tests, which also build old data directories for the migration test.
 *
 * Keys (all under the prefix byte `L`, so the log shares the database with the block state machine):
 *
 * | key                          | value                                         |
 * |------------------------------|-----------------------------------------------|
 * | `L` `e` index (u64 BE)       | type (u8), term (u64 BE), command bytes       |
 * | `L` `h`                      | hard state (msgpack `{ term, vote, commit }`) |
 * | `L` `s`                      | snapshot metadata (msgpack `SnapshotMeta`)    |
 * | `L` `c`                      | highest compacted index (u64 BE)              |
 *
 * Every `append` is written as ONE LevelDB batch with `sync: true` that holds the new entries, the
 * deletion of a replaced (conflicting) suffix and the hard state — except an append that only moves
 * the commit index, which is written without its own fsync (see `PendingAppend.isSyncNeeded`).
 * Appends that arrive while a sync is in flight are group-committed: they wait, then all go into
 * the next batch together (synced if any of them needs it).
 */
import assert from 'node:assert/strict';
import { Packr } from 'msgpackr';
import type { Entry, HardState, PersistedState, SnapshotMeta, Storage } from './raft-api.js';
import { readUint64BE, wrapLevelError, writeUint64BE, type Database } from './database.js';
import { StorageErrorCode, storageError } from './errors.js';
import { asHardState, asSnapshotMeta } from './wal-format.js';

const PREFIX = 0x4c; // 'L'
const TAG_ENTRY = 0x65; // 'e'
const KEY_HARD_STATE = Buffer.from([PREFIX, 0x68]); // 'L' 'h'
const KEY_SNAPSHOT = Buffer.from([PREFIX, 0x73]); // 'L' 's'
const KEY_COMPACTED = Buffer.from([PREFIX, 0x63]); // 'L' 'c'
const ENTRY_HEADER_BYTES = 9;

const packr = new Packr({ useRecords: false, moreTypes: false });

/** The key of the entry at `index`. */
function entryKey(index: number): Buffer {
  const key = Buffer.allocUnsafe(10);
  key[0] = PREFIX;
  key[1] = TAG_ENTRY;
  writeUint64BE(key, 2, index);
  return key;
}

function encodeEntry(entry: Entry): Buffer {
  // One copy of the command into the value; LevelDB copies it again into its write batch.
  const value = Buffer.allocUnsafe(ENTRY_HEADER_BYTES + entry.data.length);
  value[0] = entry.type;
  writeUint64BE(value, 1, entry.term);
  value.set(entry.data, ENTRY_HEADER_BYTES);
  return value;
}

function decodeEntry(key: Buffer, value: Buffer): Entry {
  if (key.length !== 10 || value.length < ENTRY_HEADER_BYTES) {
    throw storageError(StorageErrorCode.StorageCorrupt, `malformed log entry record (key ${key.toString('hex')})`);
  }
  return {
    index: readUint64BE(key, 2),
    term: readUint64BE(value, 1),
    type: value[0] as Entry['type'],
    // A view: the loaded value buffer is owned by this entry alone.
    data: value.subarray(ENTRY_HEADER_BYTES),
  };
}

type BatchOperation = { type: 'put'; key: Buffer; value: Buffer } | { type: 'del'; key: Buffer };

interface PendingAppend {
  /** Position of this append in the order of `append` calls (1, 2, ...). */
  readonly sequence: number;
  readonly operations: BatchOperation[];
  readonly entryCount: number;
  readonly bytes: number;
  /**
   * False for a hard state that only moved the commit index: Raft does not need the commit index
   * durable (a restarted node relearns it from the leader, and the applied index is kept by the
   * state machine), so such a write is not fsynced on its own; it becomes durable with the next
   * synced batch, since LevelDB writes one ordered log. etcd's MustSync draws the same line.
   */
  readonly isSyncNeeded: boolean;
  resolve(): void;
  reject(error: Error): void;
}

/** Observes the synced writes, for the fsync histogram of the metrics. */
export interface RaftLogStoreObserver {
  /** Called after each synced batch: how long it took, and how many entries and bytes it held. */
  onSync?(durationMs: number, entries: number, bytes: number): void;
}

/** Options of `RaftLogStore`. */
export interface RaftLogStoreOptions {
  /** Close the database in `close()` (true when the store opened it alone, e.g. in tests). Default false. */
  isDatabaseOwned?: boolean;
  /** Most appends waiting behind the one being synced; more are refused with `DAEMON_STORAGE_BUSY`. Default 4096. */
  queuedAppendsMax?: number;
  /** A group-committed batch stops taking queued appends beyond this many bytes (the rest waits). Default 16 MiB. */
  groupBytesMax?: number;
  observer?: RaftLogStoreObserver;
}

/**
 * The daemon's Raft `Storage` on LevelDB. Construct it on an open database, call `load()` once,
 * then `append` / `applySnapshot` / `compact`. A failed write (fsync error, disk full) is fatal for
 * the store: that call and every later one reject with `DAEMON_STORAGE_FAILED`, because the state
 * of a log whose fsync failed is unknown and must not be trusted.
 */
export class RaftLogStore implements Storage {
  private readonly db: Database;
  private readonly isDatabaseOwned: boolean;
  private readonly queuedAppendsMax: number;
  private readonly groupBytesMax: number;
  private readonly observer: RaftLogStoreObserver | undefined;
  private readonly queue: PendingAppend[] = [];
  private isWriting = false;
  private appendsIssued = 0;
  private appendsSynced = 0;
  private readonly syncWaiters: { sequence: number; resolve(): void; reject(error: Error): void }[] = [];
  private drained: Promise<void> = Promise.resolve();
  private failure: Error | null = null;
  private isClosed = false;
  private isLoaded = false;
  /** The index of the last stored entry (or of the snapshot when the log is empty), as of the queued writes. */
  private lastIndex = 0;
  /** Term and vote of the last hard state queued: a change of either must be fsynced. */
  private lastTerm = 0;
  private lastVote: string | null = null;
  private snapshotIndex = 0;
  /** The highest index dropped by `compact` (the log may start after the snapshot's index). */
  private compactedIndex = 0;

  constructor(db: Database, options: RaftLogStoreOptions = {}) {
    this.db = db;
    this.isDatabaseOwned = options.isDatabaseOwned ?? false;
    this.queuedAppendsMax = options.queuedAppendsMax ?? 4096;
    this.groupBytesMax = options.groupBytesMax ?? 16 * 1024 * 1024;
    this.observer = options.observer;
  }

  /** Reads the hard state, the snapshot metadata and every entry after the snapshot. */
  async load(): Promise<PersistedState> {
    this.checkUsable();
    let hardState: HardState = { term: 0, vote: null, commit: 0 };
    let snapshot: SnapshotMeta | null = null;
    const entries: Entry[] = [];
    try {
      const [hardStateBytes, snapshotBytes, compactedBytes] = await this.db.getMany([
        KEY_HARD_STATE,
        KEY_SNAPSHOT,
        KEY_COMPACTED,
      ]);
      if (hardStateBytes !== undefined) hardState = decodeHardState(hardStateBytes);
      this.lastTerm = hardState.term;
      this.lastVote = hardState.vote;
      if (snapshotBytes !== undefined) snapshot = decodeSnapshotMeta(snapshotBytes);
      this.snapshotIndex = snapshot?.index ?? 0;
      this.compactedIndex = compactedBytes?.length === 8 ? readUint64BE(compactedBytes, 0) : 0;
      // Entries at or below the offset may survive an unsynced compaction (LevelDB deletes a range
      // in ascending batches, so what survives is a prefix of it); they are skipped here and
      // removed by the next compaction.
      const offset = this.offset();
      for await (const [key, value] of this.db.iterator({ gt: entryKey(offset), lt: entryKey(2 ** 53) })) {
        const entry = decodeEntry(key, value);
        const expectedIndex = offset + entries.length + 1;
        if (entry.index !== expectedIndex) {
          throw storageError(
            StorageErrorCode.StorageCorrupt,
            `the stored log has a gap: expected entry ${expectedIndex}, found ${entry.index}`,
          );
        }
        entries.push(entry);
      }
    } catch (error) {
      throw wrapLevelError(error, 'loading the Raft log');
    }
    this.lastIndex = this.offset() + entries.length;
    this.isLoaded = true;
    return { hardState, snapshot, entries };
  }

  /**
   * Durably appends `entries` and saves `hardState` in one synced batch (group-committed with the
   * appends queued meanwhile). Entries at or below the last stored index replace the stored suffix.
   */
  append(entries: readonly Entry[], hardState: HardState | null): Promise<void> {
    try {
      this.checkUsable();
      assert(this.isLoaded, 'load() is called before append()');
      if (this.queue.length >= this.queuedAppendsMax) {
        throw storageError(StorageErrorCode.StorageBusy, `${this.queue.length} appends are already waiting for a sync`);
      }
      if (entries.length > 0) {
        // Contract violations by the driver are assertions: the append is refused, nothing is written.
        const first = entries[0].index;
        assert(first > this.offset(), `append at ${first} is at or below the log's start ${this.offset()}`);
        assert(first <= this.lastIndex + 1, `append at ${first} leaves a gap after ${this.lastIndex}`);
        for (let i = 1; i < entries.length; i++)
          assert(entries[i].index === first + i, 'appended entries are contiguous');
      }
    } catch (error) {
      return Promise.reject(error as Error);
    }
    const operations: BatchOperation[] = [];
    let bytes = 0;
    if (entries.length > 0) {
      const first = entries[0].index;
      for (let i = 0; i < entries.length; i++) {
        const entry = entries[i];
        const value = encodeEntry(entry);
        bytes += value.length;
        operations.push({ type: 'put', key: entryKey(entry.index), value });
      }
      const newLastIndex = first + entries.length - 1;
      // A follower replacing a conflicting suffix: delete what lies beyond the new entries, in the
      // same synced batch, so no stale entry can reappear after a crash.
      for (let index = newLastIndex + 1; index <= this.lastIndex; index++) {
        operations.push({ type: 'del', key: entryKey(index) });
      }
      this.lastIndex = newLastIndex;
    }
    // Entries (and the deletion of a replaced suffix) and a new term or vote must be durable before
    // the messages that depend on them are sent; a commit-only change need not be.
    let isSyncNeeded = entries.length > 0;
    if (hardState !== null) {
      if (hardState.term !== this.lastTerm || hardState.vote !== this.lastVote) isSyncNeeded = true;
      this.lastTerm = hardState.term;
      this.lastVote = hardState.vote;
      const value = packr.pack({ term: hardState.term, vote: hardState.vote, commit: hardState.commit });
      bytes += value.length;
      operations.push({ type: 'put', key: KEY_HARD_STATE, value });
    }
    return new Promise<void>((resolve, reject) => {
      this.queue.push({
        sequence: ++this.appendsIssued,
        operations,
        entryCount: entries.length,
        bytes,
        isSyncNeeded,
        resolve,
        reject,
      });
      if (!this.isWriting) this.drained = this.drain();
    });
  }

  /**
   * Records `meta` as the latest snapshot and drops the log at or below `meta.index` (or all of it
   * unless `keepEntriesAfter`). The metadata and the deletions of the kept suffix's predecessors
   * are written in one synced batch after every queued append.
   */
  async applySnapshot(meta: SnapshotMeta, keepEntriesAfter: boolean): Promise<void> {
    this.checkUsable();
    assert(this.isLoaded, 'load() is called before applySnapshot()');
    await this.drained;
    this.checkUsable();
    const hasKeptSuffix = keepEntriesAfter && this.lastIndex > meta.index;
    const dropThrough = hasKeptSuffix ? meta.index : Math.max(this.lastIndex, meta.index);
    const snapshotValue = packr.pack({
      index: meta.index,
      term: meta.term,
      conf: {
        voters: [...meta.conf.voters],
        learners: [...meta.conf.learners],
        votersOutgoing: [...meta.conf.votersOutgoing],
        learnersNext: [...meta.conf.learnersNext],
      },
    });
    try {
      // The metadata goes first and synced: from then on load() ignores entries at or below it,
      // so the range deletion below may be partial after a crash without harm.
      await this.db.put(KEY_SNAPSHOT, snapshotValue, { sync: true });
      this.snapshotIndex = meta.index;
      if (!hasKeptSuffix) this.lastIndex = meta.index;
      await this.db.clear({ gte: entryKey(0), lte: entryKey(dropThrough) });
    } catch (error) {
      throw this.fail(wrapLevelError(error, 'applying a snapshot to the Raft log'));
    }
  }

  /**
   * Drops entries at or below `index` (clamped to the last stored entry); load() then returns the
   * log from `index + 1`. Not synced: a crash may leave some of them, and load() skips those.
   */
  async compact(index: number): Promise<void> {
    this.checkUsable();
    const through = Math.min(index, this.lastIndex);
    if (through <= this.offset()) return;
    this.checkUsable();
    this.compactedIndex = through;
    const value = Buffer.allocUnsafe(8);
    writeUint64BE(value, 0, through);
    try {
      // The marker is written before the deletions: LevelDB loses only a suffix of unsynced
      // writes in a crash, so surviving deletions imply a surviving marker.
      await this.db.put(KEY_COMPACTED, value);
      await this.db.clear({ gte: entryKey(0), lte: entryKey(through) });
    } catch (error) {
      throw wrapLevelError(error, 'compacting the Raft log');
    }
  }

  /** Waits for queued appends, then closes (and closes the database if it owns it). Idempotent. */
  async close(): Promise<void> {
    if (this.isClosed) return;
    this.isClosed = true;
    await this.drained;
    if (this.isDatabaseOwned) await this.db.close();
  }

  /** The number of the last entry appended (queued or durable) or of the snapshot. For tests and status. */
  get lastStoredIndex(): number {
    return this.lastIndex;
  }

  private async drain(): Promise<void> {
    this.isWriting = true;
    try {
      while (this.queue.length > 0) {
        // Take every queued append (the group), up to the byte limit but at least one.
        let count = 0;
        let bytes = 0;
        let entries = 0;
        while (count < this.queue.length && (count === 0 || bytes + this.queue[count].bytes <= this.groupBytesMax)) {
          bytes += this.queue[count].bytes;
          entries += this.queue[count].entryCount;
          count++;
        }
        const group = this.queue.splice(0, count);
        if (this.failure !== null) {
          for (const item of group) item.reject(this.failure);
          this.settleSyncWaiters();
          continue;
        }
        const operations = group.length === 1 ? group[0].operations : group.flatMap((item) => item.operations);
        const startedMs = performance.now();
        const isSynced = group.some((item) => item.isSyncNeeded);
        try {
          if (operations.length > 0) await this.db.batch(operations, { sync: isSynced });
        } catch (error) {
          this.fail(wrapLevelError(error, 'appending to the Raft log'));
          for (const item of group) item.reject(this.failure!);
          this.settleSyncWaiters();
          continue;
        }
        if (isSynced) this.observer?.onSync?.(performance.now() - startedMs, entries, bytes);
        for (const item of group) item.resolve();
        this.appendsSynced = group[group.length - 1].sequence;
        this.settleSyncWaiters();
      }
    } finally {
      this.isWriting = false;
    }
  }

  /** The index the stored log continues after: the snapshot's or the last compacted one. */
  private offset(): number {
    return Math.max(this.snapshotIndex, this.compactedIndex);
  }

  /** Resolves once every append issued before this call is synced; rejects if the store failed. */
  whenSynced(): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failure);
    const sequence = this.appendsIssued;
    if (this.appendsSynced >= sequence) return Promise.resolve();
    return new Promise((resolve, reject) => this.syncWaiters.push({ sequence, resolve, reject }));
  }

  private settleSyncWaiters(): void {
    // Waiters are in ascending sequence order (appendsIssued only grows).
    while (this.syncWaiters.length > 0) {
      const waiter = this.syncWaiters[0];
      if (this.failure !== null) waiter.reject(this.failure);
      else if (waiter.sequence <= this.appendsSynced) waiter.resolve();
      else return;
      this.syncWaiters.shift();
    }
  }

  private fail(error: Error): Error {
    // Keep the first failure: later ones are consequences.
    if (this.failure === null) this.failure = error;
    return this.failure;
  }

  private checkUsable(): void {
    if (this.failure !== null) throw this.failure;
    if (this.isClosed) throw storageError(StorageErrorCode.StorageClosed, 'the Raft log store is closed');
  }
}

function decodeRecord(bytes: Buffer, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = packr.unpack(bytes);
  } catch (error) {
    throw storageError(StorageErrorCode.StorageCorrupt, `the stored ${what} does not decode`, error);
  }
  if (typeof value !== 'object' || value === null) {
    throw storageError(StorageErrorCode.StorageCorrupt, `the stored ${what} is not a record`);
  }
  return value as Record<string, unknown>;
}

function decodeHardState(bytes: Buffer): HardState {
  const hardState = asHardState(decodeRecord(bytes, 'hard state'));
  if (hardState === null) throw storageError(StorageErrorCode.StorageCorrupt, 'the stored hard state has bad fields');
  return hardState;
}

function decodeSnapshotMeta(bytes: Buffer): SnapshotMeta {
  const meta = asSnapshotMeta(decodeRecord(bytes, 'snapshot metadata'));
  if (meta === null) throw storageError(StorageErrorCode.StorageCorrupt, 'the stored snapshot metadata has bad fields');
  return meta;
}
