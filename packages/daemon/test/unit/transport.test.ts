// Proves the gRPC peer transport between real sockets on 127.0.0.1: batched delivery with binary
// payloads intact, identity checks (stream metadata and each message's from/to), malformed frames
// rejected with a coded notice while the stream keeps serving, bounded per-peer queues that drop,
// drop-while-unreachable and reconnection after the peer comes back, and the artificial delay line.
import test from 'ava';
import { Client, Metadata, credentials } from '@grpc/grpc-js';
import type { ClientDuplexStream } from '@grpc/grpc-js';
import { pino } from 'pino';
import { GrpcTransport } from '../../src/transport/grpc-transport.js';
import type { GrpcTransportOptions } from '../../src/transport/grpc-transport.js';
import { decodeNotice, encodeFrame, peerStreamMethod } from '../../src/transport/peer-protocol.js';
import type { RaftMessage } from '../../src/raft-types.js';
import { DaemonMetrics } from '../../src/metrics.js';
import { freePorts, waitFor } from '../helpers/ports.js';

const silent = pino({ level: 'silent' });

function makeTransport(
  self: string,
  port: number,
  peers: Record<string, number>,
  overrides: Partial<GrpcTransportOptions> = {},
): { transport: GrpcTransport; received: RaftMessage[]; metrics: DaemonMetrics } {
  const metrics = new DaemonMetrics({ region: self, isDefaultMetricsEnabled: false });
  const transport = new GrpcTransport({
    self,
    listenAddress: `127.0.0.1:${port}`,
    peers: Object.entries(peers).map(([id, p]) => ({ id, address: `127.0.0.1:${p}`, delayMs: 0 })),
    queueMessagesMax: 1024,
    queueBytesMax: 16 * 1024 * 1024,
    messageBytesMax: 8 * 1024 * 1024,
    reconnectDelayMsMin: 10,
    reconnectDelayMsMax: 100,
    logger: silent,
    metrics,
    ...overrides,
  });
  const received: RaftMessage[] = [];
  transport.onMessage((m) => received.push(m));
  return { transport, received, metrics };
}

async function counter(metrics: DaemonMetrics, name: string, labels: Record<string, string>): Promise<number> {
  const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
  const value = (metric?.values as { labels: Record<string, string>; value: number }[] | undefined)?.find((v) =>
    Object.entries(labels).every(([k, l]) => v.labels[k] === l),
  );
  return value?.value ?? 0;
}

function msg(from: string, to: string, i: number, data?: Uint8Array): RaftMessage {
  return { type: 3, from, to, term: 1, index: i, entries: data ? [{ term: 1, index: i, type: 0, data }] : [] };
}

function rawStream(port: number, from: string, to: string): ClientDuplexStream<Buffer, Buffer> {
  const client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
  const metadata = new Metadata();
  metadata.set('rdl-peer-from', from);
  metadata.set('rdl-peer-to', to);
  return client.makeBidiStreamRequest(
    peerStreamMethod.path,
    peerStreamMethod.requestSerialize,
    peerStreamMethod.responseDeserialize,
    metadata,
  );
}

test('messages sent in one turn arrive, in order, with binary payloads intact', async (t) => {
  const [pa, pb] = await freePorts(2);
  const a = makeTransport('geneva', pa, { gland: pb });
  const b = makeTransport('gland', pb, { geneva: pa });
  t.teardown(() => Promise.all([a.transport.close(), b.transport.close()]));
  await Promise.all([a.transport.start(), b.transport.start()]);
  await waitFor(() => a.transport.gauges().isConnected.gland, 'geneva → gland stream');
  const payload = new Uint8Array(4096).map((_, i) => i % 251);
  a.transport.send(Array.from({ length: 100 }, (_, i) => msg('geneva', 'gland', i, payload)));
  await waitFor(() => b.received.length === 100, '100 messages');
  t.deepEqual(
    b.received.map((m) => m.index),
    Array.from({ length: 100 }, (_, i) => i),
  );
  const entries = b.received[42].entries as { data: Uint8Array }[];
  t.deepEqual(new Uint8Array(entries[0].data), payload);
  t.is(await counter(a.metrics, 'rdl_peer_messages_sent_total', { peer: 'gland' }), 100);
});

test('a stream from an unknown peer, or aimed at another region, is refused', async (t) => {
  const [pa, pb] = await freePorts(2);
  const a = makeTransport('geneva', pa, { gland: pb });
  t.teardown(() => a.transport.close());
  await a.transport.start();
  for (const [from, to] of [
    ['mallory', 'geneva'],
    ['gland', 'lucerne'],
  ]) {
    const stream = rawStream(pa, from, to);
    const error = await new Promise<{ code: number; metadata: Metadata }>((resolve) => stream.on('error', resolve));
    t.is(error.code, 7); // PERMISSION_DENIED
    t.deepEqual(error.metadata.get('rdl-code'), ['DAEMON_PEER_IDENTITY_MISMATCH']);
  }
  t.is(a.received.length, 0);
});

test('malformed frames and forged senders are rejected with coded notices; the stream keeps serving', async (t) => {
  const [pa, pb] = await freePorts(2);
  const a = makeTransport('geneva', pa, { gland: pb });
  t.teardown(() => a.transport.close());
  await a.transport.start();
  const stream = rawStream(pa, 'gland', 'geneva');
  const notices: { code: string; message: string }[] = [];
  stream.on('data', (frame: Buffer) => {
    const notice = decodeNotice(frame);
    if (notice) notices.push(notice);
  });
  stream.on('error', () => undefined);
  stream.write(Buffer.from([0xc1, 0xff, 0x00])); // 0xc1 is "never used" in msgpack
  await waitFor(() => notices.length === 1, 'first notice');
  t.is(notices[0].code, 'DAEMON_PEER_MESSAGE_INVALID');
  // A forged `from` inside a valid frame: rejected, the genuine message next to it is delivered.
  stream.write(encodeFrame([msg('lucerne', 'geneva', 1), msg('gland', 'geneva', 2), { nonsense: true } as never]));
  await waitFor(() => a.received.length === 1, 'the genuine message');
  t.is(a.received[0].index, 2);
  await waitFor(
    async () =>
      (await counter(a.metrics, 'rdl_peer_messages_rejected_total', { code: 'DAEMON_PEER_IDENTITY_MISMATCH' })) === 1,
    'identity rejection counted',
  );
  t.is(await counter(a.metrics, 'rdl_peer_messages_rejected_total', { code: 'DAEMON_PEER_MESSAGE_INVALID' }), 2);
  // A handler that throws on a message (the Raft node refusing it) does not take the daemon down.
  a.transport.onMessage(() => {
    throw new Error('bad message');
  });
  stream.write(encodeFrame([msg('gland', 'geneva', 3)]));
  await waitFor(
    async () =>
      (await counter(a.metrics, 'rdl_peer_messages_rejected_total', { code: 'DAEMON_PEER_MESSAGE_INVALID' })) === 3,
    'handler failure counted',
  );
  stream.end();
});

test('the per-peer queue is bounded and drops when full', async (t) => {
  const [pa, pb] = await freePorts(2);
  const a = makeTransport('geneva', pa, { gland: pb }, { queueMessagesMax: 16 });
  const b = makeTransport('gland', pb, { geneva: pa });
  t.teardown(() => Promise.all([a.transport.close(), b.transport.close()]));
  await Promise.all([a.transport.start(), b.transport.start()]);
  await waitFor(() => a.transport.gauges().isConnected.gland, 'stream open');
  a.transport.send(Array.from({ length: 50 }, (_, i) => msg('geneva', 'gland', i))); // one turn: no flush in between
  t.is(a.transport.gauges().queuedMessages.gland, 16);
  t.is(await counter(a.metrics, 'rdl_peer_messages_dropped_total', { reason: 'queue-full' }), 34);
  await waitFor(() => b.received.length === 16, 'the 16 queued messages');
  // Byte bound too: one message larger than the byte budget is refused.
  const c = makeTransport('geneva', 0, { gland: pb }, { queueBytesMax: 64 * 1024 });
  t.teardown(() => c.transport.close());
  await c.transport.start();
  await waitFor(() => c.transport.gauges().isConnected.gland, 'second stream open');
  c.transport.send([msg('geneva', 'gland', 1, new Uint8Array(128 * 1024))]);
  t.is(await counter(c.metrics, 'rdl_peer_messages_dropped_total', { reason: 'queue-full' }), 1);
});

test('messages to an unreachable peer are dropped; the stream reopens when the peer returns', async (t) => {
  const [pa, pb] = await freePorts(2);
  const a = makeTransport('geneva', pa, { gland: pb });
  t.teardown(() => a.transport.close());
  await a.transport.start();
  await waitFor(
    async () => (await counter(a.metrics, 'rdl_peer_reconnects_total', { peer: 'gland' })) >= 2,
    'a failed attempt and a retry',
  );
  // Sent while backing off it is dropped at once; sent while a doomed attempt is under way it is
  // queued and dropped when that attempt fails. Either way it does not linger.
  a.transport.send([msg('geneva', 'gland', 1)]);
  await waitFor(
    async () =>
      (await counter(a.metrics, 'rdl_peer_messages_dropped_total', { reason: 'unreachable' })) +
        (await counter(a.metrics, 'rdl_peer_messages_dropped_total', { reason: 'disconnected' })) >=
      1,
    'the message dropped',
  );
  t.is(a.transport.gauges().queuedMessages.gland, 0);
  const b = makeTransport('gland', pb, { geneva: pa });
  t.teardown(() => b.transport.close());
  await b.transport.start();
  await waitFor(() => a.transport.gauges().isConnected.gland, 'stream reopened', 10_000);
  a.transport.send([msg('geneva', 'gland', 2)]);
  await waitFor(() => b.received.some((m) => m.index === 2), 'delivery after reconnect');
  // And again after the peer restarts.
  await b.transport.close();
  await waitFor(() => !a.transport.gauges().isConnected.gland, 'loss noticed');
  const b2 = makeTransport('gland', pb, { geneva: pa });
  t.teardown(() => b2.transport.close());
  await b2.transport.start();
  await waitFor(() => a.transport.gauges().isConnected.gland, 'stream reopened again', 10_000);
  a.transport.send([msg('geneva', 'gland', 3)]);
  await waitFor(() => b2.received.some((m) => m.index === 3), 'delivery after the peer restarted');
  t.pass();
});

test('the delay line holds messages for the configured time and keeps their order', async (t) => {
  const [pa, pb] = await freePorts(2);
  const a = makeTransport('geneva', pa, { gland: pb });
  const delayed = new GrpcTransport({
    self: 'gland',
    listenAddress: `127.0.0.1:${pb}`,
    peers: [{ id: 'geneva', address: `127.0.0.1:${pa}`, delayMs: 80 }],
    queueMessagesMax: 1024,
    queueBytesMax: 16 * 1024 * 1024,
    messageBytesMax: 8 * 1024 * 1024,
    reconnectDelayMsMin: 10,
    reconnectDelayMsMax: 100,
    logger: silent,
  });
  t.teardown(() => Promise.all([a.transport.close(), delayed.close()]));
  await Promise.all([a.transport.start(), delayed.start()]);
  await waitFor(() => delayed.gauges().isConnected.geneva, 'stream open');
  const sentAt = performance.now();
  delayed.send([msg('gland', 'geneva', 1), msg('gland', 'geneva', 2)]);
  await waitFor(() => a.received.length === 2, 'delayed delivery', 5_000, 1);
  t.true(performance.now() - sentAt >= 80, 'delivered no earlier than the delay');
  t.deepEqual(
    a.received.map((m) => m.index),
    [1, 2],
  );
});
