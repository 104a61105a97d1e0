/**
 * The on-disk format of the Raft write-ahead log (docs/storage.md, "The write-ahead log").
 *
 * A segment file `<seq as 16 hex digits>.wal` is preallocated with zeros to a fixed size and holds
 * records back to back, then zeros:
 *
 * | bytes | field                                                                          |
 * |-------|--------------------------------------------------------------------------------|
 * | 4     | body length (u32 LE): 1 + payload length; 0 marks the end of the segment's records |
 * | 4     | CRC-32 (u32 LE) of the body, CHAINED: seeded with the previous record's CRC (the first record with the CRC of the segment number) |
 * | 1     | record type (`RecordType`)                                                     |
 * | n     | payload                                                                        |
 *
 * Chaining makes a record valid only right after the record it was written after: a stale record
 * left beyond a torn tail, once the tail is overwritten by shorter records, never passes. The seed
 * of the chain is the segment's number, so a recycled segment file (renamed from an older,
 * compacted one and overwritten from its start) never accepts the records of its previous life
 * either, not even one that starts exactly where the new records end.
 *
 * This module encodes and decodes records and replays them (`LogReplay`); `wal-log-store.ts`
 * does the IO.
 */
import { crc32 } from 'node:zlib';
import { Packr } from 'msgpackr';
import type { Entry, HardState, SnapshotMeta } from './raft-api.js';
import { readUint64BE, writeUint64BE } from './database.js';
import { StorageErrorCode, storageError } from './errors.js';

/** What a record holds. */
export const RecordType = {
  /** First record of every segment: the state needed to load without older segments. */
  SegmentHeader: 1,
  /** Consecutive entries; those at or above the first index replace any stored ones (a conflicting suffix). */
  Entries: 2,
  HardState: 3,
  /** Snapshot metadata (`applySnapshot`), with whether the entries after it are kept. */
  Snapshot: 4,
  /** Compaction mark (`compact`): entries at or below it are dropped. */
  Compaction: 5,
} as const;
export type RecordType = (typeof RecordType)[keyof typeof RecordType];

/** Length and CRC before every record body. */
export const RECORD_PREFIX_BYTES = 8;
/** Room kept in every segment for its header record, which must always fit. */
export const SEGMENT_HEADER_RESERVE_BYTES = 64 * 1024;
/** Entries records are cut at about this many payload bytes (a larger single entry gets its own record). */
export const ENTRIES_RECORD_BYTES_TARGET = 1024 * 1024;
const ENTRIES_PAYLOAD_HEADER_BYTES = 12;
const ENTRY_HEADER_BYTES = 13;

const packr = new Packr({ useRecords: false, moreTypes: false });

/** The file name of segment `seq`. */
export function segmentName(seq: number): string {
  return `${seq.toString(16).padStart(16, '0')}.wal`;
}

/** The number of a segment file name, or null for any other name. */
export function segmentSeqOf(name: string): number | null {
  const match = /^([0-9a-f]{16})\.wal$/.exec(name);
  return match === null ? null : Number.parseInt(match[1], 16);
}

/**
 * The file name a compacted segment `seq` is kept under until it is recycled as a later segment
 * (it no longer matches `segmentSeqOf`, so loading never reads it as part of the log).
 */
export function freeSegmentName(seq: number): string {
  return `${segmentName(seq)}.free`;
}

/** The old segment number of a free (recyclable) segment file name, or null for any other name. */
export function freeSegmentSeqOf(name: string): number | null {
  return name.endsWith('.free') ? segmentSeqOf(name.slice(0, -'.free'.length)) : null;
}

/**
 * The CRC chain's starting value in segment `seq`. Distinct for every seq below 2^32 (CRC-32 of
 * inputs differing only in their last 32 bits never collide), which is what makes a recycled
 * segment safe: the records of its previous life were chained from another seed, so none passes
 * in its new life (a match needs the two chain values at that offset to be equal, 1 in 2^32).
 */
export function segmentSeed(seq: number): number {
  const bytes = Buffer.allocUnsafe(8);
  writeUint64BE(bytes, 0, seq);
  return crc32(bytes);
}

/** The byte size an entry takes in an entries record payload. */
export function entryRecordBytes(entry: Entry): number {
  return ENTRY_HEADER_BYTES + entry.data.length;
}

/** The size on disk of a record with a payload of `payloadBytes`. */
export function recordBytes(payloadBytes: number): number {
  return RECORD_PREFIX_BYTES + 1 + payloadBytes;
}

/**
 * Encodes consecutive entries as one entries record payload, as parts to be written one after the
 * other: the headers live in one small buffer, and each entry's data is the entry's own buffer,
 * not a copy (the WAL writes the parts with one `pwritev`). The entries' data must not change
 * until the write completed; nothing writes into an entry's data once it is in the log.
 */
export function encodeEntriesParts(entries: readonly Entry[]): { parts: Uint8Array[]; bytes: number } {
  const headers = Buffer.allocUnsafe(ENTRIES_PAYLOAD_HEADER_BYTES + ENTRY_HEADER_BYTES * entries.length);
  writeUint64BE(headers, 0, entries[0].index);
  headers.writeUInt32LE(entries.length, 8);
  const parts: Uint8Array[] = [];
  let bytes = ENTRIES_PAYLOAD_HEADER_BYTES;
  let offset = ENTRIES_PAYLOAD_HEADER_BYTES;
  let headerStart = 0; // start of the header bytes not yet in a part
  for (const entry of entries) {
    writeUint64BE(headers, offset, entry.term);
    headers[offset + 8] = entry.type;
    headers.writeUInt32LE(entry.data.length, offset + 9);
    offset += ENTRY_HEADER_BYTES;
    bytes += ENTRY_HEADER_BYTES + entry.data.length;
    if (entry.data.length === 0) continue; // the next header follows in the same part
    parts.push(headers.subarray(headerStart, offset), entry.data);
    headerStart = offset;
  }
  if (headerStart < offset) parts.push(headers.subarray(headerStart, offset));
  return { parts, bytes };
}

/** Decodes an entries record payload; entry data is copied (the segment buffer is released after load). */
export function decodeEntries(payload: Buffer): { first: number; entries: Entry[] } {
  if (payload.length < ENTRIES_PAYLOAD_HEADER_BYTES) throw corrupt('an entries record is too short');
  const first = readUint64BE(payload, 0);
  const count = payload.readUInt32LE(8);
  const entries: Entry[] = [];
  let offset = ENTRIES_PAYLOAD_HEADER_BYTES;
  for (let i = 0; i < count; i++) {
    if (offset + ENTRY_HEADER_BYTES > payload.length) throw corrupt('an entries record is cut');
    const length = payload.readUInt32LE(offset + 9);
    const end = offset + ENTRY_HEADER_BYTES + length;
    if (end > payload.length) throw corrupt('an entry in an entries record is cut');
    entries.push({
      index: first + i,
      term: readUint64BE(payload, offset),
      type: payload[offset + 8] as Entry['type'],
      data: Buffer.from(payload.subarray(offset + ENTRY_HEADER_BYTES, end)),
    });
    offset = end;
  }
  if (offset !== payload.length || first < 1) throw corrupt('an entries record has trailing bytes or index 0');
  return { first, entries };
}

/** The first record of a segment. */
export interface SegmentHeader {
  readonly seq: number;
  /** Index of the first entry that may follow (the log's last index + 1 when the segment began). */
  readonly firstIndex: number;
  readonly hardState: HardState;
  readonly snapshot: SnapshotMeta | null;
  readonly compactedIndex: number;
}

function plainMeta(meta: SnapshotMeta): SnapshotMeta {
  return {
    index: meta.index,
    term: meta.term,
    conf: {
      voters: [...meta.conf.voters],
      learners: [...meta.conf.learners],
      votersOutgoing: [...meta.conf.votersOutgoing],
      learnersNext: [...meta.conf.learnersNext],
    },
  };
}

function plainHardState(hardState: HardState): HardState {
  return { term: hardState.term, vote: hardState.vote, commit: hardState.commit };
}

export function encodeHeader(header: SegmentHeader): Buffer {
  return packr.pack({
    seq: header.seq,
    firstIndex: header.firstIndex,
    hardState: plainHardState(header.hardState),
    snapshot: header.snapshot === null ? null : plainMeta(header.snapshot),
    compactedIndex: header.compactedIndex,
  });
}

export function decodeHeader(payload: Buffer): SegmentHeader {
  const value = unpack(payload, 'segment header');
  if (!isCount(value.seq) || !isCount(value.firstIndex) || value.firstIndex < 1 || !isCount(value.compactedIndex)) {
    throw corrupt('a segment header has bad fields');
  }
  return {
    seq: value.seq,
    firstIndex: value.firstIndex,
    hardState: checkHardState(value.hardState),
    snapshot: value.snapshot === null ? null : checkMeta(value.snapshot),
    compactedIndex: value.compactedIndex,
  };
}

export function encodeHardState(hardState: HardState): Buffer {
  return packr.pack(plainHardState(hardState));
}

export function decodeHardState(payload: Buffer): HardState {
  return checkHardState(unpack(payload, 'hard state'));
}

export function encodeSnapshot(meta: SnapshotMeta, keepEntriesAfter: boolean): Buffer {
  return packr.pack({ meta: plainMeta(meta), keepEntriesAfter });
}

export function decodeSnapshot(payload: Buffer): { meta: SnapshotMeta; keepEntriesAfter: boolean } {
  const value = unpack(payload, 'snapshot record');
  if (typeof value.keepEntriesAfter !== 'boolean') throw corrupt('a snapshot record has bad fields');
  return { meta: checkMeta(value.meta), keepEntriesAfter: value.keepEntriesAfter };
}

export function encodeIndex(index: number): Buffer {
  const payload = Buffer.allocUnsafe(8);
  writeUint64BE(payload, 0, index);
  return payload;
}

export function decodeIndex(payload: Buffer): number {
  if (payload.length !== 8) throw corrupt('a compaction record has a bad length');
  return readUint64BE(payload, 0);
}

/**
 * The 9 bytes before a payload (length, chained CRC, type); returns them and the new chain value.
 * The payload is `parts`, one after the other, of `bytes` bytes in all.
 */
export function recordPrefix(
  type: RecordType,
  parts: readonly Uint8Array[],
  bytes: number,
  previousCrc: number,
): { prefix: Buffer; crc: number } {
  const prefix = Buffer.allocUnsafe(RECORD_PREFIX_BYTES + 1);
  prefix[RECORD_PREFIX_BYTES] = type;
  let crc = crc32(prefix.subarray(RECORD_PREFIX_BYTES), previousCrc);
  for (const part of parts) crc = crc32(part, crc);
  prefix.writeUInt32LE(1 + bytes, 0);
  prefix.writeUInt32LE(crc, 4);
  return { prefix, crc };
}

/** One record read back from a segment. */
export interface ScannedRecord {
  readonly type: RecordType;
  readonly payload: Buffer;
}

/** What a segment scan found. */
export interface SegmentScan {
  readonly records: ScannedRecord[];
  /** Byte offset right after the last valid record (where the next one would be written). */
  readonly endOffset: number;
  /** The CRC chain value after the last valid record. */
  readonly endCrc: number;
  /** Why the scan stopped: the segment is full, a zero length (clean end), or an invalid record. */
  readonly stop: 'full' | 'zero' | 'invalid';
}

/** Reads the valid records of a segment from its start; stops at the first zero or invalid one. */
export function scanSegment(bytes: Buffer, seq: number): SegmentScan {
  const records: ScannedRecord[] = [];
  let offset = 0;
  let crc = segmentSeed(seq);
  while (true) {
    if (offset + RECORD_PREFIX_BYTES + 1 > bytes.length) {
      const isZeroTail = offset + 4 > bytes.length || bytes.readUInt32LE(offset) === 0;
      return { records, endOffset: offset, endCrc: crc, stop: isZeroTail ? 'full' : 'invalid' };
    }
    const length = bytes.readUInt32LE(offset);
    if (length === 0) return { records, endOffset: offset, endCrc: crc, stop: 'zero' };
    const bodyStart = offset + RECORD_PREFIX_BYTES;
    if (bodyStart + length > bytes.length) return { records, endOffset: offset, endCrc: crc, stop: 'invalid' };
    const body = bytes.subarray(bodyStart, bodyStart + length);
    const expected = crc32(body, crc);
    const type = body[0];
    if (
      expected !== bytes.readUInt32LE(offset + 4) ||
      type < RecordType.SegmentHeader ||
      type > RecordType.Compaction
    ) {
      return { records, endOffset: offset, endCrc: crc, stop: 'invalid' };
    }
    records.push({ type: type as RecordType, payload: body.subarray(1) });
    crc = expected;
    offset = bodyStart + length;
  }
}

/**
 * The log as records replay it. `T` is what is kept per entry: the `Entry` itself when loading,
 * its term for the store's in-memory view of what is written and what is durable.
 * Entries are kept from `base` on; below `base` (after the oldest loaded segment's start) the log
 * is known only to be compacted, which `finish` checks.
 */
export class LogReplay<T> {
  hardState: HardState = { term: 0, vote: null, commit: 0 };
  snapshot: SnapshotMeta | null = null;
  compactedIndex = 0;
  base = 1;
  items: T[] = [];

  /** The index of the last entry (or of the start of the log when it holds none). */
  get lastIndex(): number {
    return this.base + this.items.length - 1;
  }

  /** The index the stored log continues after: the snapshot's or the last compacted one. */
  offset(): number {
    return Math.max(this.snapshot?.index ?? 0, this.compactedIndex);
  }

  /** Starts from a segment header (the oldest segment loaded). */
  start(header: SegmentHeader): void {
    this.hardState = header.hardState;
    this.snapshot = header.snapshot;
    this.compactedIndex = header.compactedIndex;
    this.base = header.firstIndex;
    this.items = [];
  }

  /** The header a new segment `seq` starts with, describing this state. */
  header(seq: number): SegmentHeader {
    return {
      seq,
      firstIndex: this.lastIndex + 1,
      hardState: this.hardState,
      snapshot: this.snapshot,
      compactedIndex: this.compactedIndex,
    };
  }

  /** Entries from `first`: a stored suffix from `first` on is replaced. */
  append(first: number, items: readonly T[]): void {
    if (first > this.lastIndex + 1) {
      throw corrupt(`the log has a gap: entries from ${first} follow the last index ${this.lastIndex}`);
    }
    if (first >= this.base) this.items.length = first - this.base;
    else {
      this.base = first;
      this.items = [];
    }
    for (const item of items) this.items.push(item);
  }

  applySnapshot(meta: SnapshotMeta, keepEntriesAfter: boolean): void {
    this.snapshot = meta;
    if (keepEntriesAfter && this.lastIndex > meta.index) this.dropThrough(meta.index);
    else {
      this.items = [];
      this.base = meta.index + 1;
    }
  }

  compact(index: number): void {
    const through = Math.min(index, this.lastIndex);
    if (through <= this.offset()) return;
    this.compactedIndex = through;
    this.dropThrough(through);
  }

  /** The item of entry `index`, or undefined when it is not held. */
  at(index: number): T | undefined {
    return index >= this.base ? this.items[index - this.base] : undefined;
  }

  /** The entries after the offset; throws `DAEMON_STORAGE_CORRUPT` if some are missing. */
  finish(): T[] {
    const offset = this.offset();
    if (this.lastIndex > offset && this.base > offset + 1) {
      throw corrupt(
        `the log has a gap: it starts at ${offset + 1} but the oldest segment holds entries from ${this.base}`,
      );
    }
    this.dropThrough(offset);
    return this.items;
  }

  private dropThrough(index: number): void {
    if (index < this.base) return;
    this.items = this.items.slice(index - this.base + 1);
    this.base = index + 1;
  }
}

function corrupt(message: string): Error {
  return storageError(StorageErrorCode.StorageCorrupt, `Raft WAL: ${message}`);
}

function unpack(payload: Buffer, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = packr.unpack(payload);
  } catch (error) {
    throw storageError(StorageErrorCode.StorageCorrupt, `Raft WAL: a ${what} does not decode`, error);
  }
  if (typeof value !== 'object' || value === null) throw corrupt(`a ${what} is not a record`);
  return value as Record<string, unknown>;
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function isNodeIds(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((id) => typeof id === 'string');
}

/**
 * `value` as a hard state, or null when its fields are not one's. Shared with the legacy LevelDB
 * log (raft-log-store.ts), which stores the same msgpack shapes; each caller words its own error.
 */
export function asHardState(value: unknown): HardState | null {
  const record = value as Record<string, unknown> | null;
  if (
    typeof record !== 'object' ||
    record === null ||
    !isCount(record.term) ||
    !isCount(record.commit) ||
    (record.vote !== null && typeof record.vote !== 'string')
  ) {
    return null;
  }
  return { term: record.term, vote: record.vote, commit: record.commit };
}

/** `value` as snapshot metadata, or null when its fields are not those of one (see `asHardState`). */
export function asSnapshotMeta(value: unknown): SnapshotMeta | null {
  const record = value as Record<string, unknown> | null;
  const conf = record?.conf as Record<string, unknown> | null | undefined;
  if (
    typeof record !== 'object' ||
    record === null ||
    !isCount(record.index) ||
    !isCount(record.term) ||
    typeof conf !== 'object' ||
    conf === null ||
    !isNodeIds(conf.voters) ||
    !isNodeIds(conf.learners) ||
    !isNodeIds(conf.votersOutgoing) ||
    !isNodeIds(conf.learnersNext)
  ) {
    return null;
  }
  return {
    index: record.index,
    term: record.term,
    conf: {
      voters: conf.voters,
      learners: conf.learners,
      votersOutgoing: conf.votersOutgoing,
      learnersNext: conf.learnersNext,
    },
  };
}

function checkHardState(value: unknown): HardState {
  const hardState = asHardState(value);
  if (hardState === null) throw corrupt('a hard state has bad fields');
  return hardState;
}

function checkMeta(value: unknown): SnapshotMeta {
  const meta = asSnapshotMeta(value);
  if (meta === null) throw corrupt('snapshot metadata has bad fields');
  return meta;
}
