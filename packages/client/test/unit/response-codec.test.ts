// Proves the hand-written Io response encoder (the Io method's responseSerialize) writes what the
// generic msgpack codec writes, for every id width, payload and error, and that reusing its scratch
// buffer is safe under grpc-js: a real server on 127.0.0.1:0 writes many large messages back to
// back in one synchronous burst (each encode overwrites the previous one's scratch bytes) and the
// client must receive every payload intact.
import test from 'ava';
import { stubBlockServer } from './stub-block-server.js';
import * as grpc from '@grpc/grpc-js';
import {
  GRPC_CHANNEL_OPTIONS,
  GRPC_SERVER_OPTIONS,
  blockService,
  decode,
  encode,
  encodeIoResponseBatchTransient,
} from '../../src/wire/index.js';
import type { IoRequestBatch, IoResponse, IoResponseBatch } from '../../src/wire/index.js';

function normalized(batch: IoResponseBatch): unknown {
  return batch.responses.map((r) => ({ ...r, data: r.data === undefined ? undefined : Buffer.from(r.data) }));
}

test('decodes to what the generic encoder gives, for every id width, payload and error', (t) => {
  const ids = [0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1];
  const responses: IoResponse[] = [];
  for (const id of ids) {
    responses.push({ id, ok: true });
    responses.push({ id, ok: true, data: Buffer.alloc(id % 7 === 0 ? 4096 : 3, id % 251) });
  }
  responses.push({ id: 9, ok: true, data: new Uint8Array([1, 2, 3]) });
  responses.push({ id: 10, ok: true, data: Buffer.alloc(0) });
  responses.push({
    id: 11,
    ok: false,
    error: { code: 'NOT_LEADER', message: 'ask gland', leader: 'gland', leaderAddress: '127.0.0.1:7002' },
  });
  responses.push({ id: 12, ok: false, error: { code: 'OUT_OF_RANGE', message: 'é'.repeat(300) } });
  const batch = { responses };
  const mine = decode<IoResponseBatch>(Buffer.from(encodeIoResponseBatchTransient(batch)));
  const generic = decode<IoResponseBatch>(encode(batch));
  t.deepEqual(normalized(mine), normalized(generic));
  t.deepEqual(normalized(mine), normalized(batch));
  t.true(Buffer.isBuffer(mine.responses[1].data), 'binary decodes as a Buffer');
});

test('the scratch buffer grows for a large message and still encodes small ones after it', (t) => {
  const big = { responses: Array.from({ length: 256 }, (_, id) => ({ id, ok: true, data: Buffer.alloc(16384, id) })) };
  const decodedBig = decode<IoResponseBatch>(Buffer.from(encodeIoResponseBatchTransient(big)));
  t.is(decodedBig.responses.length, 256);
  t.true(decodedBig.responses.every((r, i) => r.data!.length === 16384 && r.data![16383] === i % 256));
  const small = { responses: [{ id: 5, ok: true }] };
  t.deepEqual(decode(Buffer.from(encodeIoResponseBatchTransient(small))), small);
});

test('refuses a response without a usable id or with a non-binary payload', (t) => {
  t.throws(() => encodeIoResponseBatchTransient({ responses: [{ id: -1, ok: true }] }), { instanceOf: TypeError });
  t.throws(() => encodeIoResponseBatchTransient({ responses: [{ id: 1.5, ok: true }] }), { instanceOf: TypeError });
  t.throws(() => encodeIoResponseBatchTransient({ responses: [{ id: 1, ok: true, data: 'x' as never }] }), {
    instanceOf: TypeError,
  });
  t.throws(() => encodeIoResponseBatchTransient({ responses: 'x' as never }), { instanceOf: TypeError });
});

test('messages written back to back by a grpc-js server arrive intact (the scratch buffer is copied)', async (t) => {
  const messageCount = 40;
  const perMessage = 64;
  const server = new grpc.Server(GRPC_SERVER_OPTIONS);
  const impl = stubBlockServer({
    io: (call) => {
      call.on('data', () => {
        // One synchronous burst: if grpc-js kept the serializer's result instead of copying it,
        // later messages would overwrite the bytes of earlier ones still queued for HTTP/2.
        for (let m = 0; m < messageCount; m++) {
          call.write({
            responses: Array.from({ length: perMessage }, (_, i) => ({
              id: m * perMessage + i,
              ok: true,
              data: Buffer.alloc(4096, (m * perMessage + i) % 251),
            })),
          });
        }
      });
      call.on('end', () => call.end());
    },
  });
  server.addService(blockService, impl);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  t.teardown(() => server.forceShutdown());
  const Client = grpc.makeGenericClientConstructor(blockService, 'Block');
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), GRPC_CHANNEL_OPTIONS);
  t.teardown(() => client.close());
  const stream = client.io() as grpc.ClientDuplexStream<IoRequestBatch, IoResponseBatch>;
  stream.on('error', () => {});
  const answers: IoResponse[] = [];
  await new Promise<void>((resolve) => {
    stream.on('data', (batch: IoResponseBatch) => {
      answers.push(...batch.responses);
      if (answers.length === messageCount * perMessage) resolve();
    });
    stream.write({ requests: [{ id: 1, op: 'read', volume: 'v1', offset: 0, length: 4096 }] });
  });
  stream.end();
  let bad = 0;
  answers.forEach((answer, i) => {
    const data = answer.data!;
    if (answer.id !== i || data.length !== 4096 || data[0] !== i % 251 || data[4095] !== i % 251) bad++;
  });
  t.is(bad, 0);
});
