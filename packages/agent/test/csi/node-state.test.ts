// Unit tests of the node's persistent state and per-volume locking: NodeStateStore round-trips,
// treats a missing file as empty, reports unreadable or foreign files as AGENT_CSI_STATE_CORRUPT,
// serializes concurrent saves so the last one wins with no temporary file left behind; and
// OperationLocks rejects a second operation on a held key (and beyond its key limit) with
// AGENT_CSI_OPERATION_PENDING, releasing the key whether the operation succeeds or fails.
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { emptyNodeState, NodeStateStore } from '../../src/csi/node-state.js';
import type { NodeState } from '../../src/csi/node-state.js';
import { OperationLocks } from '../../src/csi/operation-locks.js';

function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'rdl-csi-state-'));
  return fn(dir).finally(() => rmSync(dir, { recursive: true, force: true }));
}

const stateWith = (volumeId: string): NodeState => ({
  version: 1,
  staged: {
    [volumeId]: {
      devicePath: '/dev/nbd1',
      stagingTargetPath: '/s',
      accessType: 'mount',
      fsType: 'ext4',
      capabilityKey: 'k',
    },
  },
  published: {},
});

test('a missing file is an empty state; saves round-trip and create the directory', async (t) => {
  await withDir(async (dir) => {
    const store = new NodeStateStore(join(dir, 'nested', 'state'));
    t.deepEqual(await store.load(), emptyNodeState());
    await store.save(stateWith('pvc-1'));
    t.deepEqual(await store.load(), stateWith('pvc-1'));
    t.deepEqual(await new NodeStateStore(join(dir, 'nested', 'state')).load(), stateWith('pvc-1'));
  });
});

test('concurrent saves are serialized: the last one wins and no temporary file remains', async (t) => {
  await withDir(async (dir) => {
    const store = new NodeStateStore(dir);
    await Promise.all(Array.from({ length: 20 }, (_, index) => store.save(stateWith(`pvc-${index}`))));
    t.deepEqual(await store.load(), stateWith('pvc-19'));
    t.deepEqual(readdirSync(dir), ['node-state.json']);
  });
});

test('unparsable or foreign state files are AGENT_CSI_STATE_CORRUPT', async (t) => {
  await withDir(async (dir) => {
    const store = new NodeStateStore(dir);
    for (const text of [
      '{',
      'null',
      '[]',
      '{"version":2,"staged":{},"published":{}}',
      '{"version":1,"staged":null,"published":{}}',
    ]) {
      writeFileSync(store.path, text);
      const error = await t.throwsAsync(store.load());
      t.is((error as { code?: string }).code, 'AGENT_CSI_STATE_CORRUPT', text);
    }
    t.true(existsSync(store.path), 'a corrupt file is reported, never silently replaced');
  });
});

test('OperationLocks: one operation per key, a bounded number of keys, released on failure', async (t) => {
  const locks = new OperationLocks(2);
  let release!: () => void;
  const held = locks.run('a', () => new Promise<void>((resolve) => (release = resolve)));
  const pending = await t.throwsAsync(locks.run('a', async () => undefined));
  t.is((pending as { code?: string }).code, 'AGENT_CSI_OPERATION_PENDING');
  const other = locks.run('b', () => new Promise<void>(() => undefined));
  const full = await t.throwsAsync(locks.run('c', async () => undefined));
  t.is((full as { code?: string }).code, 'AGENT_CSI_OPERATION_PENDING');
  release();
  await held;
  await t.throwsAsync(
    locks.run('a', async () => Promise.reject(new Error('boom'))),
    { message: 'boom' },
  );
  t.is(await locks.run('a', async () => 'free again'), 'free again');
  void other;
});
