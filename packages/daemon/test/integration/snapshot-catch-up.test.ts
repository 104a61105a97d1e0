// Proves a follower that was down while the leader compacted its log catches up through a snapshot:
// with compaction after 40 applied entries (keeping 5), a follower is killed, 200 writes and volume
// changes land meanwhile, and when it restarts its log says it installed a snapshot, it applies up to
// the commit index, and once given leadership it serves every block and volume — real rdld processes,
// real LevelDB, snapshot chunks of 64 KiB over the gRPC peer transport.
import test from 'ava';
import { readFileSync } from 'node:fs';
import type { ListVolumesResponse } from '@rdl/client/wire';
import { startCluster } from '../helpers/cluster.js';
import type { Cluster } from '../helpers/cluster.js';
import { sessionId } from '../helpers/block-client.js';
import { LeaderTracker, RetryingClient, blockPattern } from '../helpers/writer.js';
import { waitFor } from '../helpers/ports.js';

let cluster: Cluster;
test.before(async () => {
  cluster = await startCluster({
    args: ['--raft-log-entries-max', '40', '--raft-log-entries-keep', '5', '--raft-snapshot-chunk-bytes', '64KiB'],
  });
});
test.after.always(async () => {
  await cluster?.destroy();
});

const BLOCKS = 200;

test.serial('a follower behind a compacted log catches up from a snapshot', async (t) => {
  const leader = await cluster.waitForLeader();
  const client = cluster.member(leader).client;
  await client.call('createVolume', { name: 'snap', sizeBytes: BLOCKS * 4096 });
  await client.call('createVolume', { name: 'doomed', sizeBytes: 4096 });
  const follower = [...cluster.members.keys()].find((r) => r !== leader)!;
  await cluster.kill(follower, 'SIGKILL');

  const tracker = new LeaderTracker(cluster);
  tracker.leader = leader;
  const writer = new RetryingClient(cluster, tracker);
  for (let block = 0; block < BLOCKS; block++) {
    await writer.send({
      op: 'write',
      volume: 'snap',
      offset: block * 4096,
      length: 4096,
      data: blockPattern(block, 3),
      session: sessionId(77),
      seq: block + 1,
      ackedBelow: block + 1,
    });
  }
  writer.close();
  await client.call('deleteVolume', { name: 'doomed' });
  await client.call('createVolume', { name: 'late', sizeBytes: 8192 });

  cluster.start(follower);
  const target = (await client.status()).commitIndex;
  await waitFor(
    async () => ((await cluster.statusOf(follower))?.appliedIndex ?? 0) >= target,
    `${follower} to apply up to ${target}`,
    60_000,
    100,
  );
  t.regex(readFileSync(cluster.member(follower).logPath, 'utf8'), /"msg":"installed a snapshot"/);

  await cluster.transferLeader(leader, follower);
  tracker.leader = null;
  t.is(await cluster.waitForLeader(), follower);
  const list = await cluster.member(follower).client.call<ListVolumesResponse>('listVolumes', {});
  t.deepEqual(
    list.volumes.map((v) => v.name),
    ['late', 'snap'],
  );
  const reader = new RetryingClient(cluster, tracker);
  const all = await reader.send({
    op: 'read',
    volume: 'snap',
    offset: 0,
    length: BLOCKS * 4096,
    session: '',
    seq: 0,
    ackedBelow: 0,
  });
  reader.close();
  for (let block = 0; block < BLOCKS; block++) {
    t.deepEqual(
      Buffer.from(all.data!).subarray(block * 4096, (block + 1) * 4096),
      blockPattern(block, 3),
      `block ${block}`,
    );
  }
});
