// Proves no acknowledged write is lost when the leader is killed with SIGKILL in the middle of a
// stream of writes, and that the killed daemon catches up after restart: four concurrent writer
// sessions write distinct blocks through real rdld processes, retrying unacknowledged writes with the
// same (session, seq) on the new leader; afterwards every acknowledged block reads back intact from
// the new leader, the restarted daemon applies up to the commit index, and after leadership is
// handed to it, it serves the same data.
import test from 'ava';
import { startCluster } from '../helpers/cluster.js';
import type { Cluster } from '../helpers/cluster.js';
import { sessionId } from '../helpers/block-client.js';
import { LeaderTracker, RetryingClient, blockPattern, blockWrite } from '../helpers/writer.js';
import { waitFor } from '../helpers/ports.js';

let cluster: Cluster;
test.before(async () => {
  cluster = await startCluster();
});
test.after.always(async () => {
  await cluster?.destroy();
});

const WRITERS = 4;
const BLOCKS_PER_WRITER = 60;

test.serial('kill -9 the leader mid-stream: every acknowledged write survives; the daemon catches up', async (t) => {
  const t0 = Date.now();
  const phase = (what: string): void => t.log(`${Date.now() - t0} ms: ${what}`);
  const firstLeader = await cluster.waitForLeader();
  phase(`leader ${firstLeader}`);
  await cluster
    .member(firstLeader)
    .client.call('createVolume', { name: 'v', sizeBytes: 4096 * WRITERS * BLOCKS_PER_WRITER });
  const tracker = new LeaderTracker(cluster);
  const acknowledged = new Set<number>();
  let killed = null as string | null;

  const writers = Array.from({ length: WRITERS }, async (_, w) => {
    const client = new RetryingClient(cluster, tracker);
    try {
      for (let i = 0; i < BLOCKS_PER_WRITER; i++) {
        const block = w * BLOCKS_PER_WRITER + i;
        await client.send(blockWrite(block, sessionId(1000 + w), i + 1));
        acknowledged.add(block);
        // Kill the leader once a third of the writes are in, while the others keep streaming.
        if (killed === null && acknowledged.size >= (WRITERS * BLOCKS_PER_WRITER) / 3) {
          killed = await tracker.current();
          t.log(`killing leader ${killed} after ${acknowledged.size} acknowledged writes`);
          await cluster.kill(killed, 'SIGKILL');
        }
      }
      return client.retries;
    } finally {
      client.close();
    }
  });
  const retries = await Promise.all(writers);
  phase('writes acknowledged');
  t.log(`retries per writer: ${retries.join(', ')}`);
  t.not(killed, null);
  t.is(acknowledged.size, WRITERS * BLOCKS_PER_WRITER);

  // Every acknowledged block is there, read linearizably from the new leader.
  const reader = new RetryingClient(cluster, tracker);
  const newLeader = await tracker.current();
  t.not(newLeader, killed);
  const everything = await reader.send({
    op: 'read',
    volume: 'v',
    offset: 0,
    length: 4096 * WRITERS * BLOCKS_PER_WRITER,
    session: '',
    seq: 0,
    ackedBelow: 0,
  });
  for (const block of acknowledged) {
    t.deepEqual(
      Buffer.from(everything.data!).subarray(block * 4096, (block + 1) * 4096),
      blockPattern(block),
      `block ${block}`,
    );
  }
  reader.close();

  // The killed daemon restarts on its old data and catches up.
  phase('verified on the new leader');
  cluster.start(killed!);
  const target = (await cluster.member(newLeader).client.status()).commitIndex;
  await waitFor(
    async () => ((await cluster.statusOf(killed!))?.appliedIndex ?? 0) >= target,
    `${killed} to apply up to ${target}`,
    30_000,
    50,
  );
  phase('restarted daemon caught up');
  // Hand it leadership and read everything through it.
  await cluster.transferLeader(newLeader, killed!);
  tracker.leader = null;
  t.is(await cluster.waitForLeader(), killed!);
  const finalReader = new RetryingClient(cluster, tracker);
  const all = await finalReader.send({
    op: 'read',
    volume: 'v',
    offset: 0,
    length: 4096 * WRITERS * BLOCKS_PER_WRITER,
    session: '',
    seq: 0,
    ackedBelow: 0,
  });
  for (let block = 0; block < WRITERS * BLOCKS_PER_WRITER; block++) {
    t.deepEqual(
      Buffer.from(all.data!).subarray(block * 4096, (block + 1) * 4096),
      blockPattern(block),
      `block ${block} on the restarted daemon`,
    );
  }
  finalReader.close();
  phase('verified on the restarted daemon');
});
