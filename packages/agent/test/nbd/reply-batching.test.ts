// Proves that replies completed in one turn of the event loop leave in one socket write, and that
// batching keeps every reply intact: the in-memory provider holds requests, the test releases them
// from separate setImmediate callbacks of one turn (as completions arriving in separate IO
// callbacks would), counts the writes on the server's side of the connection, and checks each
// reply's handle, error and data, including a batch too large to copy (sent as one writev).
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
