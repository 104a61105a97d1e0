// Proves that the NBD server answers NBD_CMD_FLUSH through a handle's synchronous `flushNow` when
// the handle has one (the rdl provider's does): a provider whose async `flush()` fails the test if
// called counts `flushNow` calls; flushes are answered while a write is still held by the backend
// (they cover only answered writes), a flush sent in the same packet as writes that complete in
// the same turn leaves in the same socket write as their replies, a throwing `flushNow` keeps the
// NBD error mapping (EIO), and the rdl handle's `flushNow` throws AGENT_VOLUME_CLOSED once closed.
import test from 'ava';
import net from 'node:net';
import { AgentError, AgentErrorCode } from '../../src/errors.js';
import { MemoryVolumeProvider } from '../../src/nbd/memory-volume.js';
import { RdlVolumeProvider, type RdlVolumeClient } from '../../src/nbd/rdl-volume.js';
import { NbdServer } from '../../src/nbd/server.js';
import type { VolumeHandle, VolumeProvider } from '../../src/nbd/volume.js';
import * as P from '../../src/nbd/protocol.js';
import { RawClient } from './raw-client.js';
import { waitFor } from './helpers.js';

/** Wraps the in-memory provider's handles with a counting `flushNow` and a forbidden `flush`. */
class FlushNowProvider implements VolumeProvider {
  readonly memory = new MemoryVolumeProvider();
  flushNowCalls = 0;
  asyncFlushCalls = 0;
  failure: Error | undefined = undefined;

  async open(name: string, options: { isReadOnly: boolean }): Promise<VolumeHandle> {
    const inner = await this.memory.open(name, options);
    const wrapped: VolumeHandle = Object.create(inner) as VolumeHandle;
    return Object.assign(wrapped, {
      read: inner.read.bind(inner),
      write: inner.write.bind(inner),
      writeZeroes: inner.writeZeroes.bind(inner),
      trim: inner.trim.bind(inner),
      close: inner.close.bind(inner),
      flush: async () => {
        this.asyncFlushCalls++;
      },
      flushNow: () => {
        this.flushNowCalls++;
        if (this.failure !== undefined) throw this.failure;
      },
    });
  }

  list(): ReturnType<VolumeProvider['list']> {
    return this.memory.list();
  }
}

async function start(): Promise<{ provider: FlushNowProvider; server: NbdServer; port: number }> {
  const provider = new FlushNowProvider();
  provider.memory.createVolume('v', 1 << 20);
  const server = new NbdServer({ provider });
  const address = await server.listen({ host: '127.0.0.1', port: 0 });
  return { provider, server, port: 'port' in address ? address.port : 0 };
}

test('flushes go through flushNow, and are answered while a write is held by the backend', async (t) => {
  const { provider, server, port } = await start();
  const releases: (() => void)[] = [];
  provider.memory.setInterceptor(() => new Promise<void>((resolve) => releases.push(resolve)));
  const c = await RawClient.connect(port);
  await c.open('v');
  c.request(P.NBD_CMD_WRITE, 1n, 0, 4, 0, Buffer.from('abcd'));
  await waitFor(() => releases.length === 1, 5000, 'the write held by the backend');
  c.request(P.NBD_CMD_FLUSH, 2n, 0, 0);
  const flushReply = await c.readReply();
  t.is(flushReply.handle, 2n);
  t.is(flushReply.error, 0);
  releases[0]();
  const writeReply = await c.readReply();
  t.is(writeReply.handle, 1n);
  t.is(writeReply.error, 0);
  t.is(provider.flushNowCalls, 1);
  t.is(provider.asyncFlushCalls, 0, 'the async flush is not used');
  c.destroy();
  await server.close();
});

test('a flush arriving with writes that complete in the same turn leaves in the same socket write', async (t) => {
  const { provider, server, port } = await start();
  const c = await RawClient.connect(port);
  await c.open('v');
  const original = net.Socket.prototype.write;
  let writes = 0;
  net.Socket.prototype.write = function (this: net.Socket, ...args: unknown[]) {
    if (this.localPort === port) writes++;
    return (original as (...a: unknown[]) => boolean).apply(this, args);
  } as typeof original;
  try {
    // One packet: two writes (completed by the in-memory volume in this turn's microtasks) and a flush.
    const packet: Buffer[] = [];
    const header = (type: number, handle: bigint, offset: number, length: number): Buffer => {
      const b = Buffer.alloc(28);
      b.writeUInt32BE(P.NBD_REQUEST_MAGIC, 0);
      b.writeUInt16BE(0, 4);
      b.writeUInt16BE(type, 6);
      b.writeBigUInt64BE(handle, 8);
      b.writeBigUInt64BE(BigInt(offset), 16);
      b.writeUInt32BE(length, 24);
      return b;
    };
    packet.push(header(P.NBD_CMD_WRITE, 1n, 0, 4), Buffer.from('abcd'));
    packet.push(header(P.NBD_CMD_WRITE, 2n, 4096, 4), Buffer.from('efgh'));
    packet.push(header(P.NBD_CMD_FLUSH, 3n, 0, 0));
    c.write(Buffer.concat(packet));
    const handles = [];
    for (let i = 0; i < 3; i++) {
      const reply = await c.readReply();
      t.is(reply.error, 0);
      handles.push(reply.handle);
    }
    t.deepEqual(handles.sort(), [1n, 2n, 3n]);
    t.is(writes, 1, 'three replies, one socket write');
  } finally {
    net.Socket.prototype.write = original;
  }
  t.is(provider.flushNowCalls, 1);
  c.destroy();
  await server.close();
});

test('a flushNow that throws is answered with the NBD error of its code (EIO), and the session goes on', async (t) => {
  const { provider, server, port } = await start();
  const c = await RawClient.connect(port);
  await c.open('v');
  provider.failure = new AgentError(AgentErrorCode.VolumeIoFailed, 'injected flush failure');
  c.request(P.NBD_CMD_FLUSH, 7n, 0, 0);
  t.is((await c.readReply()).error, P.NBD_EIO);
  provider.failure = undefined;
  c.request(P.NBD_CMD_FLUSH, 8n, 0, 0);
  const reply = await c.readReply();
  t.is(reply.handle, 8n);
  t.is(reply.error, 0);
  // A FLUSH with a length is still refused by validation before the handle is called.
  c.request(P.NBD_CMD_FLUSH, 9n, 0, 1);
  t.is((await c.readReply()).error, P.NBD_EINVAL);
  t.is(provider.flushNowCalls, 2);
  c.destroy();
  await server.close();
});

test('the rdl handle flushes synchronously, and throws AGENT_VOLUME_CLOSED once closed', async (t) => {
  const client = {
    statVolume: async (name: string) => ({ name, sizeBytes: 1 << 20, blockSizeBytes: 4096, createdAtMs: 1 }),
  } as unknown as RdlVolumeClient;
  const handle = await new RdlVolumeProvider(client, { requestTimeoutMs: 1000 }).open('v', { isReadOnly: false });
  t.is(typeof handle.flushNow, 'function');
  t.notThrows(() => handle.flushNow!());
  await handle.close();
  t.throws(() => handle.flushNow!(), { code: AgentErrorCode.VolumeClosed });
});
