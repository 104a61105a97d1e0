// Proves that data copied through NBD into a real three-region rdl cluster survives the leader
// being killed mid-copy: three real rdld processes (packages/daemon, real LevelDB, 127.0.0.1
// ephemeral ports, temp dirs) serve a volume; `qemu-img convert` writes a seeded image through the
// NBD server + RdlVolumeProvider + RdlClient; once a quarter of the image is written, writes are
// held, the leader gets SIGKILL, writes resume (the SDK finds the new leader and retries within the
// request deadline, the NBD client sees no error), the killed daemon is restarted, and after the
// copy the volume read back through NBD must equal the image byte for byte. Needs the daemon built
// (npm run build); RDL_KEEP_TEST_DATA=1 keeps the daemons' logs.
import test from 'ava';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { RdlClient } from '@rdl/client';
import { NbdServer } from '../../src/nbd/server.js';
import { RdlVolumeProvider } from '../../src/nbd/rdl-volume.js';
import type { VolumeHandle, VolumeProvider, WriteOptions } from '../../src/nbd/volume.js';
import { hasCommand, randomBytes, seededRandom, waitFor } from './helpers.js';

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;
const rdldBin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../daemon/bin/rdld.js');
const rdldMain = path.resolve(path.dirname(rdldBin), '../dist/src/main.js');
const regions = ['geneva', 'gland', 'lucerne'];

async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<net.Server>((resolve) => {
          const server = net.createServer();
          server.listen(0, '127.0.0.1', () => resolve(server));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

/** Counts writes, and holds every write that starts after `holdAfterWrites` until `release()`. */
class GatedProvider implements VolumeProvider {
  writesStarted = 0;
  holdAfterWrites = Number.POSITIVE_INFINITY;
  #release!: () => void;
  readonly #gate = new Promise<void>((resolve) => (this.#release = resolve));
  readonly #inner: VolumeProvider;

  constructor(inner: VolumeProvider) {
    this.#inner = inner;
  }

  release(): void {
    this.#release();
  }

  list(): ReturnType<VolumeProvider['list']> {
    return this.#inner.list();
  }

  async open(name: string, options: { isReadOnly: boolean }): Promise<VolumeHandle> {
    const inner = await this.#inner.open(name, options);
    const write = async (offset: number, data: Buffer, writeOptions: WriteOptions): Promise<void> => {
      if (++this.writesStarted > this.holdAfterWrites) await this.#gate;
      return inner.write(offset, data, writeOptions);
    };
    return {
      name: inner.name,
      sizeBytes: inner.sizeBytes,
      blockSizeBytes: inner.blockSizeBytes,
      isReadOnly: inner.isReadOnly,
      isFlushShared: inner.isFlushShared,
      read: (offset, length) => inner.read(offset, length),
      write,
      writeZeroes: (offset, length, zeroOptions) => inner.writeZeroes(offset, length, zeroOptions),
      trim: (offset, length, trimOptions) => inner.trim(offset, length, trimOptions),
      flush: () => inner.flush(),
      close: () => inner.close(),
    };
  }
}

const peers = hasCommand('qemu-img') && hasCommand('cmp');
const built = fs.existsSync(rdldMain);
const title = 'qemu-img convert through NBD into a 3-region cluster survives SIGKILL of the leader mid-copy';
if (!peers) {
  test.skip(`${title} — skipped: qemu-img not installed (apt-get install qemu-utils)`, () => {});
} else {
  test.serial(title, async (t) => {
    t.timeout(240_000);
    t.true(built, `rdld is not built (${rdldMain} missing): run npm run build first`);
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'rdl-nbd-cluster-'));
    const ports = await freePorts(9);
    const members = regions.map((region, i) => ({
      region,
      client: ports[i * 3],
      peer: ports[i * 3 + 1],
      metrics: ports[i * 3 + 2],
      process: null as ChildProcess | null,
    }));
    const start = (member: (typeof members)[number]): void => {
      const args = [
        rdldBin,
        '--region',
        member.region,
        '--data-dir',
        path.join(root, member.region),
        '--listen-client',
        `127.0.0.1:${member.client}`,
        '--listen-peer',
        `127.0.0.1:${member.peer}`,
        '--listen-metrics',
        `127.0.0.1:${member.metrics}`,
        '--raft-tick-interval-ms',
        '20',
        '--log-level',
        'warn',
        ...members
          .filter((m) => m !== member)
          .flatMap((m) => ['--peer', `${m.region}=127.0.0.1:${m.peer},client=127.0.0.1:${m.client}`]),
      ];
      const log = fs.openSync(path.join(root, `${member.region}.log`), 'a');
      member.process = spawn(process.execPath, args, { stdio: ['ignore', log, log] });
      fs.closeSync(log);
    };
    for (const member of members) start(member);
    const client = new RdlClient({
      endpoints: members.map((m) => `127.0.0.1:${m.client}`),
      requestTimeoutMs: 60_000,
      random: seededRandom(9),
    });
    const size = 16 * MiB;
    const provider = new GatedProvider(new RdlVolumeProvider(client, { requestTimeoutMs: 60_000 }));
    const logPath = path.join(root, 'nbd.log');
    const server = new NbdServer({
      provider,
      logger: pino({ level: 'warn' }, pino.destination({ dest: logPath, sync: true })),
    });
    try {
      const t0 = Date.now();
      const elapsed = (): string => `${Date.now() - t0} ms`;
      await client.createVolume('disk', size);
      t.log(`volume created at ${elapsed()}`);
      const address = await server.listen({ host: '127.0.0.1', port: 0 });
      const uri = `nbd://127.0.0.1:${'port' in address ? address.port : 0}/disk`;
      const random = seededRandom(5);
      const image = randomBytes(random, size);
      for (let at = 0; at < size; at += MiB) if (random() < 0.25) image.fill(0, at, at + MiB);
      fs.writeFileSync(path.join(root, 'in.img'), image);

      const copy = execFileAsync(
        'qemu-img',
        ['convert', '-n', '-f', 'raw', '-O', 'raw', '-W', path.join(root, 'in.img'), uri],
        { timeout: 200_000 },
      );
      let copyError: unknown;
      copy.catch((err: unknown) => (copyError = err));
      await waitFor(
        () => server.counters.bytesWritten >= size / 4 || copyError !== undefined,
        60_000,
        'a quarter written',
      );
      t.is(copyError, undefined);
      // Hold the writes that start from now on, kill the leader, then let them go.
      provider.holdAfterWrites = provider.writesStarted;
      const leader = (await client.status()).leader!.region;
      const victim = members.find((m) => m.region === leader)!;
      const exited = new Promise((resolve) => victim.process!.once('exit', resolve));
      victim.process!.kill('SIGKILL');
      await exited;
      t.log(`killed leader ${leader} after ${server.counters.bytesWritten} bytes`);
      provider.release();
      t.log(`released at ${elapsed()}`);
      await waitFor(
        () => server.counters.bytesWritten >= size / 2 || copyError !== undefined,
        60_000,
        'progress after the kill',
      );
      t.log(`half written at ${elapsed()}`);
      start(victim);
      await copy;
      t.log(`copy done at ${elapsed()}`);
      t.is(server.counters.requestErrors, 0, 'no NBD request failed');
      await execFileAsync('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri, path.join(root, 'out.img')], {
        timeout: 60_000,
      });
      t.log(`read back at ${elapsed()}`);
      await execFileAsync('cmp', [path.join(root, 'in.img'), path.join(root, 'out.img')]);
      t.pass();
    } catch (err) {
      t.log(`NBD server log:\n${fs.readFileSync(logPath, 'utf8').split('\n').slice(0, 20).join('\n')}`);
      throw err;
    } finally {
      await server.close();
      await client.close();
      for (const member of members) member.process?.kill('SIGKILL');
      if (process.env.RDL_KEEP_TEST_DATA === undefined) fs.rmSync(root, { recursive: true, force: true });
      else t.log(`kept ${root}`);
    }
  });
}
