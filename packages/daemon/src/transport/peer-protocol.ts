/**
 * The `rdl.v1.Peer` gRPC service between daemons: one bidi method `Stream`. The dialling daemon
 * opens one long-lived stream per peer and writes frames; each frame carries a batch of
 * `RaftMessage`s (what was queued during one event-loop turn). The accepting side answers with
 * nothing but rare notice frames (a msgpack map `{ code, message }`) describing messages it
 * rejected, so a misconfigured sender learns why without the stream being torn down.
 *
 * Stream identity travels in request metadata: `rdl-peer-from` (the dialler's region) and
 * `rdl-peer-to` (the region it believes it dialled). It is an identity check, not authentication
 * (there is no TLS yet, see docs/operations.md). Both sides also name their frame format version
 * (`rdl-peer-protocol`, request and response headers): daemons of different versions refuse each
 * other's streams with DAEMON_PEER_PROTOCOL_MISMATCH instead of misreading frames.
 *
 * Frame format, version 2 (all integers little-endian):
 *
 * ```
 * frame   = 0xC1 'R' version=2 flags=0  count:u32  message{count}
 * message = kind:u8 body
 *   kind 1 (a Raft message of the core's shape, the usual case):
 *           type:u8 reject:u8 fromLength:u8 from toLength:u8 to
 *           term logTerm index commit rejectHint context: f64 each (non-negative safe integers)
 *           entryCount:u32 entry{entryCount}
 *   entry = term:f64 index:f64 type:u8 dataLength:u32 data
 *   kind 2 (anything else, e.g. snapshot chunks): length:u32 then a msgpack map of that length
 * ```
 *
 * Entry payloads are copied once into each frame with no per-field encoding, and decoded as views
 * into the received frame (no copy): they keep the frame's memory alive for as long as the entry
 * lives, which is the entry's own size give or take its neighbours. The first byte 0xC1 is never
 * used by msgpack, so a version-1 daemon (msgpack frames) rejects a version-2 frame as
 * undecodable, and a version-2 daemon recognises a version-1 frame by its first byte.
 */
import type { MethodDefinition } from '@grpc/grpc-js';
import { Packr } from 'msgpackr';
import type { RaftMessage } from '../raft-types.js';
import { DaemonErrorCode } from '../errors.js';

/** Fully qualified service name. */
export const PEER_SERVICE_NAME = 'rdl.v1.Peer';
/** Metadata key: region of the daemon that opened the stream. */
export const METADATA_PEER_FROM = 'rdl-peer-from';
/** Metadata key: region the dialler expects to reach. */
export const METADATA_PEER_TO = 'rdl-peer-to';
/** Metadata key (request and response headers): the frame format version the daemon speaks. */
export const METADATA_PEER_PROTOCOL = 'rdl-peer-protocol';
/** The frame format version this daemon writes and accepts. */
export const PEER_PROTOCOL_VERSION = 2;

const identity = (value: Buffer): Buffer => value;

/**
 * The `Stream` method with identity (de)serializers: frames are decoded by the handler itself so
 * that a malformed frame is rejected with a coded notice instead of grpc-js failing the whole call.
 */
export const peerStreamMethod: MethodDefinition<Buffer, Buffer> = {
  path: `/${PEER_SERVICE_NAME}/Stream`,
  requestStream: true,
  responseStream: true,
  requestSerialize: identity,
  requestDeserialize: identity,
  responseSerialize: identity,
  responseDeserialize: identity,
  originalName: 'stream',
};

/** The service definition for `server.addService`. */
export const peerService = { stream: peerStreamMethod };

// Plain maps: a message must decode on its own (records would make decoding depend on history).
// Binary fields decode as views into the received frame (msgpackr's default).
const packr = new Packr({ useRecords: false, moreTypes: false });

const MAGIC_0 = 0xc1;
const MAGIC_1 = 0x52;
const FRAME_HEADER_BYTES = 8;
const KIND_COMPACT = 1;
const KIND_MSGPACK = 2;
/** kind, type, reject, two length bytes, six f64 fields, entry count. */
const COMPACT_FIXED_BYTES = 1 + 1 + 1 + 2 + 6 * 8 + 4;
const ENTRY_FIXED_BYTES = 8 + 8 + 1 + 4;
const MSGPACK_FIXED_BYTES = 1 + 4;
/** Own enumerable keys of the core's messages without a snapshot (see `compactBytes`). */
const COMPACT_KEY_COUNT = 11;
const ENTRY_KEY_COUNT = 4;

// UTF-8 bytes of node ids, which are a handful of region names: encoded once, not per message.
const idBytesCache = new Map<string, Buffer>();
const ID_CACHE_MAX = 64;

function idBytes(id: string): Buffer {
  let bytes = idBytesCache.get(id);
  if (bytes === undefined) {
    bytes = Buffer.from(id, 'utf8');
    if (idBytesCache.size >= ID_CACHE_MAX) idBytesCache.clear();
    idBytesCache.set(id, bytes);
  }
  return bytes;
}

// Frames are carved out of 1 MiB slabs, and a slab is reused once every frame carved from it was
// released (`releaseFrame`, which the transport calls when grpc-js reports the write done: by then
// grpc-js has copied the frame into its own length-prefixed message). Writing into fresh memory
// costs a page fault per 4 KiB, which was most of the cost of encoding an entry. A frame that is
// never released (an error, a test) only keeps its slab from being reused; the bookkeeping of such
// slabs is bounded and they are left to the garbage collector.
const SLAB_BYTES = 1024 * 1024;
const SPARE_SLABS_MAX = 4;
const RETIRED_SLABS_MAX = 32;

interface Slab {
  readonly memory: Buffer;
  used: number;
  /** Frames handed out and not released yet. */
  outstanding: number;
}

let currentSlab: Slab | null = null;
/** Full slabs with frames still out, oldest first. */
const retiredSlabs: Slab[] = [];
const spareSlabs: Slab[] = [];
const slabsByMemory = new Map<ArrayBufferLike, Slab>();
let isScribblingReleasedFrames = false;

function allocateFrame(bytes: number): Buffer {
  if (bytes > SLAB_BYTES / 4) return Buffer.allocUnsafeSlow(bytes); // not pooled; releaseFrame ignores it
  let slab = currentSlab;
  if (slab === null || slab.used + bytes > slab.memory.length) {
    if (slab !== null) retireSlab(slab);
    slab = spareSlabs.pop() ?? newSlab();
    slab.used = 0;
    currentSlab = slab;
  }
  const frame = slab.memory.subarray(slab.used, slab.used + bytes);
  // Keep the next frame 8-byte aligned (cheaper copies).
  slab.used += (bytes + 7) & ~7;
  slab.outstanding++;
  return frame;
}

function newSlab(): Slab {
  const slab: Slab = { memory: Buffer.allocUnsafeSlow(SLAB_BYTES), used: 0, outstanding: 0 };
  slabsByMemory.set(slab.memory.buffer, slab);
  return slab;
}

function retireSlab(slab: Slab): void {
  if (slab.outstanding === 0) {
    recycleSlab(slab);
    return;
  }
  retiredSlabs.push(slab);
  if (retiredSlabs.length > RETIRED_SLABS_MAX) slabsByMemory.delete(retiredSlabs.shift()!.memory.buffer);
}

function recycleSlab(slab: Slab): void {
  if (spareSlabs.length < SPARE_SLABS_MAX) spareSlabs.push(slab);
  else slabsByMemory.delete(slab.memory.buffer);
}

/**
 * Hands a frame from `encodeFrame` back for reuse. Call it once per frame, only when nothing will
 * read the frame again (the transport: when grpc-js completed the write without error). Frames not
 * from the pool are ignored.
 */
export function releaseFrame(frame: Buffer): void {
  const slab = slabsByMemory.get(frame.buffer);
  if (slab === undefined || slab.outstanding === 0) return;
  if (isScribblingReleasedFrames) frame.fill(0xee);
  slab.outstanding--;
  if (slab.outstanding > 0 || slab === currentSlab) return;
  const i = retiredSlabs.indexOf(slab);
  if (i >= 0) retiredSlabs.splice(i, 1);
  recycleSlab(slab);
}

/**
 * Test hook: overwrite every released frame, so that a test sees corrupted payloads if anything
 * (a future grpc-js that does not copy) still read a frame after its release.
 */
export function setScribblingReleasedFrames(isScribbling: boolean): void {
  isScribblingReleasedFrames = isScribbling;
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function keyCount(value: object): number {
  let n = 0;
  for (const key in value) if (Object.hasOwn(value, key)) n++;
  return n;
}

/**
 * The exact encoded size of `message` in the compact layout (kind 1), or -1 when it does not have
 * exactly the core's shape (then it travels as msgpack and keeps every field it has). A sender may
 * compute it once and pass it to `estimateMessageBytes` and `encodeFrame`.
 */
export function compactBytes(message: RaftMessage): number {
  const m = message as Record<string, unknown>;
  const type = m.type;
  if (typeof type !== 'number' || !Number.isInteger(type) || type < 0 || type > 0xff) return -1;
  if (typeof m.from !== 'string' || typeof m.to !== 'string' || typeof m.reject !== 'boolean') return -1;
  if (!isCount(m.term) || !isCount(m.logTerm) || !isCount(m.index) || !isCount(m.commit)) return -1;
  if (!isCount(m.rejectHint) || !isCount(m.context) || !Array.isArray(m.entries)) return -1;
  if (keyCount(m) !== COMPACT_KEY_COUNT) return -1;
  const fromLength = idBytes(m.from).length;
  const toLength = idBytes(m.to).length;
  if (fromLength > 0xff || toLength > 0xff) return -1;
  let bytes = COMPACT_FIXED_BYTES + fromLength + toLength;
  const entries = m.entries as unknown[];
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i] as Record<string, unknown> | null;
    if (typeof e !== 'object' || e === null || !(e.data instanceof Uint8Array)) return -1;
    if (!isCount(e.term) || !isCount(e.index) || typeof e.type !== 'number') return -1;
    if (!Number.isInteger(e.type) || e.type < 0 || e.type > 0xff || keyCount(e) !== ENTRY_KEY_COUNT) return -1;
    bytes += ENTRY_FIXED_BYTES + e.data.byteLength;
  }
  return bytes;
}

/**
 * A message's size in a frame: exact for the compact layout; for anything else an estimate (a
 * fixed envelope plus every binary payload, two levels deep). Used for queue byte limits and frame
 * sizing, where an estimate within tens of bytes per message is what matters.
 */
export function estimateMessageBytes(message: RaftMessage, compact = compactBytes(message)): number {
  if (compact >= 0) return compact;
  let bytes = 64;
  for (const value of Object.values(message)) {
    if (value instanceof Uint8Array) bytes += value.length;
    else if (Array.isArray(value)) {
      for (const item of value) {
        bytes += 16;
        if (item instanceof Uint8Array) bytes += item.length;
        else if (typeof item === 'object' && item !== null) {
          for (const inner of Object.values(item as Record<string, unknown>)) {
            if (inner instanceof Uint8Array) bytes += inner.length;
          }
        }
      }
    } else if (typeof value === 'object' && value !== null) {
      bytes += 32;
      for (const inner of Object.values(value as Record<string, unknown>)) {
        if (inner instanceof Uint8Array) bytes += inner.length;
      }
    } else if (typeof value === 'string') bytes += value.length;
  }
  return bytes;
}

/**
 * Encodes a batch of messages into one frame (format above). `compactSizes[i]`, if given, must be
 * `compactBytes(messages[i])` of the message as it is now (it saves recomputing it). Throws only
 * for a message msgpack cannot carry (a bug in whoever built it). The frame may come from a reused
 * slab: hand it to `releaseFrame` once nothing reads it any more.
 */
export function encodeFrame(messages: readonly RaftMessage[], compactSizes?: readonly number[]): Buffer {
  let packed: (Buffer | null)[] | null = null;
  let total = FRAME_HEADER_BYTES;
  for (let i = 0; i < messages.length; i++) {
    let size = compactSizes === undefined ? compactBytes(messages[i]) : compactSizes[i];
    if (size < 0) {
      packed ??= new Array<Buffer | null>(messages.length).fill(null);
      const bytes = packr.pack(messages[i]);
      packed[i] = bytes;
      size = MSGPACK_FIXED_BYTES + bytes.length;
    }
    total += size;
  }
  const frame = allocateFrame(total);
  frame[0] = MAGIC_0;
  frame[1] = MAGIC_1;
  frame[2] = PEER_PROTOCOL_VERSION;
  frame[3] = 0;
  frame.writeUInt32LE(messages.length, 4);
  let pos = FRAME_HEADER_BYTES;
  for (let i = 0; i < messages.length; i++) {
    const bytes = packed?.[i] ?? null;
    if (bytes !== null) {
      frame[pos] = KIND_MSGPACK;
      frame.writeUInt32LE(bytes.length, pos + 1);
      bytes.copy(frame, pos + MSGPACK_FIXED_BYTES);
      pos += MSGPACK_FIXED_BYTES + bytes.length;
      continue;
    }
    const m = messages[i] as RaftMessage & {
      logTerm: number;
      index: number;
      commit: number;
      rejectHint: number;
      context: number;
      reject: boolean;
      entries: readonly { term: number; index: number; type: number; data: Uint8Array }[];
    };
    frame[pos++] = KIND_COMPACT;
    frame[pos++] = m.type;
    frame[pos++] = m.reject ? 1 : 0;
    const from = idBytes(m.from);
    frame[pos++] = from.length;
    pos += from.copy(frame, pos);
    const to = idBytes(m.to);
    frame[pos++] = to.length;
    pos += to.copy(frame, pos);
    pos = frame.writeDoubleLE(m.term, pos);
    pos = frame.writeDoubleLE(m.logTerm, pos);
    pos = frame.writeDoubleLE(m.index, pos);
    pos = frame.writeDoubleLE(m.commit, pos);
    pos = frame.writeDoubleLE(m.rejectHint, pos);
    pos = frame.writeDoubleLE(m.context, pos);
    const entries = m.entries;
    pos = frame.writeUInt32LE(entries.length, pos);
    for (let j = 0; j < entries.length; j++) {
      const e = entries[j];
      pos = frame.writeDoubleLE(e.term, pos);
      pos = frame.writeDoubleLE(e.index, pos);
      frame[pos++] = e.type;
      const data = e.data;
      pos = frame.writeUInt32LE(data.byteLength, pos);
      frame.set(data, pos);
      pos += data.byteLength;
    }
  }
  // The sizes were computed from the same messages: a mismatch is a bug here, not bad input.
  if (pos !== total) throw new Error(`peer frame size mismatch: wrote ${pos} of ${total} bytes`);
  return frame;
}

/** A frame's decoding: the messages that passed the checks and a description of each rejected one. */
export interface DecodedFrame {
  readonly messages: RaftMessage[];
  readonly rejected: { code: string; message: string }[];
}

function isRaftMessage(value: unknown): value is RaftMessage {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) return false;
  const m = value as Record<string, unknown>;
  return (
    typeof m.type === 'number' &&
    Number.isSafeInteger(m.type) &&
    typeof m.from === 'string' &&
    typeof m.to === 'string' &&
    typeof m.term === 'number' &&
    Number.isSafeInteger(m.term) &&
    m.term >= 0
  );
}

/** Thrown inside `decodeFrame` when the frame ends early: the rest of it cannot be parsed. */
class TruncatedFrame extends Error {}

/**
 * Decodes a frame received on a stream from `peer` addressed to `self`. Never throws. Rejections:
 * a frame of another format version (`DAEMON_PEER_PROTOCOL_MISMATCH`); a truncated or garbled
 * frame, a message without the RaftMessage shape or with counts that are not non-negative safe
 * integers (`DAEMON_PEER_MESSAGE_INVALID`); messages whose `from`/`to` do not match the stream
 * (`DAEMON_PEER_IDENTITY_MISMATCH`). Messages before a point where the frame cannot be parsed any
 * further are still returned. Entry payloads are views into `frame`.
 */
export function decodeFrame(frame: Buffer, peer: string, self: string): DecodedFrame {
  const messages: RaftMessage[] = [];
  const rejected: { code: string; message: string }[] = [];
  if (frame.length < FRAME_HEADER_BYTES || frame[0] !== MAGIC_0 || frame[1] !== MAGIC_1) {
    rejected.push({
      code: DaemonErrorCode.PeerProtocolMismatch,
      message: `not a peer frame of protocol version ${PEER_PROTOCOL_VERSION} (version 1 daemons send msgpack frames)`,
    });
    return { messages, rejected };
  }
  if (frame[2] !== PEER_PROTOCOL_VERSION) {
    rejected.push({
      code: DaemonErrorCode.PeerProtocolMismatch,
      message: `peer frame of protocol version ${frame[2]}; this daemon speaks version ${PEER_PROTOCOL_VERSION}`,
    });
    return { messages, rejected };
  }
  const count = frame.readUInt32LE(4);
  const peerBytes = idBytes(peer);
  const selfBytes = idBytes(self);
  let pos = FRAME_HEADER_BYTES;
  const need = (n: number): void => {
    if (pos + n > frame.length) throw new TruncatedFrame();
  };
  const readCount = (): number => {
    const value = frame.readDoubleLE(pos);
    pos += 8;
    return value;
  };
  let decoded = 0;
  try {
    for (; decoded < count; decoded++) {
      need(1);
      const kind = frame[pos++];
      if (kind === KIND_MSGPACK) {
        need(4);
        const length = frame.readUInt32LE(pos);
        pos += 4;
        need(length);
        const body = frame.subarray(pos, pos + length);
        pos += length;
        let value: unknown;
        try {
          value = packr.unpack(body);
        } catch (err) {
          rejected.push({
            code: DaemonErrorCode.PeerMessageInvalid,
            message: `undecodable message: ${(err as Error).message}`,
          });
          continue;
        }
        if (!isRaftMessage(value)) {
          rejected.push({
            code: DaemonErrorCode.PeerMessageInvalid,
            message: 'not a Raft message (needs integer type and term, string from and to)',
          });
        } else if (value.from !== peer || value.to !== self) {
          rejected.push(identityMismatch(value.from, value.to, peer, self));
        } else {
          messages.push(value);
        }
        continue;
      }
      if (kind !== KIND_COMPACT) {
        rejected.push({
          code: DaemonErrorCode.PeerMessageInvalid,
          message: `unknown message kind ${kind}; the rest of the frame is dropped`,
        });
        return { messages, rejected };
      }
      need(3);
      const type = frame[pos];
      const reject = frame[pos + 1];
      const fromLength = frame[pos + 2];
      pos += 3;
      need(fromLength + 1);
      const fromStart = pos;
      pos += fromLength;
      const toLength = frame[pos++];
      need(toLength + 6 * 8 + 4);
      const toStart = pos;
      pos += toLength;
      const isFromPeer = peerBytes.compare(frame, fromStart, fromStart + fromLength) === 0;
      const isToSelf = selfBytes.compare(frame, toStart, toStart + toLength) === 0;
      const term = readCount();
      const logTerm = readCount();
      const index = readCount();
      const commit = readCount();
      const rejectHint = readCount();
      const context = readCount();
      const entryCount = frame.readUInt32LE(pos);
      pos += 4;
      // Each entry takes at least ENTRY_FIXED_BYTES: a forged count cannot make us allocate more.
      need(entryCount * ENTRY_FIXED_BYTES);
      const entries = new Array<{ term: number; index: number; type: number; data: Uint8Array }>(entryCount);
      let isValid =
        (reject === 0 || reject === 1) &&
        isCount(term) &&
        isCount(logTerm) &&
        isCount(index) &&
        isCount(commit) &&
        isCount(rejectHint) &&
        isCount(context);
      for (let j = 0; j < entryCount; j++) {
        need(ENTRY_FIXED_BYTES);
        const entryTerm = readCount();
        const entryIndex = readCount();
        const entryType = frame[pos++];
        const length = frame.readUInt32LE(pos);
        pos += 4;
        need(length);
        if (!isCount(entryTerm) || !isCount(entryIndex)) isValid = false;
        entries[j] = { term: entryTerm, index: entryIndex, type: entryType, data: frame.subarray(pos, pos + length) };
        pos += length;
      }
      if (!isValid) {
        rejected.push({
          code: DaemonErrorCode.PeerMessageInvalid,
          message: 'a Raft message field is not a non-negative safe integer',
        });
      } else if (!isFromPeer || !isToSelf) {
        const from = frame.toString('utf8', fromStart, fromStart + fromLength);
        const to = frame.toString('utf8', toStart, toStart + toLength);
        rejected.push(identityMismatch(from, to, peer, self));
      } else {
        const message: RaftMessage = {
          type,
          from: peer,
          to: self,
          term,
          logTerm,
          index,
          entries,
          commit,
          reject: reject === 1,
          rejectHint,
          context,
        };
        messages.push(message);
      }
    }
  } catch (err) {
    if (!(err instanceof TruncatedFrame)) throw err;
    rejected.push({
      code: DaemonErrorCode.PeerMessageInvalid,
      message: `truncated frame: message ${decoded + 1} of ${count} ends past the frame's ${frame.length} bytes`,
    });
    return { messages, rejected };
  }
  if (pos !== frame.length) {
    rejected.push({
      code: DaemonErrorCode.PeerMessageInvalid,
      message: `${frame.length - pos} bytes after the frame's ${count} messages`,
    });
  }
  return { messages, rejected };
}

function identityMismatch(from: string, to: string, peer: string, self: string): { code: string; message: string } {
  return {
    code: DaemonErrorCode.PeerIdentityMismatch,
    message: `message from ${JSON.stringify(from)} to ${JSON.stringify(to)} on the stream from ${peer} to ${self}`,
  };
}

/** Encodes a notice frame (server → dialler): a msgpack map, the same in every protocol version. */
export function encodeNotice(notice: { code: string; message: string }): Buffer {
  return packr.pack(notice);
}

/** Decodes a notice frame; returns null for anything else. */
export function decodeNotice(frame: Buffer): { code: string; message: string } | null {
  try {
    const value = packr.unpack(frame) as Record<string, unknown>;
    if (typeof value?.code === 'string' && typeof value.message === 'string') {
      return { code: value.code, message: value.message };
    }
  } catch {
    // A garbled notice is only diagnostics; ignore it.
  }
  return null;
}
