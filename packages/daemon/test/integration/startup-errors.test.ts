// Proves rdld's start-up failures are clear and coded, by spawning the real bin/rdld.js: a bad
// config exits 2 with DAEMON_CONFIG_INVALID listing every problem; a port held by another process
// exits 1 with DAEMON_PORT_IN_USE; a data directory that cannot be created exits 1 with
// DAEMON_DATA_DIR_UNWRITABLE, and so does a WAL directory (storage.wal_dir) that cannot be read or
// created; a data directory in use by a running rdld exits 1 with
// DAEMON_DATA_DIR_LOCKED; SIGTERM stops a running daemon cleanly with exit 0; and rdld started as
// `rdld` runs with RDLD_NODE_FLAGS and RDLD_ENVIRONMENT (its shebang) while one started without them warns.
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RDLD_ENVIRONMENT, RDLD_NODE_FLAGS, isGlibcRuntime, missingEnvironment } from '../../src/node-flags.js';
import { RDLD_BIN } from '../helpers/cluster.js';
import { freePorts, waitFor } from '../helpers/ports.js';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], timeoutMs = 30_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [RDLD_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`rdld did not exit within ${timeoutMs} ms: ${stderr}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const root = mkdtempSync(join(tmpdir(), 'rdld-start-'));
test.after.always(() => rmSync(root, { recursive: true, force: true }));

async function baseArgs(region: string): Promise<string[]> {
  const [client, peer, metrics, other] = await freePorts(4);
  return [
    '--region',
    region,
    '--data-dir',
    join(root, region),
    '--listen-client',
    `127.0.0.1:${client}`,
    '--listen-peer',
    `127.0.0.1:${peer}`,
    '--listen-metrics',
    `127.0.0.1:${metrics}`,
    '--peer',
    `gland=127.0.0.1:${other}`,
  ];
}

test.serial('a bad config exits 2 with every problem listed', async (t) => {
  const config = join(root, 'bad.toml');
  writeFileSync(config, 'region = "Geneva"\n[raft]\ntick_interval_ms = 0\n');
  const result = await run(['--config', config, '--log-level', 'loud']);
  t.is(result.code, 2);
  t.regex(result.stderr, /DAEMON_CONFIG_INVALID/);
  t.regex(result.stderr, /region/);
  t.regex(result.stderr, /tick_interval_ms/);
  t.regex(result.stderr, /data_dir is required/);
  t.regex(result.stderr, /--log-level/);
});

test.serial('a port in use exits 1 with DAEMON_PORT_IN_USE', async (t) => {
  const args = await baseArgs('geneva');
  const clientAddress = args[args.indexOf('--listen-client') + 1];
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(Number(clientAddress.split(':')[1]), '127.0.0.1', resolve));
  t.teardown(() => blocker.close());
  const result = await run(args);
  t.is(result.code, 1);
  t.regex(result.stderr, /DAEMON_PORT_IN_USE/);
  t.regex(result.stderr, new RegExp(clientAddress));
});

test.serial('a data directory that cannot be created exits 1 with DAEMON_DATA_DIR_UNWRITABLE', async (t) => {
  const file = join(root, 'not-a-dir');
  writeFileSync(file, 'x');
  const args = await baseArgs('lucerne');
  args[args.indexOf('--data-dir') + 1] = join(file, 'data');
  const result = await run(args);
  t.is(result.code, 1);
  t.regex(result.stderr, /DAEMON_DATA_DIR_UNWRITABLE/);
});

test.serial(
  'a data directory held by a running rdld exits 1 with DAEMON_DATA_DIR_LOCKED; SIGTERM stops cleanly',
  async (t) => {
    const args = await baseArgs('geneva');
    const first = spawn(process.execPath, [RDLD_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    first.stdout.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((resolve) => first.on('exit', resolve));
    t.teardown(() => first.kill('SIGKILL'));
    await waitFor(() => output.includes('rdld serving'), 'the first daemon to serve', 20_000, 20);

    const second = await baseArgs('geneva');
    second[second.indexOf('--data-dir') + 1] = args[args.indexOf('--data-dir') + 1];
    const result = await run(second);
    t.is(result.code, 1);
    t.regex(result.stderr, /DAEMON_DATA_DIR_LOCKED/);

    first.kill('SIGTERM');
    t.is(await exited, 0);
    t.regex(output, /"msg":"stopped"/);
  },
);

/** Starts rdld with `command` + `args`, waits until it serves, stops it; returns its log lines. */
async function logOfServing(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<Array<Record<string, unknown>>> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  try {
    await waitFor(() => output.includes('rdld serving'), 'rdld to serve', 20_000, 20);
  } finally {
    child.kill('SIGTERM');
  }
  await exited;
  return output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

test.serial(
  'a WAL directory that cannot be read or created exits 1 with DAEMON_DATA_DIR_UNWRITABLE naming storage.wal_dir',
  async (t) => {
    const file = join(root, 'not-a-wal-dir');
    writeFileSync(file, 'x');
    for (const walDir of [file, join(file, 'wal')]) {
      const args = await baseArgs('geneva');
      args[args.indexOf('--data-dir') + 1] = join(root, `wal-unwritable-${walDir === file ? 'file' : 'below'}`);
      const result = await run([...args, '--storage-wal-dir', walDir]);
      t.is(result.code, 1, walDir);
      t.regex(result.stderr, /DAEMON_DATA_DIR_UNWRITABLE: .*storage\.wal_dir/, walDir);
      t.regex(result.stderr, new RegExp(walDir.replace(/[/.-]/g, '\\$&')), walDir);
    }
  },
);

test.serial(
  "rdld's shebang passes RDLD_NODE_FLAGS and RDLD_ENVIRONMENT; started without them it says what is missing",
  async (t) => {
    const { GLIBC_TUNABLES: _inherited, ...envWithout } = process.env;
    // Executed directly, as `rdld` and the npm bin link are: the kernel runs the shebang's `env -S ... node ...`.
    const direct = await logOfServing(RDLD_BIN, await baseArgs('geneva'), envWithout);
    const effective = direct.find((line) => line.msg === 'effective configuration');
    t.deepEqual(effective?.nodeFlags, [...RDLD_NODE_FLAGS]);
    t.deepEqual(effective?.environment, { ...RDLD_ENVIRONMENT });
    t.false(direct.some((line) => String(line.msg).includes('runs without')));

    const bare = await logOfServing(process.execPath, [RDLD_BIN, ...(await baseArgs('lucerne'))], envWithout);
    const warning = bare.find((line) => String(line.msg).includes('node runs without'));
    t.truthy(warning, 'a warning names the missing flags');
    t.deepEqual(warning?.missing, [...RDLD_NODE_FLAGS]);
    // This machine's node runs on glibc (Debian); elsewhere the variable means nothing and is not asked for.
    t.true(isGlibcRuntime());
    const envWarning = bare.find((line) => Array.isArray(line.missingEnvironment));
    t.deepEqual(envWarning?.missingEnvironment, missingEnvironment({}, true));
  },
);
