// Proves the RdlClient SDK against the in-process fake cluster (real grpc-js servers on
// 127.0.0.1:0, test/fake/fake-cluster.ts): volume calls and their coded errors, IO round trips
// (split above the per-request maximum), leader discovery through NOT_LEADER hints and by
// rotation, re-sending in-flight IO to a new leader after a leader change or a dropped or stalled
// stream with the same (session, seq) so the fake state machine applies each write once,
// ackedBelow, per-request retries, deadlines, AbortSignal, the bounded window, out-of-order
// answers, batching (requests issued in one turn leave in one message, within the batch limits)
// and close(), and the sweep timer staying armed between batches of calls until idle. Each test
// starts its own cluster; jitter is seeded.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { RdlClient, RdlError } from '../../src/index.js';
import type { RdlClientOptions } from '../../src/index.js';
import { IO_BATCH_BYTES_MAX, IO_BATCH_REQUESTS_MAX, IO_REQUEST_BYTES_MAX, WireCode } from '../../src/wire/index.js';
import { FakeCluster, seededRandom, waitFor } from '../fake/fake-cluster.js';

const MiB = 1024 * 1024;

async function setup(
  t: ExecutionContext,
  options: Partial<RdlClientOptions> = {},
  size = 3,
): Promise<{ cluster: FakeCluster; client: RdlClient }> {
  const cluster = await FakeCluster.start(size);
  const client = new RdlClient({
    endpoints: cluster.addresses,
    requestTimeoutMs: 20_000,
    // One attempt may take long on a loaded machine; a retry after a timed-out attempt would make
    // the outcome ambiguous (isCreated false, VOLUME_NOT_FOUND treated as done) and the test flaky.
    attemptTimeoutMs: 20_000,
    // Tests that hold requests must not see the stream declared stalled on a loaded machine.
    streamStallMs: 60_000,
    random: seededRandom(42),
    ...options,
  });
  t.teardown(async () => {
    await client.close();
    await cluster.close();
  });
  return { cluster, client };
}

function pattern(length: number, seed: number): Buffer {
  const data = Buffer.alloc(length);
  for (let i = 0; i < length; i++) data[i] = (i * 31 + seed * 7) & 0xff;
  return data;
}

test('volume calls work and server errors keep their codes', async (t) => {
  const { client } = await setup(t);
  const created = await client.createVolume('vol-a', 4 * MiB);
  t.true(created.isCreated);
  t.is(created.volume.sizeBytes, 4 * MiB);
  const again = await client.createVolume('vol-a', 4 * MiB);
  t.false(again.isCreated, 'create is idempotent on the same name and size');
  const exists = await t.throwsAsync<RdlError>(client.createVolume('vol-a', 8 * MiB));
  t.is(exists?.code, WireCode.VOLUME_EXISTS);
  t.true(exists instanceof RdlError);
  await client.createVolume('vol-b', 1 * MiB);
  t.deepEqual(
    (await client.listVolumes()).map((v) => v.name),
    ['vol-a', 'vol-b'],
  );
  t.is((await client.growVolume('vol-b', 2 * MiB)).sizeBytes, 2 * MiB);
  t.is((await client.statVolume('vol-b')).sizeBytes, 2 * MiB);
  t.is((await t.throwsAsync<RdlError>(client.growVolume('vol-b', 1 * MiB)))?.code, WireCode.INVALID_ARGUMENT);
  await client.deleteVolume('vol-b');
  t.is((await t.throwsAsync<RdlError>(client.statVolume('vol-b')))?.code, WireCode.VOLUME_NOT_FOUND);
  t.is((await t.throwsAsync<RdlError>(client.deleteVolume('vol-b')))?.code, WireCode.VOLUME_NOT_FOUND);
  // Refused locally with the server's code, before any call.
  t.is((await t.throwsAsync<RdlError>(client.createVolume('bad/name', 4096)))?.code, WireCode.INVALID_ARGUMENT);
  t.is((await t.throwsAsync<RdlError>(client.createVolume('odd', 4095)))?.code, WireCode.INVALID_ARGUMENT);
});

test('IO round-trips, including ranges split above the per-request maximum', async (t) => {
  const { client, cluster } = await setup(t);
  await client.createVolume('io', 16 * MiB);
  const small = pattern(10_000, 1);
  await client.write('io', 4095, small);
  t.deepEqual(await client.read('io', 4095, small.length), small);
  const big = pattern(IO_REQUEST_BYTES_MAX * 2 + 12_345, 2);
  await client.write('io', 100, big);
  t.true((await client.read('io', 100, big.length)).equals(big), 'large read returns what was written');
  t.true(cluster.seen.filter((s) => s.request.op === 'write').every((s) => s.request.length <= IO_REQUEST_BYTES_MAX));
  await client.writeZeroes('io', 200, 1000);
  await client.trim('io', 5000, 3000);
  const after = await client.read('io', 100, 8000);
  const expected = Buffer.from(big.subarray(0, 8000));
  expected.fill(0, 100, 1100);
  expected.fill(0, 4900, 7900);
  t.deepEqual(after, expected);
  await client.flush('io');
  t.is((await t.throwsAsync<RdlError>(client.read('io', 16 * MiB - 10, 11)))?.code, WireCode.OUT_OF_RANGE);
  t.is((await t.throwsAsync<RdlError>(client.read('nope', 0, 1)))?.code, WireCode.VOLUME_NOT_FOUND);
  t.is((await t.throwsAsync<RdlError>(client.read('io', -1, 1)))?.code, WireCode.INVALID_ARGUMENT);
});

test('writes carry the session, increasing seqs and ackedBelow = lowest unanswered seq', async (t) => {
  const { client, cluster } = await setup(t);
  await client.createVolume('seq', 1 * MiB);
  // Hold the first write so that later ones are answered while it is still open.
  let isFirst = true;
  cluster.ioHook = (seen) => {
    if (seen.request.op === 'write' && isFirst) {
      isFirst = false;
      return { action: 'hold' };
    }
    return { action: 'serve' };
  };
  const first = client.write('seq', 0, Buffer.alloc(10, 1));
  await waitFor(() => cluster.held.length === 1, 20_000, 'the first write to be held');
  await client.write('seq', 4096, Buffer.alloc(10, 2));
  await client.write('seq', 8192, Buffer.alloc(10, 3));
  const writes = cluster.seen.filter((s) => s.request.op === 'write').map((s) => s.request);
  t.deepEqual(
    writes.map((w) => [w.seq, w.ackedBelow]),
    [
      [1, 1],
      [2, 1],
      [3, 1],
    ],
  );
  t.true(writes.every((w) => w.session === client.sessionId));
  t.is(client.ackedBelow, 1, 'seq 1 is still unanswered');
  cluster.release();
  await first;
  t.is(client.ackedBelow, 4);
  await client.write('seq', 0, Buffer.alloc(1));
  t.deepEqual(cluster.seen.at(-1)?.request.ackedBelow, 4);
  const reads = cluster.seen.filter((s) => s.request.op === 'read');
  t.true(reads.every((r) => r.request.seq === 0));
});

test('unary calls and IO follow NOT_LEADER hints to the leader', async (t) => {
  const cluster = await FakeCluster.start(3);
  cluster.setLeader(2);
  const client = new RdlClient({
    endpoints: cluster.addresses,
    random: () => 0,
    requestTimeoutMs: 20_000,
    attemptTimeoutMs: 20_000,
  });
  t.teardown(async () => {
    await client.close();
    await cluster.close();
  });
  t.is(client.currentTarget, cluster.addresses[0], 'random() = 0 starts at the first endpoint');
  await client.createVolume('v', 1 * MiB);
  t.is(client.currentTarget, cluster.addresses[2]);
  await client.write('v', 0, Buffer.from('hello'));
  t.deepEqual(await client.read('v', 0, 5), Buffer.from('hello'));
  t.true(
    cluster.seen.every((s) => s.node === 2),
    'IO went straight to the leader',
  );
});

test('without hints the client rotates through the endpoints', async (t) => {
  const cluster = await FakeCluster.start(3);
  cluster.isHinting = false;
  cluster.setLeader(2);
  const client = new RdlClient({ endpoints: cluster.addresses, random: () => 0, requestTimeoutMs: 20_000 });
  t.teardown(async () => {
    await client.close();
    await cluster.close();
  });
  await client.createVolume('v', 1 * MiB);
  await client.write('v', 0, Buffer.from('x'));
  t.is(client.currentTarget, cluster.addresses[2]);
});

test('a stopped endpoint is skipped', async (t) => {
  const cluster = await FakeCluster.start(3);
  cluster.setLeader(1);
  await cluster.stop(0);
  const client = new RdlClient({ endpoints: cluster.addresses, random: () => 0, requestTimeoutMs: 20_000 });
  t.teardown(async () => {
    await client.close();
    await cluster.close();
  });
  await client.createVolume('v', 1 * MiB);
  await client.write('v', 0, Buffer.from('x'));
  t.is(client.currentTarget, cluster.addresses[1], `cluster ${cluster.addresses.join(' ')}`);
});

test('a leader change mid-stream re-sends in-flight writes to the new leader, each applied once', async (t) => {
  const { client, cluster } = await setup(t);
  await client.createVolume('v', 4 * MiB);
  const first = cluster.leader;
  // The old leader applies the first 20 writes but its answers are lost, then leadership moves.
  let count = 0;
  cluster.ioHook = (seen) => {
    if (seen.request.op !== 'write') return { action: 'serve' };
    count++;
    if (count <= 20) return { action: 'applyAndSwallow' };
    if (count === 21) {
      cluster.setLeader((first + 1) % 3);
      cluster.dropStreams();
      return { action: 'swallow' };
    }
    return { action: 'serve' };
  };
  const writes: Promise<void>[] = [];
  for (let i = 0; i < 64; i++) writes.push(client.write('v', i * 4096, pattern(4096, i)));
  await Promise.all(writes);
  for (let i = 0; i < 64; i++) {
    t.is(cluster.applied(client.sessionId, i + 1), 1, `seq ${i + 1} applied exactly once`);
  }
  const resent = cluster.seen.filter((s) => s.node === (first + 1) % 3 && s.request.op === 'write');
  t.true(
    resent.some((s) => s.request.seq! <= 20),
    'writes applied but unanswered were sent again with their seq',
  );
  for (let i = 0; i < 64; i++) t.deepEqual(await client.read('v', i * 4096, 4096), pattern(4096, i));
  t.is(client.ackedBelow, 65);
});

test('per-request NOT_LEADER answers move the stream to the hinted leader', async (t) => {
  const { client, cluster } = await setup(t);
  await client.createVolume('v', 1 * MiB);
  await client.write('v', 0, Buffer.from('a'));
  const before = cluster.streamsOpened;
  cluster.setLeader((cluster.leader + 1) % 3);
  await client.write('v', 1, Buffer.from('b'));
  t.is(cluster.streamsOpened, before + 1);
  t.deepEqual(await client.read('v', 0, 2), Buffer.from('ab'));
  t.is(client.currentTarget, cluster.addresses[cluster.leader]);
});

test('a dropped stream is reopened and its in-flight requests retried, deduplicated', async (t) => {
  const { client, cluster } = await setup(t);
  await client.createVolume('v', 1 * MiB);
  let isDropped = false;
  cluster.ioHook = (seen) => {
    if (!isDropped && seen.request.op === 'write' && seen.request.seq === 5) {
      isDropped = true;
      return { action: 'applyAndDropStream' };
    }
    return { action: 'serve' };
  };
  await Promise.all(Array.from({ length: 10 }, (_, i) => client.write('v', i, Buffer.from([i + 1]))));
  t.true(isDropped);
  t.true(cluster.streamsOpened >= 2);
  const toLeader = cluster.seen.filter((s) => s.request.seq === 5 && s.node === cluster.leader);
  t.is(toLeader.length, 2, 'seq 5 was sent to the leader twice');
  t.is(cluster.applied(client.sessionId, 5), 1, 'and applied once');
  t.deepEqual(await client.read('v', 0, 10), Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));
});

test('a stalled stream is declared dead and its requests sent again', async (t) => {
  const { client, cluster } = await setup(t, { streamStallMs: 300 });
  await client.createVolume('v', 1 * MiB);
  cluster.ioHook = (seen) => (seen.streamId === 1 ? { action: 'swallow' } : { action: 'serve' });
  await client.write('v', 0, Buffer.from('z'));
  const sent = cluster.seen.filter((s) => s.request.op === 'write' && s.node === cluster.leader);
  t.true(sent[0].streamId === 1 && sent.length >= 2, 'sent on the stalled stream, then on a new one');
  t.true(
    sent.every((s) => s.request.seq === 1),
    'always with the same seq',
  );
  t.is(cluster.applied(client.sessionId, 1), 1);
});

test('retryable per-request errors are retried after a back-off', async (t) => {
  const { client, cluster } = await setup(t);
  await client.createVolume('v', 1 * MiB);
  let busy = 3;
  cluster.ioHook = () =>
    busy-- > 0
      ? { action: 'error', error: { code: WireCode.RESOURCE_EXHAUSTED, message: 'fake: busy' } }
      : { action: 'serve' };
  await client.write('v', 0, Buffer.from('r'));
  t.is(cluster.seen.length, 4);
  t.is(cluster.applied(client.sessionId, 1), 1);
});

test('answers out of order reach the right callers', async (t) => {
  const { client, cluster } = await setup(t);
  await client.createVolume('v', 1 * MiB);
  for (let i = 0; i < 8; i++) await client.write('v', i * 4096, pattern(4096, i));
  cluster.ioHook = () => ({ action: 'hold' });
  const reads = Array.from({ length: 8 }, (_, i) => client.read('v', i * 4096, 4096));
  await waitFor(() => cluster.held.length === 8, 20_000, 'all reads to be held');
  cluster.release('reverse');
  const results = await Promise.all(reads);
  results.forEach((data, i) => t.deepEqual(data, pattern(4096, i)));
});

test('requests issued in one turn leave in one message, split at the batch limits', async (t) => {
  const { client, cluster } = await setup(t, { ioInflightMax: 1024 });
  await client.createVolume('v', 8 * MiB);
  await client.read('v', 0, 1); // the stream is open from here on
  cluster.batchSizes.splice(0);
  const reads = Array.from({ length: IO_BATCH_REQUESTS_MAX + 44 }, (_, i) => client.read('v', i * 4096, 4096));
  await Promise.all(reads);
  t.deepEqual(cluster.batchSizes, [IO_BATCH_REQUESTS_MAX, 44], 'one message per batch limit, not one per request');
  // Write payloads: a message carries at most IO_BATCH_BYTES_MAX of them.
  cluster.batchSizes.splice(0);
  const part = IO_BATCH_BYTES_MAX / 4;
  await Promise.all(Array.from({ length: 6 }, (_, i) => client.write('v', i * part, pattern(part, i))));
  t.deepEqual(cluster.batchSizes, [4, 2]);
  for (let i = 0; i < 6; i++) t.true((await client.read('v', i * part, part)).equals(pattern(part, i)), `part ${i}`);
  // The window still bounds what is sent: with 4 slots, 12 writes leave 4 at a time at most.
  cluster.batchSizes.splice(0);
  const narrow = new RdlClient({ endpoints: cluster.addresses, ioInflightMax: 4, random: seededRandom(7) });
  t.teardown(() => narrow.close());
  await Promise.all(Array.from({ length: 12 }, (_, i) => narrow.write('v', i * 4096, pattern(4096, i))));
  t.true(
    cluster.batchSizes.every((size) => size <= 4),
    `batches ${cluster.batchSizes.join(',')}`,
  );
  t.is(
    cluster.batchSizes.reduce((sum, size) => sum + size, 0),
    12,
  );
});

test('the in-flight window is bounded and waiting callers proceed', async (t) => {
  const { client, cluster } = await setup(t, { ioInflightMax: 4 });
  await client.createVolume('v', 1 * MiB);
  cluster.ioHook = () => ({ action: 'hold' });
  const writes = Array.from({ length: 12 }, (_, i) => client.write('v', i * 4096, pattern(4096, i)));
  await waitFor(() => cluster.held.length === 4, 20_000, 'four writes in flight');
  t.is(cluster.seen.length, 4, 'the fifth waits for a slot');
  cluster.ioHook = undefined;
  cluster.release('arrival');
  await Promise.all(writes);
  t.true(cluster.inflightPeak <= 4);
});

test('an unanswered request fails with CLIENT_DEADLINE_EXCEEDED near its deadline', async (t) => {
  const { client, cluster } = await setup(t);
  await client.createVolume('v', 1 * MiB);
  cluster.ioHook = () => ({ action: 'swallow' });
  const started = performance.now();
  const error = await t.throwsAsync<RdlError>(client.read('v', 0, 10, { timeoutMs: 150 }));
  const elapsed = performance.now() - started;
  t.is(error?.code, 'CLIENT_DEADLINE_EXCEEDED');
  t.true(elapsed >= 140 && elapsed < 5_000, `failed after ${elapsed} ms`);
});

test('unary calls to an unreachable cluster fail at the deadline with the last error as cause', async (t) => {
  const cluster = await FakeCluster.start(2);
  const addresses = [...cluster.addresses];
  await cluster.close();
  const client = new RdlClient({ endpoints: addresses, requestTimeoutMs: 1_500, random: seededRandom(1) });
  t.teardown(() => client.close());
  const error = await t.throwsAsync<RdlError>(client.listVolumes());
  t.is(error?.code, 'CLIENT_DEADLINE_EXCEEDED');
  t.is((error?.cause as RdlError | undefined)?.code, WireCode.UNAVAILABLE);
});

test('AbortSignal aborts waiting, in-flight and unary calls', async (t) => {
  const { client, cluster } = await setup(t);
  await client.createVolume('v', 1 * MiB);
  cluster.ioHook = () => ({ action: 'hold' });
  const controller = new AbortController();
  const pending = client.write('v', 0, Buffer.from('x'), { signal: controller.signal });
  await waitFor(() => cluster.held.length === 1, 20_000, 'the write to be in flight');
  controller.abort(new Error('user gave up'));
  const error = await t.throwsAsync<RdlError>(pending);
  t.is(error?.code, 'CLIENT_ABORTED');
  t.is((error?.cause as Error).message, 'user gave up');
  t.is(client.ackedBelow, 2, 'an aborted write is never retried, so it no longer holds ackedBelow back');
  // One signal shared by many calls: one listener, and every call is aborted.
  const shared = new AbortController();
  const many = Array.from({ length: 50 }, (_, i) => client.read('v', i, 1, { signal: shared.signal }));
  await waitFor(() => cluster.held.length >= 51, 20_000, 'the shared-signal reads to be in flight');
  shared.abort();
  for (const result of await Promise.allSettled(many)) {
    t.is(result.status === 'rejected' ? (result.reason as RdlError).code : 'resolved', 'CLIENT_ABORTED');
  }
  const aborted = AbortSignal.abort();
  t.is((await t.throwsAsync<RdlError>(client.read('v', 0, 1, { signal: aborted })))?.code, 'CLIENT_ABORTED');
  t.is((await t.throwsAsync<RdlError>(client.listVolumes({ signal: aborted })))?.code, 'CLIENT_ABORTED');
  cluster.unaryHook = () => ({ code: WireCode.UNAVAILABLE, message: 'fake: down' });
  const unary = new AbortController();
  const listing = client.listVolumes({ signal: unary.signal });
  setImmediate(() => unary.abort());
  t.is((await t.throwsAsync<RdlError>(listing))?.code, 'CLIENT_ABORTED');
});

test('status asks the leader; transferLeader moves the IO stream', async (t) => {
  const cluster = await FakeCluster.start(3);
  cluster.setLeader(1);
  const client = new RdlClient({ endpoints: cluster.addresses, random: () => 0, requestTimeoutMs: 20_000 });
  t.teardown(async () => {
    await client.close();
    await cluster.close();
  });
  const status = await client.status();
  t.is(status.role, 'leader');
  t.is(status.region, 'gland');
  t.is(status.members.find((m) => m.region === 'geneva')?.lagEntries, 2);
  await client.createVolume('v', 1 * MiB);
  await client.write('v', 0, Buffer.from('1'));
  const moved = await client.transferLeader('lucerne');
  t.deepEqual(moved.leader, { region: 'lucerne', clientAddress: cluster.addresses[2] });
  await client.write('v', 1, Buffer.from('2'));
  t.is(cluster.seen.at(-1)?.node, 2);
  t.is((await t.throwsAsync<RdlError>(client.transferLeader('atlantis')))?.code, WireCode.INVALID_ARGUMENT);
});

test('close fails pending calls with CLIENT_CLOSED and later calls too', async (t) => {
  const { client, cluster } = await setup(t);
  await client.createVolume('v', 1 * MiB);
  cluster.ioHook = () => ({ action: 'hold' });
  const pending = client.read('v', 0, 1);
  await waitFor(() => cluster.held.length === 1, 20_000, 'the read to be in flight');
  await client.close();
  t.is((await t.throwsAsync<RdlError>(pending))?.code, 'CLIENT_CLOSED');
  t.is((await t.throwsAsync<RdlError>(client.read('v', 0, 1)))?.code, 'CLIENT_CLOSED');
  t.is((await t.throwsAsync<RdlError>(client.listVolumes()))?.code, 'CLIENT_CLOSED');
});

test('invalid options are refused with every problem listed', (t) => {
  const error = t.throws<RdlError>(
    () => new RdlClient({ endpoints: ['nohost', '127.0.0.1:1'], requestTimeoutMs: -1, ioInflightMax: 0 }),
  );
  t.is(error?.code, 'CLIENT_CONFIG_INVALID');
  t.regex(error!.message, /nohost/);
  t.regex(error!.message, /requestTimeoutMs/);
  t.regex(error!.message, /ioInflightMax/);
});

test('deleteVolume after an ambiguous failure treats VOLUME_NOT_FOUND as done, but not after a redirect', async (t) => {
  const cluster = await FakeCluster.start(3);
  cluster.setLeader(2);
  const client = new RdlClient({ endpoints: cluster.addresses, random: () => 0, requestTimeoutMs: 20_000 });
  t.teardown(async () => {
    await client.close();
    await cluster.close();
  });
  // Starts at a follower: its NOT_LEADER proves nothing was applied, so the error stands.
  t.is((await t.throwsAsync<RdlError>(client.deleteVolume('ghost')))?.code, WireCode.VOLUME_NOT_FOUND);
  await client.createVolume('v', 1 * MiB);
  let isFirst = true;
  cluster.unaryHook = (node, method) => {
    if (method !== 'deleteVolume' || node !== cluster.leader || !isFirst) return undefined;
    isFirst = false;
    cluster.volumes.delete('v'); // applied, but the answer is lost
    return { code: WireCode.UNAVAILABLE, message: 'fake: connection lost' };
  };
  await client.deleteVolume('v');
  t.false(isFirst);
  t.false(cluster.volumes.has('v'));
});

test('SESSION_EXPIRED moves a write sent once to a new session, and fails one that may have applied', async (t) => {
  const { client, cluster } = await setup(t);
  await client.createVolume('v', 1 * MiB);
  const firstSession = client.sessionId;
  let writes = 0;
  cluster.ioHook = (seen) => {
    if (seen.request.op !== 'write') return { action: 'serve' };
    writes++;
    // 1st write: the daemon forgot the session. 3rd: applied but the stream drops; its retry
    // (4th) is told the session expired, so whether it applied cannot be known.
    if (writes === 1 || writes === 4) {
      return { action: 'error', error: { code: WireCode.SESSION_EXPIRED, message: 'fake: session unknown' } };
    }
    if (writes === 3) return { action: 'applyAndDropStream' };
    return { action: 'serve' };
  };
  await client.write('v', 0, Buffer.from('a'));
  t.not(client.sessionId, firstSession);
  t.is(cluster.applied(firstSession, 1), 0);
  t.is(cluster.applied(client.sessionId, 1), 1, 'applied once under the new session, with seq 1');
  const sent = cluster.seen.filter((s) => s.request.op === 'write');
  t.deepEqual(
    sent.map((s) => [s.request.session === firstSession, s.request.seq, s.request.ackedBelow]),
    [
      [true, 1, 1],
      [false, 1, 1],
    ],
  );
  const error = await t.throwsAsync<RdlError>(client.write('v', 1, Buffer.from('b')));
  t.is(error?.code, WireCode.SESSION_EXPIRED);
  t.is(
    cluster.applied(client.sessionId, 2),
    1,
    'the first copy did apply: reporting success or a retry would be a guess',
  );
});

test('the sweep timer stays armed from one batch of calls to the next and stops itself once idle', async (t) => {
  const { client } = await setup(t); // a sweep every 50 ms
  await client.createVolume('vol-s', MiB);
  const timerOf = (): unknown => (client as unknown as { sweepTimer: unknown }).sweepTimer;
  await Promise.all(Array.from({ length: 8 }, (_, i) => client.read('vol-s', i * 4096, 4096)));
  const armed = timerOf();
  t.not(armed, undefined, 'armed while calls were live');
  // Every call above settled: a closed loop issues its next batch now, on the same timer.
  await Promise.all(Array.from({ length: 8 }, (_, i) => client.read('vol-s', i * 4096, 4096)));
  t.is(timerOf(), armed, 'not cleared and re-armed between batches');
  await waitFor(() => timerOf() === undefined, 5_000, 'the idle sweep timer to stop');
  t.pass();
});
