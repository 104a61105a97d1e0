// Proves `rdl-agent csi` works as a process, the way the Deployment and DaemonSet run it: the
// real binary (bin/rdl-agent.js) serves Identity and Controller on the unix socket given by
// --endpoint, stops cleanly on SIGTERM (exit 0, socket removed), and bad flags exit with status 2
// and AGENT_CONFIG_INVALID listing each problem. rdl is not needed for these calls.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { loadCsiServices } from '../../src/csi/proto.js';

const bin = fileURLToPath(new URL('../../../bin/rdl-agent.js', import.meta.url));

function run(args: string[]) {
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  child.stdout.resume();
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, stderr: () => stderr };
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

test('rdl-agent csi serves the socket and stops on SIGTERM', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'rdl-csi-cli-'));
  const socketPath = join(root, 'plugin', 'csi.sock');
  const agent = run([
    'csi',
    `--endpoint=unix://${socketPath}`,
    '--mode=controller',
    '--rdl-endpoints=127.0.0.1:9',
    '--node-id=cli-node',
    `--state-dir=${join(root, 'state')}`,
    '--log-level=warn',
  ]);
  try {
    await waitFor(() => existsSync(socketPath), 15_000);
    const identity = new (loadCsiServices().Identity)(`unix://${socketPath}`, grpc.credentials.createInsecure());
    const call = (method: string) =>
      new Promise<Record<string, unknown>>((resolve, reject) =>
        (
          identity as unknown as Record<
            string,
            (r: object, cb: (e: Error | null, v: Record<string, unknown>) => void) => void
          >
        )[method]({}, (err, value) => (err === null ? resolve(value) : reject(err))),
      );
    t.is((await call('GetPluginInfo')).name, 'rdl.csi.rdl.io');
    t.deepEqual((await call('Probe')).ready, { value: true });
    identity.close();
    agent.child.kill('SIGTERM');
    t.is(await agent.exited, 0, agent.stderr());
    t.false(existsSync(socketPath), 'the socket is removed on shutdown');
  } finally {
    agent.child.kill('SIGKILL');
    rmSync(root, { recursive: true, force: true });
  }
});

test('bad flags exit 2 with AGENT_CONFIG_INVALID naming each problem', async (t) => {
  const agent = run(['csi', '--endpoint=tcp://127.0.0.1:1', '--mode=sideways', '--rdl-endpoints=']);
  t.is(await agent.exited, 2);
  t.regex(agent.stderr(), /AGENT_CONFIG_INVALID/);
  t.regex(agent.stderr(), /--endpoint/);
  t.regex(agent.stderr(), /--mode/);
  t.regex(agent.stderr(), /--rdl-endpoints/);
});
