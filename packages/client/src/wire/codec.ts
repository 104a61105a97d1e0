import { Packr } from 'msgpackr';

/**
 * The one msgpack codec of the block API: plain maps (`useRecords: false`, so messages are
 * self-describing and decodable by any msgpack library), binary as `bin`. Decoded binaries are
 * views into the received message buffer, which grpc-js allocates per message, so no copy is made.
 * Encoded messages are slices of msgpackr's arena and are never overwritten by later encodes.
 */
const packr = new Packr({ useRecords: false });

/** Encodes one message. Throws only on values msgpack cannot carry (a programmer error). */
export function encode(value: unknown): Buffer {
  return packr.pack(value);
}

/**
 * Decodes one message. Throws on malformed bytes; grpc-js turns a throwing deserializer into an
 * `INTERNAL` status for that call only, so a garbled message never takes a daemon down.
 */
export function decode<T>(bytes: Buffer): T {
  return packr.unpack(bytes) as T;
}
