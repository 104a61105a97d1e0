// Proves that replies completed in one turn of the event loop leave in one socket write, and that
// batching keeps every reply intact: the in-memory provider holds requests, the test releases them
// from separate setImmediate callbacks of one turn (as completions arriving in separate IO
// callbacks would), counts the writes on the server's side of the connection, and checks each
// reply's handle, error and data, including a batch too large to copy (sent as one writev) and
// a batch mixing 4 KiB reads with write, flush and failed-read replies: its read data leaves
// uncopied, yet the whole batch reaches the socket handle as one writev and arrives intact.
import test from 'ava';
import net from 'node:net';
import * as P from '../../src/nbd/protocol.js';
import { RawClient } from './raw-client.js';
import { randomBytes, seededRandom, startServer, waitFor } from './helpers.js';

const MiB = 1024 * 1024;

/** Counts `write` calls on the server's sockets of `port` (the client's sockets are not counted). */
function countServerWrites(port: number): { count: () => number; restore: () => void } {
  const original = net.Socket.prototype.write;
  let count = 0;
  net.Socket.prototype.write = function (this: net.Socket, ...args: unknown[]) {
    if (this.localPort === port) count++;
    return (original as (...a: unknown[]) => boolean).apply(this, args);
  } as typeof original;
  return { count: () => count, restore: () => (net.Socket.prototype.write = original) };
}

/**
 * Counts the writes that reach the handle (one `_write` or one `_writev` per system call) on the
 * server's sockets of `port`, and the buffers they carry.
 */
function countServerHandleWrites(port: number): { count: () => number; parts: () => number; restore: () => void } {
  const proto = net.Socket.prototype as unknown as {
    _write: (...a: unknown[]) => void;
    _writev: (chunks: unknown[], ...a: unknown[]) => void;
  };
  const write = proto._write;
  const writev = proto._writev;
  let count = 0;
  let parts = 0;
  proto._write = function (this: net.Socket, ...args: unknown[]) {
    if (this.localPort === port) {
      count++;
      parts++;
    }
    return write.apply(this, args);
  };
  proto._writev = function (this: net.Socket, chunks: unknown[], ...args: unknown[]) {
    if (this.localPort === port) {
      count++;
      parts += chunks.length;
    }
    return writev.call(this, chunks, ...args);
  };
  return {
    count: () => count,
    parts: () => parts,
    restore: () => {
      proto._write = write;
      proto._writev = writev;
    },
  };
}

test.serial('replies completed in separate callbacks of one turn leave in one socket write', async (t) => {
  const s = await startServer({ v: MiB });
  const releases: (() => void)[] = [];
  s.provider.setInterceptor(() => new Promise<void>((resolve) => releases.push(resolve)));
  const c = await RawClient.connect(s.port);
  await c.open('v');
  const count = 8;
  for (let i = 0; i < count; i++) c.request(P.NBD_CMD_WRITE, BigInt(i + 1), i * 4096, 4, 0, Buffer.from('data'));
  c.request(P.NBD_CMD_FLUSH, 100n, 0, 0);
  c.request(P.NBD_CMD_READ, 101n, 0, 2 * MiB); // Past the end: answered EINVAL without the backend.
  await waitFor(() => releases.length === count + 1, 5000, 'every request held by the backend');
  // The EINVAL reply went out on its own already; from here on, count.
  t.is((await c.readReply()).error, P.NBD_EINVAL);
  const writes = countServerWrites(s.port);
  try {
    for (const release of releases) setImmediate(release);
    const handles = new Set<bigint>();
    for (let i = 0; i <= count; i++) {
      const reply = await c.readReply();
      t.is(reply.error, 0);
      handles.add(reply.handle);
    }
    t.deepEqual(
      [...handles].sort((a, b) => Number(a - b)),
      [1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n, 100n],
    );
    t.is(writes.count(), 1, 'all nine replies in one write');
  } finally {
    writes.restore();
  }
  c.destroy();
  await s.close();
});

test.serial('a batch of large reads (too large to copy into one buffer) arrives intact', async (t) => {
  const s = await startServer({ v: 4 * MiB });
  const random = seededRandom(11);
  const content = randomBytes(random, 4 * MiB);
  const c = await RawClient.connect(s.port);
  await c.open('v');
  c.request(P.NBD_CMD_WRITE, 1n, 0, content.length, 0, content);
  t.is((await c.readReply()).error, 0);
  const releases: (() => void)[] = [];
  s.provider.setInterceptor(() => new Promise<void>((resolve) => releases.push(resolve)));
  const reads: [bigint, number, number][] = [
    [10n, 0, 512 * 1024],
    [11n, 3 * MiB + 7, 100],
    [12n, 1 * MiB, 0], // A zero-length read: a header alone.
    [13n, 2 * MiB + 1, 300 * 1024],
  ];
  for (const [handle, offset, length] of reads) c.request(P.NBD_CMD_READ, handle, offset, length);
  await waitFor(() => releases.length === reads.length - 1, 5000, 'reads held by the backend');
  for (const release of releases) setImmediate(release);
  const lengths = new Map(reads.map(([handle, , length]) => [handle, length]));
  const byHandle = new Map(reads.map(([handle, offset, length]) => [handle, { offset, length }]));
  for (let i = 0; i < reads.length; i++) {
    const reply = await c.readReply(lengths);
    t.is(reply.error, 0);
    const { offset, length } = byHandle.get(reply.handle)!;
    t.true(reply.data.equals(content.subarray(offset, offset + length)), `data of handle ${reply.handle}`);
  }
  c.destroy();
  await s.close();
});

test.serial(
  'a batch mixing 4 KiB reads with write, flush and failed replies leaves in one writev, intact',
  async (t) => {
    const s = await startServer({ v: MiB });
    const random = seededRandom(23);
    const content = randomBytes(random, 64 * 1024);
    const c = await RawClient.connect(s.port);
    await c.open('v');
    c.request(P.NBD_CMD_WRITE, 1n, 0, content.length, 0, content);
    t.is((await c.readReply()).error, 0);
    const releases: (() => void)[] = [];
    s.provider.setInterceptor((_name, _op, offset) => {
      return new Promise<void>((resolve, reject) => {
        // The read at 60 KiB fails once released: its reply is a header without data.
        releases.push(offset === 60 * 1024 ? () => reject(new Error('injected read failure')) : resolve);
      });
    });
    // Requests in an order that interleaves data-less replies between reads.
    type Sent = { handle: bigint; type: number; offset: number; length: number; error: number };
    const sent: Sent[] = [
      { handle: 10n, type: P.NBD_CMD_READ, offset: 0, length: 4096, error: 0 },
      { handle: 11n, type: P.NBD_CMD_WRITE, offset: 8 * 4096, length: 4, error: 0 },
      { handle: 12n, type: P.NBD_CMD_FLUSH, offset: 0, length: 0, error: 0 },
      { handle: 13n, type: P.NBD_CMD_READ, offset: 4096 + 3, length: 4096, error: 0 },
      { handle: 14n, type: P.NBD_CMD_READ, offset: 60 * 1024, length: 4096, error: P.NBD_EIO },
      { handle: 15n, type: P.NBD_CMD_WRITE, offset: 9 * 4096, length: 4, error: 0 },
      { handle: 16n, type: P.NBD_CMD_READ, offset: 5 * 4096, length: 4096, error: 0 },
    ];
    for (const r of sent) {
      const payload = r.type === P.NBD_CMD_WRITE ? content.subarray(r.offset, r.offset + r.length) : undefined;
      c.request(r.type, r.handle, r.offset, r.length, 0, payload);
    }
    await waitFor(() => releases.length === sent.length, 5000, 'every request held by the backend');
    const writes = countServerHandleWrites(s.port);
    try {
      for (const release of releases) setImmediate(release);
      const lengths = new Map(sent.filter((r) => r.type === P.NBD_CMD_READ).map((r) => [r.handle, r.length]));
      const byHandle = new Map(sent.map((r) => [r.handle, r]));
      for (let i = 0; i < sent.length; i++) {
        const reply = await c.readReply(lengths);
        const request = byHandle.get(reply.handle)!;
        t.truthy(request, `unknown handle ${reply.handle}`);
        byHandle.delete(reply.handle);
        t.is(reply.error, request.error, `error of handle ${reply.handle}`);
        if (request.type === P.NBD_CMD_READ && request.error === 0) {
          t.true(reply.data.equals(content.subarray(request.offset, request.offset + request.length)));
        } else {
          t.is(reply.data.length, 0, `no data after handle ${reply.handle}`);
        }
      }
      t.is(byHandle.size, 0, 'every request answered once');
      t.is(writes.count(), 1, 'the whole batch in one writev');
      // Header runs and read buffers: [h10] d10 [h11 h12 h13] d13 [h14 h15 h16] d16.
      t.is(writes.parts(), 6);
    } finally {
      writes.restore();
    }
    c.destroy();
    await s.close();
  },
);
