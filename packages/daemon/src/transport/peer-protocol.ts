/**
 * The `rdl.v1.Peer` gRPC service between daemons: one bidi method `Stream`. The dialling daemon
 * opens one long-lived stream per peer and writes frames; each frame is a msgpack array of
 * `RaftMessage`s (a batch of what was queued during one event-loop turn). The accepting side
 * answers with nothing but rare notice frames (`{ code, message }`) describing messages it
 * rejected, so a misconfigured sender learns why without the stream being torn down.
 *
 * Stream identity travels in request metadata: `rdl-peer-from` (the dialler's region) and
 * `rdl-peer-to` (the region it believes it dialled). It is an identity check, not authentication
 * (there is no TLS yet, see docs/operations.md).
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

// Plain maps: a frame must decode on its own (records would make decoding depend on history).
// Binary fields decode as views into the received frame (msgpackr's default), so entry payloads
// are not copied on the receiving side.
const packr = new Packr({ useRecords: false, moreTypes: false });

/** Encodes a batch of messages into one frame. */
export function encodeFrame(messages: readonly RaftMessage[]): Buffer {
  return packr.pack(messages);
}

/** A frame's decoding: the messages that passed the shape check and a description of each rejected one. */
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

/**
 * Decodes a frame received on a stream from `peer` addressed to `self`. Never throws: undecodable
 * bytes, a non-array, messages without the RaftMessage shape (`DAEMON_PEER_MESSAGE_INVALID`) and
 * messages whose `from`/`to` do not match the stream (`DAEMON_PEER_IDENTITY_MISMATCH`) are returned
 * as rejections.
 */
export function decodeFrame(frame: Buffer, peer: string, self: string): DecodedFrame {
  let value: unknown;
  try {
    value = packr.unpack(frame);
  } catch (err) {
    return {
      messages: [],
      rejected: [{ code: DaemonErrorCode.PeerMessageInvalid, message: `undecodable frame: ${(err as Error).message}` }],
    };
  }
  if (!Array.isArray(value)) {
    return {
      messages: [],
      rejected: [{ code: DaemonErrorCode.PeerMessageInvalid, message: 'a frame must be an array of Raft messages' }],
    };
  }
  const messages: RaftMessage[] = [];
  const rejected: { code: string; message: string }[] = [];
  for (const item of value) {
    if (!isRaftMessage(item)) {
      rejected.push({
        code: DaemonErrorCode.PeerMessageInvalid,
        message: 'not a Raft message (needs integer type and term, string from and to)',
      });
    } else if (item.from !== peer || item.to !== self) {
      rejected.push({
        code: DaemonErrorCode.PeerIdentityMismatch,
        message: `message from ${JSON.stringify(item.from)} to ${JSON.stringify(item.to)} on the stream from ${peer} to ${self}`,
      });
    } else {
      messages.push(item);
    }
  }
  return { messages, rejected };
}

/** Encodes a notice frame (server → dialler). */
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

/**
 * Estimates a message's encoded size: a fixed envelope plus every binary payload it carries
 * (entry data, snapshot chunks), looking two levels deep. Used for queue byte limits, where an
 * estimate within tens of bytes per message is what matters.
 */
export function estimateMessageBytes(message: RaftMessage): number {
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
