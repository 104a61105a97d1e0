/**
 * An in-memory {@link Storage} on a simulated disk. A write becomes visible to the writer at once
 * but durable only when a sync completes; a crash throws away everything unsynced. The simulator
 * (or a test) can stall syncs and make the next sync fail, as a real disk's fsync can.
 *
 * Failures reject with the package's `RaftError`, code `RAFT_STORAGE_FAILED`. After a failed sync
 * the storage refuses every further call (as PostgreSQL learned the hard way,
 * nothing written since the last good fsync can be trusted): the node must crash and reopen.
 */
import type { Entry, HardState, PersistedState, SnapshotMeta, Storage } from '../api.js';
import { RaftError, RaftErrorCode } from '../errors.js';

/** The bytes of a disk: the Raft log, hard state and snapshot metadata. */
export interface DiskImage {
  hardState: HardState;
  snapshot: SnapshotMeta | null;
  entries: Entry[];
  /** The highest index dropped by compaction or a snapshot (the log continues after it). */
  compactedIndex: number;
}

const emptyHardState: HardState = { term: 0, vote: null, commit: 0 };

function cloneImage(image: DiskImage): DiskImage {
  // Entries are immutable once written, so sharing them between images is safe.
  return {
    hardState: image.hardState,
    snapshot: image.snapshot,
    entries: image.entries.slice(),
    compactedIndex: image.compactedIndex,
  };
}

/** Options of a {@link SimulatedDisk}. */
export interface SimulatedDiskOptions {
  /**
   * When true (default), a sync completes on its own on a later microtask unless the disk is
   * stalled. When false, syncs complete only when the owner calls {@link SimulatedDisk.completeSyncs}.
   */
  readonly isAutoSyncEnabled?: boolean;
}

/**
 * A disk that survives process crashes: `durable` is what a restarted process finds; `volatile`
 * is what the running process sees (durable plus unsynced writes).
 */
export class SimulatedDisk {
  durable: DiskImage = { hardState: emptyHardState, snapshot: null, entries: [], compactedIndex: 0 };
  volatile: DiskImage = cloneImage(this.durable);
  /** While true, syncs do not complete (auto mode waits; `completeSyncs` does nothing). */
  isStalled = false;
  /** How many upcoming syncs fail. */
  syncFailuresPending = 0;
  /** Counters for the fault tally. */
  readonly stats = { syncs: 0, syncFailures: 0, crashes: 0, unsyncedWritesLost: 0 };
  private readonly isAutoSyncEnabled: boolean;
  private waiters: { resolve: () => void; reject: (err: Error) => void }[] = [];
  private unsyncedWrites = 0;
  private isSyncScheduled = false;
  /** Bumped by a crash, so a storage opened before it is dead. */
  generation = 0;

  constructor(options: SimulatedDiskOptions = {}) {
    this.isAutoSyncEnabled = options.isAutoSyncEnabled ?? true;
  }

  /** Records a write to the volatile image; resolves once a sync made it durable. */
  write(mutate: (image: DiskImage) => void, isSyncNeeded: boolean): Promise<void> {
    mutate(this.volatile);
    this.unsyncedWrites++;
    if (!isSyncNeeded) return Promise.resolve();
    const promise = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    this.scheduleSync();
    return promise;
  }

  /** Whether writes are waiting for a sync. */
  get hasPendingSync(): boolean {
    return this.waiters.length > 0;
  }

  /** Completes (or fails) the pending sync now, unless stalled. Returns whether a sync ran. */
  completeSyncs(): boolean {
    if (this.isStalled || this.waiters.length === 0) return false;
    const waiters = this.waiters;
    this.waiters = [];
    this.stats.syncs++;
    if (this.syncFailuresPending > 0) {
      this.syncFailuresPending--;
      this.stats.syncFailures++;
      const err = new RaftError(RaftErrorCode.StorageFailed, 'simulated fsync failure');
      for (const waiter of waiters) waiter.reject(err);
      return true;
    }
    this.durable = cloneImage(this.volatile);
    this.unsyncedWrites = 0;
    for (const waiter of waiters) waiter.resolve();
    return true;
  }

  /** Ends a stall; in auto mode, pending syncs then complete. */
  resume(): void {
    this.isStalled = false;
    this.scheduleSync();
  }

  /**
   * The process died: unsynced writes are lost and pending syncs never complete (their promises
   * reject, so no caller mistakes them for durable).
   */
  crash(): void {
    this.stats.crashes++;
    if (this.unsyncedWrites > 0) this.stats.unsyncedWritesLost++;
    this.volatile = cloneImage(this.durable);
    this.unsyncedWrites = 0;
    this.generation++;
    const waiters = this.waiters;
    this.waiters = [];
    const err = new RaftError(RaftErrorCode.StorageFailed, 'simulated crash before the sync completed');
    for (const waiter of waiters) waiter.reject(err);
  }

  /** A clean shutdown: everything written is flushed (as a closed LevelDB would have it). */
  flush(): void {
    this.durable = cloneImage(this.volatile);
    this.unsyncedWrites = 0;
  }

  private scheduleSync(): void {
    if (!this.isAutoSyncEnabled || this.isSyncScheduled || this.isStalled) return;
    this.isSyncScheduled = true;
    queueMicrotask(() => {
      this.isSyncScheduled = false;
      this.completeSyncs();
    });
  }
}

/**
 * {@link Storage} over a {@link SimulatedDisk}. Open a new one on the same disk to "restart".
 * Asserts the contract's preconditions (contiguous appends, no gap after the log).
 */
export class MemoryStorage implements Storage {
  private isFailed = false;
  private isClosed = false;
  private readonly generation: number;

  constructor(readonly disk: SimulatedDisk = new SimulatedDisk()) {
    this.generation = disk.generation;
  }

  async load(): Promise<PersistedState> {
    this.check();
    const image = this.disk.volatile;
    return { hardState: image.hardState, snapshot: image.snapshot, entries: image.entries.slice() };
  }

  async append(entries: readonly Entry[], hardState: HardState | null): Promise<void> {
    this.check();
    if (entries.length > 0) {
      for (let i = 1; i < entries.length; i++) {
        if (entries[i].index !== entries[i - 1].index + 1) {
          throw new Error(`append: entries not contiguous at index ${entries[i].index}`);
        }
      }
      const image = this.disk.volatile;
      const first = entries[0].index;
      const offset = Math.max(image.snapshot?.index ?? 0, image.compactedIndex);
      const last = image.entries.length > 0 ? image.entries[image.entries.length - 1].index : offset;
      if (first > last + 1) {
        throw new Error(`append: entry ${first} would leave a gap after the last index ${last}`);
      }
      if (first <= offset) {
        throw new Error(`append: entry ${first} is at or below the snapshot index ${offset}`);
      }
    }
    const copies = entries.map((e) => ({ term: e.term, index: e.index, type: e.type, data: e.data.slice() }));
    return this.watch(
      this.disk.write((image) => {
        if (copies.length > 0) {
          const first = copies[0].index;
          const start = image.entries.length > 0 ? image.entries[0].index : first;
          image.entries.length = Math.max(0, first - start);
          image.entries.push(...copies);
        }
        if (hardState !== null) image.hardState = { ...hardState };
      }, true),
    );
  }

  async applySnapshot(meta: SnapshotMeta, keepEntriesAfter: boolean): Promise<void> {
    this.check();
    return this.watch(
      this.disk.write((image) => {
        image.snapshot = meta;
        image.entries = keepEntriesAfter ? image.entries.filter((e) => e.index > meta.index) : [];
        image.compactedIndex = meta.index;
      }, true),
    );
  }

  async compact(index: number): Promise<void> {
    this.check();
    return this.watch(
      this.disk.write((image) => {
        image.entries = image.entries.filter((e) => e.index > index);
        image.compactedIndex = Math.max(image.compactedIndex, index);
      }, false),
    );
  }

  async close(): Promise<void> {
    if (this.isClosed) return;
    this.isClosed = true;
    if (!this.isFailed && this.generation === this.disk.generation) this.disk.flush();
  }

  private check(): void {
    if (this.isClosed) throw new Error('storage used after close');
    if (this.generation !== this.disk.generation) {
      throw new RaftError(RaftErrorCode.StorageFailed, 'storage used after a simulated crash');
    }
    if (this.isFailed) throw new RaftError(RaftErrorCode.StorageFailed, 'storage used after a failed sync');
  }

  private async watch(promise: Promise<void>): Promise<void> {
    try {
      await promise;
    } catch (err) {
      this.isFailed = true;
      throw err;
    }
  }
}
