// Proves three real rdld processes (127.0.0.1, ephemeral ports, temp LevelDB dirs) elect a leader
// and serve the block API end to end: create a volume (idempotently), write over the Io stream,
// read back linearizably from the leader (partial blocks, thin zeros), followers answering NOT_LEADER
// with the leader's region and client address, Status with per-member lag, list/stat/grow/delete,
// a leadership transfer, and /metrics counting IO per volume (and LevelDB's compaction gauges).
import test from 'ava';
import { startCluster } from '../helpers/cluster.js';
import type { Cluster } from '../helpers/cluster.js';
import { CallError, sessionId } from '../helpers/block-client.js';
import type { CreateVolumeResponse, ListVolumesResponse, StatusResponse } from '@rdl/client/wire';
import { waitFor } from '../helpers/ports.js';

let cluster: Cluster;
test.before(async () => {
  cluster = await startCluster();
});
test.after.always(async () => {
  await cluster?.destroy();
});

test.serial('create, write, read back; followers redirect; status, metrics, transfer', async (t) => {
  const leader = await cluster.waitForLeader();
  const leaderMember = cluster.member(leader);
  const client = leaderMember.client;
  const followers = [...cluster.members.keys()].filter((r) => r !== leader);

  const created = await client.call<CreateVolumeResponse>('createVolume', { name: 'demo', sizeBytes: 1024 * 1024 });
  t.true(created.isCreated);
  t.is(created.volume.sizeBytes, 1024 * 1024);
  const again = await client.call<CreateVolumeResponse>('createVolume', { name: 'demo', sizeBytes: 1024 * 1024 });
  t.false(again.isCreated, 'create is idempotent on the same name and size');
  const conflict = await t.throwsAsync(client.call('createVolume', { name: 'demo', sizeBytes: 2 * 1024 * 1024 }));
  t.is((conflict as CallError).code, 'VOLUME_EXISTS');

  const io = client.io();
  const data = Buffer.alloc(10_000).map((_, i) => (i * 7) % 256);
  const written = await io.request({
    op: 'write',
    volume: 'demo',
    offset: 1000, // unaligned, spans three blocks
    length: data.length,
    data,
    session: sessionId(1),
    seq: 1,
    ackedBelow: 0,
  });
  t.true(written.ok, JSON.stringify(written.error));
  const read = await io.request({
    op: 'read',
    volume: 'demo',
    offset: 0,
    length: 12_288,
    session: '',
    seq: 0,
    ackedBelow: 0,
  });
  t.true(read.ok, JSON.stringify(read.error));
  const bytes = Buffer.from(read.data!);
  t.true(
    bytes.subarray(0, 1000).every((b) => b === 0),
    'never-written bytes read as zeros',
  );
  t.deepEqual(bytes.subarray(1000, 11_000), data);
  const flushed = await io.request({
    op: 'flush',
    volume: 'demo',
    offset: 0,
    length: 0,
    session: '',
    seq: 0,
    ackedBelow: 0,
  });
  t.true(flushed.ok);
  io.end();

  // A follower redirects IO and admin calls to the leader.
  const followerIo = cluster.member(followers[0]).client.io();
  const redirected = await followerIo.request({
    op: 'read',
    volume: 'demo',
    offset: 0,
    length: 4096,
    session: '',
    seq: 0,
    ackedBelow: 0,
  });
  t.false(redirected.ok);
  t.is(redirected.error?.code, 'NOT_LEADER');
  t.is(redirected.error?.leader, leader);
  t.is(redirected.error?.leaderAddress, `127.0.0.1:${leaderMember.clientPort}`);
  followerIo.end();
  const adminRedirect = await t.throwsAsync(cluster.member(followers[0]).client.call('listVolumes', {}));
  t.is((adminRedirect as CallError).code, 'NOT_LEADER');
  t.is((adminRedirect as CallError).wire.leaderAddress, `127.0.0.1:${leaderMember.clientPort}`);

  // Status from the leader lists every member with its lag.
  await waitFor(async () => {
    const status = await client.status();
    return status.members.every((m) => m.lagEntries === 0);
  }, 'followers caught up');
  const status: StatusResponse = await client.status();
  t.is(status.role, 'leader');
  t.is(status.leader?.region, leader);
  t.deepEqual(
    status.members.map((m) => m.region),
    ['geneva', 'gland', 'lucerne'],
  );
  t.true(status.commitIndex >= 3);
  // Followers apply what the leader committed.
  await waitFor(async () => {
    const s = await cluster.member(followers[0]).client.status();
    return s.appliedIndex >= status.commitIndex;
  }, 'follower applied');

  // Volume admin.
  const grown = await client.call<{ volume: { sizeBytes: number } }>('growVolume', {
    name: 'demo',
    sizeBytes: 2 * 1024 * 1024,
  });
  t.is(grown.volume.sizeBytes, 2 * 1024 * 1024);
  await client.call('createVolume', { name: 'other', sizeBytes: 4096 });
  const list = await client.call<ListVolumesResponse>('listVolumes', {});
  t.deepEqual(
    list.volumes.map((v) => v.name),
    ['demo', 'other'],
  );
  await client.call('deleteVolume', { name: 'other' });
  const missing = await t.throwsAsync(client.call('statVolume', { name: 'other' }));
  t.is((missing as CallError).code, 'VOLUME_NOT_FOUND');

  // Metrics count IO per volume.
  const metrics = await (await fetch(`http://127.0.0.1:${leaderMember.metricsPort}/metrics`)).text();
  t.regex(metrics, /rdl_io_bytes_total\{volume="demo",op="write",region="[a-z]+"\} 10000/);
  t.regex(metrics, /rdl_raft_fsync_seconds_count\{region="[a-z]+"\} [1-9]/);
  // LevelDB's compaction thread was found and runs at storage.compaction_nice (default 19).
  t.regex(metrics, /rdl_leveldb_compaction_nice\{region="[a-z]+"\} 19\n/);
  t.regex(metrics, /rdl_leveldb_level0_files\{region="[a-z]+"\} \d+\n/);
  t.regex(metrics, /rdl_leveldb_memory_bytes\{region="[a-z]+"\} [1-9]\d*\n/);
  t.is((await fetch(`http://127.0.0.1:${leaderMember.metricsPort}/readyz`)).status, 200);

  // Leadership transfer to a follower.
  const target = followers[1];
  const transferred = await cluster.transferLeader(leader, target);
  t.deepEqual(transferred.leader, { region: target, clientAddress: `127.0.0.1:${cluster.member(target).clientPort}` });
  const status2 = await cluster.member(target).client.status();
  t.is(status2.leader?.region, target);
  t.is(status2.leader?.clientAddress, `127.0.0.1:${cluster.member(target).clientPort}`);
  t.is(await cluster.waitForLeader(), target);
  // The data is still there, read through the new leader.
  const io2 = cluster.member(target).client.io();
  const again2 = await io2.request({
    op: 'read',
    volume: 'demo',
    offset: 1000,
    length: data.length,
    session: '',
    seq: 0,
    ackedBelow: 0,
  });
  t.deepEqual(Buffer.from(again2.data!), data);
  io2.end();
});
