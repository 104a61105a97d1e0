// Proves the wire module works over a real grpc-js server on 127.0.0.1:0: msgpack messages round
// trip (binary as Buffer, large integers as numbers), an error's code and leader hints survive the
// trip through gRPC status and trailing metadata, the Io stream carries batches of requests and of
// responses matched by id, and the input checks refuse malformed IO requests and batches with the
// documented codes.
import test from 'ava';
import { stubBlockServer } from './stub-block-server.js';
import * as grpc from '@grpc/grpc-js';
import {
  GRPC_CHANNEL_OPTIONS,
  GRPC_SERVER_OPTIONS,
  IO_BATCH_REQUESTS_MAX,
  IO_REQUEST_BYTES_MAX,
  WireCode,
  blockService,
  checkIoBatch,
  checkIoRequest,
  checkVolumeName,
  checkVolumeSize,
  decode,
  encode,
  fromGrpcError,
  grpcStatusOf,
  toGrpcError,
} from '../../src/wire/index.js';
import type {
  IoRequest,
  IoRequestBatch,
  IoResponse,
  IoResponseBatch,
  StatVolumeResponse,
} from '../../src/wire/index.js';

const session = '0123456789abcdef0123456789abcdef';

test('codec round-trips binary and 64-bit integers', (t) => {
  const data = Buffer.alloc(4096, 7);
  const decoded = decode<IoRequest>(encode({ id: 1, op: 'write', offset: 2 ** 40 + 4096, data }));
  t.is(decoded.offset, 2 ** 40 + 4096);
  t.true(Buffer.isBuffer(decoded.data));
  t.deepEqual(Buffer.from(decoded.data!), data);
});

test('error codes map to gRPC statuses and back', (t) => {
  t.is(grpcStatusOf(WireCode.VOLUME_NOT_FOUND), grpc.status.NOT_FOUND);
  t.is(grpcStatusOf(WireCode.NOT_LEADER), grpc.status.FAILED_PRECONDITION);
  t.is(grpcStatusOf('SOMETHING_ELSE'), grpc.status.INTERNAL);
  const error = toGrpcError({
    code: 'NOT_LEADER',
    message: 'ask gland',
    leader: 'gland',
    leaderAddress: '127.0.0.1:7002',
  });
  t.deepEqual(fromGrpcError(error), {
    code: 'NOT_LEADER',
    message: 'ask gland',
    leader: 'gland',
    leaderAddress: '127.0.0.1:7002',
  });
  // A transport failure without rdl-code still gets a stable code.
  const dropped = Object.assign(new Error('14 UNAVAILABLE: No connection established'), {
    code: grpc.status.UNAVAILABLE,
  });
  t.is(fromGrpcError(dropped).code, WireCode.UNAVAILABLE);
});

test('checks refuse malformed requests with codes', (t) => {
  const write: IoRequest = {
    id: 1,
    op: 'write',
    volume: 'v1',
    offset: 0,
    length: 4,
    data: Buffer.alloc(4),
    session,
    seq: 1,
    ackedBelow: 1,
  };
  t.is(checkIoRequest(write), undefined);
  t.is(checkIoRequest({ ...write, op: 'erase' as never })?.code, WireCode.INVALID_ARGUMENT);
  t.is(checkIoRequest({ ...write, length: 5 })?.code, WireCode.INVALID_ARGUMENT);
  t.is(checkIoRequest({ ...write, seq: 0 })?.code, WireCode.INVALID_ARGUMENT);
  t.is(checkIoRequest({ ...write, session: 'x' })?.code, WireCode.INVALID_ARGUMENT);
  t.is(checkIoRequest({ ...write, offset: -1 })?.code, WireCode.INVALID_ARGUMENT);
  t.is(checkIoRequest({ ...write, ackedBelow: 2 })?.code, WireCode.INVALID_ARGUMENT);
  const read = { ...write, op: 'read' as const, data: undefined, seq: 0, ackedBelow: 0 };
  t.is(checkIoRequest(read), undefined);
  // Reads and flushes may leave the session fields out; present, they must be well-formed.
  t.is(checkIoRequest({ id: 2, op: 'read', volume: 'v1', offset: 0, length: 4 }), undefined);
  t.is(checkIoRequest({ id: 2, op: 'flush', volume: 'v1', offset: 0, length: 0 }), undefined);
  t.is(checkIoRequest({ ...read, seq: -1 })?.code, WireCode.INVALID_ARGUMENT);
  t.is(checkIoRequest({ ...write, seq: undefined })?.code, WireCode.INVALID_ARGUMENT);
  t.is(checkIoRequest({ ...write, ackedBelow: undefined })?.code, WireCode.INVALID_ARGUMENT);
  t.is(checkIoRequest({ ...write, session: undefined })?.code, WireCode.INVALID_ARGUMENT);
  t.is(checkIoRequest({ ...read, length: IO_REQUEST_BYTES_MAX + 1 })?.code, WireCode.TOO_LARGE);
  t.is(checkIoRequest(null as never)?.code, WireCode.INVALID_ARGUMENT);
  t.is(checkVolumeName('pvc-1234'), undefined);
  t.is(checkVolumeName('../etc')?.code, WireCode.INVALID_ARGUMENT);
  t.is(checkVolumeSize(4096), undefined);
  t.is(checkVolumeSize(4097)?.code, WireCode.INVALID_ARGUMENT);
  t.is(checkVolumeSize(0)?.code, WireCode.INVALID_ARGUMENT);
});

test('batch envelope checks: a map with 1 to IO_BATCH_REQUESTS_MAX requests', (t) => {
  const request: IoRequest = { id: 1, op: 'read', volume: 'v1', offset: 0, length: 4 };
  const one = { requests: [request] };
  t.is(checkIoBatch(one), undefined);
  const full = { requests: Array.from({ length: IO_BATCH_REQUESTS_MAX }, (_, i) => ({ ...request, id: i })) };
  t.is(checkIoBatch(full), undefined);
  const code = (message: unknown) => checkIoBatch(message)?.code;
  t.is(code({ requests: [...full.requests, request] }), WireCode.TOO_LARGE);
  t.is(code({ requests: [] }), WireCode.INVALID_ARGUMENT);
  t.is(code(request), WireCode.INVALID_ARGUMENT, 'a bare request (the pre-batch shape) is refused');
  t.is(code([request]), WireCode.INVALID_ARGUMENT);
  t.is(code({ requests: 'x' }), WireCode.INVALID_ARGUMENT);
  t.is(code(null), WireCode.INVALID_ARGUMENT);
  t.is(code(Buffer.alloc(1)), WireCode.INVALID_ARGUMENT);
});

test('unary error metadata and the Io stream work over real gRPC', async (t) => {
  const server = new grpc.Server(GRPC_SERVER_OPTIONS);
  const impl = stubBlockServer({
    statVolume: (call, callback) => {
      if (call.request.name === 'missing') {
        callback(toGrpcError({ code: WireCode.VOLUME_NOT_FOUND, message: 'no volume missing' }));
        return;
      }
      callback(null, { volume: { name: call.request.name, sizeBytes: 8192, blockSizeBytes: 4096, createdAtMs: 1 } });
    },
    io: (call) => {
      const pending: IoRequest[] = [];
      call.on('data', (batch: IoRequestBatch) => {
        pending.push(...batch.requests);
        // Answer in reverse order, in one message, once three arrived, to show ids carry the matching.
        if (pending.length === 3) {
          call.write({
            responses: pending.reverse().map((r) => ({ id: r.id, ok: true, data: Buffer.alloc(r.length, r.id) })),
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

  const stat = (name: string) =>
    new Promise<StatVolumeResponse>((resolve, reject) =>
      client.statVolume({ name }, (e: grpc.ServiceError | null, r: StatVolumeResponse) => (e ? reject(e) : resolve(r))),
    );
  t.is((await stat('v1')).volume.sizeBytes, 8192);
  const error = await t.throwsAsync<grpc.ServiceError>(stat('missing'));
  t.is(error?.code, grpc.status.NOT_FOUND);
  t.is(fromGrpcError(error!).code, WireCode.VOLUME_NOT_FOUND);

  const stream = client.io() as grpc.ClientDuplexStream<IoRequestBatch, IoResponseBatch>;
  const answers: IoResponse[] = [];
  let messages = 0;
  const done = new Promise<void>((resolve) =>
    stream.on('data', (batch: IoResponseBatch) => {
      messages++;
      answers.push(...batch.responses);
      if (answers.length === 3) resolve();
    }),
  );
  const base = { op: 'read' as const, volume: 'v1', offset: 0 };
  stream.write({ requests: [{ ...base, id: 1, length: 3 }] });
  stream.write({
    requests: [
      { ...base, id: 2, length: 5 },
      { ...base, id: 3, length: 2 },
    ],
  });
  await done;
  t.is(messages, 1, 'three answers in one message');
  const closed = new Promise<grpc.StatusObject>((resolve) => stream.on('status', resolve));
  stream.on('error', () => {}); // the status event below carries the outcome
  stream.end();
  t.is((await closed).code, grpc.status.OK);
  t.deepEqual(
    answers.map((a) => [a.id, a.ok, a.data?.length, a.data?.[0]]),
    [
      [3, true, 2, 3],
      [2, true, 5, 2],
      [1, true, 3, 1],
    ],
  );
});
