// Proves the in-memory storage honours the Storage contract (by running the shared storage
// compliance suite against it) and simulates a disk faithfully: unsynced writes are lost on a
// crash, a stalled sync does not resolve until resumed, and a failed fsync rejects and poisons the
// storage so the node must restart. Also checks the KV state machine's snapshot round trip.
import test from 'ava';
import { EntryType } from '../../src/api.js';
import type { Entry } from '../../src/api.js';
import { KvStateMachine, encodeKvCommand } from '../../src/testing/kv-state-machine.js';
import { MemoryStorage, SimulatedDisk } from '../../src/testing/memory-storage.js';
import { storageCompliance } from '../../src/testing/storage-compliance.js';

storageCompliance(
  test,
  async () => {
    const disk = new SimulatedDisk();
    let current = new MemoryStorage(disk);
    return {
      storage: current,
      async reopen() {
        await current.close();
        current = new MemoryStorage(disk);
        return current;
      },
      async cleanup() {
        await current.close();
      },
    };
  },
  'memory storage',
);

const entry = (index: number, term: number): Entry => ({
  index,
  term,
  type: EntryType.Normal,
  data: new Uint8Array([index]),
});

test('a crash loses writes whose sync had not completed, and keeps synced ones', async (t) => {
  const disk = new SimulatedDisk({ isAutoSyncEnabled: false });
  const storage = new MemoryStorage(disk);
  await storage.load();
  const first = storage.append([entry(1, 1)], { term: 1, vote: 'a', commit: 0 });
  t.true(disk.completeSyncs());
  await first;
  const second = storage.append([entry(2, 1)], { term: 2, vote: 'b', commit: 1 });
  disk.crash();
  await t.throwsAsync(second, { code: 'RAFT_STORAGE_FAILED' } as never);
  const state = await new MemoryStorage(disk).load();
  t.deepEqual(
    state.entries.map((e) => e.index),
    [1],
  );
  t.deepEqual(state.hardState, { term: 1, vote: 'a', commit: 0 });
  t.is(disk.stats.unsyncedWritesLost, 1);
  await t.throwsAsync(storage.append([entry(2, 1)], null), { code: 'RAFT_STORAGE_FAILED' } as never);
});

test('a stalled sync resolves only after the stall ends', async (t) => {
  const disk = new SimulatedDisk();
  const storage = new MemoryStorage(disk);
  await storage.load();
  disk.isStalled = true;
  let isResolved = false;
  const write = storage.append([entry(1, 1)], null).then(() => (isResolved = true));
  for (let i = 0; i < 10; i++) await Promise.resolve();
  t.false(isResolved);
  disk.resume();
  await write;
  t.true(isResolved);
  t.is(disk.durable.entries.length, 1);
});

test('a failed fsync rejects the write, is not durable, and poisons the storage until reopened', async (t) => {
  const disk = new SimulatedDisk();
  const storage = new MemoryStorage(disk);
  await storage.load();
  disk.syncFailuresPending = 1;
  await t.throwsAsync(storage.append([entry(1, 1)], null), { code: 'RAFT_STORAGE_FAILED' } as never);
  await t.throwsAsync(storage.append([entry(1, 1)], null), { code: 'RAFT_STORAGE_FAILED' } as never);
  disk.crash();
  const reopened = new MemoryStorage(disk);
  t.deepEqual((await reopened.load()).entries, []);
  await reopened.append([entry(1, 1)], null);
  t.is(disk.durable.entries.length, 1);
});

test('the KV state machine applies writes and reads in order and restores from its own snapshot', async (t) => {
  const machine = new KvStateMachine();
  const data = (command: Parameters<typeof encodeKvCommand>[0]) => encodeKvCommand(command);
  const results = await machine.apply([
    { index: 1, term: 1, type: EntryType.Normal, data: new Uint8Array(0) },
    { index: 2, term: 1, type: EntryType.Normal, data: data({ op: 'write', key: 'k', value: 'v', id: 1 }) },
    { index: 3, term: 1, type: EntryType.Normal, data: data({ op: 'read', key: 'k', id: 2 }) },
    { index: 4, term: 1, type: EntryType.Normal, data: data({ op: 'read', key: 'absent', id: 3 }) },
  ]);
  t.deepEqual(results, [undefined, { id: 1, value: 'v' }, { id: 2, value: 'v' }, { id: 3, value: null }]);
  const meta = { index: 4, term: 1, conf: { voters: ['a'], learners: [], votersOutgoing: [], learnersNext: [] } };
  const reader = await machine.openSnapshot(meta);
  const other = new KvStateMachine();
  const writer = await other.beginRestore(meta);
  let position: Uint8Array | null = null;
  let chunks = 0;
  do {
    const chunk: { data: Uint8Array; next: Uint8Array | null } = await reader.read(position, 8);
    await writer.write(chunk.data);
    position = chunk.next;
    chunks++;
  } while (position !== null);
  await writer.commit();
  t.true(chunks > 1, 'the snapshot was streamed in several chunks');
  t.is(await other.appliedIndex(), 4);
  t.deepEqual([...other.store.values], [['k', 'v']]);
  await t.throwsAsync(machine.apply([{ index: 9, term: 1, type: EntryType.Normal, data: new Uint8Array(0) }]));
});
