/**
 * The block state machine: the replicated application of rdl (volumes of 4 KiB blocks with client
 * sessions for exactly-once writes), on LevelDB. Implements `@rdl/raft`'s `StateMachine` (driven by
 * the Raft node) and `BlockStore` (read by the API service).
 *
 * Determinism: every decision depends only on the log (commands and their indexes) and on the
 * options below, which are part of the state machine's definition and must be equal on every
 * replica. Batch boundaries do not matter: the driver may hand the same entries to two replicas in
 * different batches, so expiry and eviction happen per entry, never per batch.
 *
 * Atomicity: each `apply(entries)` becomes ONE LevelDB batch holding every block, volume and
 * session change of the batch plus the new applied index. It is written with `sync: false`:
 * LevelDB replays its own log in order, so a crash loses at most a suffix of apply batches together
 * with their applied index, and the Raft log (the WAL, `wal-log-store.ts`), which still holds those
 * entries, re-applies them. The effects must never be durable before their entries: a batch is
 * written only once the WAL has synced its last entry (`LogSync.whenSyncedThrough`, with the term,
 * so a replaced suffix does not count). The leader may apply an entry that its followers made
 * committed before its own append of it has synced. Log compaction calls `whenDurableThrough`
 * first (waits for the batches up to the index, then a synced LevelDB write), so the state stands
 * in for the dropped entries. docs/storage.md argues this in full.
 *
 * Write-behind: `apply` resolves (and the Raft node acknowledges the commands, already committed
 * on a majority) once the batch's effects are in memory and its LevelDB write is queued, not once
 * the write lands (which waits for the WAL sync of the entries). Until a batch lands its
 * blocks stay in an in-memory overlay that reads and read-modify-writes consult first; batches are
 * written strictly in order, at most `PENDING_WRITES_MAX` queued (apply waits beyond that), and
 * snapshots, restores, close and garbage collection first wait for every queued batch. A failed
 * write fails the store as before (the daemon restarts and replays the log, which holds the
 * acknowledged commands).
 */
import assert from 'node:assert/strict';
import { DaemonError } from '../errors.js';
import {
  ApplyErrorCode,
  BLOCK_SIZE_BYTES,
  applyFailure,
  checkRange,
  decodeCommand,
  type ApplyResult,
  type BlockRead,
  type BlockStore,
  type Command,
  type DataCommand,
  type VolumeInfo,
} from './commands.js';
import {
  GENERATION_KEY,
  STATE_PREFIX,
  Tag,
  blockKey,
  blockNumberOf,
  blockRangeEnd,
  decodeMeta,
  decodeSession,
  decodeVolume,
  deletionKey,
  encodeRecord,
  generationEnd,
  generationPrefix,
  sessionKey,
  stateKey,
  volumeIdOfRelative,
  volumeKey,
  type MetaRecord,
  type SessionRecord,
  type VolumeRecord,
} from './block-keys.js';
import { BlockSnapshotReader, BlockSnapshotWriter } from './block-snapshot.js';
import { wrapLevelError, type Database } from './database.js';
import { StorageErrorCode, storageError } from './errors.js';
import {
  ENTRY_TYPE_NORMAL,
  type Entry,
  type SnapshotMeta,
  type SnapshotReader,
  type SnapshotWriter,
  type StateMachine,
} from './raft-api.js';

/** Most bytes one writeZeroes / trim / write command may cover (the block API's limit is lower). */
export const DATA_COMMAND_BYTES_MAX = 64 * 1024 * 1024;
/** Most bytes one `read` may return. */
export const READ_BYTES_MAX = 64 * 1024 * 1024;

/** Options of the block state machine. The first four define its behaviour: equal on every replica. */
export interface BlockStateMachineOptions {
  /** Per session, most seqs tracked above `ackedBelow`; `seq >= ackedBelow + window` is refused. Default 4096. */
  sessionWindowSeqs?: number;
  /** Most sessions kept; a new one evicts the least recently used. Default 1024. */
  sessionsMax?: number;
  /** A session idle for longer than this, in log time, is forgotten. Default 1 hour. */
  sessionIdleMsMax?: number;
  /** Most volumes. Default 4096. */
  volumesMax?: number;
  /** Close the database in `close()`. Default false. */
  isDatabaseOwned?: boolean;
  /**
   * The Raft log whose entries must be durable before their effects are written (the WAL store).
   * Without one (tests of the state machine alone) batches are written at once.
   */
  log?: LogSync;
}

/** What the block store needs of the Raft log: when an entry is durable. */
export interface LogSync {
  /** Resolves once entry `index` of `term` (and so the log before it) is durable; rejects if it never will be. */
  whenSyncedThrough(index: number, term: number): Promise<void>;
}

/** A key outside the state machine's prefixes, rewritten with `sync: true` to make earlier writes durable. */
const DURABLE_MARK_KEY = Buffer.from([0x44]); // 'D'

const ZERO_BLOCK = Buffer.alloc(BLOCK_SIZE_BYTES);
/**
 * What `readMany` returns for an unwritten whole block: shared by every such result, so never
 * written to (a separate buffer from `ZERO_BLOCK`, which is compared against, so that a caller
 * breaking the read-only contract cannot make written blocks look like zeros).
 */
const READ_ZERO_BLOCK = Buffer.alloc(BLOCK_SIZE_BYTES);

function isZero(bytes: Uint8Array): boolean {
  return ZERO_BLOCK.equals(bytes.length === BLOCK_SIZE_BYTES ? bytes : bytes.subarray(0, BLOCK_SIZE_BYTES));
}

/**
 * A fresh copy of bytes [offset, offset + length) of the volume, all inside the block `value`
 * (null or missing: an unwritten block, zeros).
 */
function sliceBlock(value: Uint8Array | null, offset: number, length: number): Buffer {
  const inBlock = offset % BLOCK_SIZE_BYTES;
  if (value === null) return Buffer.alloc(length);
  // Every stored block is whole; a short one would read as zeros past its end.
  const result = value.length >= inBlock + length ? Buffer.allocUnsafe(length) : Buffer.alloc(length);
  result.set(value.subarray(inBlock, inBlock + length));
  return result;
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function toInfo(volume: VolumeRecord): VolumeInfo {
  return {
    name: volume.name,
    sizeBytes: volume.sizeBytes,
    blockSizeBytes: volume.blockSizeBytes,
    createdAtMs: volume.createdAtMs,
  };
}

type BatchOperation = { type: 'put'; key: Buffer; value: Buffer } | { type: 'del'; key: Buffer };

/** Apply batches whose LevelDB write may be queued at once before `apply` waits for them. */
const PENDING_WRITES_MAX = 4;

/** A block applied but whose batch may not have landed in LevelDB yet. */
interface OverlayBlock {
  value: Buffer | null;
  /** The sequence number of the batch that wrote it: the entry goes once that batch lands. */
  batchSeq: number;
}

/** A session in memory: the seqs as a set. */
interface Session {
  floor: number;
  seqs: Set<number>;
  lastSeenMs: number;
  lastSeenIndex: number;
}

/** The changes one `apply` call gathers before writing them as one batch. */
class ApplyBatch {
  /** Block changes by `${volumeId}/${blockNumber}`: the new content, or null (reads as zeros: delete). */
  readonly blocks = new Map<string, { key: Buffer; value: Buffer | null }>();
  /** Volume record changes by name (null: deleted). */
  readonly volumes = new Map<string, VolumeRecord | null>();
  /** Session changes by id (null: forgotten). */
  readonly sessions = new Map<string, Session | null>();
  /** Volume ids deleted in this batch. */
  readonly deletedVolumeIds: number[] = [];
}

/** What `stats()` reports. */
export interface BlockStoreStats {
  appliedIndex: number;
  volumes: number;
  sessions: number;
  /** Deleted volumes whose blocks are still being removed. */
  volumeDeletionsPending: number;
  generation: number;
}

/**
 * The block state machine on LevelDB. Open it with `BlockStateMachine.open(db)`.
 * A failed LevelDB write is fatal: that call and every later one reject with `DAEMON_STORAGE_FAILED`
 * (the in-memory state may be ahead of the disk); the daemon must restart, and replays the log.
 */
export class BlockStateMachine implements StateMachine, BlockStore {
  private readonly db: Database;
  private readonly sessionWindowSeqs: number;
  private readonly sessionsMax: number;
  private readonly sessionIdleMsMax: number;
  private readonly volumesMax: number;
  private readonly isDatabaseOwned: boolean;
  private generation = 0;
  private meta: MetaRecord = { appliedIndex: 0, logTimeMs: 0, nextVolumeId: 1 };
  private readonly volumes = new Map<string, VolumeRecord>();
  /** Sessions in least-recently-used order (a touched session is moved to the end). */
  private readonly sessions = new Map<string, Session>();
  private readonly deletionsPending = new Set<number>();
  private garbageCollection: Promise<void> | null = null;
  private isApplying = false;
  private restore: BlockSnapshotWriter | null = null;
  private readonly readers = new Set<BlockSnapshotReader>();
  private failure: Error | null = null;
  private isClosed = false;
  /** Applied blocks by `${volumeId}/${blockNumber}` whose batch write is still queued. */
  private readonly overlay = new Map<string, OverlayBlock>();
  /** The last queued batch write (resolves when it landed or failed: never rejects). */
  private writing: Promise<void> = Promise.resolve();
  private writesPending = 0;
  private batchSeq = 0;
  private readonly log: LogSync | null;
  /** Queued batch writes, oldest first: the first entry index each holds and when it lands. */
  private readonly queuedWrites: { firstIndex: number; landed: Promise<void> }[] = [];

  private constructor(db: Database, options: BlockStateMachineOptions) {
    this.db = db;
    this.sessionWindowSeqs = options.sessionWindowSeqs ?? 4096;
    this.sessionsMax = options.sessionsMax ?? 1024;
    this.sessionIdleMsMax = options.sessionIdleMsMax ?? 60 * 60 * 1000;
    this.volumesMax = options.volumesMax ?? 4096;
    this.isDatabaseOwned = options.isDatabaseOwned ?? false;
    this.log = options.log ?? null;
    assert(this.sessionWindowSeqs >= 1 && this.sessionsMax >= 1 && this.volumesMax >= 1, 'limits are positive');
  }

  /**
   * Opens the state machine on `db`: loads the live generation (volumes, sessions, applied index),
   * removes what an interrupted snapshot restore left behind, and resumes removing the blocks of
   * deleted volumes.
   */
  static async open(db: Database, options: BlockStateMachineOptions = {}): Promise<BlockStateMachine> {
    const machine = new BlockStateMachine(db, options);
    try {
      const generationBytes = await db.get(GENERATION_KEY);
      machine.generation = generationBytes?.length === 4 ? generationBytes.readUInt32BE(0) : 0;
      // Any other generation is a restore that never committed (or an old one not yet cleared).
      await db.clear({ gte: Buffer.from([STATE_PREFIX]), lt: generationPrefix(machine.generation) });
      await db.clear({ gte: generationEnd(machine.generation), lt: Buffer.from([STATE_PREFIX + 1]) });
      await machine.loadGeneration();
    } catch (error) {
      throw wrapLevelError(error, 'opening the block store');
    }
    machine.startGarbageCollection();
    return machine;
  }

  // ---- StateMachine ----------------------------------------------------------------------------

  /** The index of the last applied entry (its batch write may still be queued: see write-behind). */
  async appliedIndex(): Promise<number> {
    return this.meta.appliedIndex;
  }

  /**
   * Applies `entries` (contiguous, starting right after the applied index) and writes all their
   * effects and the new applied index as one LevelDB batch. Returns one result per entry:
   * `ApplyResult` for a command, undefined for a no-op or a configuration change.
   */
  async apply(entries: readonly Entry[]): Promise<unknown[]> {
    this.checkUsable();
    if (entries.length === 0) return [];
    assert(!this.isApplying, 'apply calls do not overlap');
    assert(
      entries[0].index === this.meta.appliedIndex + 1,
      `apply starts at ${entries[0].index}, right after the applied index ${this.meta.appliedIndex}`,
    );
    this.isApplying = true;
    try {
      // Bounded write-behind: memory held by the overlay stays within a few apply batches.
      if (this.writesPending >= PENDING_WRITES_MAX) await this.whenWritten();
      const batch = new ApplyBatch();
      const results: unknown[] = [];
      for (let i = 0; i < entries.length; i++) {
        const entry = entries[i];
        assert(entry.index === entries[0].index + i, 'applied entries are contiguous');
        if (entry.type !== ENTRY_TYPE_NORMAL || entry.data.length === 0) {
          results.push(undefined);
          continue;
        }
        // Most commands apply without IO (whole blocks, or partial ones this batch or the overlay
        // holds): no promise, no await for them.
        const result = this.applyEntry(entry, batch);
        results.push(result instanceof Promise ? await result : result);
      }
      const appliedIndex = entries[entries.length - 1].index;
      this.queueWrite(batch, entries[0].index, appliedIndex, entries[entries.length - 1].term);
      this.meta.appliedIndex = appliedIndex;
      return results;
    } finally {
      this.isApplying = false;
    }
  }

  /**
   * Opens a consistent snapshot (a LevelDB snapshot) of the state at `meta.index`, which must be
   * the applied index (else `DAEMON_SNAPSHOT_MISMATCH`). Read it chunk by chunk; close it after.
   */
  async openSnapshot(meta: SnapshotMeta): Promise<SnapshotReader> {
    this.checkUsable();
    await this.whenWritten();
    const reader = await BlockSnapshotReader.open(this.db, this.generation, meta, () => this.readers.delete(reader));
    this.readers.add(reader);
    return reader;
  }

  /**
   * Starts receiving a snapshot into the next generation, beside the live state. `commit()`
   * switches to it in one synced batch; a crash before that leaves the old state (the partial
   * generation is removed at the next open). A restore already in progress is aborted.
   */
  async beginRestore(meta: SnapshotMeta): Promise<SnapshotWriter> {
    this.checkUsable();
    await this.whenWritten();
    if (this.restore !== null) await this.restore.abort();
    assert(this.generation < 0xffff_fffe, 'generations left');
    const writer = new BlockSnapshotWriter(this.db, this.generation + 1, meta, {
      commit: (generation) => this.switchGeneration(generation),
      release: (done) => {
        if (this.restore === done) this.restore = null;
      },
    });
    this.restore = writer;
    try {
      await writer.prepare();
    } catch (error) {
      this.restore = null;
      throw error;
    }
    return writer;
  }

  // ---- BlockStore --------------------------------------------------------------------------------

  /** The volume named `name`, or null. */
  getVolume(name: string): VolumeInfo | null {
    const volume = this.volumes.get(name);
    return volume === undefined ? null : toInfo(volume);
  }

  /** Every volume, sorted by name. */
  listVolumes(): VolumeInfo[] {
    return [...this.volumes.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)).map(toInfo);
  }

  /**
   * Reads `length` bytes at `offset` of `volumeName`; unwritten blocks read as zeros. Rejects with
   * `VOLUME_NOT_FOUND`, `OUT_OF_RANGE` or `INVALID_ARGUMENT` (as `DaemonError`s).
   */
  async read(volumeName: string, offset: number, length: number): Promise<Uint8Array> {
    this.checkUsable();
    const volume = this.checkRead(volumeName, offset, length);
    if (volume instanceof DaemonError) throw volume;
    const result = Buffer.alloc(length);
    if (length === 0) return result;
    const firstBlock = Math.floor(offset / BLOCK_SIZE_BYTES);
    const lastBlock = Math.floor((offset + length - 1) / BLOCK_SIZE_BYTES);
    const end = offset + length;
    const copy = (blockNumber: number, value: Buffer): void => {
      const blockStart = blockNumber * BLOCK_SIZE_BYTES;
      const from = Math.max(offset, blockStart);
      const to = Math.min(end, blockStart + BLOCK_SIZE_BYTES);
      value.copy(result, from - offset, from - blockStart, to - blockStart);
    };
    const generation = this.generation;
    // Blocks applied but not yet written: taken now, before any await, and laid over what LevelDB
    // returns (an overlay entry leaves only once its batch landed, so LevelDB then has it).
    let pending: [number, Buffer | null][] | null = null;
    if (this.overlay.size > 0) {
      for (let blockNumber = firstBlock; blockNumber <= lastBlock; blockNumber++) {
        const block = this.overlay.get(`${volume.id}/${blockNumber}`);
        if (block !== undefined) (pending ??= []).push([blockNumber, block.value]);
      }
    }
    if (pending !== null && firstBlock === lastBlock) {
      const value = pending[0][1];
      if (value !== null) copy(firstBlock, value);
      return result;
    }
    try {
      if (firstBlock === lastBlock) {
        const value = await this.db.get(blockKey(generation, volume.id, firstBlock));
        if (value !== undefined) copy(firstBlock, value);
      } else {
        // One iterator over the range finds the blocks that exist (thin volumes have few).
        const iterator = this.db.iterator({
          gte: blockKey(generation, volume.id, firstBlock),
          lte: blockKey(generation, volume.id, lastBlock),
        });
        try {
          for await (const [key, value] of iterator) copy(blockNumberOf(key), value);
        } finally {
          await iterator.close();
        }
      }
    } catch (error) {
      throw wrapLevelError(error, 'reading blocks');
    }
    if (pending !== null) {
      for (const [blockNumber, value] of pending) {
        if (value !== null) copy(blockNumber, value);
        else {
          const blockStart = blockNumber * BLOCK_SIZE_BYTES;
          result.fill(0, Math.max(offset, blockStart) - offset, Math.min(end, blockStart + BLOCK_SIZE_BYTES) - offset);
        }
      }
    }
    return result;
  }

  /**
   * `BlockStore.readMany`: reads within one block (the usual 4 KiB read) are served from the
   * overlay when a queued batch holds the block, else all together by one LevelDB `getMany`; a
   * read spanning blocks goes through `read`. Like `read`, the overlay is consulted before any
   * await, so each result reflects the state applied when this was called or a later one. An
   * unwritten whole block is the shared `READ_ZERO_BLOCK` (results are read-only).
   */
  async readMany(reads: readonly BlockRead[]): Promise<(Uint8Array | Error)[]> {
    this.checkUsable();
    const results: (Uint8Array | Error)[] = new Array<Uint8Array | Error>(reads.length);
    const generation = this.generation;
    let keys: Buffer[] | null = null;
    let slots: number[] | null = null;
    let spanning: Promise<void>[] | null = null;
    for (let i = 0; i < reads.length; i++) {
      const { volume: name, offset, length } = reads[i];
      const volume = this.checkRead(name, offset, length);
      if (volume instanceof DaemonError) {
        results[i] = volume;
        continue;
      }
      const blockNumber = Math.floor(offset / BLOCK_SIZE_BYTES);
      if (length === 0) {
        results[i] = Buffer.alloc(0);
      } else if (blockNumber !== Math.floor((offset + length - 1) / BLOCK_SIZE_BYTES)) {
        const slot = i;
        (spanning ??= []).push(
          this.read(name, offset, length).then(
            (data) => {
              results[slot] = data;
            },
            (error: unknown) => {
              results[slot] = error instanceof Error ? error : new Error(String(error));
            },
          ),
        );
      } else {
        const block = this.overlay.size === 0 ? undefined : this.overlay.get(`${volume.id}/${blockNumber}`);
        if (block !== undefined) {
          results[i] =
            block.value === null && length === BLOCK_SIZE_BYTES
              ? READ_ZERO_BLOCK
              : sliceBlock(block.value, offset, length);
        } else {
          (keys ??= []).push(blockKey(generation, volume.id, blockNumber));
          (slots ??= []).push(i);
        }
      }
    }
    if (keys !== null && slots !== null) {
      try {
        const values = await this.db.getMany(keys);
        for (let j = 0; j < slots.length; j++) {
          const { offset, length } = reads[slots[j]];
          const value = values[j];
          // A whole block straight from LevelDB is already a fresh buffer of its own: no copy. An
          // unwritten one (the common case of a thin volume) is the shared zero block: results
          // are read-only (BlockStore.readMany's contract).
          results[slots[j]] =
            length !== BLOCK_SIZE_BYTES
              ? sliceBlock(value ?? null, offset, length)
              : value === undefined
                ? READ_ZERO_BLOCK
                : value.length === BLOCK_SIZE_BYTES
                  ? value
                  : sliceBlock(value, offset, length);
        }
      } catch (error) {
        const wrapped = wrapLevelError(error, 'reading blocks');
        for (let j = 0; j < slots.length; j++) results[slots[j]] = wrapped;
      }
    }
    if (spanning !== null) await Promise.all(spanning);
    return results;
  }

  /** A read's volume, or the error `read` rejects with for its arguments. */
  private checkRead(volumeName: string, offset: number, length: number): VolumeRecord | DaemonError {
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      return new DaemonError(ApplyErrorCode.InvalidArgument, 'offset and length must be non-negative integers');
    }
    if (length > READ_BYTES_MAX) {
      return new DaemonError(ApplyErrorCode.InvalidArgument, `a read is at most ${READ_BYTES_MAX} bytes`);
    }
    const volume = this.volumes.get(volumeName);
    if (volume === undefined) {
      return new DaemonError(ApplyErrorCode.VolumeNotFound, `no volume named ${JSON.stringify(volumeName)}`);
    }
    const outOfRange = checkRange(volume, offset, length);
    if (outOfRange) return new DaemonError(outOfRange.code, outOfRange.message);
    return volume;
  }

  // ---- Administration ----------------------------------------------------------------------------

  /** Counts for status and metrics. */
  stats(): BlockStoreStats {
    return {
      appliedIndex: this.meta.appliedIndex,
      volumes: this.volumes.size,
      sessions: this.sessions.size,
      volumeDeletionsPending: this.deletionsPending.size,
      generation: this.generation,
    };
  }

  /** Resolves once no deleted volume has blocks left to remove (for tests and orderly shutdown). */
  async whenGarbageCollected(): Promise<void> {
    while (this.garbageCollection !== null) await this.garbageCollection;
    if (this.failure !== null) throw this.failure;
  }

  /** Stops background work, closes open snapshot readers and an unfinished restore. Idempotent. */
  async close(): Promise<void> {
    if (this.isClosed) return;
    this.isClosed = true;
    await this.writing;
    await this.garbageCollection?.catch(() => undefined);
    for (const reader of [...this.readers]) await reader.close();
    await this.restore?.abort().catch(() => undefined);
    if (this.isDatabaseOwned) await this.db.close();
  }

  // ---- Apply -------------------------------------------------------------------------------------

  /** An entry's result: a promise only when a partial block must be read from LevelDB first. */
  private applyEntry(entry: Entry, batch: ApplyBatch): ApplyResult | Promise<ApplyResult> {
    const decoded = decodeCommand(entry.data);
    if (!decoded.ok) return decoded;
    const command = decoded.command;
    const atMs = command.type === 'createVolume' ? command.createdAtMs : command.atMs;
    if (atMs !== undefined && atMs > this.meta.logTimeMs) this.meta.logTimeMs = atMs;
    this.expireSessions(batch);
    switch (command.type) {
      case 'createVolume':
        return this.createVolume(command, batch);
      case 'deleteVolume': {
        const volume = this.volumes.get(command.name);
        if (volume === undefined) return this.volumeNotFound(command.name);
        this.volumes.delete(command.name);
        batch.volumes.set(command.name, null);
        batch.deletedVolumeIds.push(volume.id);
        return { ok: true, volume: toInfo(volume) };
      }
      case 'growVolume': {
        const volume = this.volumes.get(command.name);
        if (volume === undefined) return this.volumeNotFound(command.name);
        if (command.sizeBytes < volume.sizeBytes) {
          return applyFailure(
            ApplyErrorCode.InvalidArgument,
            `volume ${JSON.stringify(command.name)} is ${volume.sizeBytes} bytes and cannot shrink to ${command.sizeBytes}`,
          );
        }
        if (command.sizeBytes > volume.sizeBytes) {
          const grown = { ...volume, sizeBytes: command.sizeBytes };
          this.volumes.set(command.name, grown);
          batch.volumes.set(command.name, grown);
          return { ok: true, volume: toInfo(grown) };
        }
        return { ok: true, volume: toInfo(volume) };
      }
      case 'closeSession':
        if (this.sessions.delete(command.session)) batch.sessions.set(command.session, null);
        return { ok: true };
      case 'write':
      case 'writeZeroes':
      case 'trim':
        return this.applyData(command, entry.index, batch);
    }
  }

  private createVolume(command: Extract<Command, { type: 'createVolume' }>, batch: ApplyBatch): ApplyResult {
    const existing = this.volumes.get(command.name);
    if (existing !== undefined) {
      if (existing.sizeBytes === command.sizeBytes) return { ok: true, volume: toInfo(existing) };
      return applyFailure(
        ApplyErrorCode.VolumeExists,
        `volume ${JSON.stringify(command.name)} exists with ${existing.sizeBytes} bytes, not ${command.sizeBytes}`,
      );
    }
    if (this.volumes.size >= this.volumesMax) {
      return applyFailure(
        ApplyErrorCode.ResourceExhausted,
        `the store holds its maximum of ${this.volumesMax} volumes`,
      );
    }
    const volume: VolumeRecord = {
      id: this.meta.nextVolumeId++,
      name: command.name,
      sizeBytes: command.sizeBytes,
      blockSizeBytes: BLOCK_SIZE_BYTES,
      createdAtMs: command.createdAtMs,
    };
    this.volumes.set(volume.name, volume);
    batch.volumes.set(volume.name, volume);
    return { ok: true, volume: toInfo(volume) };
  }

  private volumeNotFound(name: string): ApplyResult {
    return applyFailure(ApplyErrorCode.VolumeNotFound, `no volume named ${JSON.stringify(name)}`);
  }

  /** A write, writeZeroes or trim: session dedup first, then the block changes. */
  private applyData(command: DataCommand, index: number, batch: ApplyBatch): ApplyResult | Promise<ApplyResult> {
    let session: Session | undefined;
    if (command.session !== undefined) {
      const seq = command.seq!;
      const ackedBelow = command.ackedBelow!;
      session = this.sessions.get(command.session);
      if (session === undefined) {
        // Seqs start at 1, so ackedBelow > 1 means an earlier command was answered: the session
        // existed and was forgotten, and this could be a retry of an applied write.
        if (ackedBelow > 1) {
          return applyFailure(
            ApplyErrorCode.SessionExpired,
            `session ${command.session} is unknown (expired or evicted); open a new session`,
          );
        }
        if (this.sessions.size >= this.sessionsMax) this.evictOldestSession(batch);
        session = { floor: 0, seqs: new Set(), lastSeenMs: 0, lastSeenIndex: 0 };
      }
      // Touch: move to the end of the LRU order.
      this.sessions.delete(command.session);
      this.sessions.set(command.session, session);
      session.lastSeenMs = this.meta.logTimeMs;
      session.lastSeenIndex = index;
      batch.sessions.set(command.session, session);
      if (ackedBelow > session.floor) {
        session.floor = ackedBelow;
        for (const old of session.seqs) if (old < ackedBelow) session.seqs.delete(old);
      }
      if (seq < session.floor || session.seqs.has(seq)) return { ok: true, isDuplicate: true };
      if (seq - session.floor >= this.sessionWindowSeqs) {
        return applyFailure(
          ApplyErrorCode.ResourceExhausted,
          `seq ${seq} is ${this.sessionWindowSeqs} or more above the acknowledged ${session.floor}: too many unanswered commands`,
        );
      }
    }
    const result = this.applyBlocks(command, batch);
    if (session === undefined) return result;
    const seq = command.seq!;
    if (result instanceof Promise) {
      return result.then((settled) => {
        if (settled.ok) session.seqs.add(seq);
        return settled;
      });
    }
    if (result.ok) session.seqs.add(seq);
    return result;
  }

  private applyBlocks(command: DataCommand, batch: ApplyBatch): ApplyResult | Promise<ApplyResult> {
    const volume = this.volumes.get(command.volume);
    if (volume === undefined) return this.volumeNotFound(command.volume);
    const length = command.type === 'write' ? command.data.length : command.length;
    if (length > DATA_COMMAND_BYTES_MAX) {
      return applyFailure(ApplyErrorCode.InvalidArgument, `one command covers at most ${DATA_COMMAND_BYTES_MAX} bytes`);
    }
    const outOfRange = checkRange(volume, command.offset, length);
    if (outOfRange) return outOfRange;
    // Only the first and the last block of a range can be partial. When this batch or the overlay
    // holds them, the blocks change without IO and without a promise. Otherwise the missing ones
    // are read from LevelDB first, and the held ones are taken now: while that read waits, a
    // queued batch may land and leave the overlay (its bytes are then in LevelDB).
    const end = command.offset + length;
    const first = Math.floor(command.offset / BLOCK_SIZE_BYTES);
    const last = Math.floor((end - 1) / BLOCK_SIZE_BYTES);
    let partial: number[] | null = null;
    if (length > 0) {
      if (command.offset % BLOCK_SIZE_BYTES !== 0 || (first === last && end % BLOCK_SIZE_BYTES !== 0)) {
        (partial ??= []).push(first);
      }
      if (last !== first && end % BLOCK_SIZE_BYTES !== 0) (partial ??= []).push(last);
    }
    if (
      partial === null ||
      partial.every((blockNumber) => this.heldBlock(volume.id, blockNumber, batch) !== undefined)
    ) {
      return this.changeBlocks(command, volume, end, batch, null);
    }
    return this.baseBlocks(volume.id, partial, batch).then((bases) =>
      this.changeBlocks(command, volume, end, batch, bases),
    );
  }

  /** A block as this batch or the overlay holds it (null: zeros), or undefined if neither does. */
  private heldBlock(volumeId: number, blockNumber: number, batch: ApplyBatch): Buffer | null | undefined {
    const pending = batch.blocks.get(`${volumeId}/${blockNumber}`);
    if (pending !== undefined) return pending.value;
    return this.overlay.get(`${volumeId}/${blockNumber}`)?.value;
  }

  /**
   * The current bytes of blocks to read-modify-write, by block number (null: zeros): as this batch
   * or the overlay holds them (taken before any await), else from LevelDB.
   */
  private async baseBlocks(
    volumeId: number,
    blockNumbers: number[],
    batch: ApplyBatch,
  ): Promise<Map<number, Buffer | null>> {
    const bases = new Map<number, Buffer | null>();
    for (const blockNumber of blockNumbers) {
      const held = this.heldBlock(volumeId, blockNumber, batch);
      if (held !== undefined) bases.set(blockNumber, held);
    }
    try {
      for (const blockNumber of blockNumbers) {
        if (bases.has(blockNumber)) continue;
        bases.set(blockNumber, (await this.db.get(blockKey(this.generation, volumeId, blockNumber))) ?? null);
      }
    } catch (error) {
      throw this.fail(wrapLevelError(error, 'reading a block to update'));
    }
    return bases;
  }

  /** The block changes of a data command whose partial blocks are held or `fetched`. */
  private changeBlocks(
    command: DataCommand,
    volume: VolumeRecord,
    end: number,
    batch: ApplyBatch,
    bases: Map<number, Buffer | null> | null,
  ): ApplyResult {
    let position = command.offset;
    while (position < end) {
      const blockNumber = Math.floor(position / BLOCK_SIZE_BYTES);
      const inBlock = position - blockNumber * BLOCK_SIZE_BYTES;
      const count = Math.min(BLOCK_SIZE_BYTES - inBlock, end - position);
      let value: Buffer | null;
      if (count === BLOCK_SIZE_BYTES) {
        if (command.type === 'write') {
          // A whole block: the command's bytes go to LevelDB as they are (a view, no copy).
          const chunk = command.data.subarray(position - command.offset, position - command.offset + count);
          value = isZero(chunk) ? null : asBuffer(chunk);
        } else {
          value = null; // thin again: a deleted block reads as zeros
        }
      } else {
        // A partial block: read-modify-write, seeing the earlier entries of this batch.
        const base = bases !== null ? bases.get(blockNumber) : this.heldBlock(volume.id, blockNumber, batch);
        assert(base !== undefined, 'a partial block is held or was read');
        const block = base === null ? Buffer.alloc(BLOCK_SIZE_BYTES) : Buffer.from(base);
        if (command.type === 'write') {
          block.set(command.data.subarray(position - command.offset, position - command.offset + count), inBlock);
        } else {
          block.fill(0, inBlock, inBlock + count);
        }
        value = isZero(block) ? null : block;
      }
      batch.blocks.set(`${volume.id}/${blockNumber}`, {
        key: blockKey(this.generation, volume.id, blockNumber),
        value,
      });
      position += count;
    }
    return { ok: true };
  }

  /** Forgets sessions idle for longer than the limit, oldest first (per entry: deterministic). */
  private expireSessions(batch: ApplyBatch): void {
    for (const [id, session] of this.sessions) {
      if (session.lastSeenMs + this.sessionIdleMsMax >= this.meta.logTimeMs) break;
      this.sessions.delete(id);
      batch.sessions.set(id, null);
    }
  }

  private evictOldestSession(batch: ApplyBatch): void {
    const oldest = this.sessions.keys().next();
    if (oldest.done === true) return;
    this.sessions.delete(oldest.value);
    batch.sessions.set(oldest.value, null);
  }

  /**
   * Puts the batch's blocks into the overlay and queues its LevelDB write after the earlier ones.
   * Garbage collection of volumes deleted in it starts once it landed.
   */
  private queueWrite(batch: ApplyBatch, firstIndex: number, appliedIndex: number, lastTerm: number): void {
    const seq = ++this.batchSeq;
    for (const [id, { value }] of batch.blocks) this.overlay.set(id, { value, batchSeq: seq });
    // Encoded now: later batches mutate the same session and meta objects, and a record written
    // ahead of its own batch (a seq marked done whose blocks are not) would be wrong after a crash.
    const operations = this.batchOperations(batch, appliedIndex);
    this.writesPending += 1;
    const previous = this.writing;
    // Waiting for the log starts now (in parallel with the earlier batches' writes).
    const logSynced = this.log?.whenSyncedThrough(appliedIndex, lastTerm) ?? null;
    logSynced?.catch(() => undefined);
    const queued = { firstIndex, landed: Promise.resolve() };
    this.queuedWrites.push(queued);
    this.writing = (async () => {
      await previous;
      try {
        if (this.failure === null) {
          await this.writeBatch(operations, logSynced);
          for (const volumeId of batch.deletedVolumeIds) this.deletionsPending.add(volumeId);
        }
      } catch {
        // writeBatch recorded the failure: every later call rejects with it.
      } finally {
        this.writesPending -= 1;
        this.queuedWrites.shift();
        for (const id of batch.blocks.keys()) {
          if (this.overlay.get(id)?.batchSeq === seq) this.overlay.delete(id);
        }
      }
      if (this.failure === null && batch.deletedVolumeIds.length > 0) this.startGarbageCollection();
    })();
    queued.landed = this.writing;
  }

  /**
   * Makes the state durable through entry `index`: waits for the queued batch writes holding
   * entries at or below it (not for later ones, which may wait for log appends queued behind a
   * compaction), then writes a mark with `sync: true`, which makes every earlier LevelDB write
   * durable. The WAL store calls it before compacting the log through `index`.
   */
  async whenDurableThrough(index: number): Promise<void> {
    this.checkUsable();
    let landed: Promise<void> | null = null;
    for (const queued of this.queuedWrites) if (queued.firstIndex <= index) landed = queued.landed;
    if (landed !== null) await landed;
    if (this.failure !== null) throw this.failure;
    const mark = Buffer.allocUnsafe(8);
    mark.writeDoubleBE(index, 0);
    try {
      await this.db.put(DURABLE_MARK_KEY, mark, { sync: true });
    } catch (error) {
      throw this.fail(wrapLevelError(error, 'syncing the block store'));
    }
  }

  /**
   * Resolves once the LevelDB writes of every batch applied so far have landed (so a process kill
   * no longer loses them); rejects with the store's failure if a write failed.
   */
  async whenWritten(): Promise<void> {
    await this.writing;
    if (this.failure !== null) throw this.failure;
  }

  /** The LevelDB operations of a batch: its blocks, volumes, deletions, sessions and the meta record. */
  private batchOperations(batch: ApplyBatch, appliedIndex: number): BatchOperation[] {
    const generation = this.generation;
    const operations: BatchOperation[] = [];
    for (const { key, value } of batch.blocks.values()) {
      operations.push(value === null ? { type: 'del', key } : { type: 'put', key, value });
    }
    for (const [name, volume] of batch.volumes) {
      const key = volumeKey(generation, name);
      operations.push(volume === null ? { type: 'del', key } : { type: 'put', key, value: encodeRecord(volume) });
    }
    for (const volumeId of batch.deletedVolumeIds) {
      operations.push({ type: 'put', key: deletionKey(generation, volumeId), value: Buffer.alloc(0) });
    }
    for (const [id, session] of batch.sessions) {
      const key = sessionKey(generation, id);
      operations.push(session === null ? { type: 'del', key } : { type: 'put', key, value: encodeSession(session) });
    }
    const meta = { ...this.meta, appliedIndex };
    operations.push({ type: 'put', key: stateKey(generation, Tag.Meta), value: encodeRecord(meta) });
    return operations;
  }

  private async writeBatch(operations: BatchOperation[], logSynced: Promise<void> | null): Promise<void> {
    try {
      // The entries must be durable before their effects (see the module comment).
      if (logSynced !== null) await logSynced;
      // A chained batch: cheaper in JS than an array batch (no per-operation object normalisation).
      const batch = this.db.batch();
      for (const operation of operations) {
        if (operation.type === 'put') batch.put(operation.key, operation.value);
        else batch.del(operation.key);
      }
      await batch.write({ sync: false });
    } catch (error) {
      throw this.fail(wrapLevelError(error, 'writing an applied batch'));
    }
  }

  // ---- Generations, garbage collection -----------------------------------------------------------

  private async loadGeneration(): Promise<void> {
    const generation = this.generation;
    const metaBytes = await this.db.get(stateKey(generation, Tag.Meta));
    this.meta = metaBytes === undefined ? { appliedIndex: 0, logTimeMs: 0, nextVolumeId: 1 } : decodeMeta(metaBytes);
    this.volumes.clear();
    for await (const value of this.db.values({
      gt: stateKey(generation, Tag.Volume),
      lt: stateKey(generation, Tag.Volume + 1),
    })) {
      const volume = decodeVolume(value);
      this.volumes.set(volume.name, volume);
    }
    const sessions: [string, SessionRecord][] = [];
    for await (const [key, value] of this.db.iterator({
      gt: stateKey(generation, Tag.Session),
      lt: stateKey(generation, Tag.Session + 1),
    })) {
      sessions.push([key.subarray(6).toString('utf8'), decodeSession(value)]);
    }
    // The LRU order is the order of last use in the log, which the index records exactly.
    sessions.sort((a, b) => a[1].lastSeenIndex - b[1].lastSeenIndex);
    this.sessions.clear();
    for (const [id, record] of sessions) {
      this.sessions.set(id, {
        floor: record.floor,
        seqs: new Set(record.seqs),
        lastSeenMs: record.lastSeenMs,
        lastSeenIndex: record.lastSeenIndex,
      });
    }
    this.deletionsPending.clear();
    for await (const key of this.db.keys({
      gt: stateKey(generation, Tag.Deletion),
      lt: stateKey(generation, Tag.Deletion + 1),
    })) {
      this.deletionsPending.add(volumeIdOfRelative(key.subarray(5)));
    }
  }

  /** Called by a committed restore: the new generation is live (durably); load it, drop the old. */
  private async switchGeneration(generation: number): Promise<void> {
    assert(!this.isApplying, 'no apply runs while a snapshot restore commits');
    await this.writing; // batches of the old generation land first (the overlay is then empty)
    this.overlay.clear();
    const old = this.generation;
    // Wait for the collector: it works on the old generation, which is about to be cleared whole.
    await this.whenGarbageCollected().catch(() => undefined);
    this.generation = generation;
    try {
      await this.loadGeneration();
      await this.db.clear({ gte: generationPrefix(old), lt: generationEnd(old) });
    } catch (error) {
      throw this.fail(wrapLevelError(error, 'switching to a restored snapshot'));
    }
  }

  private startGarbageCollection(): void {
    if (this.garbageCollection !== null || this.deletionsPending.size === 0 || this.isClosed) return;
    this.garbageCollection = this.collectGarbage().finally(() => {
      this.garbageCollection = null;
    });
  }

  /**
   * Removes the blocks of deleted volumes. LevelDB's range clear deletes in batches of about
   * 16 KiB of keys, so a huge volume never becomes one huge batch. Volume ids are never reused, so
   * leftover blocks are invisible meanwhile (and snapshots skip them).
   */
  private async collectGarbage(): Promise<void> {
    while (!this.isClosed && this.deletionsPending.size > 0) {
      const volumeId = this.deletionsPending.values().next().value!;
      const generation = this.generation;
      try {
        await this.db.clear({ gte: blockKey(generation, volumeId, 0), lt: blockRangeEnd(generation, volumeId) });
        await this.db.del(deletionKey(generation, volumeId));
      } catch (error) {
        if (this.isClosed) return;
        this.fail(wrapLevelError(error, 'removing the blocks of a deleted volume'));
        return;
      }
      this.deletionsPending.delete(volumeId);
    }
  }

  private fail(error: Error): Error {
    if (this.failure === null) this.failure = error;
    return this.failure;
  }

  private checkUsable(): void {
    if (this.failure !== null) throw this.failure;
    if (this.isClosed) throw storageError(StorageErrorCode.StorageClosed, 'the block store is closed');
  }
}

function encodeSession(session: Session): Buffer {
  return encodeRecord({
    floor: session.floor,
    seqs: [...session.seqs].sort((a, b) => a - b),
    lastSeenMs: session.lastSeenMs,
    lastSeenIndex: session.lastSeenIndex,
  });
}
