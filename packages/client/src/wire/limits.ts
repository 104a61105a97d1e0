/** Block size of the store. Volume sizes are multiples of it; IO may use any byte range. */
export const BLOCK_SIZE_BYTES = 4096;

/** Largest `length` (and `data`) of one IO request. Larger IO must be split by the caller (the SDK does). */
export const IO_REQUEST_BYTES_MAX = 4 * 1024 * 1024;

/**
 * Protocol ceiling of requests one `Io` stream may have unanswered. A daemon may be configured
 * lower (rdld: `api.stream_inflight_max`, default 256) and answers the excess with
 * `RESOURCE_EXHAUSTED`, which the SDK retries after a back-off; the SDK's window defaults to 256.
 */
export const IO_STREAM_INFLIGHT_MAX = 1024;

/**
 * Most request bytes (the sum of the `length` of every unanswered request, whatever its op) one
 * `Io` stream may have unanswered. A server answers the excess with `RESOURCE_EXHAUSTED`; the
 * SDK's window stays below it.
 */
export const IO_STREAM_INFLIGHT_BYTES_MAX = 64 * 1024 * 1024;

/**
 * Most requests (or responses) one `Io` stream message carries. A batch above it fails the stream
 * with `TOO_LARGE`; senders split larger bursts into several messages.
 */
export const IO_BATCH_REQUESTS_MAX = 256;

/**
 * Payload bytes (write data in a request batch, read data in a response batch) a sender puts in
 * one `Io` message; a single request or response above it travels alone. Receivers need not check
 * it: `MESSAGE_BYTES_MAX` is the hard ceiling, enforced by gRPC.
 */
export const IO_BATCH_BYTES_MAX = IO_REQUEST_BYTES_MAX;

/**
 * Envelope allowance on top of the payload of one message: field names, ids, volume names,
 * sessions and error messages of up to `IO_BATCH_REQUESTS_MAX` requests (about 2 KiB each).
 */
const MESSAGE_OVERHEAD_BYTES_MAX = 512 * 1024;

/**
 * Largest encoded message either side accepts (grpc-js defaults to 4 MiB, too small for a full
 * 4 MiB write): a batch's payload (`IO_BATCH_BYTES_MAX`) plus its envelopes.
 */
export const MESSAGE_BYTES_MAX = IO_BATCH_BYTES_MAX + MESSAGE_OVERHEAD_BYTES_MAX;

/** Largest volume: 1 PiB keeps every byte offset a safe integer with room to spare. */
export const VOLUME_SIZE_BYTES_MAX = 2 ** 50;

/** Volume names: 1-128 characters, letters, digits, `.`, `_`, `-`, starting with a letter or digit. */
export const VOLUME_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Client session ids: 32 lowercase hex digits (128 random bits). */
export const SESSION_ID_PATTERN = /^[0-9a-f]{32}$/;

/**
 * HTTP/2 receive window of a client connection and of each of its streams: 1 MiB, about four
 * messages of 64 read answers (260 KiB each). With HTTP/2's default of 64 KiB a server could send only a
 * quarter of such a message before waiting for the client to wake up and grant more, three or
 * four times per message. It also bounds what a client that stops reading lets pile up in its
 * connection. (A window of two maximal messages, 9 MiB, once made the daemon's slow-reader test
 * fail, most likely as it later failed with 1 MiB: a paused client took in every answer, so the
 * daemon held none, and the resets seen were the test's teardown. The test now sizes its answers
 * so that cannot happen; the window stayed 1 MiB.)
 */
export const IO_RECEIVE_WINDOW_BYTES = 1024 * 1024;

/**
 * grpc-js channel and server options both sides should use so that a maximal IO message passes,
 * and so dead connections are noticed (keepalive) rather than hanging a stream.
 */
export const GRPC_CHANNEL_OPTIONS = Object.freeze({
  'grpc-node.flow_control_window': IO_RECEIVE_WINDOW_BYTES,
  'grpc.max_receive_message_length': MESSAGE_BYTES_MAX,
  'grpc.max_send_message_length': MESSAGE_BYTES_MAX,
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
});

/** grpc-js server options matching `GRPC_CHANNEL_OPTIONS` (allow the clients' keepalive pings). */
export const GRPC_SERVER_OPTIONS = Object.freeze({
  'grpc.max_receive_message_length': MESSAGE_BYTES_MAX,
  'grpc.max_send_message_length': MESSAGE_BYTES_MAX,
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.http2.min_ping_interval_without_data_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
});
