// Proves `npm start`'s dev cluster (dist/src/dev-cluster.js, run as a real process): it starts three
// daemons and the agent, waits for a leader and for the `demo` NBD export, and prints how to use
// them; the printed NBD export really serves the 1 GiB volume (read with nbdinfo when installed); a daemon killed with SIGKILL is restarted
// after the restart delay while the others keep serving, and rejoins; Ctrl-C (SIGINT) stops every
// daemon and exits 0. Runs on ports probed free (moved with --base-port) and a temp data dir.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RDLD_NODE_FLAGS } from '../../src/node-flags.js';
import { waitFor } from '../helpers/ports.js';

const DEV_CLUSTER = fileURLToPath(new URL('../../src/dev-cluster.js', import.meta.url));

async function isFree(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A base port whose nine derived ports are free (deterministic seed sequence, first fit). */
async function freeBase(): Promise<number> {
  for (let base = 21_001 + (process.pid % 50) * 10; base < 30_000; base += 37) {
    const ports = [0, 1, 2, 100, 101, 102, 2100, 2101, 2102, 3808].map((d) => base + d);
    if ((await Promise.all(ports.map(isFree))).every(Boolean)) return base;
  }
  throw new Error('no free port range');
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test.serial('npm start: up, restart after a crash, clean Ctrl-C', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rdl-dev-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const base = await freeBase();
  const child = spawn(
    process.execPath,
    [DEV_CLUSTER, '--data-dir', join(dir, 'data'), '--base-port', String(base), '--restart-delay-ms', '1000'],
    // Its own process group, so that a failed test can kill the supervisor and every child at once.
    { stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  t.teardown(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // Already gone.
    }
  });

  await waitFor(() => output.includes('dev cluster is up'), 'the dev cluster to come up', 60_000, 50);
  t.regex(output, /npx rdlctl status/);
  t.regex(output, /npx rdlctl volume create files --size 64MiB/);
  const pids = Object.fromEntries(
    [...output.matchAll(/^ {2}(geneva|gland|lucerne) +pid (\d+)/gm)].map((m) => [m[1], Number(m[2])]),
  );
  t.deepEqual(Object.keys(pids).sort(), ['geneva', 'gland', 'lucerne']);
  // Started by executing bin/rdld.js: its shebang puts rdld's node flags on the command line.
  for (const pid of Object.values(pids)) {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    for (const flag of RDLD_NODE_FLAGS) t.true(argv.includes(flag), argv.join(' '));
  }
  const nbdUri = `nbd://127.0.0.1:${base + 3808}/demo`;
  t.true(output.includes(`exports the 1 GiB volume demo on ${nbdUri}`), output);
  t.true(output.includes(`nbdinfo ${nbdUri}`));
  const agentPid = Number(/^ {2}agent +pid (\d+)/m.exec(output)?.[1]);
  t.true(agentPid > 0 && isAlive(agentPid));
  const nbdinfo = spawnSync('nbdinfo', ['--size', nbdUri], { encoding: 'utf8', timeout: 30_000 });
  if (nbdinfo.error === undefined) t.is(nbdinfo.stdout.trim(), String(1024 ** 3), nbdinfo.stderr);
  else t.log('nbdinfo not installed (Debian package libnbd-bin): export size not checked');

  process.kill(pids.gland, 'SIGKILL');
  await waitFor(() => output.includes('gland killed by SIGKILL; restarting'), 'the crash to be noticed', 10_000, 20);
  // The other two keep serving meanwhile: geneva still reports a leader.
  const ready = await (await fetch(`http://127.0.0.1:${base + 2100}/readyz`)).json();
  t.truthy((ready as { leader: string | null }).leader);
  await waitFor(() => output.includes('restarting gland'), 'the restart', 10_000, 20);
  await waitFor(
    async () => {
      try {
        const r = await fetch(`http://127.0.0.1:${base + 2101}/readyz`);
        return r.status === 200;
      } catch {
        return false;
      }
    },
    'gland ready again',
    30_000,
    100,
  );

  child.kill('SIGINT');
  t.is(await exited, 0);
  t.regex(output, /stopped\./);
  for (const [region, pid] of Object.entries(pids)) t.false(isAlive(pid), `${region} is gone`);
  t.false(isAlive(agentPid), 'the agent is gone');
  // No daemon survives: every metrics port is free again.
  for (const d of [2100, 2101, 2102]) t.true(await isFree(base + d));
});
