// Proves the NBD server follows the fixed-newstyle protocol byte for byte, and survives hostile
// input: a raw-socket client (test/nbd/raw-client.ts) sends well-formed and malformed handshakes,
// options and requests, and each test checks the exact reply (or the disconnect), that limits
// (in-flight requests and bytes, option count and size, write payload size, timeouts) hold, and
// that a misbehaving connection never disturbs another one.
import test from 'ava';
import * as P from '../../src/nbd/protocol.js';
import { RawClient } from './raw-client.js';
import { startServer, waitFor } from './helpers.js';

const MiB = 1024 * 1024;

test('greeting carries NBDMAGIC, IHAVEOPT and FIXED_NEWSTYLE|NO_ZEROES', async (t) => {
  const s = await startServer({ v: MiB });
  const c = await RawClient.connect(s.port);
  const { magic, flags } = await c.handshake();
  t.is(magic.toString('ascii'), 'NBDMAGICIHAVEOPT');
  t.is(flags, P.NBD_FLAG_FIXED_NEWSTYLE | P.NBD_FLAG_NO_ZEROES);
  c.destroy();
  await s.close();
});

test('NBD_OPT_GO replies NBD_INFO_EXPORT (size, flags with CAN_MULTI_CONN) and NBD_INFO_BLOCK_SIZE, then ACK', async (t) => {
  const s = await startServer({ vol: 3 * MiB });
  const c = await RawClient.connect(s.port);
  await c.handshake();
  const replies = await c.infoOrGo(7, 'vol', [P.NBD_INFO_BLOCK_SIZE, P.NBD_INFO_NAME]);
  t.is(replies[replies.length - 1].type, P.NBD_REP_ACK);
  const infos = new Map(replies.filter((r) => r.type === P.NBD_REP_INFO).map((r) => [r.data.readUInt16BE(0), r.data]));
  const exportInfo = infos.get(P.NBD_INFO_EXPORT)!;
  t.is(exportInfo.length, 12);
  t.is(Number(exportInfo.readBigUInt64BE(2)), 3 * MiB);
  const flags = exportInfo.readUInt16BE(10);
  const expected =
    P.NBD_FLAG_HAS_FLAGS |
    P.NBD_FLAG_SEND_FLUSH |
    P.NBD_FLAG_SEND_FUA |
    P.NBD_FLAG_SEND_TRIM |
    P.NBD_FLAG_SEND_WRITE_ZEROES |
    P.NBD_FLAG_CAN_MULTI_CONN;
  t.is(flags, expected);
  const blockInfo = infos.get(P.NBD_INFO_BLOCK_SIZE)!;
  t.deepEqual([blockInfo.readUInt32BE(2), blockInfo.readUInt32BE(6), blockInfo.readUInt32BE(10)], [1, 4096, 32 * MiB]);
  t.is(infos.get(P.NBD_INFO_NAME)!.toString('utf8', 2), 'vol');
  // Transmission works right after the ACK.
  c.request(P.NBD_CMD_WRITE, 1n, 10, 3, 0, Buffer.from('abc'));
  t.is((await c.readReply()).error, 0);
  c.request(P.NBD_CMD_READ, 2n, 10, 3);
  t.is((await c.readReply(new Map([[2n, 3]]))).data.toString(), 'abc');
  c.destroy();
  await s.close();
});

test('option errors: unknown option and STRUCTURED_REPLY get ERR_UNSUP, LIST with data ERR_INVALID, unknown export ERR_UNKNOWN; the session goes on', async (t) => {
  const s = await startServer({ a: MiB, b: 2 * MiB });
  const c = await RawClient.connect(s.port);
  await c.handshake();
  c.sendOption(999);
  t.like(await c.readOptionReply(), { option: 999, type: P.NBD_REP_ERR_UNSUP });
  c.sendOption(P.NBD_OPT_STRUCTURED_REPLY);
  t.like(await c.readOptionReply(), { type: P.NBD_REP_ERR_UNSUP });
  c.sendOption(P.NBD_OPT_STARTTLS);
  t.like(await c.readOptionReply(), { type: P.NBD_REP_ERR_UNSUP });
  c.sendOption(P.NBD_OPT_LIST, Buffer.from('x'));
  t.like(await c.readOptionReply(), { type: P.NBD_REP_ERR_INVALID });
  const unknown = await c.infoOrGo(6, 'missing');
  t.is(unknown.length, 1);
  t.is(unknown[0].type, P.NBD_REP_ERR_UNKNOWN);
  // Malformed INFO: name length larger than the data.
  const bad = Buffer.alloc(6);
  bad.writeUInt32BE(100, 0);
  c.sendOption(P.NBD_OPT_INFO, bad);
  t.like(await c.readOptionReply(), { type: P.NBD_REP_ERR_INVALID });
  // LIST: one NBD_REP_SERVER per volume, then ACK.
  c.sendOption(P.NBD_OPT_LIST);
  const names: string[] = [];
  for (;;) {
    const reply = await c.readOptionReply();
    if (reply.type === P.NBD_REP_ACK) break;
    t.is(reply.type, P.NBD_REP_SERVER);
    names.push(reply.data.toString('utf8', 4, 4 + reply.data.readUInt32BE(0)));
  }
  t.deepEqual(names, ['a', 'b']);
  // INFO on a known export does not enter transmission: another option still works.
  const info = await c.infoOrGo(6, 'b');
  t.is(info[info.length - 1].type, P.NBD_REP_ACK);
  c.sendOption(P.NBD_OPT_ABORT);
  t.like(await c.readOptionReply(), { type: P.NBD_REP_ACK });
  await c.closed;
  await s.close();
});

test('NBD_OPT_EXPORT_NAME: 134-byte reply without NO_ZEROES, 10 bytes with it, disconnect for an unknown export', async (t) => {
  const s = await startServer({ v: MiB });
  const withZeroes = await RawClient.connect(s.port);
  await withZeroes.handshake(P.NBD_FLAG_C_FIXED_NEWSTYLE);
  withZeroes.sendOption(P.NBD_OPT_EXPORT_NAME, Buffer.from('v'));
  const reply = await withZeroes.read(134);
  t.is(Number(reply.readBigUInt64BE(0)), MiB);
  t.true(reply.subarray(10).equals(Buffer.alloc(124)));
  withZeroes.request(P.NBD_CMD_FLUSH, 9n, 0, 0);
  t.deepEqual(await withZeroes.readReply(), { error: 0, handle: 9n, data: Buffer.alloc(0) });
  t.is(withZeroes.buffered, 0);

  const noZeroes = await RawClient.connect(s.port);
  await noZeroes.handshake(P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES);
  noZeroes.sendOption(P.NBD_OPT_EXPORT_NAME, Buffer.from('v'));
  await noZeroes.read(10);
  noZeroes.request(P.NBD_CMD_FLUSH, 1n, 0, 0);
  t.is((await noZeroes.readReply()).handle, 1n, 'the next bytes are the reply, no padding');

  const unknown = await RawClient.connect(s.port);
  await unknown.handshake();
  unknown.sendOption(P.NBD_OPT_EXPORT_NAME, Buffer.from('nope'));
  await unknown.closed;
  t.pass();
  withZeroes.destroy();
  noZeroes.destroy();
  await s.close();
});

test('transmission errors per the spec: EINVAL out of range / unknown command / bad flags, ENOSPC writes past the end; connection survives', async (t) => {
  const s = await startServer({ v: MiB });
  const c = await RawClient.connect(s.port);
  await c.open('v');
  const cases: [string, () => void, number][] = [
    ['read past end', () => c.request(P.NBD_CMD_READ, 1n, MiB - 1, 2), P.NBD_EINVAL],
    ['read at 2^63', () => c.request(P.NBD_CMD_READ, 2n, 1n << 63n, 1), P.NBD_EINVAL],
    ['write past end', () => c.request(P.NBD_CMD_WRITE, 3n, MiB, 1, 0, Buffer.from('x')), P.NBD_ENOSPC],
    ['write-zeroes past end', () => c.request(P.NBD_CMD_WRITE_ZEROES, 4n, MiB - 10, 11), P.NBD_ENOSPC],
    ['trim past end', () => c.request(P.NBD_CMD_TRIM, 5n, 0, MiB + 1), P.NBD_EINVAL],
    ['unknown command', () => c.request(42, 6n, 0, 0), P.NBD_EINVAL],
    ['BLOCK_STATUS without negotiation', () => c.request(P.NBD_CMD_BLOCK_STATUS, 7n, 0, 512), P.NBD_EINVAL],
    ['unknown flag on read', () => c.request(P.NBD_CMD_READ, 8n, 0, 512, 1 << 9), P.NBD_EINVAL],
    ['DF not negotiated', () => c.request(P.NBD_CMD_READ, 9n, 0, 512, P.NBD_CMD_FLAG_DF), P.NBD_EINVAL],
    [
      'NO_HOLE on a write',
      () => c.request(P.NBD_CMD_WRITE, 10n, 0, 1, P.NBD_CMD_FLAG_NO_HOLE, Buffer.from('y')),
      P.NBD_EINVAL,
    ],
    [
      'FAST_ZERO not advertised',
      () => c.request(P.NBD_CMD_WRITE_ZEROES, 11n, 0, 512, P.NBD_CMD_FLAG_FAST_ZERO),
      P.NBD_EINVAL,
    ],
    ['flush with a length', () => c.request(P.NBD_CMD_FLUSH, 12n, 0, 512), P.NBD_EINVAL],
    ['read larger than the maximum block size', () => c.request(P.NBD_CMD_READ, 13n, 0, 32 * MiB + 1), P.NBD_EINVAL],
  ];
  for (const [what, send, errno] of cases) {
    send();
    const reply = await c.readReply();
    t.is(reply.error, errno, what);
  }
  // The rejected write payloads were consumed: the stream is still in sync.
  c.request(P.NBD_CMD_READ, 100n, 0, 1);
  const ok = await c.readReply(new Map([[100n, 1]]));
  t.deepEqual([ok.error, ok.data[0]], [0, 0], 'the rejected NO_HOLE write changed nothing');
  c.request(P.NBD_CMD_READ, 101n, 0, 0);
  t.is((await c.readReply()).error, 0, 'zero-length read succeeds');
  t.is(s.server.counters.requestErrors, cases.length);
  c.destroy();
  await s.close();
});

test('WRITE_ZEROES honours NO_HOLE: with it the range is provisioned, without it may become a hole; both read back zero', async (t) => {
  const s = await startServer({ v: MiB });
  const c = await RawClient.connect(s.port);
  await c.open('v');
  c.request(P.NBD_CMD_WRITE, 1n, 0, 256 * 1024, 0, Buffer.alloc(256 * 1024, 0x5a));
  await c.readReply();
  c.request(P.NBD_CMD_WRITE_ZEROES, 2n, 0, 256 * 1024, P.NBD_CMD_FLAG_NO_HOLE);
  t.is((await c.readReply()).error, 0);
  t.is(s.provider.allocatedBytes('v'), 256 * 1024, 'NO_HOLE kept the range allocated');
  c.request(P.NBD_CMD_WRITE_ZEROES, 3n, 0, 256 * 1024, P.NBD_CMD_FLAG_FUA);
  t.is((await c.readReply()).error, 0);
  t.is(s.provider.allocatedBytes('v'), 0, 'without NO_HOLE the server punched a hole');
  c.request(P.NBD_CMD_READ, 4n, 0, 256 * 1024);
  t.true((await c.readReply(new Map([[4n, 256 * 1024]]))).data.equals(Buffer.alloc(256 * 1024)));
  t.like(s.provider.stats('v'), { writeZeroes: 2, noHoleWriteZeroes: 1 });
  c.destroy();
  await s.close();
});

test('read-only export: READ_ONLY flag, writes/trims/zeroes get EPERM, reads work', async (t) => {
  const s = await startServer({ v: MiB }, { isReadOnly: true });
  const c = await RawClient.connect(s.port);
  const { flags } = await c.open('v');
  t.truthy(flags & P.NBD_FLAG_READ_ONLY);
  t.falsy(flags & P.NBD_FLAG_SEND_TRIM);
  c.request(P.NBD_CMD_WRITE, 1n, 0, 2, 0, Buffer.from('no'));
  t.is((await c.readReply()).error, P.NBD_EPERM);
  c.request(P.NBD_CMD_TRIM, 2n, 0, 512);
  t.is((await c.readReply()).error, P.NBD_EPERM);
  c.request(P.NBD_CMD_WRITE_ZEROES, 3n, 0, 512);
  t.is((await c.readReply()).error, P.NBD_EPERM);
  c.request(P.NBD_CMD_READ, 4n, 0, 2);
  t.is((await c.readReply(new Map([[4n, 2]]))).error, 0);
  c.destroy();
  await s.close();
});

test('backend failures become EIO for that request only, without payload for reads', async (t) => {
  const s = await startServer({ v: MiB });
  s.provider.setInterceptor((_name, op, offset) => {
    if (offset === 4096) throw new Error(`injected ${op} failure`);
  });
  const c = await RawClient.connect(s.port);
  await c.open('v');
  c.request(P.NBD_CMD_READ, 1n, 4096, 512);
  c.request(P.NBD_CMD_READ, 2n, 0, 512);
  const lengths = new Map([
    [1n, 512],
    [2n, 512],
  ]);
  const replies = [await c.readReply(lengths), await c.readReply(lengths)];
  const byHandle = new Map(replies.map((r) => [r.handle, r]));
  t.is(byHandle.get(1n)!.error, P.NBD_EIO);
  t.is(byHandle.get(1n)!.data.length, 0);
  t.is(byHandle.get(2n)!.error, 0);
  c.destroy();
  await s.close();
});

test('requests run concurrently and are answered out of order', async (t) => {
  const s = await startServer({ v: MiB });
  let releaseFirst!: () => void;
  const firstHeld = new Promise<void>((resolve) => (releaseFirst = resolve));
  s.provider.setInterceptor((_name, _op, offset) => (offset === 0 ? firstHeld : undefined));
  const c = await RawClient.connect(s.port);
  await c.open('v');
  c.request(P.NBD_CMD_READ, 1n, 0, 512);
  c.request(P.NBD_CMD_WRITE, 2n, 8192, 4, 0, Buffer.from('late'));
  const lengths = new Map([[1n, 512]]);
  const first = await c.readReply(lengths);
  t.is(first.handle, 2n, 'the second request finished while the first was still held');
  releaseFirst();
  t.is((await c.readReply(lengths)).handle, 1n);
  c.destroy();
  await s.close();
});

test('back-pressure: no more than inflightRequestsMax requests reach the backend; the rest wait in the socket', async (t) => {
  const s = await startServer({ v: MiB }, { inflightRequestsMax: 4 });
  let started = 0;
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  s.provider.setInterceptor(() => {
    started++;
    return gate;
  });
  const c = await RawClient.connect(s.port);
  await c.open('v');
  for (let i = 0; i < 20; i++) c.request(P.NBD_CMD_WRITE, BigInt(i), i * 512, 512, 0, Buffer.alloc(512, i));
  await waitFor(() => started === 4, 5000, '4 requests in the backend');
  await waitFor(() => s.server.counters.backpressurePauses > 0, 5000, 'a pause');
  // Let the event loop run: nothing more may start while the gate is shut.
  await new Promise((resolve) => setImmediate(resolve));
  t.is(started, 4);
  t.is(s.server.counters.inflightRequests, 4);
  release();
  const handles = new Set<bigint>();
  for (let i = 0; i < 20; i++) handles.add((await c.readReply()).handle);
  t.is(handles.size, 20);
  t.is(started, 20);
  c.destroy();
  await s.close();
});

test('back-pressure: in-flight write bytes stay under inflightBytesMax', async (t) => {
  const s = await startServer({ v: 4 * MiB }, { inflightBytesMax: 128 * 1024, requestBytesMax: 64 * 1024 });
  let started = 0;
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  s.provider.setInterceptor(() => {
    started++;
    return gate;
  });
  const c = await RawClient.connect(s.port);
  await c.open('v');
  for (let i = 0; i < 6; i++) c.request(P.NBD_CMD_WRITE, BigInt(i), i * 65536, 65536, 0, Buffer.alloc(65536, i));
  await waitFor(() => started === 2, 5000, '2 writes in the backend');
  await waitFor(() => s.server.counters.backpressurePauses > 0, 5000, 'a pause');
  t.is(s.server.counters.inflightBytes, 128 * 1024);
  release();
  for (let i = 0; i < 6; i++) t.is((await c.readReply()).error, 0);
  t.true(
    s.provider
      .snapshot('v')
      .subarray(5 * 65536, 6 * 65536)
      .equals(Buffer.alloc(65536, 5)),
  );
  c.destroy();
  await s.close();
});

test('a client that does not read its replies stops being read: bounded work and memory, then it catches up', async (t) => {
  const s = await startServer({ v: 64 * MiB }, { inflightBytesMax: 2 * MiB, requestBytesMax: MiB });
  const c = await RawClient.connect(s.port);
  await c.open('v');
  c.socket.pause(); // Stop reading replies.
  const total = 200;
  const lengths = new Map<bigint, number>();
  for (let i = 0; i < total; i++) {
    lengths.set(BigInt(i), MiB);
    c.request(P.NBD_CMD_READ, BigInt(i), 0, MiB);
  }
  await waitFor(() => s.server.counters.backpressurePauses > 0, 5000, 'a pause');
  const reads = s.provider.stats('v').reads;
  // Kernel socket buffers absorb some replies; the rest of the 200 MiB must not have been read.
  t.log(`${reads} of ${total} reads ran while the client was not reading`);
  t.true(reads < total / 2, `only ${reads} of ${total} reads ran`);
  c.socket.resume();
  for (let i = 0; i < total; i++) t.is((await c.readReply(lengths, 10_000)).data.length, MiB);
  c.destroy();
  await s.close();
});

test('hostile clients are disconnected and a healthy connection keeps working', async (t) => {
  const s = await startServer({ v: MiB }, { optionsMax: 5, requestBytesMax: 64 * 1024, inflightBytesMax: 128 * 1024 });
  const healthy = await RawClient.connect(s.port);
  await healthy.open('v');

  const badFlags = await RawClient.connect(s.port);
  await badFlags.handshake(1 << 5);
  await badFlags.closed;

  const badOptionMagic = await RawClient.connect(s.port);
  await badOptionMagic.handshake();
  badOptionMagic.sendOption(P.NBD_OPT_LIST, Buffer.alloc(0), 0x1234n);
  await badOptionMagic.closed;

  const hugeOption = await RawClient.connect(s.port);
  await hugeOption.handshake();
  const header = Buffer.alloc(16);
  header.writeBigUInt64BE(0x49484156454f5054n, 0);
  header.writeUInt32BE(P.NBD_OPT_GO, 8);
  header.writeUInt32BE(0xffffffff, 12);
  hugeOption.write(header);
  await hugeOption.closed;

  const flood = await RawClient.connect(s.port);
  await flood.handshake();
  for (let i = 0; i < 10; i++) flood.sendOption(999);
  let answered = 0;
  await flood
    .readOptionReply()
    .then(async () => {
      answered++;
      for (;;) {
        await flood.readOptionReply();
        answered++;
      }
    })
    .catch(() => {});
  await flood.closed;
  t.is(answered, 5, 'options beyond optionsMax end the session');

  const bigWrite = await RawClient.connect(s.port);
  await bigWrite.open('v');
  bigWrite.request(P.NBD_CMD_WRITE, 1n, 0, 64 * 1024 + 1);
  await bigWrite.closed;

  const badMagic = await RawClient.connect(s.port);
  await badMagic.open('v');
  badMagic.write(Buffer.alloc(28, 0xff));
  await badMagic.closed;

  t.is(s.server.counters.protocolViolations, 6);
  healthy.request(P.NBD_CMD_WRITE, 7n, 0, 2, 0, Buffer.from('ok'));
  t.is((await healthy.readReply()).error, 0);
  healthy.request(P.NBD_CMD_READ, 8n, 0, 2);
  t.is((await healthy.readReply(new Map([[8n, 2]]))).data.toString(), 'ok');
  healthy.destroy();
  await s.close();
});

test('handshake timeout disconnects a client that never finishes the handshake', async (t) => {
  const s = await startServer({ v: MiB }, { handshakeTimeoutMs: 100 });
  const silent = await RawClient.connect(s.port);
  await silent.closed;
  t.is(s.server.counters.handshakeTimeouts, 1);
  await s.close();
});

test('idle timeout disconnects a transmission-phase client with nothing in flight', async (t) => {
  // A generous handshake timeout: only the idle timer may fire, however loaded the machine is.
  const s = await startServer({ v: MiB }, { handshakeTimeoutMs: 30_000, idleTimeoutMs: 150 });
  const idle = await RawClient.connect(s.port);
  await idle.open('v');
  await idle.closed;
  t.is(s.server.counters.idleTimeouts, 1);
  t.is(s.server.counters.handshakeTimeouts, 0, 'entering transmission cancelled the handshake timer');
  await s.close();
});

test('NBD_CMD_DISC: outstanding requests are answered before the server closes', async (t) => {
  const s = await startServer({ v: MiB });
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  s.provider.setInterceptor(() => gate);
  const c = await RawClient.connect(s.port);
  await c.open('v');
  c.request(P.NBD_CMD_WRITE, 1n, 0, 3, P.NBD_CMD_FLAG_FUA, Buffer.from('fua'));
  c.request(P.NBD_CMD_DISC, 2n, 0, 0);
  await waitFor(() => s.server.counters.inflightRequests === 1, 5000, 'write in flight');
  t.false(c.isClosed);
  release();
  t.deepEqual(await c.readReply(), { error: 0, handle: 1n, data: Buffer.alloc(0) });
  await c.closed;
  t.is(s.provider.stats('v').fuaWrites, 1);
  t.true(s.provider.snapshot('v').subarray(0, 3).equals(Buffer.from('fua')));
  await s.close();
});

test('close() lets in-flight requests finish and refuses new connections', async (t) => {
  const s = await startServer({ v: MiB });
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  s.provider.setInterceptor(() => gate);
  const c = await RawClient.connect(s.port);
  await c.open('v');
  c.request(P.NBD_CMD_FLUSH, 5n, 0, 0);
  await waitFor(() => s.server.counters.inflightRequests === 1, 5000, 'flush in flight');
  const closing = s.close();
  release();
  t.is((await c.readReply()).handle, 5n);
  await closing;
  await c.closed;
  await t.throwsAsync(RawClient.connect(s.port));
});
