/**
 * Streaming snapshots of the block state machine.
 *
 * The reader iterates a LevelDB snapshot of the live generation, so the state is never loaded
 * into memory and applies may continue meanwhile. A chunk is a format header followed by records
 * (`keyLength` u16 BE, `valueLength` u32 BE, key relative to the generation, value), cut at about
 * `bytesMax`. The position handed back as `next` is the last key sent: reading from it again
 * resumes right after it, on the same LevelDB snapshot.
 *
 * The writer puts the records into the next generation (beside the live one); `commit` switches
 * the generation key and the applied index in one synced batch.
 */
import type { Iterator as LevelIterator, Snapshot } from 'classic-level';
import { DaemonError } from '../errors.js';
import { BLOCK_SIZE_BYTES } from './commands.js';
import {
  BLOCK_KEY_BYTES,
  GENERATION_KEY,
  GENERATION_PREFIX_BYTES,
  Tag,
  blockRangeEnd,
  decodeMeta,
  decodeSession,
  decodeVolume,
  encodeRecord,
  generationEnd,
  generationPrefix,
  stateKey,
  volumeIdOfRelative,
  type MetaRecord,
} from './block-keys.js';
import { wrapLevelError, type Database } from './database.js';
import { StorageErrorCode, storageError } from './errors.js';
import type { SnapshotMeta, SnapshotReader, SnapshotWriter } from './raft-api.js';

/** First bytes of every chunk: 'R' and the format version. */
const CHUNK_HEADER = Buffer.from([0x52, 0x01]);
const RECORD_HEADER_BYTES = 6;
/** Longest relative key (tag + a 128-character name in UTF-8 is far below it). */
const RELATIVE_KEY_BYTES_MAX = 1024;

type Iterator = LevelIterator<Database, Buffer, Buffer>;

function invalid(message: string, cause?: unknown): DaemonError {
  return storageError(StorageErrorCode.SnapshotInvalid, `invalid snapshot chunk: ${message}`, cause);
}

/** Reads a block state machine snapshot chunk by chunk. Created by `BlockStateMachine.openSnapshot`. */
export class BlockSnapshotReader implements SnapshotReader {
  readonly meta: SnapshotMeta;
  private readonly db: Database;
  private readonly generation: number;
  private readonly snapshot: Snapshot;
  private readonly liveVolumeIds: ReadonlySet<number>;
  private readonly onClose: () => void;
  private iterator: Iterator | null = null;
  /** The position at which `iterator` (and `lookahead`) continue. */
  private iteratorPosition: Buffer | null = null;
  private lookahead: [Buffer, Buffer] | null = null;
  private isClosed = false;

  private constructor(
    db: Database,
    generation: number,
    meta: SnapshotMeta,
    snapshot: Snapshot,
    liveVolumeIds: ReadonlySet<number>,
    onClose: () => void,
  ) {
    this.db = db;
    this.generation = generation;
    this.meta = meta;
    this.snapshot = snapshot;
    this.liveVolumeIds = liveVolumeIds;
    this.onClose = onClose;
  }

  /** Takes a LevelDB snapshot and checks it holds the state at `meta.index`. */
  static async open(
    db: Database,
    generation: number,
    meta: SnapshotMeta,
    onClose: () => void,
  ): Promise<BlockSnapshotReader> {
    const snapshot = db.snapshot();
    try {
      const metaBytes = await db.get(stateKey(generation, Tag.Meta), { snapshot });
      const appliedIndex = metaBytes === undefined ? 0 : decodeMeta(metaBytes).appliedIndex;
      if (appliedIndex !== meta.index) {
        throw storageError(
          StorageErrorCode.SnapshotMismatch,
          `a snapshot at index ${meta.index} was asked for, but the state is at ${appliedIndex}`,
        );
      }
      // Blocks of deleted volumes may wait for the garbage collector; the snapshot leaves them out.
      const liveVolumeIds = new Set<number>();
      for await (const value of db.values({
        gt: stateKey(generation, Tag.Volume),
        lt: stateKey(generation, Tag.Volume + 1),
        snapshot,
      })) {
        liveVolumeIds.add(decodeVolume(value).id);
      }
      return new BlockSnapshotReader(db, generation, meta, snapshot, liveVolumeIds, onClose);
    } catch (error) {
      await snapshot.close();
      throw wrapLevelError(error, 'opening a snapshot');
    }
  }

  /** Reads the chunk after `position` (null: from the start); `next` is null after the last one. */
  async read(position: Uint8Array | null, bytesMax: number): Promise<{ data: Uint8Array; next: Uint8Array | null }> {
    if (this.isClosed) throw storageError(StorageErrorCode.StorageClosed, 'the snapshot reader is closed');
    if (position !== null && (position.length === 0 || position.length > RELATIVE_KEY_BYTES_MAX)) {
      throw storageError(
        StorageErrorCode.SnapshotInvalid,
        `a snapshot position of ${position.length} bytes is not one`,
      );
    }
    try {
      const iterator = await this.iteratorAt(position);
      const pieces: Buffer[] = [CHUNK_HEADER];
      let bytes = CHUNK_HEADER.length;
      let last: Buffer | null = null;
      while (true) {
        const entry = this.lookahead ?? (await iterator.next());
        this.lookahead = null;
        if (entry === undefined) {
          await this.closeIterator();
          return { data: Buffer.concat(pieces, bytes), next: null };
        }
        const [key, value] = entry;
        const relative = key.subarray(GENERATION_PREFIX_BYTES);
        const tag = relative[0];
        if (tag === Tag.Deletion) continue;
        if (tag === Tag.Block) {
          const volumeId = volumeIdOfRelative(relative);
          if (!this.liveVolumeIds.has(volumeId)) {
            iterator.seek(blockRangeEnd(this.generation, volumeId));
            continue;
          }
        }
        const recordBytes = RECORD_HEADER_BYTES + relative.length + value.length;
        if (last !== null && bytes + recordBytes > bytesMax) {
          this.lookahead = entry;
          this.iteratorPosition = last;
          return { data: Buffer.concat(pieces, bytes), next: last };
        }
        const header = Buffer.allocUnsafe(RECORD_HEADER_BYTES);
        header.writeUInt16BE(relative.length, 0);
        header.writeUInt32BE(value.length, 2);
        pieces.push(header, relative, value);
        bytes += recordBytes;
        last = relative;
      }
    } catch (error) {
      await this.closeIterator();
      throw wrapLevelError(error, 'reading a snapshot chunk');
    }
  }

  /** Releases the iterator and the LevelDB snapshot. Idempotent. */
  async close(): Promise<void> {
    if (this.isClosed) return;
    this.isClosed = true;
    await this.closeIterator();
    await this.snapshot.close();
    this.onClose();
  }

  /** The open iterator if it continues at `position`, else a new one starting after it. */
  private async iteratorAt(position: Uint8Array | null): Promise<Iterator> {
    const isContinuation =
      this.iterator !== null &&
      position !== null &&
      this.iteratorPosition !== null &&
      Buffer.compare(this.iteratorPosition, position) === 0;
    if (isContinuation) return this.iterator!;
    await this.closeIterator();
    const prefix = generationPrefix(this.generation);
    const end = generationEnd(this.generation);
    this.iterator =
      position === null
        ? this.db.iterator({ gte: prefix, lt: end, snapshot: this.snapshot })
        : this.db.iterator({ gt: Buffer.concat([prefix, position]), lt: end, snapshot: this.snapshot });
    return this.iterator;
  }

  private async closeIterator(): Promise<void> {
    const iterator = this.iterator;
    this.iterator = null;
    this.iteratorPosition = null;
    this.lookahead = null;
    await iterator?.close();
  }
}

/** Hooks of a restore into its state machine. */
export interface RestoreHooks {
  /** Makes `generation` live in memory (it is already live on disk) and drops the old one. */
  commit(generation: number): Promise<void>;
  /** The writer is finished (committed or aborted). */
  release(writer: BlockSnapshotWriter): void;
}

/** Receives a snapshot into a staging generation. Created by `BlockStateMachine.beginRestore`. */
export class BlockSnapshotWriter implements SnapshotWriter {
  private readonly db: Database;
  private readonly generation: number;
  private readonly meta: SnapshotMeta;
  private readonly hooks: RestoreHooks;
  private readonly prefix: Buffer;
  private state: 'open' | 'failed' | 'committed' | 'aborted' = 'open';
  private receivedMeta: MetaRecord | null = null;

  constructor(db: Database, generation: number, meta: SnapshotMeta, hooks: RestoreHooks) {
    this.db = db;
    this.generation = generation;
    this.meta = meta;
    this.hooks = hooks;
    this.prefix = generationPrefix(generation);
  }

  /** Empties the staging generation (an earlier aborted or crashed restore may have left records). */
  async prepare(): Promise<void> {
    try {
      await this.db.clear({ gte: this.prefix, lt: generationEnd(this.generation) });
    } catch (error) {
      throw wrapLevelError(error, 'preparing a snapshot restore');
    }
  }

  /** Validates a chunk and writes its records into the staging generation (one batch, not synced). */
  async write(data: Uint8Array): Promise<void> {
    this.checkOpen();
    const chunk = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const operations: { type: 'put'; key: Buffer; value: Buffer }[] = [];
    try {
      if (chunk.length < CHUNK_HEADER.length || chunk[0] !== CHUNK_HEADER[0] || chunk[1] !== CHUNK_HEADER[1]) {
        throw invalid('unknown format header');
      }
      let offset = CHUNK_HEADER.length;
      while (offset < chunk.length) {
        if (offset + RECORD_HEADER_BYTES > chunk.length) throw invalid('a record header is cut');
        const keyLength = chunk.readUInt16BE(offset);
        const valueLength = chunk.readUInt32BE(offset + 2);
        const keyStart = offset + RECORD_HEADER_BYTES;
        const valueStart = keyStart + keyLength;
        offset = valueStart + valueLength;
        if (keyLength === 0 || keyLength > RELATIVE_KEY_BYTES_MAX || offset > chunk.length) {
          throw invalid('a record is cut or has a bad key length');
        }
        const relative = chunk.subarray(keyStart, valueStart);
        const value = chunk.subarray(valueStart, offset);
        this.checkRecord(relative, value);
        operations.push({ type: 'put', key: Buffer.concat([this.prefix, relative]), value });
      }
    } catch (error) {
      this.state = 'failed';
      if (error instanceof DaemonError && error.code === StorageErrorCode.SnapshotInvalid) throw error;
      throw invalid((error as Error).message, error);
    }
    try {
      if (operations.length > 0) await this.db.batch(operations, { sync: false });
    } catch (error) {
      this.state = 'failed';
      throw wrapLevelError(error, 'writing a snapshot chunk');
    }
  }

  /**
   * Makes the received state live: the applied index (`meta.index`) and the generation key are
   * written in one synced batch, which also makes the earlier unsynced chunk batches durable
   * (LevelDB's log is sequential). Then the state machine reloads and drops the old generation.
   */
  async commit(): Promise<void> {
    this.checkOpen();
    if (this.receivedMeta === null) {
      this.state = 'failed';
      throw invalid('the snapshot ended without its meta record');
    }
    const generationValue = Buffer.allocUnsafe(4);
    generationValue.writeUInt32BE(this.generation, 0);
    try {
      await this.db.batch(
        [
          {
            type: 'put',
            key: stateKey(this.generation, Tag.Meta),
            value: encodeRecord({ ...this.receivedMeta, appliedIndex: this.meta.index }),
          },
          { type: 'put', key: GENERATION_KEY, value: generationValue },
        ],
        { sync: true },
      );
    } catch (error) {
      this.state = 'failed';
      throw wrapLevelError(error, 'committing a snapshot restore');
    }
    this.state = 'committed';
    this.hooks.release(this);
    await this.hooks.commit(this.generation);
  }

  /** Discards what was received. Idempotent; does nothing after a commit. */
  async abort(): Promise<void> {
    if (this.state === 'committed' || this.state === 'aborted') return;
    this.state = 'aborted';
    this.hooks.release(this);
    try {
      await this.db.clear({ gte: this.prefix, lt: generationEnd(this.generation) });
    } catch (error) {
      throw wrapLevelError(error, 'aborting a snapshot restore');
    }
  }

  private checkOpen(): void {
    if (this.state !== 'open') {
      throw storageError(StorageErrorCode.SnapshotInvalid, `the snapshot restore is ${this.state}`);
    }
  }

  private checkRecord(relative: Buffer, value: Buffer): void {
    switch (relative[0]) {
      case Tag.Meta: {
        if (relative.length !== 1) throw invalid('a meta key has extra bytes');
        const meta = decodeMeta(value);
        if (meta.appliedIndex !== this.meta.index) {
          throw invalid(`the state is at index ${meta.appliedIndex}, the snapshot claims ${this.meta.index}`);
        }
        this.receivedMeta = meta;
        return;
      }
      case Tag.Volume: {
        const volume = decodeVolume(value);
        if (relative.subarray(1).toString('utf8') !== volume.name) throw invalid('a volume key and record disagree');
        return;
      }
      case Tag.Block:
        if (relative.length !== BLOCK_KEY_BYTES - GENERATION_PREFIX_BYTES)
          throw invalid('a block key has a bad length');
        if (value.length !== BLOCK_SIZE_BYTES) throw invalid(`a block of ${value.length} bytes`);
        return;
      case Tag.Session:
        if (relative.length < 2) throw invalid('a session key without an id');
        decodeSession(value);
        return;
      default:
        throw invalid(`unknown record tag ${relative[0]}`);
    }
  }
}
