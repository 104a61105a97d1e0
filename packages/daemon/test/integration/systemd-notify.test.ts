// Proves rdld reports readiness the way Type=notify expects: started with NOTIFY_SOCKET pointing at a
// datagram socket (held by a small python3 listener standing in for systemd), it sends READY=1 with
// its own MAINPID once serving, and STOPPING=1 on SIGTERM. Skipped with a message when systemd-notify
// or python3 is missing.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RDLD_BIN } from '../helpers/cluster.js';
import { freePorts, waitFor } from '../helpers/ports.js';

const hasTools =
  spawnSync('systemd-notify', ['--help']).status === 0 && spawnSync('python3', ['--version']).status === 0;

const listener = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("LISTENING", flush=True)
while True:
    print(s.recv(65536).decode().replace("\\n", " "), flush=True)
`;

test.serial('READY=1 with MAINPID once serving, STOPPING=1 on SIGTERM', async (t) => {
  if (!hasTools) {
    t.log('systemd-notify or python3 is not installed: skipping the readiness check');
    t.pass();
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'rdld-notify-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const socketPath = join(dir, 'notify.sock');
  const fakeSystemd = spawn('python3', ['-c', listener, socketPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => fakeSystemd.kill('SIGKILL'));
  let notifications = '';
  fakeSystemd.stdout.on('data', (d: Buffer) => (notifications += d.toString()));
  await waitFor(() => notifications.includes('LISTENING'), 'the stand-in for systemd', 10_000, 20);

  const [client, peer, other] = await freePorts(3);
  const rdld = spawn(
    process.execPath,
    [
      RDLD_BIN,
      '--region',
      'geneva',
      '--data-dir',
      join(dir, 'data'),
      '--listen-client',
      `127.0.0.1:${client}`,
      '--listen-peer',
      `127.0.0.1:${peer}`,
      '--listen-metrics',
      '',
      '--peer',
      `gland=127.0.0.1:${other}`,
    ],
    { stdio: 'ignore', env: { ...process.env, NOTIFY_SOCKET: socketPath } },
  );
  const exited = new Promise<number | null>((resolve) => rdld.on('exit', resolve));
  t.teardown(() => rdld.kill('SIGKILL'));
  await waitFor(() => notifications.includes('READY=1'), 'READY=1', 20_000, 20);
  t.regex(notifications, new RegExp(`MAINPID=${rdld.pid}`));
  rdld.kill('SIGTERM');
  t.is(await exited, 0);
  await waitFor(() => notifications.includes('STOPPING=1'), 'STOPPING=1', 5_000, 20);
});
