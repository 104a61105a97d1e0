// Proves that listeners bound with bindGrpcServer (the peer and client listeners) advertise wide
// HTTP/2 receive windows: a raw Node HTTP/2 client connecting to a grpc-js server bound through it
// sees SETTINGS_INITIAL_WINDOW_SIZE = RECEIVE_STREAM_WINDOW_BYTES, the larger maximum frame size,
// and a connection window of RECEIVE_CONNECTION_WINDOW_BYTES; the same server bound with plain
// grpc-js keeps the 64 KiB defaults (so the first case fails if the widening stops working, e.g.
// a grpc-js upgrade moves the private map it reads).
import test from 'ava';
import { connect } from 'node:http2';
import type { ClientHttp2Session } from 'node:http2';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import {
  RECEIVE_CONNECTION_WINDOW_BYTES,
  RECEIVE_FRAME_BYTES_MAX,
  RECEIVE_STREAM_WINDOW_BYTES,
  bindGrpcServer,
} from '../../src/transport/listen.js';
import { waitFor } from '../helpers/ports.js';

async function connected(port: number): Promise<ClientHttp2Session> {
  const session = connect(`http://127.0.0.1:${port}`);
  session.on('error', () => undefined);
  await new Promise<void>((resolve) => session.once('remoteSettings', () => resolve()));
  return session;
}

test('a listener bound with bindGrpcServer advertises wide receive windows', async (t) => {
  const server = new Server();
  const port = await bindGrpcServer(server, '127.0.0.1:0', 'test');
  t.teardown(() => server.forceShutdown());
  const session = await connected(port);
  t.teardown(() => session.destroy());
  // The widened settings come in a second SETTINGS frame right after the first.
  await waitFor(() => session.remoteSettings.initialWindowSize === RECEIVE_STREAM_WINDOW_BYTES, 'stream window');
  t.is(session.remoteSettings.maxFrameSize, RECEIVE_FRAME_BYTES_MAX);
  await waitFor(() => (session.state.remoteWindowSize ?? 0) >= RECEIVE_CONNECTION_WINDOW_BYTES, 'connection window');
  t.pass();
});

test('a grpc-js listener bound without it keeps the 64 KiB defaults', async (t) => {
  const server = new Server();
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  t.teardown(() => server.forceShutdown());
  const session = await connected(port);
  t.teardown(() => session.destroy());
  t.is(session.remoteSettings.initialWindowSize, 65_535);
  t.true((session.state.remoteWindowSize ?? 0) < RECEIVE_CONNECTION_WINDOW_BYTES);
});
