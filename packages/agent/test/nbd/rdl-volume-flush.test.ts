// Proves that the rdl provider's flushes share SDK calls without weakening the barrier: with a
// stand-in SDK client whose flush calls the test settles by hand, it checks that flushes arriving
// while one is in flight are not answered by it but share exactly one next call sent after it
// settled, that a failed shared call fails every flush in it with AGENT_VOLUME_IO_FAILED, that the
// shared call carries the deadline of its earliest flush, and that a group whose deadline passed
// while waiting fails without a call.
import test from 'ava';
import { AgentErrorCode } from '../../src/errors.js';
import { RdlVolumeProvider, type RdlVolumeClient } from '../../src/nbd/rdl-volume.js';
import { waitFor } from './helpers.js';

interface FlushCall {
  readonly timeoutMs: number;
  resolve(): void;
  reject(err: unknown): void;
}

/** An SDK stand-in: `flush` calls stay pending until the test settles them. */
function standIn(): { client: RdlVolumeClient; flushes: FlushCall[] } {
  const flushes: FlushCall[] = [];
  const client = {
    statVolume: async (name: string) => ({ name, sizeBytes: 1 << 20, blockSizeBytes: 4096, createdAtMs: 1 }),
    flush: (_volume: string, options?: { timeoutMs?: number }) =>
      new Promise<void>((resolve, reject) => flushes.push({ timeoutMs: options?.timeoutMs ?? -1, resolve, reject })),
  } as unknown as RdlVolumeClient;
  return { client, flushes };
}

/** Tracks whether a promise settled, without letting a rejection go unhandled. */
function track(promise: Promise<void>): { settled: () => boolean; promise: Promise<void> } {
  let isSettled = false;
  promise.then(
    () => (isSettled = true),
    () => (isSettled = true),
  );
  return { settled: () => isSettled, promise };
}

/** Lets every pending promise callback run. */
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('flushes arriving during a flush share one later call, sent after the first settled', async (t) => {
  const { client, flushes } = standIn();
  const handle = await new RdlVolumeProvider(client, { requestTimeoutMs: 60_000 }).open('v', { isReadOnly: false });
  const first = track(handle.flush());
  t.is(flushes.length, 1);
  const second = track(handle.flush());
  const third = track(handle.flush());
  await turn();
  t.is(flushes.length, 1, 'no second call while the first is in flight');
  flushes[0].resolve();
  await first.promise;
  await turn();
  t.false(second.settled(), 'a flush that arrived after the first was sent is not answered by it');
  t.false(third.settled());
  t.is(flushes.length, 2, 'one shared call for both waiting flushes');
  t.true(flushes[1].timeoutMs > 0 && flushes[1].timeoutMs <= 60_000);
  const fourth = track(handle.flush());
  flushes[1].resolve();
  await second.promise;
  await third.promise;
  await turn();
  t.false(fourth.settled(), 'the flush that arrived during the shared call waits for its own');
  t.is(flushes.length, 3);
  flushes[2].resolve();
  await fourth.promise;
  t.is(flushes.length, 3);
  // Idle again: the next flush is sent at once.
  const fifth = track(handle.flush());
  t.is(flushes.length, 4);
  flushes[3].resolve();
  await fifth.promise;
});

test('a failed shared flush fails every flush in it with AGENT_VOLUME_IO_FAILED', async (t) => {
  const { client, flushes } = standIn();
  const handle = await new RdlVolumeProvider(client, { requestTimeoutMs: 60_000 }).open('v', { isReadOnly: false });
  const first = handle.flush();
  const second = handle.flush();
  const third = handle.flush();
  flushes[0].reject(Object.assign(new Error('no quorum'), { code: 'CLIENT_DEADLINE_EXCEEDED' }));
  await t.throwsAsync(first, { code: AgentErrorCode.VolumeIoFailed });
  await waitFor(() => flushes.length === 2, 5000, 'the shared flush');
  flushes[1].reject(Object.assign(new Error('no quorum'), { code: 'UNAVAILABLE' }));
  await t.throwsAsync(second, { code: AgentErrorCode.VolumeIoFailed });
  await t.throwsAsync(third, { code: AgentErrorCode.VolumeIoFailed });
});

test('a waiting flush whose deadline passed fails without a call; the shared call has the earliest deadline', async (t) => {
  const { client, flushes } = standIn();
  const requestTimeoutMs = 200;
  const handle = await new RdlVolumeProvider(client, { requestTimeoutMs }).open('v', { isReadOnly: false });
  const first = handle.flush();
  const startedMs = performance.now();
  const late = handle.flush();
  // Hold the first flush past the deadline of the waiting one (the SDK would have failed it at its
  // own deadline; the stand-in does not, so this also covers an SDK that answers late).
  await waitFor(() => performance.now() - startedMs > requestTimeoutMs + 20, 5000, 'the deadline to pass');
  flushes[0].resolve();
  await first;
  await t.throwsAsync(late, { code: AgentErrorCode.VolumeIoFailed, message: /deadline/ });
  t.is(flushes.length, 1, 'no call for a group already past its deadline');

  const next = handle.flush();
  const waiting = handle.flush();
  const waitingCreatedMs = performance.now();
  await waitFor(() => performance.now() - waitingCreatedMs > 50, 5000, '50 ms of waiting');
  const waitedMs = performance.now() - waitingCreatedMs;
  flushes[1].resolve();
  await next;
  await waitFor(() => flushes.length === 3, 5000, 'the shared flush');
  t.true(
    flushes[2].timeoutMs <= requestTimeoutMs - Math.floor(waitedMs) + 1,
    `shared call deadline ${flushes[2].timeoutMs} ms after ${waitedMs} ms of waiting`,
  );
  flushes[2].resolve();
  await waiting;
});

test('a flush on a closed handle fails with AGENT_VOLUME_CLOSED and sends nothing', async (t) => {
  const { client, flushes } = standIn();
  const handle = await new RdlVolumeProvider(client, { requestTimeoutMs: 1000 }).open('v', { isReadOnly: false });
  await handle.close();
  await t.throwsAsync(handle.flush(), { code: AgentErrorCode.VolumeClosed });
  t.is(flushes.length, 0);
});
