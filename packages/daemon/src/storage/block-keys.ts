/**
 * The key layout and record encodings of the block state machine (docs/storage.md has the table).
 *
 * All state lives under `S` + generation (u32 BE) + a tag byte, so a snapshot being received can be
 * written beside the live state (the next generation) and switched to in one batch by rewriting the
 * generation key `G`.
 */
import { Packr } from 'msgpackr';
import { readUint64BE, writeUint64BE } from './database.js';
import { StorageErrorCode, storageError } from './errors.js';

/** Prefix byte of the state machine's keys. */
export const STATE_PREFIX = 0x53; // 'S'
/** The key holding the live generation (u32 BE). Absent means generation 0. */
export const GENERATION_KEY = Buffer.from([0x47]); // 'G'

/** Tag bytes after `S` + generation. */
export const Tag = {
  /** The meta record: applied index, log time, next volume id. */
  Meta: 0x6d, // 'm'
  /** A volume record, keyed by name (UTF-8). */
  Volume: 0x76, // 'v'
  /** A 4 KiB block, keyed by volume id (u32 BE) and block number (u64 BE). */
  Block: 0x62, // 'b'
  /** A client session, keyed by session id (UTF-8). */
  Session: 0x73, // 's'
  /** A deleted volume whose blocks are still being removed, keyed by volume id (u32 BE). */
  Deletion: 0x64, // 'd'
} as const;

/** Bytes of `S` + generation. */
export const GENERATION_PREFIX_BYTES = 5;
/** Bytes of a block key: prefix, tag, volume id, block number. */
export const BLOCK_KEY_BYTES = GENERATION_PREFIX_BYTES + 1 + 4 + 8;

/** `S` + generation: the start of a generation's key range. */
export function generationPrefix(generation: number): Buffer {
  const key = Buffer.allocUnsafe(GENERATION_PREFIX_BYTES);
  key[0] = STATE_PREFIX;
  key.writeUInt32BE(generation, 1);
  return key;
}

/** The first key after every key of `generation` (the exclusive end of its range). */
export function generationEnd(generation: number): Buffer {
  return generation >= 0xffff_ffff ? Buffer.from([STATE_PREFIX + 1]) : generationPrefix(generation + 1);
}

/** `S` + generation + tag + rest. */
export function stateKey(generation: number, tag: number, rest?: Uint8Array): Buffer {
  const key = Buffer.allocUnsafe(GENERATION_PREFIX_BYTES + 1 + (rest?.length ?? 0));
  key[0] = STATE_PREFIX;
  key.writeUInt32BE(generation, 1);
  key[GENERATION_PREFIX_BYTES] = tag;
  if (rest) key.set(rest, GENERATION_PREFIX_BYTES + 1);
  return key;
}

/** The key of block `blockNumber` of volume `volumeId`. */
export function blockKey(generation: number, volumeId: number, blockNumber: number): Buffer {
  const key = Buffer.allocUnsafe(BLOCK_KEY_BYTES);
  key[0] = STATE_PREFIX;
  key.writeUInt32BE(generation, 1);
  key[GENERATION_PREFIX_BYTES] = Tag.Block;
  key.writeUInt32BE(volumeId, GENERATION_PREFIX_BYTES + 1);
  writeUint64BE(key, GENERATION_PREFIX_BYTES + 5, blockNumber);
  return key;
}

/** The first key after every block of `volumeId`. */
export function blockRangeEnd(generation: number, volumeId: number): Buffer {
  const key = Buffer.allocUnsafe(GENERATION_PREFIX_BYTES + 5);
  key[0] = STATE_PREFIX;
  key.writeUInt32BE(generation, 1);
  key[GENERATION_PREFIX_BYTES] = Tag.Block;
  key.writeUInt32BE(volumeId + 1, GENERATION_PREFIX_BYTES + 1);
  return key;
}

/** The block number of a block key (full key, generation prefix included). */
export function blockNumberOf(key: Uint8Array): number {
  return readUint64BE(key, GENERATION_PREFIX_BYTES + 5);
}

/** The volume id of a key relative to the generation (tag first), for blocks and deletions. */
export function volumeIdOfRelative(relativeKey: Uint8Array): number {
  return Buffer.from(relativeKey.buffer, relativeKey.byteOffset, relativeKey.length).readUInt32BE(1);
}

/** The key of a volume record. */
export function volumeKey(generation: number, name: string): Buffer {
  return stateKey(generation, Tag.Volume, Buffer.from(name, 'utf8'));
}

/** The key of a session record. */
export function sessionKey(generation: number, id: string): Buffer {
  return stateKey(generation, Tag.Session, Buffer.from(id, 'utf8'));
}

/** The key of a pending volume deletion. */
export function deletionKey(generation: number, volumeId: number): Buffer {
  const id = Buffer.allocUnsafe(4);
  id.writeUInt32BE(volumeId, 0);
  return stateKey(generation, Tag.Deletion, id);
}

/** The meta record: what the state machine needs besides volumes, blocks and sessions. */
export interface MetaRecord {
  /** Index of the last applied entry. */
  appliedIndex: number;
  /** The largest leader timestamp seen in the log: the clock of session expiry. */
  logTimeMs: number;
  /** The id the next created volume gets (ids are never reused). */
  nextVolumeId: number;
}

/** A volume as stored. */
export interface VolumeRecord {
  id: number;
  name: string;
  sizeBytes: number;
  blockSizeBytes: number;
  createdAtMs: number;
}

/** A client session as stored (seqs sorted ascending). */
export interface SessionRecord {
  /** Every seq below it has been answered to the client. */
  floor: number;
  /** The applied seqs at or above `floor`. */
  seqs: number[];
  /** Log time of the last command of the session. */
  lastSeenMs: number;
  /** Log index of the last command of the session: orders sessions for eviction, deterministically. */
  lastSeenIndex: number;
}

const packr = new Packr({ useRecords: false, moreTypes: false });

/** Encodes a record value. */
export function encodeRecord(record: MetaRecord | VolumeRecord | SessionRecord): Buffer {
  return packr.pack(record);
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function corrupt(what: string, cause?: unknown): Error {
  return storageError(StorageErrorCode.StorageCorrupt, `the stored ${what} does not decode`, cause);
}

function unpack(bytes: Uint8Array, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = packr.unpack(bytes);
  } catch (error) {
    throw corrupt(what, error);
  }
  if (typeof value !== 'object' || value === null) throw corrupt(what);
  return value as Record<string, unknown>;
}

/** Decodes and checks a meta record (throws `DAEMON_STORAGE_CORRUPT`). */
export function decodeMeta(bytes: Uint8Array): MetaRecord {
  const value = unpack(bytes, 'meta record');
  if (!isCount(value.appliedIndex) || !isCount(value.logTimeMs) || !isCount(value.nextVolumeId)) {
    throw corrupt('meta record');
  }
  return { appliedIndex: value.appliedIndex, logTimeMs: value.logTimeMs, nextVolumeId: value.nextVolumeId };
}

/** Decodes and checks a volume record (throws `DAEMON_STORAGE_CORRUPT`). */
export function decodeVolume(bytes: Uint8Array): VolumeRecord {
  const value = unpack(bytes, 'volume record');
  if (
    !isCount(value.id) ||
    typeof value.name !== 'string' ||
    !isCount(value.sizeBytes) ||
    !isCount(value.blockSizeBytes) ||
    !isCount(value.createdAtMs)
  ) {
    throw corrupt('volume record');
  }
  return {
    id: value.id,
    name: value.name,
    sizeBytes: value.sizeBytes,
    blockSizeBytes: value.blockSizeBytes,
    createdAtMs: value.createdAtMs,
  };
}

/** Decodes and checks a session record (throws `DAEMON_STORAGE_CORRUPT`). */
export function decodeSession(bytes: Uint8Array): SessionRecord {
  const value = unpack(bytes, 'session record');
  if (
    !isCount(value.floor) ||
    !Array.isArray(value.seqs) ||
    !value.seqs.every(isCount) ||
    !isCount(value.lastSeenMs) ||
    !isCount(value.lastSeenIndex)
  ) {
    throw corrupt('session record');
  }
  return {
    floor: value.floor,
    seqs: value.seqs as number[],
    lastSeenMs: value.lastSeenMs,
    lastSeenIndex: value.lastSeenIndex,
  };
}
