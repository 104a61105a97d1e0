/**
 * `npm start`: a development cluster on one machine. Starts geneva, gland and lucerne as child
 * processes on 127.0.0.1 (client API 7001-7003, peers 7101-7103, metrics 9101-9103, data under
 * ./data/<region>, logs under ./data/logs), and the mounting agent (`rdl-agent nbd`, from
 * packages/agent) exporting a 1 GiB volume `demo` on nbd://127.0.0.1:10809/demo; waits for a
 * leader and for the export, and prints how to use them.
 *
 * Supervision mirrors the systemd unit: a daemon that exits on its own is restarted after
 * `restartDelayMs` (Restart=on-failure, RestartSec=3) while the other two keep serving; exit status
 * 2 (configuration error) is not restarted (RestartPreventExitStatus=2). Ctrl-C (SIGINT) or SIGTERM
 * stops every child with SIGTERM, waits for them, and exits.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import { connect } from 'node:net';
import type { WriteStream } from 'node:fs';
import { resolve as resolvePath, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';

/** One supervised process of the dev cluster. */
export interface DevProcess {
  /** Name shown in messages (a region, or `agent`). */
  readonly name: string;
  /**
   * The bin to execute and its arguments. Executed, not run as `node script`: the bin's shebang
   * starts node with the program's own flags (RDLD_NODE_FLAGS, AGENT_NODE_FLAGS).
   */
  readonly script: string;
  readonly args: readonly string[];
  readonly logPath: string;
}

/** Ports and paths of one region in the dev cluster. */
export interface DevRegion {
  readonly region: string;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly metricsPort: number;
  readonly dataDir: string;
}

/** The dev cluster's regions with their fixed ports (index i gets 7001+i, 7101+i, 9101+i). */
export function devRegions(dataRoot: string, basePort = 7001): DevRegion[] {
  return ['geneva', 'gland', 'lucerne'].map((region, i) => ({
    region,
    clientPort: basePort + i,
    peerPort: basePort + 100 + i,
    metricsPort: basePort + 2100 + i,
    dataDir: resolvePath(dataRoot, region),
  }));
}

/** The rdld flags of one region of the dev cluster. */
export function rdldArgs(self: DevRegion, all: readonly DevRegion[]): string[] {
  return [
    '--region',
    self.region,
    '--data-dir',
    self.dataDir,
    '--listen-client',
    `127.0.0.1:${self.clientPort}`,
    '--listen-peer',
    `127.0.0.1:${self.peerPort}`,
    '--listen-metrics',
    `127.0.0.1:${self.metricsPort}`,
    ...all
      .filter((r) => r.region !== self.region)
      .flatMap((r) => ['--peer', `${r.region}=127.0.0.1:${r.peerPort},client=127.0.0.1:${r.clientPort}`]),
  ];
}

/** Supervises child processes: restart on unexpected exit after a delay, stop all on request. */
export class Supervisor {
  private readonly children = new Map<
    string,
    { child: ChildProcess | null; log: WriteStream; timer: NodeJS.Timeout | null }
  >();
  private isStopping = false;

  constructor(
    private readonly restartDelayMs: number,
    private readonly say: (line: string) => void,
  ) {}

  /** Starts `process` and keeps it running until `stop()`. */
  add(definition: DevProcess): void {
    const log = createWriteStream(definition.logPath, { flags: 'a' });
    this.children.set(definition.name, { child: null, log, timer: null });
    this.launch(definition);
  }

  /** The pid of a running child, or null. */
  pidOf(name: string): number | null {
    return this.children.get(name)?.child?.pid ?? null;
  }

  private launch(definition: DevProcess): void {
    const entry = this.children.get(definition.name)!;
    entry.timer = null;
    if (this.isStopping) return;
    const child = spawn(definition.script, definition.args, {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    entry.child = child;
    child.stdout!.pipe(entry.log, { end: false });
    child.stderr!.pipe(entry.log, { end: false });
    // The daemon's own human-readable start-up errors go to stderr: show them here too.
    child.stderr!.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') this.say(`[${definition.name}] ${line}`);
    });
    child.on('exit', (code, signal) => {
      entry.child = null;
      if (this.isStopping) return;
      const how = signal !== null ? `killed by ${signal}` : `exited with status ${code}`;
      if (code === 2) {
        this.say(`${definition.name} ${how} (configuration error): not restarting; see ${definition.logPath}`);
        return;
      }
      this.say(
        `${definition.name} ${how}; restarting in ${this.restartDelayMs / 1000} s (the other regions keep serving)`,
      );
      entry.timer = setTimeout(() => {
        this.say(`restarting ${definition.name}`);
        this.launch(definition);
      }, this.restartDelayMs);
    });
  }

  /** Stops every child with SIGTERM (SIGKILL after `graceMs`) and resolves when all exited. */
  async stop(graceMs = 10_000): Promise<void> {
    this.isStopping = true;
    await Promise.all(
      [...this.children.values()].map(async (entry) => {
        if (entry.timer) clearTimeout(entry.timer);
        const child = entry.child;
        if (child !== null && child.exitCode === null && child.signalCode === null) {
          const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
          await exited;
          clearTimeout(timer);
        }
        await new Promise<void>((resolve) => entry.log.end(() => resolve()));
      }),
    );
  }
}

/** True once the agent accepts NBD connections and has finished its handshake greeting. */
async function isNbdExportReady(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const done = (isReady: boolean): void => {
      socket.destroy();
      resolve(isReady);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('error', () => done(false));
    // The server speaks first: 'NBDMAGIC' + 'IHAVEOPT'. Seeing it means the agent is serving.
    socket.once('data', (chunk: Buffer) => done(chunk.subarray(0, 8).toString('latin1') === 'NBDMAGIC'));
  });
}

async function readiness(port: number): Promise<{ isReady: boolean; leader: string | null } | null> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(1000) });
    return (await response.json()) as { isReady: boolean; leader: string | null };
  } catch {
    return null;
  }
}

async function main(argv: readonly string[]): Promise<void> {
  const program = new Command('npm start')
    .description('run geneva, gland and lucerne on 127.0.0.1 for development')
    .option('--data-dir <dir>', 'where the regions keep their data and logs', 'data')
    .option('--restart-delay-ms <ms>', 'delay before restarting a daemon that died', '3000')
    .option('--base-port <port>', 'first client port; peers use +100, metrics +2100 (tests move the cluster)', '7001')
    .option('--nbd-port <port>', "the agent's NBD port (default 10809, or base port + 3808 when moved)")
    .parse([...argv], { from: 'user' });
  const options = program.opts<{ dataDir: string; restartDelayMs: string; basePort: string; nbdPort?: string }>();
  const dataRoot = resolvePath(options.dataDir);
  const logDir = resolvePath(dataRoot, 'logs');
  mkdirSync(logDir, { recursive: true });
  const say = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  const shown = (path: string): string => {
    const short = relative(process.cwd(), path) || '.';
    return short.startsWith('..') ? path : short;
  };

  const regions = devRegions(dataRoot, Number(options.basePort));
  const supervisor = new Supervisor(Number(options.restartDelayMs), say);
  const rdldScript = fileURLToPath(new URL('../../bin/rdld.js', import.meta.url));
  for (const region of regions) {
    supervisor.add({
      name: region.region,
      script: rdldScript,
      args: rdldArgs(region, regions),
      logPath: resolvePath(logDir, `${region.region}.log`),
    });
  }
  // The mounting agent joins as one more supervised process. It is spawned by path, not imported:
  // the daemon package does not depend on the agent (the agent depends on the client SDK only).
  // `--ensure-volume` creates `demo` once a leader answers (idempotent across restarts).
  const endpoints = regions.map((r) => `127.0.0.1:${r.clientPort}`).join(',');
  const nbdPort = Number(
    options.nbdPort ?? (Number(options.basePort) === 7001 ? 10809 : Number(options.basePort) + 3808),
  );
  supervisor.add({
    name: 'agent',
    script: fileURLToPath(new URL('../../../agent/bin/rdl-agent.js', import.meta.url)),
    args: [
      'nbd',
      '--endpoints',
      endpoints,
      '--ensure-volume',
      'demo:1GiB',
      '--listen',
      `127.0.0.1:${nbdPort}`,
      '--log-level',
      'warn',
    ],
    logPath: resolvePath(logDir, 'agent.log'),
  });

  let isStopping = false;
  const stop = (signal: string): void => {
    if (isStopping) {
      say('second signal: killing the daemons');
      process.exit(1);
    }
    isStopping = true;
    say(`\n${signal}: stopping the regions and the agent...`);
    supervisor.stop().then(
      () => {
        say('stopped.');
        process.exit(0);
      },
      (err: unknown) => {
        say(`stop failed: ${String(err)}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('Ctrl-C'));
  process.on('SIGTERM', () => stop('SIGTERM'));

  say(`starting geneva, gland and lucerne (data in ${shown(dataRoot)}, logs in ${shown(logDir)})...`);
  const deadline = Date.now() + 60_000;
  let leader: string | null = null;
  while (!isStopping && Date.now() < deadline) {
    const states = await Promise.all(regions.map((r) => readiness(r.metricsPort)));
    if (states.every((s) => s?.isReady) && (await isNbdExportReady(nbdPort))) {
      leader = states[0]!.leader;
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  if (isStopping) return;
  if (leader === null) {
    say(`no leader after 60 s; the logs in ${shown(logDir)} say why. Still supervising; Ctrl-C to stop.`);
    return;
  }
  const nbdUri = `nbd://127.0.0.1:${nbdPort}/demo`;
  const lines = [
    '',
    `rdl dev cluster is up. Leader: ${leader}.`,
    '',
    ...regions.map(
      (r) =>
        `  ${r.region.padEnd(8)} pid ${String(supervisor.pidOf(r.region)).padEnd(7)} client 127.0.0.1:${r.clientPort}  peer 127.0.0.1:${r.peerPort}  metrics http://127.0.0.1:${r.metricsPort}/metrics`,
    ),
    `  agent    pid ${String(supervisor.pidOf('agent')).padEnd(7)} exports the 1 GiB volume demo on ${nbdUri}`,
    '',
    'Use the demo volume over NBD (Debian packages libnbd-bin, qemu-utils, fio):',
    `  nbdinfo ${nbdUri}`,
    `  qemu-io -f raw ${nbdUri} -c 'write -P 0xab 0 4096' -c 'read -P 0xab 0 4096'`,
    `  fio --name=demo --ioengine=nbd --uri=${nbdUri} --rw=randwrite --bs=4k --iodepth=32 --size=256m --runtime=10 --time_based`,
    '',
    ...(options.basePort === '7001'
      ? ['Try, in another terminal, from this directory (rdlctl talks to all three regions by default):']
      : [
          'Try, in another terminal, from this directory (first point rdlctl at these ports):',
          `  export RDL_ENDPOINTS=${regions.map((r) => `127.0.0.1:${r.clientPort}`).join(',')}`,
        ]),
    '  npx rdlctl status',
    '  npx rdlctl volume create files --size 64MiB',
    '  head -c 10MiB /dev/urandom > /tmp/in.img',
    '  npx rdlctl volume import files /tmp/in.img',
    '  npx rdlctl volume export files /tmp/out.img --length 10MiB && cmp /tmp/in.img /tmp/out.img && echo same',
    '  npx rdlctl volume list',
    '  npx rdlctl leader transfer gland',
    `  curl -s http://127.0.0.1:${regions[0].metricsPort}/metrics | grep ^rdl_raft`,
    `  curl -s http://127.0.0.1:${regions[0].metricsPort}/readyz`,
    `  kill -9 <a pid above>   # the others keep serving; it is restarted after ${Number(options.restartDelayMs) / 1000} s`,
    '',
    `Endpoints for other tools: ${endpoints}`,
    'Ctrl-C stops the cluster; the data stays in ' + shown(dataRoot) + ' for the next start.',
  ];
  say(lines.join('\n'));
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`npm start failed: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
