// Proves the in-memory VolumeProvider keeps the VolumeHandle contract the NBD server relies on:
// reads return what was written (unaligned too), holes read as zero, write-zeroes without NO_HOLE
// may deallocate while with NO_HOLE it must leave the range provisioned, read-only and range
// violations fail with their stable codes, and handles of one volume share data.
import test from 'ava';
import { AgentErrorCode } from '../../src/errors.js';
import { MemoryVolumeProvider } from '../../src/nbd/memory-volume.js';

const KiB = 1024;

function provider(): MemoryVolumeProvider {
  const p = new MemoryVolumeProvider({ chunkBytes: 64 * KiB });
  p.createVolume('v', 1024 * KiB);
  return p;
}

test('unaligned writes read back, and never-written bytes read as zero', async (t) => {
  const p = provider();
  const handle = await p.open('v', { isReadOnly: false });
  const data = Buffer.alloc(70_000, 0xab);
  await handle.write(1000, data, { isFua: false });
  t.true((await handle.read(1000, 70_000)).equals(data));
  t.true((await handle.read(0, 1000)).equals(Buffer.alloc(1000)));
  t.true((await handle.read(71_000, 500)).equals(Buffer.alloc(500)));
  t.is(p.allocatedBytes('v'), 2 * 64 * KiB);
});

test('write-zeroes may punch holes, but with NO_HOLE (mayTrim false) the range stays allocated', async (t) => {
  const p = provider();
  const handle = await p.open('v', { isReadOnly: false });
  await handle.writeZeroes(0, 256 * KiB, { isFua: false, mayTrim: false });
  t.is(p.allocatedBytes('v'), 256 * KiB, 'NO_HOLE provisions the whole range');
  t.true((await handle.read(0, 256 * KiB)).equals(Buffer.alloc(256 * KiB)));
  await handle.write(0, Buffer.alloc(256 * KiB, 7), { isFua: false });
  await handle.writeZeroes(0, 256 * KiB, { isFua: false, mayTrim: true });
  t.is(p.allocatedBytes('v'), 0, 'without NO_HOLE whole chunks become holes');
  t.true((await handle.read(0, 256 * KiB)).equals(Buffer.alloc(256 * KiB)), 'and still read as zero');
  t.is(p.stats('v').noHoleWriteZeroes, 1);
});

test('partial-chunk write-zeroes zero exactly the range', async (t) => {
  const p = provider();
  const handle = await p.open('v', { isReadOnly: false });
  await handle.write(0, Buffer.alloc(10_000, 9), { isFua: false });
  await handle.writeZeroes(100, 200, { isFua: false, mayTrim: true });
  const back = await handle.read(0, 10_000);
  const expected = Buffer.alloc(10_000, 9).fill(0, 100, 300);
  t.true(back.equals(expected));
});

test('trim discards whole chunks only', async (t) => {
  const p = provider();
  const handle = await p.open('v', { isReadOnly: false });
  await handle.write(0, Buffer.alloc(256 * KiB, 1), { isFua: false });
  await handle.trim(10, 200 * KiB, { isFua: false });
  // [10, 204810) covers chunks 1 and 2 entirely; chunks 0 and 3 stay.
  t.is(p.allocatedBytes('v'), 2 * 64 * KiB);
});

test('read-only handles and volumes refuse writes with AGENT_VOLUME_READ_ONLY', async (t) => {
  const p = provider();
  p.createVolume('ro', 4096, { isReadOnly: true });
  const roHandle = await p.open('v', { isReadOnly: true });
  await t.throwsAsync(roHandle.write(0, Buffer.alloc(1), { isFua: false }), { code: AgentErrorCode.VolumeReadOnly });
  const roVolume = await p.open('ro', { isReadOnly: false });
  t.true(roVolume.isReadOnly);
  await t.throwsAsync(roVolume.trim(0, 1, { isFua: false }), { code: AgentErrorCode.VolumeReadOnly });
  await t.throwsAsync(roVolume.writeZeroes(0, 1, { isFua: false, mayTrim: true }), {
    code: AgentErrorCode.VolumeReadOnly,
  });
  t.is((await roVolume.read(0, 4)).length, 4);
});

test('out-of-range requests fail with AGENT_VOLUME_OUT_OF_RANGE; unknown volumes with AGENT_VOLUME_NOT_FOUND', async (t) => {
  const p = provider();
  const handle = await p.open('v', { isReadOnly: false });
  await t.throwsAsync(handle.read(1024 * KiB - 1, 2), { code: AgentErrorCode.VolumeOutOfRange });
  await t.throwsAsync(handle.write(-1, Buffer.alloc(1), { isFua: false }), { code: AgentErrorCode.VolumeOutOfRange });
  await t.throwsAsync(p.open('nope', { isReadOnly: false }), { code: AgentErrorCode.VolumeNotFound });
  await handle.close();
  await t.throwsAsync(handle.read(0, 1), { code: AgentErrorCode.VolumeClosed });
});

test('two handles of one volume see each other’s writes and advertise a shared flush', async (t) => {
  const p = provider();
  const a = await p.open('v', { isReadOnly: false });
  const b = await p.open('v', { isReadOnly: false });
  await a.write(4096, Buffer.from('hello'), { isFua: true });
  t.is((await b.read(4096, 5)).toString(), 'hello');
  t.true(a.isFlushShared && b.isFlushShared);
  t.is(p.stats('v').fuaWrites, 1);
  t.deepEqual(await p.list(), [{ name: 'v', sizeBytes: 1024 * KiB }]);
});
