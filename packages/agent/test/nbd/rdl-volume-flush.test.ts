// Proves that the rdl provider answers a flush itself, without a cluster call, and that this keeps
// NBD's promise: with a stand-in SDK client that records every call and whose writes the test
// settles by hand, a flush sends nothing to the cluster and resolves at once even while a write
// is still in flight (a flush covers only writes already answered, and those were committed on a
// majority before they were answered); a write is still answered only when its SDK call resolves;
// and a flush on a closed handle fails with AGENT_VOLUME_CLOSED.
import test from 'ava';
import { AgentErrorCode } from '../../src/errors.js';
import { RdlVolumeProvider, type RdlVolumeClient } from '../../src/nbd/rdl-volume.js';

interface PendingWrite {
  resolve(): void;
}

/** An SDK stand-in: records the name of every call; writes stay pending until the test settles them. */
function standIn(): { client: RdlVolumeClient; calls: string[]; writes: PendingWrite[] } {
  const calls: string[] = [];
  const writes: PendingWrite[] = [];
  const client = new Proxy(
    {
      statVolume: async (name: string) => ({ name, sizeBytes: 1 << 20, blockSizeBytes: 4096, createdAtMs: 1 }),
      write: () => new Promise<void>((resolve) => writes.push({ resolve })),
    } as Record<string, unknown>,
    {
      get(target, property: string) {
        if (property === 'then') return undefined;
        calls.push(property);
        if (!(property in target)) throw new Error(`unexpected SDK call ${property}`);
        return target[property];
      },
    },
  ) as unknown as RdlVolumeClient;
  return { client, calls, writes };
}

/** Lets every pending promise callback run. */
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('a flush makes no cluster call and resolves at once, even with a write in flight', async (t) => {
  const { client, calls, writes } = standIn();
  const handle = await new RdlVolumeProvider(client, { requestTimeoutMs: 60_000 }).open('v', { isReadOnly: false });
  calls.length = 0;
  let isWriteAnswered = false;
  const write = handle.write(0, Buffer.alloc(4096, 1), { isFua: false }).then(() => (isWriteAnswered = true));
  await handle.flush();
  await turn();
  t.deepEqual(calls, ['write'], 'the flush sent nothing to the cluster');
  t.false(isWriteAnswered, 'the write is answered only once the cluster answered it');
  writes[0].resolve();
  await write;
  t.true(isWriteAnswered);
  await handle.flush();
  t.deepEqual(calls, ['write']);
});

test('a flush on a closed handle fails with AGENT_VOLUME_CLOSED and sends nothing', async (t) => {
  const { client, calls } = standIn();
  const handle = await new RdlVolumeProvider(client, { requestTimeoutMs: 1000 }).open('v', { isReadOnly: false });
  await handle.close();
  calls.length = 0;
  await t.throwsAsync(handle.flush(), { code: AgentErrorCode.VolumeClosed });
  t.deepEqual(calls, []);
});
