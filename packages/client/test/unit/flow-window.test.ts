// Proves the block API's channel options ask grpc-js for an HTTP/2 receive window of
// IO_RECEIVE_WINDOW_BYTES (1 MiB: room for several messages of 64 read answers) instead of
// HTTP/2's 64 KiB, and that RdlClient's channels use them. (The window itself cannot be observed from outside grpc-js, which buffers the
// messages of a paused stream itself, so a server's writes complete either way; its effect is
// measured in the benchmark, see docs/benchmarks.md.)
import test from 'ava';
import { RdlClient } from '../../src/index.js';
import {
  BLOCK_SIZE_BYTES,
  GRPC_CHANNEL_OPTIONS,
  IO_RECEIVE_WINDOW_BYTES,
  MESSAGE_BYTES_MAX,
} from '../../src/wire/index.js';

test('the receive window holds two messages of 64 read answers and RdlClient uses it', (t) => {
  t.true(IO_RECEIVE_WINDOW_BYTES >= 2 * 64 * (BLOCK_SIZE_BYTES + 64));
  t.true(IO_RECEIVE_WINDOW_BYTES <= MESSAGE_BYTES_MAX);
  t.is(GRPC_CHANNEL_OPTIONS['grpc-node.flow_control_window'], IO_RECEIVE_WINDOW_BYTES);
  const client = new RdlClient({ endpoints: ['127.0.0.1:1'] });
  t.is(client.options.channelOptions['grpc-node.flow_control_window'], IO_RECEIVE_WINDOW_BYTES);
});
