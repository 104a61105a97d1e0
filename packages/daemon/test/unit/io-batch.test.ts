// Proves the batched Io stream of the block API over real gRPC on 127.0.0.1 (port 0), against a
// stand-in Raft node and block store that count their calls: every read of one message waits for
// ONE ReadIndex and ONE BlockStore.readMany (not one each; messages whose ReadIndex resolved
// together share one readMany too), and the writes of one message are
// proposed with ONE proposeMany call; answers ready in the same turn leave in one message; a message
// mixing valid and invalid requests gets a per-request answer for each (the stream stays open) and
// is counted per (volume, op, result) with bounded labels;
// malformed messages (undecodable, empty, above IO_BATCH_REQUESTS_MAX, a bare pre-batch request,
// a missing or repeated id) fail the stream with INVALID_ARGUMENT or TOO_LARGE and nothing of
// them is served; and writes reach the proposal encoder with their payload intact.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { Packr } from 'msgpackr';
import { IO_BATCH_REQUESTS_MAX } from '@rdl/client/wire';
import type { ApiRaftNode } from '../../src/api/block-service.js';
import type { RaftStatus } from '../../src/raft-types.js';
import { DaemonMetrics } from '../../src/metrics.js';
import { decodeCommand } from '../../src/storage/commands.js';
import type { BlockRead, BlockStore } from '../../src/storage/commands.js';
import { TEST_VOLUME, serveBlockApi } from '../helpers/block-api-server.js';
import { BlockClient, sessionId } from '../helpers/block-client.js';
import type { TestIoRequest } from '../helpers/block-client.js';

const packr = new Packr({ useRecords: false });

interface Harness {
  client: BlockClient;
  metrics: DaemonMetrics;
  readIndexCalls: () => number;
  /** `BlockStore.readMany` calls (one per message's reads). */
  readManyCalls: () => number;
  /** `proposeMany` calls (one per message's mutations). */
  proposeManyCalls: () => number;
  proposals: Uint8Array[];
  /** Resolves the ReadIndex calls waiting so far. */
  releaseReads: () => void;
}

async function start(t: ExecutionContext): Promise<Harness> {
  const metrics = new DaemonMetrics({ region: 'geneva', isDefaultMetricsEnabled: false });
  let readIndexCalls = 0;
  let readManyCalls = 0;
  let proposeManyCalls = 0;
  const waitingReads: (() => void)[] = [];
  const proposals: Uint8Array[] = [];
  const node: ApiRaftNode = {
    propose: (data) => {
      proposals.push(data);
      return Promise.resolve({ ok: true });
    },
    proposeMany: (data, onResult) => {
      proposeManyCalls++;
      proposals.push(...data);
      queueMicrotask(() => data.forEach((_, slot) => onResult(slot, null, { ok: true })));
    },
    readIndex: () => {
      readIndexCalls++;
      return new Promise<void>((resolve) => waitingReads.push(resolve));
    },
    transferLeadership: () => Promise.resolve(),
    status: () => ({ role: 'leader', leader: 'geneva' }) as unknown as RaftStatus,
  };
  const volume = TEST_VOLUME;
  const store = {
    getVolume: (name: string) => (name === 'v' ? volume : null),
    listVolumes: () => [volume],
    read: async (_name: string, offset: number, length: number) => new Uint8Array(length).fill(offset / 4096),
    readMany: async (reads: readonly BlockRead[]) => {
      readManyCalls++;
      return reads.map(({ offset, length }) => new Uint8Array(length).fill(offset / 4096));
    },
  } as unknown as BlockStore;
  const port = await serveBlockApi(t, { node, store, metrics: metrics });
  const client = new BlockClient(`127.0.0.1:${port}`);
  t.teardown(() => client.close());
  return {
    client,
    metrics,
    readIndexCalls: () => readIndexCalls,
    readManyCalls: () => readManyCalls,
    proposeManyCalls: () => proposeManyCalls,
    proposals,
    releaseReads: () => {
      for (const resolve of waitingReads.splice(0)) resolve();
    },
  };
}

const read = (block: number): TestIoRequest => ({ op: 'read', volume: 'v', offset: block * 4096, length: 4096 });
const write = (seq: number, fill: number): TestIoRequest => ({
  op: 'write',
  volume: 'v',
  offset: seq * 4096,
  length: 4096,
  data: Buffer.alloc(4096, fill),
  session: sessionId(1),
  seq,
  ackedBelow: 1,
});

async function waitUntil(condition: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + 10_000;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

test('one ReadIndex for all reads of a message; answers of one turn leave in one message', async (t) => {
  const { client, readIndexCalls, readManyCalls, proposeManyCalls, releaseReads, proposals } = await start(t);
  const io = client.io();
  const reads = io.batch(Array.from({ length: 40 }, (_, i) => read(i)));
  await waitUntil(() => readIndexCalls() === 1, 'the ReadIndex');
  releaseReads();
  const answers = await Promise.all(reads);
  t.is(readIndexCalls(), 1, 'one ReadIndex for 40 reads');
  t.is(readManyCalls(), 1, 'one readMany for 40 reads');
  answers.forEach((answer, i) => {
    t.true(answer.ok);
    t.is(answer.data?.length, 4096);
    t.is(answer.data?.[0], i, `read ${i} got its own block`);
  });
  t.deepEqual(io.messageSizes, [40], 'all 40 answers in one message');

  const writes = io.batch(Array.from({ length: 30 }, (_, i) => write(i + 1, i + 1)));
  const written = await Promise.all(writes);
  t.true(written.every((answer) => answer.ok));
  t.deepEqual(io.messageSizes, [40, 30]);
  t.is(proposals.length, 30, 'one proposal per write');
  t.is(proposeManyCalls(), 1, 'the 30 writes of one message proposed with one call');
  proposals.forEach((proposal, i) => {
    const decoded = decodeCommand(proposal);
    t.true(decoded.ok);
    if (decoded.ok && decoded.command.type === 'write') {
      t.is(decoded.command.seq, i + 1);
      t.true(Buffer.from(decoded.command.data).equals(Buffer.alloc(4096, i + 1)), `write ${i + 1} payload intact`);
    } else {
      t.fail(`proposal ${i} is not a write`);
    }
  });
  io.end();
});

test('reads of messages whose ReadIndex resolved together share one readMany', async (t) => {
  const { client, readIndexCalls, readManyCalls, releaseReads } = await start(t);
  const io = client.io();
  const first = io.batch([read(1), read(2)]);
  const second = io.batch([read(3)]);
  await waitUntil(() => readIndexCalls() === 2, 'both ReadIndex calls');
  releaseReads();
  const answers = await Promise.all([...first, ...second]);
  t.deepEqual(
    answers.map((answer) => answer.data?.[0]),
    [1, 2, 3],
  );
  t.is(readManyCalls(), 1, 'one readMany for the reads of both messages');
});

test('a message mixing valid and invalid requests gets an answer per request', async (t) => {
  const { client, releaseReads, readIndexCalls, metrics } = await start(t);
  const io = client.io();
  const answers = io.batch([
    read(1),
    { ...read(2), op: 'format' as never },
    { ...write(1, 9), session: 'short' },
    { ...read(3), length: 2 << 20 },
    { ...read(4), volume: '../etc' },
    write(2, 7),
    { op: 'flush', volume: 'v', offset: 0, length: 0 },
    read(5),
  ]);
  await waitUntil(() => readIndexCalls() === 1, 'the ReadIndex');
  releaseReads();
  const codes = (await Promise.all(answers)).map((answer) => (answer.ok ? 'ok' : answer.error?.code));
  t.deepEqual(codes, ['ok', 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'TOO_LARGE', 'INVALID_ARGUMENT', 'ok', 'ok', 'ok']);
  t.is(io.failure, null, 'the stream stays open');
  io.end();
  // Counted per (volume, op, result): unknown volumes and ops from clients get one label each, so
  // clients cannot create unbounded metric series.
  const counts = (await metrics.ioOps.get()).values.map(({ labels, value }) => [
    `${labels.volume}/${labels.op}/${labels.result}`,
    value,
  ]);
  t.deepEqual(
    counts.sort(([a], [b]) => String(a).localeCompare(String(b))),
    [
      ['(none)/read/INVALID_ARGUMENT', 1],
      ['v/flush/ok', 1],
      ['v/read/ok', 2],
      ['v/read/TOO_LARGE', 1],
      ['v/unknown/INVALID_ARGUMENT', 1],
      ['v/write/INVALID_ARGUMENT', 1],
      ['v/write/ok', 1],
    ],
  );
});

test('malformed messages fail the stream with a code and nothing of them is served', async (t) => {
  const { client, proposals } = await start(t);
  const cases: [string, Buffer, string][] = [
    ['undecodable', Buffer.from([0xc1, 0xc1]), 'INVALID_ARGUMENT'],
    ['empty batch', packr.pack({ requests: [] }), 'INVALID_ARGUMENT'],
    [
      'too many requests',
      packr.pack({
        requests: Array.from({ length: IO_BATCH_REQUESTS_MAX + 1 }, (_, i) => ({ ...read(0), id: i + 1 })),
      }),
      'TOO_LARGE',
    ],
    ['bare pre-batch request', packr.pack({ ...read(0), id: 1 }), 'INVALID_ARGUMENT'],
    ['requests not an array', packr.pack({ requests: { id: 1 } }), 'INVALID_ARGUMENT'],
    ['a request without an id', packr.pack({ requests: [{ ...write(1, 1), id: 1 }, write(2, 2)] }), 'INVALID_ARGUMENT'],
    [
      'a repeated id',
      packr.pack({
        requests: [
          { ...write(1, 1), id: 5 },
          { ...write(2, 2), id: 5 },
        ],
      }),
      'INVALID_ARGUMENT',
    ],
  ];
  for (const [what, bytes, code] of cases) {
    const failure = await client.io().writeRaw(bytes);
    t.is(failure.code, code, what);
  }
  t.is(proposals.length, 0, 'no write of a refused message was proposed');
  // The server still serves a well-formed stream.
  const io = client.io();
  t.true((await io.request(write(3, 3))).ok);
  io.end();
});
