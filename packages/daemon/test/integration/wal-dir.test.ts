// Proves storage.wal_dir with real rdld processes: every daemon keeps its WAL outside its data
// directory (segments and the binding file there, no wal/ in the data directory); the leader is
// killed with SIGKILL mid-stream and no acknowledged write is lost; a daemon whose WAL directory is
// empty (as when its file system is not mounted) refuses to start with DAEMON_WAL_MISSING, and one
// pointed at another region's WAL (while that region runs) with DAEMON_WAL_MISMATCH, exit status 1
// both, touching neither WAL; with its own WAL back it starts and catches up.
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import test from 'ava';
import { startCluster } from '../helpers/cluster.js';
import type { Cluster } from '../helpers/cluster.js';
import { sessionId } from '../helpers/block-client.js';
import { LeaderTracker, RetryingClient, blockPattern, blockWrite } from '../helpers/writer.js';
import { waitFor } from '../helpers/ports.js';
import { WAL_BINDING_FILE } from '../../src/storage/wal-binding.js';

let cluster: Cluster;
test.before(async () => {
  cluster = await startCluster({ isWalOutside: true });
});
test.after.always(async () => {
  await cluster?.destroy();
});

const WRITERS = 2;
const BLOCKS_PER_WRITER = 60;
const BLOCKS = WRITERS * BLOCKS_PER_WRITER;

async function readAll(tracker: LeaderTracker): Promise<Buffer> {
  const reader = new RetryingClient(cluster, tracker);
  try {
    const all = await reader.send({
      op: 'read',
      volume: 'v',
      offset: 0,
      length: 4096 * BLOCKS,
      session: '',
      seq: 0,
      ackedBelow: 0,
    });
    return Buffer.from(all.data!);
  } finally {
    reader.close();
  }
}

/** Starts `region` and returns its exit status and the start-up failure's code from its log. */
async function startExpectingFailure(region: string): Promise<{ code: number | null; logged: string }> {
  cluster.start(region);
  const exited = await cluster.member(region).exited!;
  return { code: exited.code, logged: cluster.logTail(region, 5) };
}

test.serial(
  'WAL outside the data directory: kill -9 keeps every acknowledged write; a missing or foreign WAL is refused',
  async (t) => {
    const leader = await cluster.waitForLeader();
    await cluster.member(leader).client.call('createVolume', { name: 'v', sizeBytes: 4096 * BLOCKS });
    const tracker = new LeaderTracker(cluster);
    const acknowledged = new Set<number>();
    let killed = null as string | null;
    await Promise.all(
      Array.from({ length: WRITERS }, async (_, w) => {
        const client = new RetryingClient(cluster, tracker);
        try {
          for (let i = 0; i < BLOCKS_PER_WRITER; i++) {
            const block = w * BLOCKS_PER_WRITER + i;
            await client.send(blockWrite(block, sessionId(2000 + w), i + 1));
            acknowledged.add(block);
            if (killed === null && acknowledged.size >= BLOCKS / 3) {
              killed = await tracker.current();
              t.log(`killing leader ${killed} after ${acknowledged.size} acknowledged writes`);
              await cluster.kill(killed, 'SIGKILL');
            }
          }
        } finally {
          client.close();
        }
      }),
    );
    t.is(acknowledged.size, BLOCKS);
    t.not(killed, null);
    const everything = await readAll(tracker);
    for (const block of acknowledged) {
      t.deepEqual(everything.subarray(block * 4096, (block + 1) * 4096), blockPattern(block), `block ${block}`);
    }

    // Where the files are: the WAL's directory, not the data directory.
    for (const member of cluster.members.values()) {
      const walNames = await readdir(member.walDir!);
      t.true(walNames.includes(WAL_BINDING_FILE), `${member.region}: binding file`);
      t.true(
        walNames.some((name) => /^[0-9a-f]{16}\.wal$/.test(name)),
        `${member.region}: segments in ${member.walDir}`,
      );
      t.deepEqual(await readdir(member.dataDir), ['db'], `${member.region}: only db/ in the data directory`);
    }

    // The killed daemon comes back on an empty WAL directory (its device not mounted): refused.
    const region = killed!;
    const member = cluster.member(region);
    const ownWal = member.walDir!;
    await rename(ownWal, `${ownWal}.aside`);
    await mkdir(ownWal);
    const missing = await startExpectingFailure(region);
    t.is(missing.code, 1);
    t.regex(missing.logged, /DAEMON_WAL_MISSING/);
    t.deepEqual(await readdir(ownWal), [], 'nothing was written into the empty directory');

    // Pointed at a running region's WAL: refused, and that WAL is left alone.
    const other = [...cluster.members.values()].find((m) => m.region !== region && m.process !== null)!;
    const otherNames = (await readdir(other.walDir!)).sort();
    member.walDir = other.walDir;
    const foreign = await startExpectingFailure(region);
    t.is(foreign.code, 1);
    t.regex(foreign.logged, /DAEMON_WAL_MISMATCH/);
    t.deepEqual((await readdir(other.walDir!)).sort(), otherNames);

    // Its own WAL back: it starts and catches up.
    member.walDir = ownWal;
    await rm(ownWal, { recursive: true });
    await rename(`${ownWal}.aside`, ownWal);
    cluster.start(region);
    const newLeader = await tracker.current();
    const target = (await cluster.member(newLeader).client.status()).commitIndex;
    await waitFor(
      async () => ((await cluster.statusOf(region))?.appliedIndex ?? 0) >= target,
      `${region} to apply up to ${target}`,
      30_000,
      50,
    );
    t.log(`${region} caught up to ${target} on its own WAL again`);
  },
);
