// Proves block state machine snapshots: a state with volumes much larger than a chunk streams in
// many bounded chunks from a LevelDB snapshot (unaffected by later applies) into another store,
// which then holds exactly the same volumes, blocks, sessions and applied index; reading resumes
// from a returned position; a restore interrupted by a crash leaves the old state and no staging
// data; a wrong index or a malformed chunk gets a coded error.
import test from 'ava';
import { blockKey, generationEnd, generationPrefix } from '../../src/storage/block-keys.js';
import type { BlockStateMachine } from '../../src/storage/block-store.js';
import { BLOCK_SIZE_BYTES, type Command } from '../../src/storage/commands.js';
import type { SnapshotMeta, SnapshotReader } from '../../src/storage/raft-api.js';
import {
  LogBuilder,
  applyAll,
  applyOne,
  countKeys,
  openMachine,
  randomBytes,
  sameBytes,
  tempDatabase,
} from './helpers.js';

const MiB = 1024 * 1024;
const CHUNK_BYTES = 64 * 1024;
const SESSION = 'f'.repeat(32);

type Chunk = { data: Uint8Array; next: Uint8Array | null };

function metaAt(index: number): SnapshotMeta {
  return {
    index,
    term: 1,
    conf: { voters: ['geneva', 'gland', 'lucerne'], learners: [], votersOutgoing: [], learnersNext: [] },
  };
}

/** A source with two volumes of 1 MiB of data each (16 chunks' worth) and a session. */
async function populate(machine: BlockStateMachine, log: LogBuilder): Promise<void> {
  const commands: Command[] = [
    { type: 'createVolume', name: 'big', sizeBytes: 64 * MiB, createdAtMs: 1 },
    { type: 'createVolume', name: 'small', sizeBytes: 4 * MiB, createdAtMs: 2 },
    { type: 'createVolume', name: 'doomed', sizeBytes: 4 * MiB, createdAtMs: 3 },
    {
      type: 'write',
      volume: 'big',
      offset: 3,
      data: randomBytes(MiB, 1),
      session: SESSION,
      seq: 1,
      ackedBelow: 1,
      atMs: 5,
    },
    {
      type: 'write',
      volume: 'small',
      offset: 2 * MiB,
      data: randomBytes(MiB, 2),
      session: SESSION,
      seq: 2,
      ackedBelow: 1,
    },
    { type: 'write', volume: 'doomed', offset: 0, data: randomBytes(MiB, 3) },
    { type: 'deleteVolume', name: 'doomed' },
  ];
  await applyAll(
    machine,
    commands.map((command) => log.add(command)),
  );
}

async function stream(reader: SnapshotReader, write: (data: Uint8Array) => Promise<void>): Promise<number> {
  let position: Uint8Array | null = null;
  let chunks = 0;
  do {
    const chunk: { data: Uint8Array; next: Uint8Array | null } = await reader.read(position, CHUNK_BYTES);
    await write(chunk.data);
    position = chunk.next;
    chunks++;
  } while (position !== null);
  return chunks;
}

test('a snapshot streams in bounded chunks and restores the same state elsewhere', async (t) => {
  const source = await tempDatabase();
  const target = await tempDatabase();
  const log = new LogBuilder();
  const from = await openMachine(source.db);
  await populate(from, log);
  const index = await from.appliedIndex();
  const reader = await from.openSnapshot(metaAt(index));
  // Writes applied after the snapshot opened must not show in it.
  await applyOne(from, log, { type: 'write', volume: 'big', offset: 0, data: new Uint8Array(100).fill(9) });
  await applyOne(from, log, { type: 'createVolume', name: 'later', sizeBytes: 4096, createdAtMs: 9 });

  const to = await openMachine(target.db);
  const targetLog = new LogBuilder();
  await applyOne(to, targetLog, { type: 'createVolume', name: 'stale', sizeBytes: 4096, createdAtMs: 0 });
  await applyOne(to, targetLog, { type: 'write', volume: 'stale', offset: 0, data: new Uint8Array([1]) });
  const writer = await to.beginRestore(metaAt(index));
  let largest = 0;
  const chunks = await stream(reader, async (data) => {
    largest = Math.max(largest, data.length);
    await writer.write(data);
  });
  await reader.close();
  await reader.close(); // idempotent
  await writer.commit();

  t.true(chunks >= 32, `2 MiB of blocks took ${chunks} chunks`);
  t.true(largest <= CHUNK_BYTES, `the largest chunk is ${largest} bytes`);
  t.is(await to.appliedIndex(), index);
  t.deepEqual(
    to.listVolumes().map((v) => v.name),
    ['big', 'small'],
    'the stale volume is gone, the deleted one not shipped, the later one not included',
  );
  const expected = randomBytes(MiB, 1);
  sameBytes(t, await to.read('big', 3, MiB), expected);
  sameBytes(t, await to.read('small', 2 * MiB, MiB), randomBytes(MiB, 2));
  t.true((await to.read('big', MiB + 3, MiB)).every((byte) => byte === 0));
  // The sessions came along: a retry of seq 1 is still a duplicate on the restored replica.
  const retry = await applyOne(to, new LogBuilderAt(index), {
    type: 'write',
    volume: 'big',
    offset: 3,
    data: new Uint8Array(5),
    session: SESSION,
    seq: 1,
    ackedBelow: 1,
  });
  t.deepEqual(retry, { ok: true, isDuplicate: true });
  sameBytes(t, await to.read('big', 3, 5), expected.subarray(0, 5));
  // Only the new generation is left on disk.
  t.is(to.stats().generation, 1);
  t.is(await countKeys(target.db, generationPrefix(0), generationEnd(0)), 0);
  // And it survives a restart.
  await to.close();
  const reopened = await openMachine(await target.reopen());
  t.is(await reopened.appliedIndex(), index + 1);
  sameBytes(t, await reopened.read('small', 2 * MiB, MiB), randomBytes(MiB, 2));
  await reopened.close();
  await from.close();
  await source.cleanup();
  await target.cleanup();
});

/** A log builder whose next entry follows `index` (for a store restored at `index`). */
class LogBuilderAt extends LogBuilder {
  constructor(index: number) {
    super();
    for (let i = 0; i < index; i++) this.noop();
  }
}

test('reading resumes from a returned position, on the same or a fresh iterator', async (t) => {
  const source = await tempDatabase();
  const from = await openMachine(source.db);
  const log = new LogBuilder();
  await populate(from, log);
  const reader = await from.openSnapshot(metaAt(await from.appliedIndex()));
  const first = await reader.read(null, CHUNK_BYTES);
  const second = await reader.read(first.next, CHUNK_BYTES);
  // The connection dropped before the second chunk arrived: ask for it again.
  const again = await reader.read(first.next, CHUNK_BYTES);
  const isSame = (a: Chunk, b: Chunk): boolean =>
    Buffer.from(a.data).equals(Buffer.from(b.data)) && Buffer.from(a.next ?? []).equals(Buffer.from(b.next ?? []));
  t.true(isSame(again, second));
  const third = await reader.read(second.next, CHUNK_BYTES);
  t.false(isSame(third, second));
  // From the start again (a fresh iterator on the same LevelDB snapshot).
  t.true(isSame(await reader.read(null, CHUNK_BYTES), first));
  t.true(isSame(await reader.read(first.next, CHUNK_BYTES), second));
  await t.throwsAsync(reader.read(new Uint8Array(0), CHUNK_BYTES), { code: 'DAEMON_SNAPSHOT_INVALID' });
  await reader.close();
  await t.throwsAsync(reader.read(null, CHUNK_BYTES), { code: 'DAEMON_STORAGE_CLOSED' });
  await from.close();
  await source.cleanup();
});

test('a restore interrupted by a crash leaves the old state and no staging data', async (t) => {
  const source = await tempDatabase();
  const target = await tempDatabase();
  const from = await openMachine(source.db);
  await populate(from, new LogBuilder());
  const index = await from.appliedIndex();
  const to = await openMachine(target.db);
  const targetLog = new LogBuilder();
  await applyOne(to, targetLog, { type: 'createVolume', name: 'mine', sizeBytes: 4096, createdAtMs: 0 });
  await applyOne(to, targetLog, { type: 'write', volume: 'mine', offset: 0, data: new Uint8Array([42]) });
  const reader = await from.openSnapshot(metaAt(index));
  const writer = await to.beginRestore(metaAt(index));
  let position: Uint8Array | null = null;
  for (let i = 0; i < 5; i++) {
    const chunk: { data: Uint8Array; next: Uint8Array | null } = await reader.read(position, CHUNK_BYTES);
    await writer.write(chunk.data);
    position = chunk.next;
  }
  await reader.close();
  t.true((await countKeys(target.db, generationPrefix(1), generationEnd(1))) > 0, 'chunks were staged');
  // Crash: the process dies without commit or abort (the database handle just goes away).
  const db = await target.reopen();
  const restarted = await openMachine(db);
  t.is(await restarted.appliedIndex(), 2);
  t.deepEqual(
    restarted.listVolumes().map((v) => v.name),
    ['mine'],
  );
  t.deepEqual([...(await restarted.read('mine', 0, 1))], [42]);
  t.is(await countKeys(db, generationPrefix(1), generationEnd(1)), 0, 'the staged generation was removed');
  await restarted.close();
  await from.close();
  await source.cleanup();
  await target.cleanup();
});

test('an aborted restore discards what it received; a wrong index or bad chunk is a coded error', async (t) => {
  const source = await tempDatabase();
  const target = await tempDatabase();
  const from = await openMachine(source.db);
  await populate(from, new LogBuilder());
  const index = await from.appliedIndex();
  await t.throwsAsync(from.openSnapshot(metaAt(index - 1)), { code: 'DAEMON_SNAPSHOT_MISMATCH' });
  const to = await openMachine(target.db);
  const reader = await from.openSnapshot(metaAt(index));
  const first = await reader.read(null, CHUNK_BYTES);
  let writer = await to.beginRestore(metaAt(index));
  await writer.write(first.data);
  await writer.abort();
  await writer.abort(); // idempotent
  t.is(await countKeys(target.db, generationPrefix(1), generationEnd(1)), 0);
  await t.throwsAsync(writer.write(first.data), { code: 'DAEMON_SNAPSHOT_INVALID' });

  writer = await to.beginRestore(metaAt(index));
  await t.throwsAsync(writer.write(new Uint8Array([1, 2, 3])), { code: 'DAEMON_SNAPSHOT_INVALID' });
  writer = await to.beginRestore(metaAt(index));
  await t.throwsAsync(writer.write(first.data.subarray(0, first.data.length - 1)), { code: 'DAEMON_SNAPSHOT_INVALID' });
  writer = await to.beginRestore(metaAt(index + 7));
  await t.throwsAsync(
    stream(reader, (data) => writer.write(data)),
    { code: 'DAEMON_SNAPSHOT_INVALID' },
    'the meta record contradicts the claimed index',
  );
  writer = await to.beginRestore(metaAt(index));
  await t.throwsAsync(writer.commit(), { code: 'DAEMON_SNAPSHOT_INVALID' }, 'nothing received: no meta record');
  t.is(await to.appliedIndex(), 0, 'the target is untouched');
  t.deepEqual(to.listVolumes(), []);
  await reader.close();
  await to.close();
  await from.close();
  await source.cleanup();
  await target.cleanup();
});

test('applies continue on the restored state, and block keys keep working across generations', async (t) => {
  const source = await tempDatabase();
  const target = await tempDatabase();
  const from = await openMachine(source.db);
  await populate(from, new LogBuilder());
  const index = await from.appliedIndex();
  const to = await openMachine(target.db);
  const reader = await from.openSnapshot(metaAt(index));
  const writer = await to.beginRestore(metaAt(index));
  await stream(reader, (data) => writer.write(data));
  await writer.commit();
  await reader.close();
  const log = new LogBuilderAt(index);
  t.deepEqual(
    await applyOne(to, log, {
      type: 'write',
      volume: 'small',
      offset: BLOCK_SIZE_BYTES - 1,
      data: new Uint8Array([5, 6]),
    }),
    {
      ok: true,
    },
  );
  t.deepEqual([...(await to.read('small', BLOCK_SIZE_BYTES - 1, 2))], [5, 6]);
  const created = await applyOne(to, log, { type: 'createVolume', name: 'new', sizeBytes: 4096, createdAtMs: 0 });
  t.true(created.ok);
  await to.close();
  await from.close();
  await source.cleanup();
  await target.cleanup();
});

test('blocks of deleted volumes still waiting for the collector are not sent', async (t) => {
  const source = await tempDatabase();
  const target = await tempDatabase();
  const from = await openMachine(source.db);
  await populate(from, new LogBuilder());
  await from.whenGarbageCollected();
  // Blocks of a volume id with no volume record: what a deletion leaves until it is collected.
  await source.db.batch(
    [0, 1, 2].map((block) => ({ type: 'put', key: blockKey(0, 99, block), value: Buffer.alloc(4096, 1) })),
  );
  const index = await from.appliedIndex();
  const reader = await from.openSnapshot(metaAt(index));
  const to = await openMachine(target.db);
  const writer = await to.beginRestore(metaAt(index));
  await stream(reader, (data) => writer.write(data));
  await writer.commit();
  await reader.close();
  t.is(await countKeys(target.db, blockKey(1, 99, 0), blockKey(1, 100, 0)), 0);
  t.true((await countKeys(target.db, blockKey(1, 1, 0), blockKey(1, 99, 0))) > 0, 'live blocks were sent');
  await to.close();
  await from.close();
  await source.cleanup();
  await target.cleanup();
});
