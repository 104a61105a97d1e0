// Proves `rdl-agent nbd` works as a real process: it validates its flags (every problem listed in
// one AGENT_CONFIG_INVALID, exit status 2), serves over TCP and a unix socket at once, serves the
// cluster's volumes through --endpoints (a stand-in rdl.v1.Block server), honours --read-only,
// creates --ensure-volume volumes idempotently, and drains and exits 0 on SIGTERM. Real clients (nbdinfo, qemu-io) talk to the spawned agent.
import test from 'ava';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startFakeBlockServer } from './fake-block-server.js';
import { hasCommand } from './helpers.js';

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;
// dist/test/nbd/cli.test.js → package root.
const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const bin = path.join(packageRoot, 'bin', 'rdl-agent.js');

interface Agent {
  readonly child: ChildProcess;
  /** Addresses from the "NBD server listening" log lines. */
  readonly addresses: string[];
  readonly exited: Promise<number | null>;
}

/** Spawns the agent and waits (bounded) until it logged `listenCount` listening addresses. */
async function spawnAgent(args: string[], listenCount: number): Promise<Agent> {
  const child = spawn(process.execPath, [bin, 'nbd', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const addresses: string[] = [];
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent did not start:\n${output}`)), 15_000);
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      for (const line of chunk.toString().split('\n')) {
        if (!line.includes('NBD server listening')) continue;
        addresses.push((JSON.parse(line) as { address: string }).address);
        if (addresses.length === listenCount) {
          clearTimeout(timer);
          resolve();
        }
      }
    });
    void exited.then((code) => reject(new Error(`agent exited with ${code}:\n${output}`)));
  });
  return { child, addresses, exited };
}

test('invalid flags: exit status 2 and every problem in one AGENT_CONFIG_INVALID', async (t) => {
  const error = await t.throwsAsync(
    execFileAsync(process.execPath, [
      bin,
      'nbd',
      '--listen',
      'nowhere',
      '--memory-volume',
      'x',
      '--idle-timeout-ms',
      '-1',
    ]),
  );
  const e = error as unknown as { code: number; stderr: string };
  t.is(e.code, 2);
  t.true(e.stderr.includes('AGENT_CONFIG_INVALID'));
  t.true(e.stderr.includes('--listen must be host:port'));
  t.true(e.stderr.includes('--memory-volume must be NAME:SIZE'));
  t.true(e.stderr.includes('--idle-timeout-ms must be an integer'));
});

const hasPeers = hasCommand('nbdinfo') && hasCommand('qemu-io');
const skipNote = ' — skipped: nbdinfo or qemu-io not installed (apt-get install libnbd-bin qemu-utils)';

(hasPeers ? test.serial : test.skip)(
  `serves memory volumes over TCP and a unix socket, then drains and exits 0 on SIGTERM${hasPeers ? '' : skipNote}`,
  async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rdl-agent-cli-'));
    const socket = path.join(dir, 'nbd.sock');
    const agent = await spawnAgent(
      ['--memory-volume', 'demo:8MiB', '--listen', '127.0.0.1:0', '--socket', socket, '--log-level', 'info'],
      2,
    );
    try {
      const tcp = agent.addresses.find((a) => !a.startsWith('unix:'))!;
      const info = JSON.parse((await execFileAsync('nbdinfo', ['--json', `nbd://${tcp}/demo`])).stdout);
      t.is(info.exports[0]['export-size'], 8 * MiB);
      const unixUri = `nbd+unix:///demo?socket=${socket}`;
      await execFileAsync('qemu-io', ['-f', 'raw', unixUri, '-c', 'write -P 0x42 0 4096']);
      await execFileAsync('qemu-io', ['-f', 'raw', `nbd://${tcp}/demo`, '-c', 'read -P 0x42 0 4096']);
      agent.child.kill('SIGTERM');
      t.is(await agent.exited, 0);
    } finally {
      agent.child.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
);

(hasPeers ? test.serial : test.skip)(
  `--endpoints serves the cluster's volumes; --read-only makes them read-only${hasPeers ? '' : skipNote}`,
  async (t) => {
    const fake = await startFakeBlockServer({ pvc1: 4 * MiB });
    fake.volumes.get('pvc1')!.fill(0x17, 0, 8192);
    const agent = await spawnAgent(['--endpoints', fake.address, '--listen', '127.0.0.1:0', '--read-only'], 1);
    try {
      const uri = `nbd://${agent.addresses[0]}/pvc1`;
      const info = JSON.parse((await execFileAsync('nbdinfo', ['--json', uri])).stdout);
      t.like(info.exports[0], { 'export-size': 4 * MiB, is_read_only: true, can_multi_conn: true });
      await execFileAsync('qemu-io', ['-f', 'raw', '-r', uri, '-c', 'read -P 0x17 0 8192']);
      await t.throwsAsync(execFileAsync('qemu-io', ['-f', 'raw', uri, '-c', 'write -P 1 0 512']));
      t.is(fake.volumes.get('pvc1')![0], 0x17, 'the read-only export refused the write');
      agent.child.kill('SIGTERM');
      t.is(await agent.exited, 0);
    } finally {
      agent.child.kill('SIGKILL');
      await fake.close();
    }
  },
);

(hasPeers ? test.serial : test.skip)(
  `--ensure-volume creates a missing cluster volume and accepts an existing one of the same size${hasPeers ? '' : skipNote}`,
  async (t) => {
    const fake = await startFakeBlockServer({ old: 4 * MiB });
    const agent = await spawnAgent(
      [
        '--endpoints',
        fake.address,
        '--listen',
        '127.0.0.1:0',
        '--ensure-volume',
        'demo:8MiB',
        '--ensure-volume',
        'old:4MiB',
      ],
      1,
    );
    try {
      t.is(fake.volumes.get('demo')?.length, 8 * MiB);
      const info = JSON.parse((await execFileAsync('nbdinfo', ['--json', `nbd://${agent.addresses[0]}/demo`])).stdout);
      t.is(info.exports[0]['export-size'], 8 * MiB);
      agent.child.kill('SIGTERM');
      t.is(await agent.exited, 0);
      // An existing volume of another size is a configuration error: exit 1, nothing served.
      const error = await t.throwsAsync(
        execFileAsync(process.execPath, [
          bin,
          'nbd',
          '--endpoints',
          fake.address,
          '--listen',
          '127.0.0.1:0',
          '--ensure-volume',
          'old:1MiB',
        ]),
      );
      const e = error as unknown as { code: number; stderr: string };
      t.is(e.code, 1);
      t.true(e.stderr.includes('AGENT_CONFIG_INVALID'), e.stderr);
      t.is(fake.volumes.get('old')?.length, 4 * MiB);
    } finally {
      agent.child.kill('SIGKILL');
      await fake.close();
    }
  },
);
