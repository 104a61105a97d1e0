// Proves the gRPC peer transport between real sockets on 127.0.0.1: batched delivery with binary
// payloads intact, identity checks (stream metadata and each message's from/to), malformed frames
// rejected with a coded notice while the stream keeps serving, bounded per-peer queues that drop,
// drop-while-unreachable and reconnection after the peer comes back, and the artificial delay line.
// The version-2 frame format is checked directly too: round trips (compact and msgpack messages),
// received payloads as views into the frame, every truncation and seeded random corruption
// rejected with a code and never thrown, and version mismatches refused both ways (a version-1
// frame or dialler here, a version-1 server there; a version-1 decoder cannot read our frames).
// Frame memory is reused once released, and a test that overwrites every released frame checks
// that nothing (grpc-js) still reads a frame after the transport released it. Lanes: a heartbeat
// sent behind 32 MiB of queued appends arrives before the appends do (on one shared stream it
// arrived last), messages are routed to the control or bulk lane by type, and a burst of 1 MiB
// appends leaves as one frame per append rather than one multi-megabyte frame.
import test from 'ava';
import { Client, Metadata, Server, ServerCredentials, credentials } from '@grpc/grpc-js';
import type { ClientDuplexStream, ServerDuplexStream } from '@grpc/grpc-js';
import { Packr } from 'msgpackr';
import { pino } from 'pino';
import { FRAME_BYTES_TARGET, GrpcTransport, laneOf } from '../../src/transport/grpc-transport.js';
import type { GrpcTransportOptions } from '../../src/transport/grpc-transport.js';
import {
  PEER_PROTOCOL_VERSION,
  decodeFrame,
  decodeNotice,
  encodeFrame,
  estimateMessageBytes,
  peerService,
  peerStreamMethod,
  releaseFrame,
  setScribblingReleasedFrames,
} from '../../src/transport/peer-protocol.js';
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

/** A message of the Raft core's shape (it travels in the compact layout). */
function msg(from: string, to: string, i: number, data?: Uint8Array): RaftMessage {
  return {
    type: 1,
    from,
    to,
    term: 1,
    logTerm: 1,
    index: i,
    entries: data ? [{ term: 1, index: i + 1, type: 0, data }] : [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    context: 0,
  };
}

function rawStream(
  port: number,
  from: string,
  to: string,
  protocol: string | null = String(PEER_PROTOCOL_VERSION),
): ClientDuplexStream<Buffer, Buffer> {
  const client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
  const metadata = new Metadata();
  metadata.set('rdl-peer-from', from);
  metadata.set('rdl-peer-to', to);
  if (protocol !== null) metadata.set('rdl-peer-protocol', protocol);
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
  t.is(await counter(b.metrics, 'rdl_peer_messages_received_total', { peer: 'geneva' }), 100);
  // A message not of the core's plain shape (a snapshot chunk) travels as msgpack, every field kept.
  const chunk = { ...msg('geneva', 'gland', 7), type: 12, snapshot: { seq: 0, isLast: true, data: payload } };
  a.transport.send([chunk]);
  await waitFor(() => b.received.length === 101, 'the snapshot chunk');
  t.deepEqual({ ...b.received[100], snapshot: { ...(b.received[100].snapshot as object), data: payload } }, chunk);
  t.deepEqual(new Uint8Array((b.received[100].snapshot as { data: Uint8Array }).data), payload);
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
  // A frame header announcing one message, then nothing: truncated.
  stream.write(Buffer.from([0xc1, 0x52, PEER_PROTOCOL_VERSION, 0, 1, 0, 0, 0]));
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

/** mulberry32: a seeded generator, so the corruption test replays exactly. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

function sampleFrame(): { frame: Buffer; messages: RaftMessage[] } {
  const payload = new Uint8Array(300).map((_, i) => (i * 7) % 256);
  const messages: RaftMessage[] = [
    {
      ...msg('gland', 'geneva', 10),
      entries: [0, 1, 2].map((k) => ({ term: 1, index: 11 + k, type: k % 2, data: payload.subarray(k) })),
    },
    { ...msg('gland', 'geneva', 4), type: 2, reject: true, rejectHint: 3, context: 2 ** 40, commit: 9 },
    { ...msg('gland', 'geneva', 0), type: 12, snapshot: { seq: 1, isLast: false, data: payload } },
  ];
  return { frame: encodeFrame(messages), messages };
}

test('frames round-trip; sizes are exact for the compact layout; payloads decode as views into the frame', (t) => {
  const { frame, messages } = sampleFrame();
  t.deepEqual([...frame.subarray(0, 3)], [0xc1, 0x52, PEER_PROTOCOL_VERSION]);
  const copy = Buffer.from(frame);
  const { messages: decoded, rejected } = decodeFrame(copy, 'gland', 'geneva');
  t.deepEqual(rejected, []);
  t.is(decoded.length, 3);
  const normalize = (v: unknown): unknown =>
    v instanceof Uint8Array
      ? [...v]
      : Array.isArray(v)
        ? v.map(normalize)
        : typeof v === 'object' && v !== null
          ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalize(x)]))
          : v;
  t.deepEqual(decoded.map(normalize), messages.map(normalize));
  // No copy on receipt: an entry's data shares the frame's memory.
  const data = (decoded[0].entries as { data: Uint8Array }[])[1].data;
  t.is(data.buffer, copy.buffer);
  copy[data.byteOffset - copy.byteOffset] ^= 0xff;
  t.not(data[0], (messages[0].entries as { data: Uint8Array }[])[1].data[0], 'the view sees the frame change');
  // The compact messages' estimate is their exact size in a frame (8 bytes of frame header).
  t.is(encodeFrame([messages[0]]).length, 8 + estimateMessageBytes(messages[0]));
  t.is(encodeFrame([messages[1]]).length, 8 + estimateMessageBytes(messages[1]));
});

test('every truncation and seeded random corruption of a frame is rejected with a code, never thrown', (t) => {
  const { frame } = sampleFrame();
  const codes = new Set([
    'DAEMON_PEER_MESSAGE_INVALID',
    'DAEMON_PEER_PROTOCOL_MISMATCH',
    'DAEMON_PEER_IDENTITY_MISMATCH',
  ]);
  for (let length = 0; length < frame.length; length++) {
    const result = decodeFrame(frame.subarray(0, length), 'gland', 'geneva');
    t.true(result.rejected.length > 0, `truncated at ${length}`);
    t.true(result.messages.length < 3);
  }
  t.deepEqual(
    decodeFrame(Buffer.concat([frame, Buffer.from([0])]), 'gland', 'geneva').rejected.map((r) => r.code),
    ['DAEMON_PEER_MESSAGE_INVALID'],
  );
  const random = seeded(6);
  for (let round = 0; round < 2000; round++) {
    const bad = Buffer.from(frame);
    for (let k = 1 + Math.floor(random() * 4); k > 0; k--)
      bad[Math.floor(random() * bad.length)] = Math.floor(random() * 256);
    const result = decodeFrame(bad, 'gland', 'geneva');
    for (const r of result.rejected) t.true(codes.has(r.code), r.code);
    for (const m of result.messages) t.true(Number.isSafeInteger(m.term) && m.term >= 0 && m.from === 'gland');
  }
  // A forged entry count cannot make the decoder allocate for entries that are not there.
  const huge = Buffer.from(encodeFrame([msg('gland', 'geneva', 1)]));
  huge.writeUInt32LE(0xffffffff, huge.length - 4);
  t.deepEqual(
    decodeFrame(huge, 'gland', 'geneva').rejected.map((r) => r.code),
    ['DAEMON_PEER_MESSAGE_INVALID'],
  );
  // Counts must be non-negative safe integers.
  const fractional = Buffer.from(encodeFrame([msg('gland', 'geneva', 1)]));
  fractional.writeDoubleLE(1.5, 8 + 5 + 'gland'.length + 'geneva'.length);
  t.deepEqual(decodeFrame(fractional, 'gland', 'geneva'), {
    messages: [],
    rejected: [
      { code: 'DAEMON_PEER_MESSAGE_INVALID', message: 'a Raft message field is not a non-negative safe integer' },
    ],
  });
});

test('frame versions: a version-1 (msgpack) frame is refused here, and a version-1 decoder cannot read ours', (t) => {
  const v1 = new Packr({ useRecords: false, moreTypes: false });
  const oldFrame = v1.pack([msg('gland', 'geneva', 1)]);
  const result = decodeFrame(oldFrame, 'gland', 'geneva');
  t.deepEqual(result.messages, []);
  t.is(result.rejected[0].code, 'DAEMON_PEER_PROTOCOL_MISMATCH');
  const future = Buffer.from(encodeFrame([msg('gland', 'geneva', 1)]));
  future[2] = PEER_PROTOCOL_VERSION + 1;
  t.regex(decodeFrame(future, 'gland', 'geneva').rejected[0].message, /version 3; this daemon speaks version 2/);
  // What a version-1 daemon does with our frame: msgpack refuses the 0xC1 byte, so it reports the
  // frame as undecodable (DAEMON_PEER_MESSAGE_INVALID there) rather than misreading it.
  t.throws(() => v1.unpack(encodeFrame([msg('gland', 'geneva', 1)])));
});

test('streams between daemons of different protocol versions are refused both ways with DAEMON_PEER_PROTOCOL_MISMATCH', async (t) => {
  const [pa, pOld] = await freePorts(2);
  const a = makeTransport('geneva', pa, { gland: pOld });
  t.teardown(() => a.transport.close());
  await a.transport.start();
  // A version-1 dialler (no version header) is refused at stream open.
  for (const protocol of [null, '1']) {
    const stream = rawStream(pa, 'gland', 'geneva', protocol);
    const error = await new Promise<{ code: number; metadata: Metadata; details: string }>((resolve) =>
      stream.on('error', resolve),
    );
    t.is(error.code, 9); // FAILED_PRECONDITION
    t.deepEqual(error.metadata.get('rdl-code'), ['DAEMON_PEER_PROTOCOL_MISMATCH']);
    t.regex(error.details, /protocol version/);
  }
  // A version-1 server (accepts, answers without a version header): our dialler refuses the stream,
  // counts it and drops what it would have sent.
  const refusals = (): Promise<number> =>
    counter(a.metrics, 'rdl_peer_messages_rejected_total', { peer: 'gland', code: 'DAEMON_PEER_PROTOCOL_MISMATCH' });
  const refusedHere = await refusals(); // the two incoming streams above
  t.is(refusedHere, 2);
  let accepted = 0;
  const old = new Server();
  old.addService(peerService, {
    stream: (call: ServerDuplexStream<Buffer, Buffer>) => {
      accepted++;
      call.sendMetadata(new Metadata());
      call.on('data', () => t.fail('no frame may reach a version-1 server'));
      call.on('error', () => undefined);
    },
  });
  await new Promise<void>((resolve, reject) =>
    old.bindAsync(`127.0.0.1:${pOld}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  t.teardown(() => old.forceShutdown());
  await waitFor(async () => (await refusals()) >= refusedHere + 2, 'two refused attempts');
  t.true(accepted >= 2);
  t.false(a.transport.gauges().isConnected.gland);
  // What it would send is dropped, never delivered: at once while it waits to retry ('unreachable'),
  // or, when a retry is already dialling (a loaded machine), at that attempt's refusal
  // ('disconnected'). Asserting an empty queue right after the send failed under load.
  const dropped = async (): Promise<number> =>
    (await counter(a.metrics, 'rdl_peer_messages_dropped_total', { peer: 'gland', reason: 'unreachable' })) +
    (await counter(a.metrics, 'rdl_peer_messages_dropped_total', { peer: 'gland', reason: 'disconnected' }));
  const droppedBefore = await dropped();
  a.transport.send([msg('geneva', 'gland', 1)]);
  await waitFor(
    async () => a.transport.gauges().queuedMessages.gland === 0 && (await dropped()) > droppedBefore,
    'the message to the version-1 peer dropped',
  );
  t.false(a.transport.gauges().isConnected.gland);
});

test('frame memory is reused once every frame of its slab was released, not before', (t) => {
  const big = (i: number): RaftMessage => msg('gland', 'geneva', i, new Uint8Array(100 * 1024).fill(i));
  const first = encodeFrame([big(0)]);
  const kept: Buffer[] = [first];
  // Unreleased frames: a full slab is replaced by fresh memory.
  for (let i = 1; i < 30; i++) kept.push(encodeFrame([big(i)]));
  t.true(new Set(kept.map((f) => f.buffer)).size >= 3, 'unreleased frames never share reused memory');
  t.true(
    kept.every((f, i) => f[f.length - 1] === i),
    'every kept frame still holds its own payload',
  );
  // Released frames: their slabs come back.
  for (const f of kept) releaseFrame(f);
  const slabs = new Set(kept.map((f) => f.buffer));
  const again = Array.from({ length: 30 }, (_, i) => encodeFrame([big(i)]));
  t.true(
    again.some((f) => slabs.has(f.buffer)),
    'a released slab is reused',
  );
  for (const f of again) releaseFrame(f);
});

test('no frame is read after the transport released it (released frames overwritten)', async (t) => {
  const [pa, pb] = await freePorts(2);
  const a = makeTransport('geneva', pa, { gland: pb });
  const b = makeTransport('gland', pb, { geneva: pa });
  setScribblingReleasedFrames(true);
  t.teardown(() => {
    setScribblingReleasedFrames(false);
    return Promise.all([a.transport.close(), b.transport.close()]);
  });
  await Promise.all([a.transport.start(), b.transport.start()]);
  await waitFor(() => a.transport.gauges().isConnected.gland, 'stream open');
  // 2,400 entries of 4 KiB (about 10 MiB: slabs are reused several times), 16 per turn (frames of
  // 64 KiB come from the slabs; frames above 256 KiB would not).
  const payload = (i: number): Uint8Array => new Uint8Array(4096).map((_, k) => (i * 31 + k) % 251);
  for (let turn = 0; turn < 150; turn++) {
    a.transport.send(
      Array.from({ length: 16 }, (_, k) => msg('geneva', 'gland', turn * 16 + k, payload(turn * 16 + k))),
    );
    await waitFor(() => b.received.length === (turn + 1) * 16, `turn ${turn}`, 10_000, 1);
  }
  let intact = 0;
  for (const m of b.received) {
    const data = (m.entries as { data: Uint8Array }[])[0].data;
    if (
      Buffer.compare(
        Buffer.from(data.buffer, data.byteOffset, data.byteLength),
        Buffer.from(payload(m.index as number)),
      ) === 0
    )
      intact++;
  }
  t.is(intact, 2400);
});

test('a heartbeat is not delayed behind megabytes of queued appends (it travels on the control lane)', async (t) => {
  const [pa, pb] = await freePorts(2);
  const a = makeTransport('geneva', pa, { gland: pb }, { queueBytesMax: 64 * 1024 * 1024 });
  const b = makeTransport('gland', pb, { geneva: pa });
  t.teardown(() => Promise.all([a.transport.close(), b.transport.close()]));
  await Promise.all([a.transport.start(), b.transport.start()]);
  await waitFor(() => a.transport.gauges().isConnected.gland, 'both lanes open');
  const payload = new Uint8Array(1024 * 1024).fill(7);
  const appends = Array.from({ length: 32 }, (_, i) => msg('geneva', 'gland', i, payload));
  const heartbeat: RaftMessage = { ...msg('geneva', 'gland', 0), type: 7, context: 99 };
  // Queued after the appends, in the same turn: on one FIFO stream it would arrive 33rd.
  a.transport.send([...appends, heartbeat]);
  await waitFor(() => b.received.length === 33, 'every message', 30_000);
  const heartbeatAt = b.received.findIndex((m) => m.type === 7);
  t.true(heartbeatAt < 16, `the heartbeat arrived after ${heartbeatAt} of the 32 appends`);
  // The appends themselves kept their order.
  t.deepEqual(
    b.received.filter((m) => m.type === 1).map((m) => m.index),
    Array.from({ length: 32 }, (_, i) => i),
  );
});

test('lanes: entries, snapshots and every App go bulk; heartbeats, votes and acknowledgements go control', (t) => {
  const base = msg('geneva', 'gland', 1);
  t.is(laneOf(msg('geneva', 'gland', 1, new Uint8Array(8))), 'bulk');
  t.is(laneOf(base), 'bulk', 'an empty App must not overtake a full one');
  t.is(laneOf({ ...base, type: 10, entries: [{ term: 1, index: 0, type: 0, data: new Uint8Array(8) }] }), 'bulk');
  t.is(laneOf({ ...base, type: 12, snapshot: { seq: 0, isLast: true, data: new Uint8Array(8) } }), 'bulk');
  for (const type of [2, 3, 4, 5, 6, 7, 8, 9, 11, 13]) t.is(laneOf({ ...base, type }), 'control', `type ${type}`);
});

test('a burst of 1 MiB appends leaves as one frame each; small messages of a turn share one frame', async (t) => {
  const [pa, pb] = await freePorts(2);
  const a = makeTransport('geneva', pa, { gland: pb });
  t.teardown(() => a.transport.close());
  const frames: number[][] = [];
  const server = new Server({ 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
  server.addService(peerService, {
    stream: (call: ServerDuplexStream<Buffer, Buffer>) => {
      const headers = new Metadata();
      headers.set('rdl-peer-protocol', String(PEER_PROTOCOL_VERSION));
      call.sendMetadata(headers);
      call.on('data', (frame: Buffer) => {
        const { messages } = decodeFrame(frame, 'geneva', 'gland');
        if (messages.length > 0 && messages[0].type === 1) frames.push(messages.map((m) => m.index as number));
      });
      call.on('error', () => undefined);
    },
  });
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${pb}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  t.teardown(() => server.forceShutdown());
  await a.transport.start();
  await waitFor(() => a.transport.gauges().isConnected.gland, 'both lanes open');
  const mib = new Uint8Array(1024 * 1024);
  a.transport.send(Array.from({ length: 4 }, (_, i) => msg('geneva', 'gland', i, mib)));
  await waitFor(() => frames.flat().length === 4, 'four appends');
  t.deepEqual(frames, [[0], [1], [2], [3]]);
  frames.length = 0;
  const small = new Uint8Array(1024);
  const count = Math.floor(FRAME_BYTES_TARGET / 2048);
  a.transport.send(Array.from({ length: count }, (_, i) => msg('geneva', 'gland', i, small)));
  await waitFor(() => frames.flat().length === count, 'the small appends');
  t.is(frames.length, 1, 'one frame');
});
