// Proves the Io stream's read-ahead over real gRPC on 127.0.0.1 (port 0), against a stand-in Raft
// node whose ReadIndex the test releases by hand and whose commit/applied indexes it sets: when the
// node has applied all it knows committed, a message's reads start (one readMany) before the
// ReadIndex resolves, yet no answer leaves before it resolves; if the commit index moved past the
// applied index of the read-ahead meanwhile, those results are dropped and the reads are read again
// after the ReadIndex; a node that has not applied its commit index does not read ahead; and a
// refused ReadIndex fails the reads even though their blocks were read; after a dropped read-ahead
// the next messages read after their ReadIndex (1, 2, 4 ... of them), and a message that also writes
// does not read ahead.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import type { ApiRaftNode } from '../../src/api/block-service.js';
import type { RaftStatus } from '../../src/raft-types.js';
import { DaemonMetrics } from '../../src/metrics.js';
import type { BlockRead, BlockStore } from '../../src/storage/commands.js';
import { TEST_VOLUME, serveBlockApi } from '../helpers/block-api-server.js';
import { BlockClient } from '../helpers/block-client.js';
import type { TestIoRequest } from '../helpers/block-client.js';

interface Harness {
  client: BlockClient;
  indexes: { commitIndex: number; appliedIndex: number };
  readIndexCalls: () => number;
  readManyCalls: () => number;
  /** Settles the ReadIndex calls waiting so far: resolved, or rejected with `error`. */
  releaseReads: (error?: unknown) => void;
}

async function start(t: ExecutionContext): Promise<Harness> {
  const indexes = { commitIndex: 5, appliedIndex: 5 };
  let readIndexCalls = 0;
  let readManyCalls = 0;
  const waiting: { resolve: () => void; reject: (error: unknown) => void }[] = [];
  const node: ApiRaftNode = {
    propose: () => Promise.resolve({ ok: true }),
    proposeMany: (data, onResult) =>
      queueMicrotask(() => data.forEach((_, slot) => onResult(slot, null, { ok: true }))),
    readIndex: () => {
      readIndexCalls++;
      return new Promise<void>((resolve, reject) => waiting.push({ resolve, reject }));
    },
    transferLeadership: () => Promise.resolve(),
    status: () => ({ role: 'leader', leader: 'geneva', ...indexes }) as unknown as RaftStatus,
  };
  const volume = TEST_VOLUME;
  const store = {
    getVolume: (name: string) => (name === 'v' ? volume : null),
    listVolumes: () => [volume],
    // Each block reads as the applied index of the state it was read from, so a test can tell a
    // read-ahead's result (made at one index) from a read made after the ReadIndex (a later one).
    readMany: async (reads: readonly BlockRead[]) => {
      readManyCalls++;
      const at = indexes.appliedIndex;
      return reads.map(({ length }) => new Uint8Array(length).fill(at));
    },
  } as unknown as BlockStore;
  const port = await serveBlockApi(t, {
    node,
    store,
    metrics: new DaemonMetrics({ region: 'geneva', isDefaultMetricsEnabled: false }),
  });
  const client = new BlockClient(`127.0.0.1:${port}`);
  t.teardown(() => client.close());
  return {
    client,
    indexes,
    readIndexCalls: () => readIndexCalls,
    readManyCalls: () => readManyCalls,
    releaseReads: (error?: unknown) => {
      for (const { resolve, reject } of waiting.splice(0)) {
        if (error === undefined) resolve();
        else reject(error);
      }
    },
  };
}

const read = (block: number): TestIoRequest => ({ op: 'read', volume: 'v', offset: block * 4096, length: 4096 });

async function waitUntil(condition: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + 10_000;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** Lets the stream run a few turns (timers, IO, microtasks) without waiting for a condition. */
async function turns(count: number): Promise<void> {
  for (let i = 0; i < count; i++) await new Promise((resolve) => setImmediate(resolve));
}

test('reads start before their ReadIndex resolves but are answered only after it', async (t) => {
  const { client, readIndexCalls, readManyCalls, releaseReads } = await start(t);
  const io = client.io();
  let answered = 0;
  const reads = io.batch([read(1), read(2), read(3)]).map((p) => p.then((a) => (answered++, a)));
  await waitUntil(() => readIndexCalls() === 1 && readManyCalls() === 1, 'the ReadIndex and the read-ahead');
  await turns(20);
  t.is(answered, 0, 'nothing answered before the ReadIndex resolved');
  releaseReads();
  const answers = await Promise.all(reads);
  t.true(answers.every((a) => a.ok && a.data?.length === 4096 && a.data[0] === 5));
  t.is(readManyCalls(), 1, 'the read-ahead results were used');
  io.end();
});

test('a write committed meanwhile drops the read-ahead: the reads are read again after the ReadIndex', async (t) => {
  const { client, indexes, readIndexCalls, readManyCalls, releaseReads } = await start(t);
  const io = client.io();
  const reads = io.batch([read(1), read(2)]);
  await waitUntil(() => readIndexCalls() === 1 && readManyCalls() === 1, 'the ReadIndex and the read-ahead');
  // Entry 6 commits (and is applied) while the ReadIndex round is out: the read index may be 6.
  indexes.commitIndex = 6;
  indexes.appliedIndex = 6;
  releaseReads();
  const answers = await Promise.all(reads);
  t.is(readManyCalls(), 2, 'read again after the ReadIndex');
  t.deepEqual(
    answers.map((a) => a.data?.[0]),
    [6, 6],
    'answered from the state at index 6, not the read-ahead at 5',
  );
  io.end();
});

test('no read-ahead while the node has not applied all it knows committed', async (t) => {
  const { client, indexes, readIndexCalls, readManyCalls, releaseReads } = await start(t);
  indexes.appliedIndex = 4;
  const io = client.io();
  const reads = io.batch([read(1)]);
  await waitUntil(() => readIndexCalls() === 1, 'the ReadIndex');
  await turns(20);
  t.is(readManyCalls(), 0, 'nothing read before the ReadIndex');
  indexes.appliedIndex = 5;
  releaseReads();
  const [answer] = await Promise.all(reads);
  t.true(answer.ok);
  t.is(answer.data?.[0], 5);
  t.is(readManyCalls(), 1);
  io.end();
});

test('a refused ReadIndex fails the reads even though their blocks were read ahead', async (t) => {
  const { client, readIndexCalls, readManyCalls, releaseReads } = await start(t);
  const io = client.io();
  const reads = io.batch([read(1), read(2)]);
  await waitUntil(() => readIndexCalls() === 1 && readManyCalls() === 1, 'the ReadIndex and the read-ahead');
  await turns(5);
  releaseReads({ code: 'UNAVAILABLE', message: 'stand-in: no quorum' });
  const answers = await Promise.all(reads);
  t.deepEqual(
    answers.map((a) => [a.ok, a.data, a.error?.code]),
    [
      [false, undefined, 'UNAVAILABLE'],
      [false, undefined, 'UNAVAILABLE'],
    ],
  );
  io.end();
});

test('after a dropped read-ahead the next message reads after its ReadIndex, the one after reads ahead again', async (t) => {
  const { client, indexes, readIndexCalls, readManyCalls, releaseReads } = await start(t);
  const io = client.io();
  const first = io.batch([read(1)]);
  await waitUntil(() => readIndexCalls() === 1 && readManyCalls() === 1, 'the first read-ahead');
  indexes.commitIndex = 6;
  indexes.appliedIndex = 6;
  releaseReads();
  await Promise.all(first);
  t.is(readManyCalls(), 2, 'the first message was read again');
  const second = io.batch([read(2)]);
  await waitUntil(() => readIndexCalls() === 2, 'the second ReadIndex');
  await turns(20);
  t.is(readManyCalls(), 2, 'the second message is not read ahead');
  releaseReads();
  t.is((await Promise.all(second))[0].data?.[0], 6);
  t.is(readManyCalls(), 3);
  const third = io.batch([read(3)]);
  await waitUntil(() => readIndexCalls() === 3 && readManyCalls() === 4, 'the third read-ahead');
  releaseReads();
  t.is((await Promise.all(third))[0].data?.[0], 6);
  t.is(readManyCalls(), 4, 'the third read-ahead was used');
  io.end();
});

test('a message that also writes does not read ahead', async (t) => {
  const { client, readIndexCalls, readManyCalls, releaseReads } = await start(t);
  const io = client.io();
  const answers = io.batch([
    read(1),
    {
      op: 'write',
      volume: 'v',
      offset: 0,
      length: 4096,
      data: Buffer.alloc(4096, 1),
      session: '0123456789abcdef0123456789abcdef',
      seq: 1,
      ackedBelow: 1,
    },
  ]);
  await waitUntil(() => readIndexCalls() === 1, 'the ReadIndex');
  await turns(20);
  t.is(readManyCalls(), 0, 'nothing read before the ReadIndex');
  releaseReads();
  t.true((await Promise.all(answers)).every((a) => a.ok));
  t.is(readManyCalls(), 1);
  io.end();
});
