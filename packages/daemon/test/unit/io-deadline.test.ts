// Proves the Io stream's deadlines without a signal per request: against a Raft node whose
// proposals and reads never finish, a write and a read on a real gRPC stream (127.0.0.1, port 0)
// are each answered DEADLINE_EXCEEDED within a bounded time after the request timeout, while a
// request that does finish is answered ok; the in-flight slots come back (a later request fits
// in a daemon budget of two); and an id sent again while its request is still in flight fails the
// stream with INVALID_ARGUMENT.
import { Server, ServerCredentials, credentials, makeGenericClientConstructor } from '@grpc/grpc-js';
import type { ClientDuplexStream } from '@grpc/grpc-js';
import test from 'ava';
import pino from 'pino';
import { blockService } from '@rdl/client/wire';
import type { IoRequest, IoRequestBatch, IoResponse, IoResponseBatch } from '@rdl/client/wire';
import { BlockApi, blockServerDefinition } from '../../src/api/block-service.js';
import type { ApiRaftNode } from '../../src/api/block-service.js';
import type { RaftStatus } from '../../src/raft-types.js';
import type { BlockStore } from '../../src/storage/commands.js';

const TIMEOUT_MS = 300;
const SESSION = '0123456789abcdef0123456789abcdef';

test('Io requests that never finish get DEADLINE_EXCEEDED; finished ones ok; slots are released', async (t) => {
  let isHanging = true;
  const node: ApiRaftNode = {
    propose: () => (isHanging ? new Promise(() => undefined) : Promise.resolve({ ok: true })),
    proposeMany: (data, onResult) => {
      if (!isHanging) queueMicrotask(() => data.forEach((_, slot) => onResult(slot, null, { ok: true })));
    },
    readIndex: () => (isHanging ? new Promise(() => undefined) : Promise.resolve()),
    transferLeadership: () => Promise.resolve(),
    status: () => ({ role: 'leader', leader: 'geneva' }) as unknown as RaftStatus,
  };
  const volume = { name: 'v', sizeBytes: 1 << 20, blockSizeBytes: 4096, createdAtMs: 0 };
  const store = {
    getVolume: (name: string) => (name === 'v' ? volume : null),
    listVolumes: () => [volume],
    read: async (_name: string, _offset: number, length: number) => new Uint8Array(length),
    readMany: async (reads: readonly { length: number }[]) => reads.map(({ length }) => new Uint8Array(length)),
  } as unknown as BlockStore;
  const api = new BlockApi({
    region: 'geneva',
    node,
    store,
    members: [{ region: 'geneva', raftAddress: '127.0.0.1:1', clientAddress: null }],
    limits: {
      ioBytesMax: 1 << 20,
      streamInflightMax: 16,
      streamInflightBytesMax: 1 << 24,
      daemonInflightMax: 2,
      daemonInflightBytesMax: 1 << 24,
      requestTimeoutMs: TIMEOUT_MS,
    },
    logger: pino({ level: 'silent' }),
  });
  const server = new Server();
  server.addService(blockServerDefinition, api.handlers());
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, bound) =>
      err ? reject(err) : resolve(bound),
    ),
  );
  const Client = makeGenericClientConstructor(blockService, 'Block');
  const client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
  const stream = (client as unknown as { io(): ClientDuplexStream<IoRequestBatch, IoResponseBatch> }).io();
  stream.on('error', () => undefined); // the teardown below ends the call with UNAVAILABLE
  const answers = new Map<number, { response: IoResponse; atMs: number }>();
  stream.on('data', (batch: IoResponseBatch) => {
    for (const response of batch.responses) answers.set(response.id, { response, atMs: performance.now() });
  });
  const send = (request: IoRequest): void => {
    stream.write({ requests: [request] });
  };
  const waitFor = async (id: number): Promise<{ response: IoResponse; atMs: number }> => {
    const deadline = performance.now() + 10_000;
    while (!answers.has(id)) {
      if (performance.now() > deadline) throw new Error(`no answer to ${id}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    return answers.get(id)!;
  };
  try {
    const sentMs = performance.now();
    const data = new Uint8Array(4096).fill(7);
    send({
      id: 1,
      op: 'write',
      volume: 'v',
      offset: 0,
      length: 4096,
      data,
      session: SESSION,
      seq: 1,
      ackedBelow: 0,
    });
    send({ id: 2, op: 'read', volume: 'v', offset: 0, length: 4096 });
    for (const id of [1, 2]) {
      const { response, atMs } = await waitFor(id);
      t.false(response.ok, `request ${id} failed`);
      t.is(response.error?.code, 'DEADLINE_EXCEEDED');
      const elapsedMs = atMs - sentMs;
      t.true(elapsedMs >= TIMEOUT_MS - 5 && elapsedMs < TIMEOUT_MS + 2_000, `answered after ${elapsedMs} ms`);
    }
    // The two slots of the daemon's budget are free again: a finishing write is accepted and ok.
    isHanging = false;
    send({
      id: 3,
      op: 'write',
      volume: 'v',
      offset: 0,
      length: 4096,
      data,
      session: SESSION,
      seq: 2,
      ackedBelow: 0,
    });
    send({ id: 4, op: 'read', volume: 'v', offset: 0, length: 4096 });
    t.true((await waitFor(3)).response.ok);
    t.true((await waitFor(4)).response.ok);

    // An id still in flight (a read that never finishes), sent again in a later message: the
    // stream fails with INVALID_ARGUMENT. Here the first request cannot finish before the second
    // arrives; against a real cluster a fast read could, and the check would not be reached.
    isHanging = true;
    const other = (client as unknown as { io(): ClientDuplexStream<IoRequestBatch, IoResponseBatch> }).io();
    const failure = new Promise<{ code: number; details: string }>((resolve) => other.on('error', resolve));
    other.on('data', () => undefined);
    other.write({ requests: [{ id: 9, op: 'read', volume: 'v', offset: 0, length: 4096 }] });
    other.write({ requests: [{ id: 9, op: 'read', volume: 'v', offset: 4096, length: 4096 }] });
    let timer: NodeJS.Timeout | undefined;
    const error = await Promise.race([
      failure,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('the stream stayed open after the repeated id')), 10_000);
      }),
    ]).finally(() => clearTimeout(timer));
    t.is(error.code, 3, 'INVALID_ARGUMENT');
    t.regex(error.details, /IO request id 9 is already in flight on this stream/);
  } finally {
    stream.end();
    client.close();
    api.stop();
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
  }
});
