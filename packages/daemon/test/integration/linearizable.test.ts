// Proves reads and writes stay linearizable across a crash: six concurrent clients (seeded random
// mix of reads and writes on four blocks of one volume) run against three real rdld processes while
// the leader is killed with SIGKILL and later restarted; the recorded history (call and return times
// on one clock, unknown outcomes as such) is checked by @rdl/raft/testing's linearizability checker.
import test from 'ava';
import { checkLinearizable } from '@rdl/raft/testing';
import type { HistoryOperation } from '@rdl/raft/testing';
import { startCluster } from '../helpers/cluster.js';
import type { Cluster } from '../helpers/cluster.js';
import { sessionId } from '../helpers/block-client.js';
import { LeaderTracker, RetryingClient } from '../helpers/writer.js';

let cluster: Cluster;
test.before(async () => {
  cluster = await startCluster();
});
test.after.always(async () => {
  await cluster?.destroy();
});

const CLIENTS = 6;
const OPS_PER_CLIENT = 40;
const KEYS = 4;
const SEED = 20_261_201;

/** mulberry32: a small seeded generator, so a failing history can be replayed. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A block holding `value` as ASCII at its start (the rest zeros); all zeros is "absent" (null). */
function encodeValue(value: string): Buffer {
  const block = Buffer.alloc(4096);
  block.write(value, 'ascii');
  return block;
}
function decodeValue(block: Uint8Array): string | null {
  const end = block.indexOf(0);
  const text = Buffer.from(block.subarray(0, end === -1 ? 64 : end)).toString('ascii');
  return text === '' ? null : text;
}

test.serial('a concurrent history with the leader killed and restarted is linearizable', async (t) => {
  const leader = await cluster.waitForLeader();
  await cluster.member(leader).client.call('createVolume', { name: 'lin', sizeBytes: KEYS * 4096 });
  const tracker = new LeaderTracker(cluster);
  const history: HistoryOperation[] = [];
  let completed = 0;
  let killed: string | null = null;
  let restarted: Promise<void> | null = null;

  const clients = Array.from({ length: CLIENTS }, async (_, c) => {
    const random = seeded(SEED + c);
    const client = new RetryingClient(cluster, tracker);
    let seq = 0;
    try {
      for (let i = 0; i < OPS_PER_CLIENT; i++) {
        const key = Math.floor(random() * KEYS);
        const isWrite = random() < 0.5;
        const call = performance.now();
        if (isWrite) {
          seq += 1;
          const value = `c${c}-${i}`;
          let returned: number | null = null;
          try {
            await client.send(
              {
                op: 'write',
                volume: 'lin',
                offset: key * 4096,
                length: 4096,
                data: encodeValue(value),
                session: sessionId(5000 + c),
                seq,
                ackedBelow: seq,
              },
              20_000,
            );
            returned = performance.now();
          } catch {
            // Gave up: the write may or may not have happened.
          }
          history.push({ client: c, op: 'write', key: String(key), value, call, return: returned });
        } else {
          try {
            const response = await client.send(
              { op: 'read', volume: 'lin', offset: key * 4096, length: 4096, session: '', seq: 0, ackedBelow: 0 },
              20_000,
            );
            history.push({
              client: c,
              op: 'read',
              key: String(key),
              value: decodeValue(response.data!),
              call,
              return: performance.now(),
            });
          } catch {
            // A read that never returned constrains nothing.
          }
        }
        completed += 1;
        if (killed === null && completed >= (CLIENTS * OPS_PER_CLIENT) / 3) {
          killed = await tracker.current();
          t.log(`killing leader ${killed} after ${completed} operations`);
          const victim = killed;
          restarted = cluster.kill(victim, 'SIGKILL').then(async () => {
            // Let the others run a while without it, then bring it back mid-history.
            await new Promise((resolve) => setTimeout(resolve, 1500));
            cluster.start(victim);
          });
        }
      }
    } finally {
      client.close();
    }
  });
  await Promise.all(clients);
  await restarted;
  t.not(killed, null);
  const writes = history.filter((h) => h.op === 'write');
  const reads = history.filter((h) => h.op === 'read');
  t.log(`${writes.length} writes (${writes.filter((w) => w.return === null).length} unknown), ${reads.length} reads`);
  t.true(reads.length > 20 && writes.length > 20, 'the history exercises both operations');

  const verdict = checkLinearizable(history);
  if (!verdict.ok) t.log(verdict.explanation);
  t.true(verdict.ok, 'history is linearizable');

  // Control: the history is constraining enough that one stale read would be caught. Pretend a
  // read that started after an acknowledged write to its block had returned the initial zeros.
  const stale = reads.findIndex((r) => writes.some((w) => w.key === r.key && w.return !== null && w.return < r.call));
  t.true(stale >= 0);
  const tampered = history.map((h) => (h === reads[stale] ? { ...h, value: null } : h));
  t.false(checkLinearizable(tampered).ok, 'a stale read is detected');
});
