/**
 * The Raft log, hard state and snapshot metadata in a dedicated write-ahead log of preallocated
 * segment files under `<data_dir>/wal/`: the daemon's `Storage` (see `@rdl/raft` api.ts for the
 * contract, `wal-format.ts` for the bytes, docs/storage.md for the argument).
 *
 * Why not LevelDB: every synced LevelDB write appends to a growing log file (each fdatasync then
 * also commits the file system's journal for the new size), LevelDB's compactions compete with the
 * synced appends, and the block state was written twice. Here segments are preallocated by writing
 * zeros (an extent that was never written would make fdatasync journal metadata again), so an
 * append is one `write` of its records and ONE `fdatasync` that flushes data blocks only.
 *
 * Group commit: appends that arrive while a write+sync is in flight queue (at most
 * `queuedAppendsMax`) and all go into the next write+sync together, as one buffer, written with
 * one `O_DSYNC` write (`WalFile.writeSynced`: one trip through libuv's thread pool instead of a
 * write and an fdatasync). An append that only moves the commit index needs no sync (etcd's
 * MustSync rule): it is not even written then, but held and written in front of the next synced
 * write (or at close), which makes it durable in order.
 *
 * Replay semantics: `load()` replays every record of the live segments in order; an entries
 * record replaces any stored entries from its first index on, so a follower's conflicting suffix
 * needs no deletion. The first invalid record of the LAST segment ends the log (a torn tail,
 * overwritten by the next append); an invalid record in an earlier segment is
 * `DAEMON_STORAGE_CORRUPT`.
 *
 * Rollover: the next segment is prepared in the background once the current one is half full:
 * by recycling a free segment when one is kept (below), else by zero-filling a new file.
 * Before the first record goes into the next segment, the current one gets an end marker and is
 * fdatasynced, so only the last segment can ever have a torn tail. Every segment starts with a
 * header record (hard state, snapshot metadata, compaction mark, first index), so once a
 * compaction or snapshot record is durable, the segments holding only entries at or below it are
 * deleted.
 *
 * Recycling: up to `recycledSegmentsMax` of those compacted segments are not deleted but renamed
 * `<seq>.wal.free` (durably, before anything overwrites them), and the next segment is made from
 * one: its first 4 bytes are zeroed (a scan then stops there, like in a zero-filled spare) and
 * synced, and it is renamed to the next segment's name. Its blocks are allocated and written, so
 * the log's fdatasyncs flush data only, as with a zero-filled file, without writing the segment
 * twice. The records of its previous life stay behind the write position; they never load because
 * the CRC chain of every segment is seeded with its own number (wal-format.ts), and a free file is
 * only ever recycled as a segment with a larger number than it had.
 *
 * Ordering with the state machine: the block store writes its apply batches to LevelDB without
 * sync, only once `whenSyncedThrough(lastIndex, lastTerm)` of the batch resolved, so its effects
 * never become durable before their entries. Compaction (`applySnapshot(meta, true)`,
 * `compact`) first calls the state barrier (`setStateBarrier`), which makes the state machine
 * durable through the compaction index; it waits for nothing queued after the compaction, so it
 * cannot deadlock with appends queued behind it.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Entry, HardState, PersistedState, SnapshotMeta, Storage } from './raft-api.js';
import { StorageErrorCode, storageError } from './errors.js';
import {
  ENTRIES_RECORD_BYTES_TARGET,
  LogReplay,
  RECORD_PREFIX_BYTES,
  RecordType,
  SEGMENT_HEADER_RESERVE_BYTES,
  decodeEntries,
  decodeHardState,
  decodeHeader,
  decodeIndex,
  decodeSnapshot,
  encodeEntriesParts,
  encodeHardState,
  encodeHeader,
  encodeIndex,
  encodeSnapshot,
  entryRecordBytes,
  freeSegmentName,
  freeSegmentSeqOf,
  recordBytes,
  recordPrefix,
  scanSegment,
  segmentName,
  segmentSeed,
  segmentSeqOf,
  type SegmentHeader,
} from './wal-format.js';
import { nodeWalFileSystem, type WalFile, type WalFileSystem } from './wal-io.js';

/** Default size of a segment file. */
export const WAL_SEGMENT_BYTES_DEFAULT = 64 * 1024 * 1024;
/** Smallest segment the store accepts (the daemon's configuration asks for more: see config.ts). */
export const WAL_SEGMENT_BYTES_MIN = 4 * SEGMENT_HEADER_RESERVE_BYTES;
/** Largest segment (positions stay far below 2^53 and one zero-filled file stays reasonable). */
export const WAL_SEGMENT_BYTES_MAX = 4 * 1024 * 1024 * 1024;

const ZERO_CHUNK = Buffer.alloc(1024 * 1024);
/** While a segment is zero-filled, it is fdatasynced after every this many bytes. */
const SPARE_SYNC_BYTES = 8 * ZERO_CHUNK.length;
const END_MARKER = Buffer.alloc(4);
const ENTRIES_PAYLOAD_OVERHEAD_BYTES = 12;
/** Commit-only records held back for the next synced write, at most (beyond it they are written unsynced). */
const DEFERRED_BYTES_MAX = 64 * 1024;

/** How a new segment file was made: written full of zeros, or recycled from a compacted segment. */
export type SegmentPreparation = 'zero-filled' | 'recycled';

/** Observes the synced writes and the segments made (tests, metrics). */
export interface WalObserver {
  /** Called after each synced write: how long write+sync took, and how many entries and payload bytes it held. */
  onSync?(durationMs: number, entries: number, bytes: number): void;
  /** Called once a new segment file is ready, with how it was made and the bytes of zeros written for it. */
  onSegmentPrepared?(how: SegmentPreparation, zeroBytes: number): void;
}

/** Default of `WalLogStoreOptions.recycledSegmentsMax`. */
export const WAL_RECYCLED_SEGMENTS_MAX_DEFAULT = 2;

/** Options of `WalLogStore`. */
export interface WalLogStoreOptions {
  /** Size of each segment file (preallocated with zeros). Default 64 MiB. */
  segmentBytes?: number;
  /** The file operations (tests substitute one that simulates power loss). Default: node:fs. */
  fileSystem?: WalFileSystem;
  /** Most appends waiting behind the one being synced; more are refused with `DAEMON_STORAGE_BUSY`. Default 4096. */
  queuedAppendsMax?: number;
  /** A group-committed write stops taking queued appends beyond this many payload bytes. Default 16 MiB. */
  groupBytesMax?: number;
  observer?: WalObserver;
  /**
   * Most compacted segments kept (as `<seq>.wal.free`) to be recycled as the next segments instead
   * of zero-filling new files; the others are deleted. 0 turns recycling off. Default 2.
   */
  recycledSegmentsMax?: number;
}

/** A record waiting to be written, with its effect on a replayed view of the log. */
interface PendingRecord {
  readonly type: RecordType;
  /** The payload, as parts written one after the other (entries records: see `encodeEntriesParts`). */
  readonly parts: readonly Uint8Array[];
  /** The payload's size in bytes. */
  readonly bytes: number;
  apply(view: LogReplay<number>): void;
}

interface QueuedWrite {
  /** Position in the order of writes issued (1, 2, ...). */
  readonly sequence: number;
  readonly records: PendingRecord[];
  readonly entryCount: number;
  readonly bytes: number;
  /** False for a hard state that only moved the commit index: it needs no fsync of its own. */
  readonly isSyncNeeded: boolean;
  /** A snapshot or compaction record: older segments may be deletable once it is durable. */
  readonly isCompaction: boolean;
  resolve(): void;
  reject(error: Error): void;
}

interface OpenSegment {
  readonly seq: number;
  readonly file: WalFile;
  readonly sizeBytes: number;
  /** Where the next record goes. */
  offset: number;
  /** The CRC chain value after the last record written. */
  crc: number;
  /** Bytes were written to this segment since its last sync (a synced write must then datasync). */
  hasUnsyncedBytes: boolean;
}

interface SyncWaiter {
  readonly index: number;
  readonly term: number;
  resolve(): void;
  reject(error: Error): void;
}

/**
 * The daemon's Raft `Storage` on a segmented write-ahead log in `directory`. Call `load()` once
 * (it creates the first segment in an empty directory), then `append` / `applySnapshot` /
 * `compact`. A failed write or sync is fatal for the store: that call and every later one reject
 * with `DAEMON_STORAGE_FAILED` (the daemon must restart and reload).
 */
export class WalLogStore implements Storage {
  readonly directory: string;
  private readonly fs: WalFileSystem;
  private readonly segmentBytes: number;
  private readonly queuedAppendsMax: number;
  private readonly groupBytesMax: number;
  private readonly observer: WalObserver | undefined;
  private readonly recycledSegmentsMax: number;
  /** Compacted segment files kept for recycling (by their old number), oldest first; at most `recycledSegmentsMax`. */
  private free: { seq: number; sizeBytes: number }[] = [];
  /** How many segment files this store made, by how (for tests and status). */
  private readonly prepared = { zeroFilled: 0, recycled: 0 };
  private isLoaded = false;
  private isClosed = false;
  private failure: Error | null = null;
  /** The log as the calls issued so far leave it (for argument checks). */
  private issuedLastIndex = 0;
  private issuedOffset = 0;
  private lastTerm = 0;
  private lastVote: string | null = null;
  /** The log as the records written to the files so far leave it (segment headers describe it). */
  private written = new LogReplay<number>();
  /** The log as the records durable on disk leave it (terms per index: `whenSyncedThrough`). */
  private durable = new LogReplay<number>();
  /** The live segments, oldest first, with the first index each header names. */
  private segments: { seq: number; firstIndex: number; sizeBytes: number }[] = [];
  private current: OpenSegment | null = null;
  /** The next segment, being (or already) zero-filled; `ready` never rejects unobserved. */
  private spare: { seq: number; sizeBytes: number; ready: Promise<void> } | null = null;
  private readonly queue: QueuedWrite[] = [];
  private isWriting = false;
  private drained: Promise<void> = Promise.resolve();
  private writesIssued = 0;
  private waiters: SyncWaiter[] = [];
  /**
   * Commit-only hard state records not written yet: they go to disk in front of the next synced
   * write (or at close), which makes them durable in order. Raft needs no more of the commit index.
   */
  private deferred: PendingRecord[] = [];
  private deferredBytes = 0;
  private stateBarrier: ((index: number) => Promise<void>) | null = null;

  constructor(directory: string, options: WalLogStoreOptions = {}) {
    this.directory = directory;
    this.fs = options.fileSystem ?? nodeWalFileSystem;
    this.segmentBytes = options.segmentBytes ?? WAL_SEGMENT_BYTES_DEFAULT;
    assert(
      Number.isSafeInteger(this.segmentBytes) &&
        this.segmentBytes >= WAL_SEGMENT_BYTES_MIN &&
        this.segmentBytes <= WAL_SEGMENT_BYTES_MAX,
      `segmentBytes within [${WAL_SEGMENT_BYTES_MIN}, ${WAL_SEGMENT_BYTES_MAX}]`,
    );
    this.queuedAppendsMax = options.queuedAppendsMax ?? 4096;
    this.groupBytesMax = options.groupBytesMax ?? 16 * 1024 * 1024;
    this.observer = options.observer;
    this.recycledSegmentsMax = options.recycledSegmentsMax ?? WAL_RECYCLED_SEGMENTS_MAX_DEFAULT;
    assert(
      Number.isSafeInteger(this.recycledSegmentsMax) && this.recycledSegmentsMax >= 0 && this.recycledSegmentsMax <= 16,
      'recycledSegmentsMax within [0, 16]',
    );
  }

  /**
   * Sets what compaction waits for before dropping entries: a function that makes the state
   * machine durable through `index` (the block store's `whenDurableThrough`). It must not wait for
   * log appends issued after the compaction. Without one, compaction waits for nothing.
   */
  setStateBarrier(barrier: (index: number) => Promise<void>): void {
    this.stateBarrier = barrier;
  }

  /** The largest entry (data bytes) an append accepts: one entries record must fit in a segment. */
  get entryBytesMax(): number {
    return this.segmentBytes - SEGMENT_HEADER_RESERVE_BYTES - recordBytes(ENTRIES_PAYLOAD_OVERHEAD_BYTES) - 13;
  }

  /**
   * Reads the live segments and returns the persisted state. In an empty directory, creates the
   * first segment. Rejects with `DAEMON_STORAGE_CORRUPT` when a segment other than the last has an
   * invalid record, or the log has a gap; `DAEMON_STORAGE_FAILED` when the files cannot be read.
   * May be called again (nothing may be in flight): it reloads from disk.
   */
  async load(): Promise<PersistedState> {
    this.checkUsable();
    await this.drained;
    await this.flushDeferred();
    await this.releaseFiles();
    this.segments = [];
    try {
      return await this.loadFromDisk();
    } catch (error) {
      throw wrapIoError(error, 'loading the Raft WAL');
    }
  }

  /**
   * Appends `entries` and saves `hardState` in one write and one fdatasync (group-committed with the
   * appends queued meanwhile). Entries at or below the last index replace the stored suffix.
   * Rejects with `DAEMON_WAL_RECORD_TOO_LARGE` for an entry that cannot fit in a segment and
   * `DAEMON_STORAGE_BUSY` when too many appends are queued (nothing is written then).
   */
  append(entries: readonly Entry[], hardState: HardState | null): Promise<void> {
    const records: PendingRecord[] = [];
    let bytes = 0;
    let isSyncNeeded = entries.length > 0;
    try {
      this.checkUsable();
      assert(this.isLoaded, 'load() is called before append()');
      if (this.queue.length >= this.queuedAppendsMax) {
        throw storageError(StorageErrorCode.StorageBusy, `${this.queue.length} appends are already waiting for a sync`);
      }
      if (entries.length > 0) {
        // Contract violations by the driver are assertions: the append is refused, nothing is written.
        const first = entries[0].index;
        assert(first > this.issuedOffset, `append at ${first} is at or below the log's start ${this.issuedOffset}`);
        assert(first <= this.issuedLastIndex + 1, `append at ${first} leaves a gap after ${this.issuedLastIndex}`);
        for (let i = 1; i < entries.length; i++) {
          assert(entries[i].index === first + i, 'appended entries are contiguous');
        }
        for (const entry of entries) {
          if (entry.data.length > this.entryBytesMax) {
            throw storageError(
              StorageErrorCode.WalRecordTooLarge,
              `entry ${entry.index} of ${entry.data.length} bytes does not fit in a WAL segment of ${this.segmentBytes} bytes (at most ${this.entryBytesMax})`,
            );
          }
        }
        // Cut into records of about ENTRIES_RECORD_BYTES_TARGET, so a segment's unused end stays small.
        let start = 0;
        let chunkBytes = 0;
        for (let i = 0; i <= entries.length; i++) {
          const size = i < entries.length ? entryRecordBytes(entries[i]) : 0;
          if (i === entries.length || (i > start && chunkBytes + size > ENTRIES_RECORD_BYTES_TARGET)) {
            const chunk = entries.slice(start, i);
            const chunkFirst = chunk[0].index;
            const terms = chunk.map((entry) => entry.term);
            const { parts, bytes: payloadBytes } = encodeEntriesParts(chunk);
            bytes += payloadBytes;
            records.push({
              type: RecordType.Entries,
              parts,
              bytes: payloadBytes,
              apply: (view) => view.append(chunkFirst, terms),
            });
            start = i;
            chunkBytes = 0;
          }
          chunkBytes += size;
        }
      }
    } catch (error) {
      return Promise.reject(error as Error);
    }
    if (entries.length > 0) this.issuedLastIndex = entries[entries.length - 1].index;
    if (hardState !== null) {
      // A new term or vote must be durable before the messages that depend on it; a commit need not.
      if (hardState.term !== this.lastTerm || hardState.vote !== this.lastVote) isSyncNeeded = true;
      this.lastTerm = hardState.term;
      this.lastVote = hardState.vote;
      const saved: HardState = { term: hardState.term, vote: hardState.vote, commit: hardState.commit };
      const payload = encodeHardState(saved);
      bytes += payload.length;
      records.push({
        type: RecordType.HardState,
        parts: [payload],
        bytes: payload.length,
        apply: (view) => {
          view.hardState = saved;
        },
      });
    }
    return this.enqueue(records, entries.length, bytes, isSyncNeeded, false);
  }

  /**
   * Records `meta` as the snapshot the log starts after and drops the entries at or below it (all
   * of them unless `keepEntriesAfter`), as one synced record after every queued append. With
   * `keepEntriesAfter` (log compaction), first makes the state machine durable through
   * `meta.index` (the state barrier). Segments left holding only dropped entries are deleted.
   */
  async applySnapshot(meta: SnapshotMeta, keepEntriesAfter: boolean): Promise<void> {
    this.checkUsable();
    assert(this.isLoaded, 'load() is called before applySnapshot()');
    if (keepEntriesAfter && this.stateBarrier !== null) await this.stateBarrier(meta.index);
    this.checkUsable();
    if (!(keepEntriesAfter && this.issuedLastIndex > meta.index)) this.issuedLastIndex = meta.index;
    this.issuedOffset = Math.max(this.issuedOffset, meta.index);
    const payload = encodeSnapshot(meta, keepEntriesAfter);
    const record: PendingRecord = {
      type: RecordType.Snapshot,
      parts: [payload],
      bytes: payload.length,
      apply: (view) => view.applySnapshot(meta, keepEntriesAfter),
    };
    await this.enqueue([record], 0, payload.length, true, true);
  }

  /**
   * Drops entries at or below `index` (clamped to the last entry) after making the state machine
   * durable through it; load() then returns the log from `index + 1`. Written as one synced record.
   */
  async compact(index: number): Promise<void> {
    this.checkUsable();
    assert(this.isLoaded, 'load() is called before compact()');
    const through = Math.min(index, this.issuedLastIndex);
    if (through <= this.issuedOffset) return;
    if (this.stateBarrier !== null) await this.stateBarrier(through);
    this.checkUsable();
    this.issuedOffset = Math.max(this.issuedOffset, through);
    const payload = encodeIndex(through);
    const record: PendingRecord = {
      type: RecordType.Compaction,
      parts: [payload],
      bytes: payload.length,
      apply: (view) => view.compact(through),
    };
    await this.enqueue([record], 0, payload.length, true, true);
  }

  /**
   * Resolves once the log durable on disk holds entry `index` with term `term` (and so, by Raft's
   * log matching, every entry before it as this node's log has them), or a durable snapshot or
   * compaction covers `index`. Rejects with the store's failure, or `DAEMON_STORAGE_CLOSED` when
   * the store closes first. The block store waits on it before writing an apply batch.
   */
  whenSyncedThrough(index: number, term: number): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.isSyncedThrough(index, term)) return Promise.resolve();
    if (this.isClosed) return Promise.reject(closedError());
    return new Promise((resolve, reject) => this.waiters.push({ index, term, resolve, reject }));
  }

  /** Waits for queued writes, then closes the files. Pending `whenSyncedThrough` waiters reject. Idempotent. */
  async close(): Promise<void> {
    if (this.isClosed) return;
    this.isClosed = true;
    await this.drained;
    await this.flushDeferred().catch(() => undefined);
    await this.releaseFiles().catch(() => undefined);
    const waiters = this.waiters;
    this.waiters = [];
    const error = this.failure ?? closedError();
    for (const waiter of waiters) waiter.reject(error);
  }

  /** The last index appended (queued or durable) or of the snapshot. For tests and status. */
  get lastStoredIndex(): number {
    return this.issuedLastIndex;
  }

  /** The numbers of the live segment files, oldest first. For tests and status. */
  get segmentSeqs(): number[] {
    return this.segments.map((segment) => segment.seq);
  }

  /** The old numbers of the compacted segment files kept for recycling, oldest first. For tests and status. */
  get freeSegmentSeqs(): number[] {
    return this.free.map((segment) => segment.seq);
  }

  /** How many segment files this store made since it was constructed, zero-filled and recycled. For tests and status. */
  get segmentsPrepared(): { zeroFilled: number; recycled: number } {
    return { ...this.prepared };
  }

  // ---- Loading -----------------------------------------------------------------------------------

  private async loadFromDisk(): Promise<PersistedState> {
    await this.fs.makeDirectory(this.directory);
    const names = await this.fs.list(this.directory);
    for (const name of names) if (name.endsWith('.tmp')) await this.fs.remove(join(this.directory, name));
    const freeSeqs = names
      .map(freeSegmentSeqOf)
      .filter((seq): seq is number => seq !== null)
      .sort((a, b) => a - b);
    const seqs = names
      .map(segmentSeqOf)
      .filter((seq): seq is number => seq !== null)
      .sort((a, b) => a - b);
    // Segments are deleted oldest first, so a run broken by a gap is the leftover of an
    // interrupted deletion: the newest contiguous run is the log.
    let runStart = seqs.length - 1;
    while (runStart > 0 && seqs[runStart - 1] === seqs[runStart] - 1) runStart--;
    for (const seq of seqs.slice(0, Math.max(0, runStart))) await this.fs.remove(this.segmentPath(seq));
    const run = seqs.slice(Math.max(0, runStart));

    const replay = new LogReplay<Entry>();
    const segments: { seq: number; firstIndex: number; sizeBytes: number }[] = [];
    let last: { seq: number; sizeBytes: number; endOffset: number; endCrc: number } | null = null;
    let damagedSeq: number | null = null;
    const unused: { seq: number; sizeBytes: number; isZeroStart: boolean }[] = [];
    for (const seq of run) {
      const bytes = await this.fs.read(this.segmentPath(seq));
      const scan = scanSegment(bytes, seq);
      const header = headerOf(scan.records, seq);
      if (header === null) {
        unused.push({ seq, sizeBytes: bytes.length, isZeroStart: bytes.length >= 4 && bytes.readUInt32LE(0) === 0 });
        continue;
      }
      if (unused.length > 0) {
        throw corrupt(`segment ${segmentName(unused[0].seq)} has no valid header but a later one has`);
      }
      if (damagedSeq !== null) {
        throw corrupt(`segment ${segmentName(damagedSeq)} has an invalid record and is not the last one`);
      }
      if (segments.length === 0) replay.start(header);
      for (let i = 1; i < scan.records.length; i++) replayRecord(replay, scan.records[i].type, scan.records[i].payload);
      segments.push({ seq, firstIndex: header.firstIndex, sizeBytes: bytes.length });
      if (scan.stop === 'invalid') damagedSeq = seq;
      last = { seq, sizeBytes: bytes.length, endOffset: scan.endOffset, endCrc: scan.endCrc };
    }
    if (last === null) {
      // No segment ever got its header durable: the first start-up stopped before finishing.
      for (const { seq } of unused) await this.fs.remove(this.segmentPath(seq));
      // A new log: free files of an older one could have any number, so none is recycled.
      for (const seq of freeSeqs) await this.fs.remove(this.freePath(seq));
      this.free = [];
      await this.initialize();
      return { hardState: { term: 0, vote: null, commit: 0 }, snapshot: null, entries: [] };
    }
    // Prepared next segments: keep the one that follows, zero-filled and of the right size.
    for (const candidate of unused) {
      const isSpare =
        candidate.seq === last.seq + 1 && candidate.isZeroStart && candidate.sizeBytes === this.segmentBytes;
      if (isSpare) {
        this.spare = { seq: candidate.seq, sizeBytes: candidate.sizeBytes, ready: Promise.resolve() };
      } else {
        await this.fs.remove(this.segmentPath(candidate.seq));
      }
    }
    // Free segments: recycled only as a larger number than they had, and only so many are kept.
    this.free = [];
    for (const seq of freeSeqs) {
      const path = this.freePath(seq);
      const sizeBytes = await this.fs.sizeOf(path);
      const isKept =
        seq < segments[0].seq && sizeBytes === this.segmentBytes && this.free.length < this.recycledSegmentsMax;
      if (isKept) this.free.push({ seq, sizeBytes });
      else await this.fs.remove(path);
    }
    const entries = replay.finish();
    this.segments = segments;
    this.setViews(replay.hardState, replay.snapshot, replay.compactedIndex, replay.base, entries);
    this.current = {
      seq: last.seq,
      file: await this.fs.openExisting(this.segmentPath(last.seq)),
      sizeBytes: last.sizeBytes,
      offset: last.endOffset,
      crc: last.endCrc,
      hasUnsyncedBytes: false,
    };
    this.isLoaded = true;
    return { hardState: replay.hardState, snapshot: replay.snapshot, entries };
  }

  /** Creates segment 1 with an empty state's header, durably. */
  private async initialize(): Promise<void> {
    await this.prepareSegment(1, this.segmentBytes);
    // The directory entry of wal/ itself, in the data directory.
    await this.fs.syncDirectory(join(this.directory, '..'));
    this.setViews({ term: 0, vote: null, commit: 0 }, null, 0, 1, []);
    const file = await this.fs.openExisting(this.segmentPath(1));
    this.current = {
      seq: 1,
      file,
      sizeBytes: this.segmentBytes,
      offset: 0,
      crc: segmentSeed(1),
      hasUnsyncedBytes: false,
    };
    this.segments = [{ seq: 1, firstIndex: 1, sizeBytes: this.segmentBytes }];
    const header = encodeHeader(this.written.header(1));
    const parts: Uint8Array[] = [];
    this.frame(RecordType.SegmentHeader, [header], header.length, parts);
    await file.write(parts, 0);
    await file.datasync();
    this.isLoaded = true;
  }

  private setViews(
    hardState: HardState,
    snapshot: SnapshotMeta | null,
    compactedIndex: number,
    base: number,
    entries: readonly Entry[],
  ): void {
    const view = (): LogReplay<number> => {
      const replay = new LogReplay<number>();
      replay.hardState = hardState;
      replay.snapshot = snapshot;
      replay.compactedIndex = compactedIndex;
      replay.base = base;
      replay.items = entries.map((entry) => entry.term);
      return replay;
    };
    this.written = view();
    this.durable = view();
    this.issuedLastIndex = this.durable.lastIndex;
    this.issuedOffset = this.durable.offset();
    this.lastTerm = hardState.term;
    this.lastVote = hardState.vote;
  }

  // ---- Writing -----------------------------------------------------------------------------------

  private enqueue(
    records: PendingRecord[],
    entryCount: number,
    bytes: number,
    isSyncNeeded: boolean,
    isCompaction: boolean,
  ): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({
        sequence: ++this.writesIssued,
        records,
        entryCount,
        bytes,
        isSyncNeeded,
        isCompaction,
        resolve,
        reject,
      });
      if (!this.isWriting) this.drained = this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.isWriting = true;
    try {
      while (this.queue.length > 0) {
        // Take every queued write (the group), up to the byte limit but at least one.
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
          continue;
        }
        let records = group.length === 1 ? group[0].records : group.flatMap((item) => item.records);
        const isSynced = group.some((item) => item.isSyncNeeded);
        if (!isSynced && this.deferredBytes + bytes <= DEFERRED_BYTES_MAX) {
          // Commit-only: no IO now; written (and synced) in front of the next synced write.
          for (const record of records) this.deferred.push(record);
          this.deferredBytes += bytes;
          for (const item of group) item.resolve();
          continue;
        }
        if (this.deferred.length > 0) {
          records = [...this.deferred, ...records];
          this.deferred = [];
          this.deferredBytes = 0;
        }
        const startedMs = performance.now();
        try {
          await this.writeRecords(records, isSynced);
        } catch (error) {
          this.fail(wrapIoError(error, 'appending to the Raft WAL'));
          for (const item of group) item.reject(this.failure!);
          continue;
        }
        if (isSynced) this.observer?.onSync?.(performance.now() - startedMs, entries, bytes);
        for (const record of records) record.apply(this.durable);
        this.settleWaiters();
        if (group.some((item) => item.isCompaction)) {
          try {
            await this.deleteCompactedSegments();
          } catch (error) {
            this.fail(wrapIoError(error, 'deleting compacted WAL segments'));
            for (const item of group) item.reject(this.failure!);
            continue;
          }
        }
        for (const item of group) item.resolve();
        this.maybePrepareSpare();
      }
    } finally {
      this.isWriting = false;
    }
  }

  /**
   * Frames a record at the current segment's end: appends its prefix and payload parts to `out`,
   * advancing offset and CRC.
   */
  private frame(type: RecordType, parts: readonly Uint8Array[], bytes: number, out: Uint8Array[]): void {
    const segment = this.current!;
    const { prefix, crc } = recordPrefix(type, parts, bytes, segment.crc);
    segment.crc = crc;
    segment.offset += RECORD_PREFIX_BYTES + 1 + bytes;
    out.push(prefix);
    for (const part of parts) out.push(part);
  }

  /**
   * Writes `records` in order (rolling over to new segments as needed), then fdatasyncs if
   * `isSynced`. The records' parts go to the file as they are, with one `pwritev` per segment
   * (entries' payloads are not copied into one buffer first: measured on two cores, the copy and
   * the page faults of the fresh buffer it needed were ~3-5% of the daemons' CPU at 64 writes in
   * flight).
   */
  private async writeRecords(records: readonly PendingRecord[], isSynced: boolean): Promise<void> {
    let parts: Uint8Array[] = [];
    let partStart = this.current!.offset;
    for (const record of records) {
      const segment = this.current!;
      if (segment.offset + recordBytes(record.bytes) > segment.sizeBytes) {
        // End marker: a scan of this segment stops here, even over bytes of an earlier torn tail.
        if (segment.offset + END_MARKER.length <= segment.sizeBytes) parts.push(END_MARKER);
        if (parts.length > 0) await segment.file.write(parts, partStart);
        // Synced before anything goes into the next segment: only the last one may have a torn tail.
        await segment.file.datasync();
        await this.rollover();
        parts = [];
        const header = encodeHeader(this.written.header(this.current!.seq));
        this.frame(RecordType.SegmentHeader, [header], header.length, parts);
        partStart = 0;
        assert(this.current!.offset <= SEGMENT_HEADER_RESERVE_BYTES, 'a segment header fits in its reserve');
      }
      this.frame(record.type, record.parts, record.bytes, parts);
      record.apply(this.written);
    }
    const segment = this.current!;
    if (isSynced && !segment.hasUnsyncedBytes && parts.length > 0) {
      // The common case: one O_DSYNC write, one trip through the thread pool.
      await segment.file.writeSynced(parts, partStart);
      return;
    }
    if (parts.length > 0) {
      await segment.file.write(parts, partStart);
      segment.hasUnsyncedBytes = true;
    }
    if (isSynced) {
      await segment.file.datasync();
      segment.hasUnsyncedBytes = false;
    }
  }

  /** Writes and syncs the deferred commit-only records (before a reload or close). */
  private async flushDeferred(): Promise<void> {
    if (this.deferred.length === 0 || this.failure !== null || this.current === null) return;
    const records = this.deferred;
    this.deferred = [];
    this.deferredBytes = 0;
    try {
      await this.writeRecords(records, true);
    } catch (error) {
      throw this.fail(wrapIoError(error, 'appending to the Raft WAL'));
    }
    for (const record of records) record.apply(this.durable);
  }

  /** Switches to the next segment (waiting for its preparation if it is not ready yet). */
  private async rollover(): Promise<void> {
    const previous = this.current!;
    const seq = previous.seq + 1;
    if (this.spare?.seq !== seq) this.startSpare(seq);
    const spare = this.spare!;
    await spare.ready;
    this.spare = null;
    const file = await this.fs.openExisting(this.segmentPath(seq));
    this.current = { seq, file, sizeBytes: spare.sizeBytes, offset: 0, crc: segmentSeed(seq), hasUnsyncedBytes: false };
    this.segments.push({ seq, firstIndex: this.written.lastIndex + 1, sizeBytes: spare.sizeBytes });
    await previous.file.close();
  }

  private maybePrepareSpare(): void {
    const segment = this.current;
    if (segment === null || this.spare !== null || this.isClosed) return;
    if (segment.offset * 2 >= segment.sizeBytes) this.startSpare(segment.seq + 1);
  }

  private startSpare(seq: number): void {
    const ready = this.prepareSegment(seq, this.segmentBytes);
    // Observed here so a failure is not unhandled; rollover awaits `ready` and sees it.
    ready.catch(() => undefined);
    this.spare = { seq, sizeBytes: this.segmentBytes, ready };
  }

  /**
   * Makes segment `seq`, durably named, its first record slot zeroed: from a free segment when one
   * is kept (the oldest: recycled), else a new file filled with zeros (written, not just allocated).
   */
  private async prepareSegment(seq: number, sizeBytes: number): Promise<void> {
    const path = this.segmentPath(seq);
    const recycled = this.free.findIndex((free) => free.seq < seq && free.sizeBytes === sizeBytes);
    if (recycled >= 0) {
      const [free] = this.free.splice(recycled, 1);
      const freePath = this.freePath(free.seq);
      const file = await this.fs.openExisting(freePath);
      try {
        // A scan of the new segment stops at once (as in a zero-filled one) until its header is written.
        await file.write([END_MARKER], 0);
        await file.datasync();
      } finally {
        await file.close();
      }
      await this.fs.rename(freePath, path);
      await this.fs.syncDirectory(this.directory);
      this.prepared.recycled++;
      this.observer?.onSegmentPrepared?.('recycled', 0);
      return;
    }
    const temporary = `${path}.tmp`;
    const file = await this.fs.create(temporary);
    try {
      for (let position = 0; position < sizeBytes; position += ZERO_CHUNK.length) {
        const length = Math.min(ZERO_CHUNK.length, sizeBytes - position);
        await file.write([length === ZERO_CHUNK.length ? ZERO_CHUNK : ZERO_CHUNK.subarray(0, length)], position);
        // Flushed every few MiB: one 64 MiB flush would queue the log's own synced writes behind it.
        if ((position + length) % SPARE_SYNC_BYTES === 0) await file.datasync();
      }
      await file.datasync();
    } finally {
      await file.close();
    }
    await this.fs.rename(temporary, path);
    await this.fs.syncDirectory(this.directory);
    this.prepared.zeroFilled++;
    this.observer?.onSegmentPrepared?.('zero-filled', sizeBytes);
  }

  /**
   * Deletes the oldest segments whose entries are all at or below the durable log's start, or
   * keeps them as free segments to recycle (up to `recycledSegmentsMax`, of the current size).
   */
  private async deleteCompactedSegments(): Promise<void> {
    const offset = this.durable.offset();
    let isRenamed = false;
    while (this.segments.length > 1 && this.segments[1].firstIndex - 1 <= offset) {
      // Oldest first: a crash part-way leaves a run with a gap before it, which load() discards.
      const oldest = this.segments[0];
      if (this.free.length < this.recycledSegmentsMax && oldest.sizeBytes === this.segmentBytes) {
        await this.fs.rename(this.segmentPath(oldest.seq), this.freePath(oldest.seq));
        this.free.push({ seq: oldest.seq, sizeBytes: oldest.sizeBytes });
        isRenamed = true;
      } else {
        await this.fs.remove(this.segmentPath(oldest.seq));
      }
      this.segments.shift();
    }
    // The new names must be durable before a free file is overwritten: after a crash, a segment
    // with its start zeroed must not come back under its old name, in the middle of the log.
    if (isRenamed) await this.fs.syncDirectory(this.directory);
  }

  private async releaseFiles(): Promise<void> {
    const spare = this.spare;
    this.spare = null;
    await spare?.ready.catch(() => undefined);
    const current = this.current;
    this.current = null;
    await current?.file.close();
  }

  // ---- Waiters, failures -------------------------------------------------------------------------

  private isSyncedThrough(index: number, term: number): boolean {
    return index <= this.durable.offset() || this.durable.at(index) === term;
  }

  private settleWaiters(): void {
    if (this.waiters.length === 0) return;
    const waiting: SyncWaiter[] = [];
    for (const waiter of this.waiters) {
      if (this.isSyncedThrough(waiter.index, waiter.term)) waiter.resolve();
      else waiting.push(waiter);
    }
    this.waiters = waiting;
  }

  private segmentPath(seq: number): string {
    return join(this.directory, segmentName(seq));
  }

  private freePath(seq: number): string {
    return join(this.directory, freeSegmentName(seq));
  }

  private fail(error: Error): Error {
    // Keep the first failure: later ones are consequences.
    if (this.failure === null) {
      this.failure = error;
      const waiters = this.waiters;
      this.waiters = [];
      for (const waiter of waiters) waiter.reject(error);
    }
    return this.failure;
  }

  private checkUsable(): void {
    if (this.failure !== null) throw this.failure;
    if (this.isClosed) throw closedError();
  }
}

function closedError(): Error {
  return storageError(StorageErrorCode.StorageClosed, 'the Raft WAL is closed');
}

function corrupt(message: string): Error {
  return storageError(StorageErrorCode.StorageCorrupt, `Raft WAL: ${message}`);
}

/** The header of a scanned segment, or null when its first record is not a valid header for `seq`. */
function headerOf(records: readonly { type: RecordType; payload: Buffer }[], seq: number): SegmentHeader | null {
  if (records.length === 0 || records[0].type !== RecordType.SegmentHeader) return null;
  const header = decodeHeader(records[0].payload);
  if (header.seq !== seq) throw corrupt(`segment ${segmentName(seq)} has the header of segment ${header.seq}`);
  return header;
}

function replayRecord(replay: LogReplay<Entry>, type: RecordType, payload: Buffer): void {
  switch (type) {
    case RecordType.Entries: {
      const { first, entries } = decodeEntries(payload);
      replay.append(first, entries);
      return;
    }
    case RecordType.HardState:
      replay.hardState = decodeHardState(payload);
      return;
    case RecordType.Snapshot: {
      const { meta, keepEntriesAfter } = decodeSnapshot(payload);
      replay.applySnapshot(meta, keepEntriesAfter);
      return;
    }
    case RecordType.Compaction:
      replay.compact(decodeIndex(payload));
      return;
    case RecordType.SegmentHeader:
      throw corrupt('a segment header in the middle of a segment');
  }
}

/** Coded errors pass through; file system failures become `DAEMON_STORAGE_FAILED`. */
function wrapIoError(error: unknown, what: string): Error {
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && code.startsWith('DAEMON_')) return error as Error;
  if (error instanceof assert.AssertionError) return error;
  return storageError(StorageErrorCode.StorageFailed, `${what}: ${(error as Error).message}`, error);
}
