// Proves the real rdlctl binary (bin/rdlctl.js, spawned as a child process) against the
// in-process fake cluster on 127.0.0.1:0: status in text and JSON (leader region and client
// address), the volume commands with sizes in units, import of a file into a volume it creates
// (rounded up to 4 KiB) and export back byte for byte, leader transfer, endpoints from
// RDL_ENDPOINTS, coded errors with exit status 1 and usage errors with exit status 2.
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FakeCluster } from '../fake/fake-cluster.js';

// dist/test/cli/ -> packages/client/bin/
const BIN = fileURLToPath(new URL('../../../bin/rdlctl.js', import.meta.url));
const MiB = 1024 * 1024;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function rdlctl(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { env: { ...process.env, RDL_ENDPOINTS: '', ...env }, timeout: 30_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

async function start(t: import('ava').ExecutionContext): Promise<{ cluster: FakeCluster; endpoints: string }> {
  const cluster = await FakeCluster.start(3);
  t.teardown(() => cluster.close());
  return { cluster, endpoints: cluster.addresses.join(',') };
}

test('status prints members and, with --json, the leader region and client address', async (t) => {
  const { cluster, endpoints } = await start(t);
  cluster.setLeader(1);
  const json = await rdlctl(['--endpoints', endpoints, 'status', '--json']);
  t.is(json.code, 0, json.stderr);
  const status = JSON.parse(json.stdout) as { leader: { region: string; clientAddress: string }; members: unknown[] };
  t.deepEqual(status.leader, { region: 'gland', clientAddress: cluster.addresses[1] });
  t.is(status.members.length, 3);
  const text = await rdlctl(['--endpoints', endpoints, 'status']);
  t.is(text.code, 0, text.stderr);
  t.regex(text.stdout, new RegExp(`leader: gland \\(${cluster.addresses[1]}\\)`));
  t.regex(text.stdout, /term: \d+ {2}commit index: 42 {2}applied index: 41/);
  t.regex(text.stdout, /geneva +follower .* 40 +2/);
});

test('volume commands, coded errors (exit 1) and usage errors (exit 2)', async (t) => {
  const { cluster, endpoints } = await start(t);
  const created = await rdlctl(['--endpoints', endpoints, 'volume', 'create', 'data', '--size', '64MiB']);
  t.is(created.code, 0, created.stderr);
  t.regex(created.stdout, /created: data {2}64 MiB \(67108864 bytes\)/);
  t.is(cluster.volumes.get('data')?.info.sizeBytes, 64 * MiB);
  // Endpoints from the environment this time.
  const list = await rdlctl(['volume', 'list'], { RDL_ENDPOINTS: endpoints });
  t.is(list.code, 0, list.stderr);
  t.regex(list.stdout, /^NAME +SIZE +BYTES +CREATED\ndata +64 MiB +67108864 /);
  const grown = await rdlctl(['--endpoints', endpoints, 'volume', 'grow', 'data', '--size', '0.125GiB']);
  t.is(grown.code, 0, grown.stderr);
  const stat = await rdlctl(['--endpoints', endpoints, 'volume', 'stat', 'data', '--json']);
  t.is(JSON.parse(stat.stdout).sizeBytes, 128 * MiB);
  const exists = await rdlctl(['--endpoints', endpoints, 'volume', 'create', 'data', '--size', '1MiB']);
  t.is(exists.code, 1);
  t.regex(exists.stderr, /^rdlctl: VOLUME_EXISTS: /);
  t.is((await rdlctl(['--endpoints', endpoints, 'volume', 'delete', 'data'])).code, 0);
  const missing = await rdlctl(['--endpoints', endpoints, 'volume', 'delete', 'data']);
  t.is(missing.code, 1);
  t.regex(missing.stderr, /^rdlctl: VOLUME_NOT_FOUND: /);
  const badSize = await rdlctl(['--endpoints', endpoints, 'volume', 'create', 'x', '--size', '12XB']);
  t.is(badSize.code, 2);
  t.regex(badSize.stderr, /cannot parse size "12XB"/);
  t.is((await rdlctl(['--endpoints', endpoints, 'volume', 'create', 'x'])).code, 2, 'missing --size');
  t.is((await rdlctl(['--endpoints', endpoints, 'volume', 'frobnicate'])).code, 2, 'unknown command');
  t.is((await rdlctl([])).code, 2, 'no command');
  t.is((await rdlctl(['--help'])).code, 0);
  const badEndpoint = await rdlctl(['--endpoints', 'nohost', 'status']);
  t.is(badEndpoint.code, 2);
  t.regex(badEndpoint.stderr, /CLIENT_CONFIG_INVALID/);
});

test('an unreachable cluster is a coded error at the deadline', async (t) => {
  const cluster = await FakeCluster.start(1);
  const endpoints = cluster.addresses.join(',');
  await cluster.close();
  const run = await rdlctl(['--endpoints', endpoints, '--timeout', '500', 'volume', 'list']);
  t.is(run.code, 1);
  t.regex(run.stderr, /^rdlctl: CLIENT_DEADLINE_EXCEEDED: /);
});

test('volume import creates a rounded-up volume and export gives the file back unchanged', async (t) => {
  const { cluster, endpoints } = await start(t);
  const dir = await mkdtemp(join(tmpdir(), 'rdlctl-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // 3 MiB + 123 bytes: not a multiple of 4 KiB, with a zero megabyte in the middle.
  const original = Buffer.alloc(3 * MiB + 123);
  for (let i = 0; i < original.length; i++) original[i] = i < MiB || i >= 2 * MiB ? (i * 7 + 3) & 0xff : 0;
  const source = join(dir, 'source.img');
  await writeFile(source, original);
  const imported = await rdlctl([
    '--endpoints',
    endpoints,
    'volume',
    'import',
    'disk',
    source,
    '--chunk-size',
    '256KiB',
  ]);
  t.is(imported.code, 0, imported.stderr);
  t.is(cluster.volumes.get('disk')?.info.sizeBytes, 3 * MiB + 4096);
  t.true(cluster.volumes.get('disk')!.data.subarray(0, original.length).equals(original));
  const writes = cluster.seen.filter((s) => s.request.op === 'write');
  t.is(writes.length, 12 + 1 - 4, 'the four zero chunks of the new volume were not sent');

  const whole = join(dir, 'whole.img');
  const exported = await rdlctl(['--endpoints', endpoints, 'volume', 'export', 'disk', whole, '--concurrency', '3']);
  t.is(exported.code, 0, exported.stderr);
  const expected = Buffer.concat([original, Buffer.alloc(4096 - 123)]);
  t.true((await readFile(whole)).equals(expected), 'export holds the file plus zero padding to 4 KiB');
  const exact = join(dir, 'exact.img');
  const trimmed = await rdlctl([
    '--endpoints',
    endpoints,
    'volume',
    'export',
    'disk',
    exact,
    '--length',
    String(original.length),
  ]);
  t.is(trimmed.code, 0, trimmed.stderr);
  t.true((await readFile(exact)).equals(original), 'export --length gives the file back byte for byte');

  // Re-import into the existing volume: zero chunks must now be written as zeros.
  cluster.volumes.get('disk')!.data.fill(0xee);
  const again = await rdlctl(['--endpoints', endpoints, 'volume', 'import', 'disk', source]);
  t.is(again.code, 0, again.stderr);
  t.true(cluster.volumes.get('disk')!.data.subarray(0, original.length).equals(original));

  const missingFile = await rdlctl(['--endpoints', endpoints, 'volume', 'import', 'disk', join(dir, 'nope')]);
  t.is(missingFile.code, 1);
  t.regex(missingFile.stderr, /^rdlctl: CLIENT_FILE_ERROR: /);
  await writeFile(join(dir, 'big.img'), Buffer.alloc(4 * MiB, 1));
  const tooBig = await rdlctl(['--endpoints', endpoints, 'volume', 'import', 'disk', join(dir, 'big.img')]);
  t.is(tooBig.code, 1);
  t.regex(tooBig.stderr, /^rdlctl: OUT_OF_RANGE: .*grow it first/);
});

test('leader transfer moves leadership', async (t) => {
  const { cluster, endpoints } = await start(t);
  const moved = await rdlctl(['--endpoints', endpoints, 'leader', 'transfer', 'lucerne']);
  t.is(moved.code, 0, moved.stderr);
  t.is(moved.stdout.trim(), `leader is now lucerne (${cluster.addresses[2]})`);
  t.is(cluster.leader, 2);
  const unknown = await rdlctl(['--endpoints', endpoints, 'leader', 'transfer', 'atlantis']);
  t.is(unknown.code, 1);
  t.regex(unknown.stderr, /^rdlctl: INVALID_ARGUMENT: /);
});
