import { Packr } from 'msgpackr';
import { MESSAGE_BYTES_MAX } from './limits.js';
import type { IoResponse, IoResponseBatch } from './types.js';

/**
 * The server's encoder of `IoResponseBatch` messages: the same msgpack any decoder reads (a map
 * `{ responses: [ { id, ok, data? | error? } ] }`, as the generic `encode` writes it), written by
 * hand into one scratch buffer reused from message to message.
 *
 * Why: a message of read answers is mostly 4 KiB payloads (64 reads: 256 KiB). The generic
 * encoder grows its arena by copying as the message fills and leaves each message's bytes behind
 * as garbage, and grpc-js copies whatever the serializer returns into a framed buffer of its own
 * anyway. That garbage is external memory, which makes V8 run a full mark-compact every few
 * hundred milliseconds on a daemon serving reads. Here each payload is copied once, into the
 * scratch buffer, which is the size of the largest message so far (a sender keeps a message
 * within `IO_BATCH_BYTES_MAX` of payload plus one answer, grpc-js refuses one above
 * `MESSAGE_BYTES_MAX`), and nothing of message size is allocated per message.
 */

/** Encodes an error object (the rare path) with the generic codec's settings. */
const errorPackr = new Packr({ useRecords: false });

const KEY_RESPONSES = Buffer.from([0xa9, ...Buffer.from('responses')]);
const KEY_ID = Buffer.from([0xa2, ...Buffer.from('id')]);
const KEY_OK = Buffer.from([0xa2, ...Buffer.from('ok')]);
const KEY_DATA = Buffer.from([0xa4, ...Buffer.from('data')]);
const KEY_ERROR = Buffer.from([0xa5, ...Buffer.from('error')]);

/** Bytes of one response besides its payload or error: map header, keys, id (at most 9), flag, bin header. */
const RESPONSE_FIXED_BYTES_MAX = 1 + KEY_ID.length + 9 + KEY_OK.length + 1 + KEY_ERROR.length + 5;

const SCRATCH_BYTES_MIN = 64 * 1024;

let scratch = Buffer.allocUnsafe(SCRATCH_BYTES_MIN);

function writeKey(target: Buffer, position: number, key: Buffer): number {
  key.copy(target, position);
  return position + key.length;
}

/** A non-negative safe integer as the generic encoder writes it (uint up to 2^32, else float64). */
function writeUint(target: Buffer, position: number, value: number): number {
  if (value < 0x80) {
    target[position] = value;
    return position + 1;
  }
  if (value < 0x100) {
    target[position] = 0xcc;
    target[position + 1] = value;
    return position + 2;
  }
  if (value < 0x10000) {
    target[position] = 0xcd;
    target.writeUInt16BE(value, position + 1);
    return position + 3;
  }
  if (value < 0x100000000) {
    target[position] = 0xce;
    target.writeUInt32BE(value, position + 1);
    return position + 5;
  }
  target[position] = 0xcb;
  target.writeDoubleBE(value, position + 1);
  return position + 9;
}

function checkResponse(response: IoResponse): void {
  if (typeof response !== 'object' || response === null) throw new TypeError('an IoResponse must be an object');
  const { id } = response;
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) {
    throw new TypeError('an IoResponse id must be an integer >= 0');
  }
}

/**
 * Encodes `batch` and returns a view of the encoder's scratch buffer, valid ONLY until the next
 * call: the caller must copy it (or be done with it) before encoding again. grpc-js's server
 * does: it copies the serializer's result into its framed message within the same synchronous
 * call (`serializeMessage`), which is why this is the `Io` method's `responseSerialize`.
 * Anything else should use `encode`. Throws a `TypeError` on a response without a usable id or
 * a `data` that is not a `Uint8Array` (a programmer error, as with `encode`).
 */
export function encodeIoResponseBatchTransient(batch: IoResponseBatch): Buffer {
  const responses = batch.responses;
  if (!Array.isArray(responses)) throw new TypeError('an IoResponseBatch needs a responses array');
  // Size first (errors are packed now and copied below), so the scratch buffer grows at most once.
  let bytes = 1 + KEY_RESPONSES.length + 5;
  let errors: Buffer[] | null = null;
  for (let i = 0; i < responses.length; i++) {
    const response = responses[i];
    checkResponse(response);
    bytes += RESPONSE_FIXED_BYTES_MAX;
    if (response.error !== undefined) {
      // A view of the packer's arena: copied into the scratch buffer below, before any other pack.
      const packed = Buffer.from(errorPackr.pack(response.error));
      (errors ??= []).push(packed);
      bytes += packed.length;
    } else if (response.data !== undefined) {
      if (!(response.data instanceof Uint8Array)) throw new TypeError('an IoResponse data must be a Uint8Array');
      bytes += response.data.length;
    }
  }
  if (bytes > scratch.length) {
    scratch = Buffer.allocUnsafe(Math.max(bytes, Math.min(2 * scratch.length, MESSAGE_BYTES_MAX)));
  }
  const target = scratch;
  let position = 0;
  target[position++] = 0x81; // map of 1
  position = writeKey(target, position, KEY_RESPONSES);
  target[position] = 0xdd; // array 32
  target.writeUInt32BE(responses.length, position + 1);
  position += 5;
  let errorIndex = 0;
  for (let i = 0; i < responses.length; i++) {
    const response = responses[i];
    const hasError = response.error !== undefined;
    const hasData = !hasError && response.data !== undefined;
    target[position++] = hasError || hasData ? 0x83 : 0x82; // map of 3 or 2
    position = writeKey(target, position, KEY_ID);
    position = writeUint(target, position, response.id);
    position = writeKey(target, position, KEY_OK);
    target[position++] = response.ok === true ? 0xc3 : 0xc2;
    if (hasError) {
      position = writeKey(target, position, KEY_ERROR);
      const packed = errors![errorIndex++];
      packed.copy(target, position);
      position += packed.length;
    } else if (hasData) {
      const data = response.data!;
      position = writeKey(target, position, KEY_DATA);
      target[position] = 0xc6; // bin 32
      target.writeUInt32BE(data.length, position + 1);
      position += 5;
      target.set(data, position);
      position += data.length;
    }
  }
  return target.subarray(0, position);
}
