// Proves bad input never crashes a daemon and always gets a stable code: undecodable bytes on unary
// calls and on the Io stream (INVALID_ARGUMENT), malformed Io batches (empty, a bare pre-batch
// request, no array: INVALID_ARGUMENT; above IO_BATCH_REQUESTS_MAX: TOO_LARGE) and a batch mixing
// valid and invalid requests (an answer per request, the stream stays open), malformed and forged
// frames on the peer service (DAEMON_PEER_MESSAGE_INVALID / DAEMON_PEER_IDENTITY_MISMATCH notices),
// out-of-range offsets (OUT_OF_RANGE), oversized requests (TOO_LARGE, and RESOURCE_EXHAUSTED above
// the message limit), unknown volumes (VOLUME_NOT_FOUND), bad names and sizes, too many requests in
// flight on one stream (RESOURCE_EXHAUSTED), missing and duplicate request ids; after all of it the
// same processes still serve writes and reads, with real rdld processes on 127.0.0.1.
import test from 'ava';
import { Client, Metadata, credentials } from '@grpc/grpc-js';
import { Packr } from 'msgpackr';
import { startCluster } from '../helpers/cluster.js';
import type { Cluster } from '../helpers/cluster.js';
import { CallError, sessionId } from '../helpers/block-client.js';
import {
  METADATA_PEER_PROTOCOL,
  PEER_PROTOCOL_VERSION,
  decodeNotice,
  encodeFrame,
  peerStreamMethod,
} from '../../src/transport/peer-protocol.js';
import { waitFor } from '../helpers/ports.js';

let cluster: Cluster;
test.before(async () => {
  // A small per-stream window so the RESOURCE_EXHAUSTED path is reachable with a few requests.
  cluster = await startCluster({ args: ['--api-stream-inflight-max', '4'] });
});
test.after.always(async () => {
  await cluster?.destroy();
});

const packr = new Packr({ useRecords: false });
const read = (volume: string, offset: number, length: number) => ({
  op: 'read' as const,
  volume,
  offset,
  length,
});

test.serial('bad requests get coded errors and the daemons keep serving', async (t) => {
  // A hang fails this test with the last step reached (AVA prints the log of a failed test), not
  // the whole run after AVA's two idle minutes.
  t.timeout(90_000, 'bad-input: the last "step" logged is where it stopped');
  const t0 = Date.now();
  const step = (what: string): void => t.log(`${Date.now() - t0} ms: ${what}`);
  const leader = await cluster.waitForLeader();
  step(`leader ${leader}`);
  const client = cluster.member(leader).client;
  await client.call('createVolume', { name: 'vol', sizeBytes: 64 * 1024 });

  // Unary calls: garbage bytes, a non-map, bad names and sizes, unknown volume.
  for (const bytes of [Buffer.from([0xc1]), packr.pack([1, 2, 3]), packr.pack('hello')]) {
    const error = await t.throwsAsync(client.callRaw('createVolume', bytes));
    t.is((error as CallError).code, 'INVALID_ARGUMENT');
  }
  for (const request of [
    { name: '../etc', sizeBytes: 4096 },
    { name: 'x', sizeBytes: 1000 },
    { name: 'x', sizeBytes: -4096 },
    { name: 'x', sizeBytes: 2 ** 60 },
    { name: 42, sizeBytes: 4096 },
  ]) {
    const error = await t.throwsAsync(client.call('createVolume', request));
    t.is((error as CallError).code, 'INVALID_ARGUMENT', JSON.stringify(request));
  }
  const unknown = await t.throwsAsync(client.call('statVolume', { name: 'nope' }));
  t.is((unknown as CallError).code, 'VOLUME_NOT_FOUND');
  const unknownDelete = await t.throwsAsync(client.call('deleteVolume', { name: 'nope' }));
  t.is((unknownDelete as CallError).code, 'VOLUME_NOT_FOUND');
  const shrink = await t.throwsAsync(client.call('growVolume', { name: 'vol', sizeBytes: 4096 }));
  t.is((shrink as CallError).code, 'INVALID_ARGUMENT');
  const badRegion = await t.throwsAsync(client.call('transferLeader', { region: 'atlantis' }));
  t.is((badRegion as CallError).code, 'INVALID_ARGUMENT');

  step('unary calls done');
  // IO requests: per-request errors on a stream that keeps working.
  const io = client.io();
  const cases: [object, string][] = [
    [read('vol', 64 * 1024 - 10, 20), 'OUT_OF_RANGE'],
    [read('vol', 2 ** 52, 1), 'OUT_OF_RANGE'],
    [read('nope', 0, 4096), 'VOLUME_NOT_FOUND'],
    [read('vol', 0, 5 * 1024 * 1024), 'TOO_LARGE'],
    [read('vol', -1, 1), 'INVALID_ARGUMENT'],
    [{ ...read('vol', 0, 1), op: 'format' }, 'INVALID_ARGUMENT'],
    [
      {
        op: 'write',
        volume: 'vol',
        offset: 0,
        length: 4,
        data: Buffer.alloc(8),
        session: sessionId(1),
        seq: 1,
        ackedBelow: 0,
      },
      'INVALID_ARGUMENT',
    ],
    [
      {
        op: 'write',
        volume: 'vol',
        offset: 0,
        length: 4,
        data: Buffer.alloc(4),
        session: 'short',
        seq: 1,
        ackedBelow: 0,
      },
      'INVALID_ARGUMENT',
    ],
    [
      {
        op: 'write',
        volume: 'vol',
        offset: 65_535,
        length: 4,
        data: Buffer.alloc(4),
        session: sessionId(1),
        seq: 1,
        ackedBelow: 0,
      },
      'OUT_OF_RANGE',
    ],
    [
      {
        op: 'write',
        volume: 'nope',
        offset: 0,
        length: 4,
        data: Buffer.alloc(4),
        session: sessionId(1),
        seq: 2,
        ackedBelow: 0,
      },
      'VOLUME_NOT_FOUND',
    ],
  ];
  for (const [request, code] of cases) {
    const response = await io.request(request as never);
    t.false(response.ok, JSON.stringify(request).slice(0, 120));
    t.is(response.error?.code, code, JSON.stringify(request).slice(0, 120));
  }
  step('per-request IO errors done');
  // The same cases in one batch, between valid requests: an answer per request, in one stream.
  // (Those refused by the store need a slot of the window of 4: one of them is enough here.)
  const mixedCases = [cases[0], ...cases.slice(3, 8)];
  const mixed = await Promise.all(
    io.batch([read('vol', 0, 4), ...mixedCases.map(([request]) => request as never), read('vol', 4, 4)]),
  );
  t.deepEqual(
    mixed.map((r) => (r.ok ? 'ok' : r.error?.code)),
    ['ok', ...mixedCases.map(([, code]) => code), 'ok'],
  );
  step('mixed batch done');
  // More requests in flight than the stream allows: the excess is refused, not queued, whether
  // they come one per message or in one batch.
  const burst = await Promise.all(Array.from({ length: 12 }, () => io.request(read('vol', 0, 4096))));
  t.true(burst.some((r) => r.error?.code === 'RESOURCE_EXHAUSTED'));
  t.true(burst.some((r) => r.ok));
  const burstBatch = await Promise.all(io.batch(Array.from({ length: 12 }, () => read('vol', 0, 4096))));
  t.is(burstBatch.filter((r) => r.error?.code === 'RESOURCE_EXHAUSTED').length, 8, 'a window of 4: 8 of 12 refused');
  t.is(burstBatch.filter((r) => r.ok).length, 4);
  t.is(io.failure, null, 'per-request errors leave the stream open');
  step('bursts done');
  // A write still works on the same stream.
  const ok = await io.request({
    op: 'write',
    volume: 'vol',
    offset: 0,
    length: 4,
    data: Buffer.from('rdl!'),
    session: sessionId(2),
    seq: 1,
    ackedBelow: 0,
  });
  t.true(ok.ok, JSON.stringify(ok.error));
  io.end();

  step('write on the same stream done');
  // Undecodable bytes on the Io stream, malformed batches, a request without an id: the stream
  // fails with a code.
  const garbage = await client.io().writeRaw(Buffer.from([0xc1, 0xc1]));
  t.is(garbage.code, 'INVALID_ARGUMENT');
  const empty = await client.io().writeRaw(packr.pack({ requests: [] }));
  t.is(empty.code, 'INVALID_ARGUMENT');
  const bare = await client.io().writeRaw(packr.pack({ ...read('vol', 0, 1), id: 1 }));
  t.is(bare.code, 'INVALID_ARGUMENT', 'a bare request (the pre-batch shape) is refused');
  const tooMany = await client
    .io()
    .writeRaw(packr.pack({ requests: Array.from({ length: 257 }, (_, i) => ({ ...read('vol', 0, 1), id: i })) }));
  t.is(tooMany.code, 'TOO_LARGE');
  const noId = await client
    .io()
    .writeRaw(packr.pack({ requests: [{ op: 'read', volume: 'vol', offset: 0, length: 1 }] }));
  t.is(noId.code, 'INVALID_ARGUMENT');
  step('malformed streams done');
  // The same id twice in one message. (An id repeated in a later message while the first is still
  // in flight fails the same way; test/unit/io-deadline.test.ts holds a read in flight for that:
  // here a read can finish before the second message arrives, and the stream then stays open.)
  const dup = await client.io().writeRaw(
    packr.pack({
      requests: [
        { ...read('vol', 0, 4096), id: 7 },
        { ...read('vol', 4096, 4096), id: 7 },
      ],
    }),
  );
  t.is(dup.code, 'INVALID_ARGUMENT');
  t.regex(dup.message, /already in flight/);
  step('duplicate id done');
  // A message above the API's size limit is refused by gRPC before it reaches the handler.
  const huge = await t.throwsAsync(client.callRaw('createVolume', Buffer.alloc(6 * 1024 * 1024)));
  t.is((huge as CallError).code, 'RESOURCE_EXHAUSTED');

  step('oversized message done');
  // The peer service: garbage frames and a forged sender on a stream claiming to come from a peer.
  const follower = [...cluster.members.values()].find((m) => m.region !== leader)!;
  const peerClient = new Client(`127.0.0.1:${follower.peerPort}`, credentials.createInsecure());
  const metadata = new Metadata();
  metadata.set('rdl-peer-from', leader);
  metadata.set('rdl-peer-to', follower.region);
  metadata.set(METADATA_PEER_PROTOCOL, String(PEER_PROTOCOL_VERSION));
  const stream = peerClient.makeBidiStreamRequest(
    peerStreamMethod.path,
    (b: Buffer) => b,
    (b: Buffer) => b,
    metadata,
  );
  const notices: string[] = [];
  // What the stream did, for the failure message if no notice comes.
  const events: string[] = [];
  stream.on('data', (frame: Buffer) => {
    const notice = decodeNotice(frame);
    events.push(`data ${frame.length} B${notice ? ` notice ${notice.code}` : ''}`);
    if (notice) notices.push(notice.code);
  });
  stream.on('metadata', () => events.push('metadata'));
  stream.on('status', (status: { code: number; details: string }) =>
    events.push(`status ${status.code} ${status.details}`),
  );
  stream.on('error', (error: Error) => events.push(`error ${error.message}`));
  // A frame of the right format version that announces a message it does not hold (truncated).
  const truncated = Buffer.from(encodeFrame([]));
  truncated.writeUInt32LE(1, 4);
  stream.write(truncated, () => events.push('written'));
  await waitFor(() => notices.length >= 1, 'a notice for the garbage frame').catch((error: Error) => {
    throw new Error(`${error.message}; the stream's events: ${events.join(', ') || 'none'}`);
  });
  t.is(notices[0], 'DAEMON_PEER_MESSAGE_INVALID');
  stream.end();
  step('garbage peer frame noticed');
  const forged = new Metadata();
  forged.set('rdl-peer-from', 'mallory');
  forged.set('rdl-peer-to', follower.region);
  forged.set(METADATA_PEER_PROTOCOL, String(PEER_PROTOCOL_VERSION));
  const refused = peerClient.makeBidiStreamRequest(
    peerStreamMethod.path,
    (b: Buffer) => b,
    (b: Buffer) => b,
    forged,
  );
  const refusal = await new Promise<{ metadata: Metadata }>((resolve) => refused.on('error', resolve));
  t.deepEqual(refusal.metadata.get('rdl-code'), ['DAEMON_PEER_IDENTITY_MISMATCH']);
  peerClient.close();
  step('forged sender refused');
  const rejected = await (await fetch(`http://127.0.0.1:${follower.metricsPort}/metrics`)).text();
  t.regex(rejected, /rdl_peer_messages_rejected_total\{[^}]*code="DAEMON_PEER_MESSAGE_INVALID"[^}]*\} [1-9]/);

  step('peer refusals counted');
  // Everyone is still alive and the cluster still serves reads and writes.
  for (const member of cluster.members.values()) t.not(member.process, null, `${member.region} is running`);
  const after = client.io();
  const write = await after.request({
    op: 'write',
    volume: 'vol',
    offset: 4096,
    length: 5,
    data: Buffer.from('still'),
    session: sessionId(3),
    seq: 1,
    ackedBelow: 0,
  });
  t.true(write.ok);
  const back = await after.request(read('vol', 0, 4096 + 5));
  t.is(Buffer.from(back.data!).subarray(0, 4).toString(), 'rdl!');
  t.is(Buffer.from(back.data!).subarray(4096).toString(), 'still');
  after.end();
});
