// Proves that the rdl provider's flushes share SDK calls without weakening the barrier: with a
// stand-in SDK client whose flush calls the test settles by hand, it checks that flushes arriving
// in the same turn share one call sent after all of them arrived, with the full deadline; that a
// flush arriving after that call was sent gets a call of its own at once (it neither rides on nor
// waits for the call in flight); that a failed shared call fails every flush in it with
// AGENT_VOLUME_IO_FAILED; and that a flush on a closed handle sends nothing.
import test from 'ava';
import { AgentErrorCode } from '../../src/errors.js';
import { RdlVolumeProvider, type RdlVolumeClient } from '../../src/nbd/rdl-volume.js';

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

test('flushes of one turn share one call with the full deadline; a later flush gets its own at once', async (t) => {
  const { client, flushes } = standIn();
  const handle = await new RdlVolumeProvider(client, { requestTimeoutMs: 60_000 }).open('v', { isReadOnly: false });
  const first = track(handle.flush());
  const second = track(handle.flush());
  const third = track(handle.flush());
  t.is(flushes.length, 0, 'not sent before the turn ends: later flushes of the turn may still join');
  await turn();
  t.is(flushes.length, 1, 'one call for the three flushes of the turn');
  t.is(flushes[0].timeoutMs, 60_000, 'with the deadline of a flush sent alone');
  const late = track(handle.flush());
  await turn();
  t.is(flushes.length, 2, 'a flush arriving after the call was sent does not wait for it');
  flushes[0].resolve();
  await Promise.all([first.promise, second.promise, third.promise]);
  await turn();
  t.false(late.settled(), 'a flush that arrived after the first call was sent is not answered by it');
  flushes[1].resolve();
  await late.promise;
  t.is(flushes.length, 2);
});

test('a failed shared flush fails every flush in it with AGENT_VOLUME_IO_FAILED; the next turn starts afresh', async (t) => {
  const { client, flushes } = standIn();
  const handle = await new RdlVolumeProvider(client, { requestTimeoutMs: 60_000 }).open('v', { isReadOnly: false });
  const shared = [handle.flush(), handle.flush(), handle.flush()];
  await turn();
  t.is(flushes.length, 1);
  flushes[0].reject(Object.assign(new Error('no quorum'), { code: 'CLIENT_DEADLINE_EXCEEDED' }));
  for (const flush of shared) await t.throwsAsync(flush, { code: AgentErrorCode.VolumeIoFailed });
  const next = handle.flush();
  await turn();
  t.is(flushes.length, 2);
  flushes[1].resolve();
  await t.notThrowsAsync(next);
});

test('a flush on a closed handle fails with AGENT_VOLUME_CLOSED and sends nothing', async (t) => {
  const { client, flushes } = standIn();
  const handle = await new RdlVolumeProvider(client, { requestTimeoutMs: 1000 }).open('v', { isReadOnly: false });
  await handle.close();
  await t.throwsAsync(handle.flush(), { code: AgentErrorCode.VolumeClosed });
  await turn();
  t.is(flushes.length, 0);
});
