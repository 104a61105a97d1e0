/**
 * `rdlctl`: the operator's command line for an rdl cluster, built on the SDK. Exit status 0 on
 * success, 1 on an error (printed as `rdlctl: CODE: message`), 2 on bad usage, 130 on Ctrl-C.
 */
import { setMaxListeners } from 'node:events';
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import cliProgress from 'cli-progress';
import { RdlClient } from '../client.js';
import { ClientCode, RdlError, hasCode } from '../errors.js';
import { formatSize, parseSize } from '../size.js';
import { WireCode } from '../wire/errors.js';
import { BLOCK_SIZE_BYTES, IO_REQUEST_BYTES_MAX } from '../wire/limits.js';
import type { StatusResponse, VolumeInfo } from '../wire/types.js';

/** Endpoints used when neither `--endpoints` nor `RDL_ENDPOINTS` says otherwise (`npm start`'s ports). */
export const DEFAULT_ENDPOINTS = '127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003';

/** Most chunks `volume import` / `volume export` keep in flight. */
const TRANSFER_CONCURRENCY_MAX = 64;

interface GlobalOptions {
  endpoints: string;
  timeout: number;
}

function sizeArgument(text: string): number {
  try {
    return parseSize(text);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

function integerArgument(min: number, max: number): (text: string) => number {
  return (text) => {
    const value = Number(text);
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      throw new InvalidArgumentError(`expected an integer in [${min}, ${max}]`);
    }
    return value;
  };
}

function endpointsOf(options: GlobalOptions): string[] {
  return options.endpoints
    .split(',')
    .map((endpoint) => endpoint.trim())
    .filter((endpoint) => endpoint.length > 0);
}

/** Aborted on SIGINT / SIGTERM so long transfers stop cleanly. */
const interrupt = new AbortController();

async function withClient<T>(command: Command, body: (client: RdlClient) => Promise<T>): Promise<T> {
  const options = command.optsWithGlobals<GlobalOptions>();
  const client = new RdlClient({ endpoints: endpointsOf(options), requestTimeoutMs: options.timeout });
  try {
    return await body(client);
  } finally {
    await client.close();
  }
}

function print(line: string): void {
  process.stdout.write(`${line}\n`);
}

function printJson(value: unknown): void {
  print(JSON.stringify(value, null, 2));
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  return rows
    .map((row) =>
      row
        .map((cell, column) => cell.padEnd(widths[column]))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

function describeVolume(volume: VolumeInfo): string {
  return `${volume.name}  ${formatSize(volume.sizeBytes)} (${volume.sizeBytes} bytes)  created ${new Date(volume.createdAtMs).toISOString()}`;
}

function printStatus(status: StatusResponse): void {
  const leader =
    status.leader === undefined
      ? 'none (election in progress)'
      : `${status.leader.region} (${status.leader.clientAddress})`;
  print(`leader: ${leader}`);
  print(
    `term: ${status.term}  commit index: ${status.commitIndex}  applied index: ${status.appliedIndex}  (as seen by ${status.region})`,
  );
  const rows = [['REGION', 'ROLE', 'CLIENT ADDRESS', 'RAFT ADDRESS', 'MATCH INDEX', 'LAG (entries)']];
  for (const member of status.members) {
    rows.push([
      member.region,
      member.role,
      member.clientAddress,
      member.raftAddress,
      member.matchIndex === undefined ? '-' : String(member.matchIndex),
      member.lagEntries === undefined ? '-' : String(member.lagEntries),
    ]);
  }
  print(table(rows));
}

/** Runs `task(index)` for every index below `count`, at most `concurrency` at once; stops at the first error. */
async function runPool(
  count: number,
  concurrency: number,
  task: (index: number, worker: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failure: unknown;
  let hasFailed = false;
  const worker = async (workerIndex: number): Promise<void> => {
    while (!hasFailed && next < count) {
      const index = next++;
      try {
        await task(index, workerIndex);
      } catch (error) {
        if (!hasFailed) failure = error;
        hasFailed = true;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(count, 1)) }, (_, i) => worker(i)));
  if (hasFailed) throw failure;
}

interface Progress {
  add(bytes: number): void;
  stop(): void;
}

function progress(label: string, totalBytes: number): Progress {
  if (process.stdout.isTTY !== true) return { add: () => {}, stop: () => {} };
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {percentage}% | {done} / {total_size} | {rate}/s | ETA {eta_formatted}`,
      stream: process.stdout,
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  const started = performance.now();
  let done = 0;
  bar.start(totalBytes, 0, { done: formatSize(0), total_size: formatSize(totalBytes), rate: formatSize(0) });
  return {
    add(bytes) {
      done += bytes;
      const seconds = Math.max(0.001, (performance.now() - started) / 1000);
      bar.update(done, { done: formatSize(done), rate: formatSize(Math.round(done / seconds)) });
    },
    stop() {
      bar.stop();
    },
  };
}

function fileError(action: string, path: string, error: unknown): RdlError {
  return new RdlError(ClientCode.CLIENT_FILE_ERROR, `cannot ${action} ${path}: ${(error as Error).message}`, {
    cause: error,
  });
}

interface TransferOptions {
  concurrency: number;
  chunkSize: number;
}

function isAllZero(data: Buffer, zeros: Buffer): boolean {
  return data.equals(zeros.length === data.length ? zeros : zeros.subarray(0, data.length));
}

async function importVolume(client: RdlClient, name: string, path: string, options: TransferOptions): Promise<void> {
  let file: FileHandle;
  try {
    file = await open(path, 'r');
  } catch (error) {
    throw fileError('open', path, error);
  }
  try {
    const fileBytes = (await file.stat()).size;
    const sizeBytes = Math.max(BLOCK_SIZE_BYTES, Math.ceil(fileBytes / BLOCK_SIZE_BYTES) * BLOCK_SIZE_BYTES);
    let isFresh = false;
    let volume: VolumeInfo;
    try {
      volume = await client.statVolume(name, { signal: interrupt.signal });
    } catch (error) {
      if (!hasCode(error, WireCode.VOLUME_NOT_FOUND)) throw error;
      const created = await client.createVolume(name, sizeBytes, { signal: interrupt.signal });
      volume = created.volume;
      isFresh = created.isCreated;
    }
    if (volume.sizeBytes < fileBytes) {
      throw new RdlError(
        WireCode.OUT_OF_RANGE,
        `volume ${name} holds ${volume.sizeBytes} bytes but ${path} has ${fileBytes}; grow it first (rdlctl volume grow)`,
      );
    }
    const chunkSize = options.chunkSize;
    const chunks = Math.ceil(fileBytes / chunkSize);
    const zeros = Buffer.alloc(chunkSize);
    // One buffer per worker, reused: the SDK has encoded a write by the time it resolves.
    const buffers = Array.from({ length: options.concurrency }, () => Buffer.allocUnsafe(chunkSize));
    const bar = progress(`import ${name}`, fileBytes);
    try {
      await runPool(chunks, options.concurrency, async (index, worker) => {
        const offset = index * chunkSize;
        const length = Math.min(chunkSize, fileBytes - offset);
        const buffer = buffers[worker].subarray(0, length);
        let got = 0;
        while (got < length) {
          const { bytesRead } = await file.read(buffer, got, length - got, offset + got).catch((error: unknown) => {
            throw fileError('read', path, error);
          });
          if (bytesRead === 0) throw fileError('read', path, new Error('the file shrank while being imported'));
          got += bytesRead;
        }
        // Zero chunks cost a tiny writeZeroes instead of a full write, and nothing on a new (thin) volume.
        if (isAllZero(buffer, zeros)) {
          if (!isFresh) await client.writeZeroes(name, offset, length, { signal: interrupt.signal });
        } else {
          await client.write(name, offset, buffer, { signal: interrupt.signal });
        }
        bar.add(length);
      });
      await client.flush(name, { signal: interrupt.signal });
    } finally {
      bar.stop();
    }
    print(`imported ${path} (${fileBytes} bytes) into volume ${name} (${formatSize(volume.sizeBytes)})`);
  } finally {
    await file.close();
  }
}

async function exportVolume(
  client: RdlClient,
  name: string,
  path: string,
  options: TransferOptions & { length?: number },
): Promise<void> {
  const volume = await client.statVolume(name, { signal: interrupt.signal });
  const totalBytes = options.length ?? volume.sizeBytes;
  if (totalBytes > volume.sizeBytes) {
    throw new RdlError(
      WireCode.OUT_OF_RANGE,
      `--length ${totalBytes} is above the size of volume ${name} (${volume.sizeBytes})`,
    );
  }
  let file: FileHandle;
  try {
    file = await open(path, 'w');
  } catch (error) {
    throw fileError('create', path, error);
  }
  try {
    const chunkSize = options.chunkSize;
    const zeros = Buffer.alloc(chunkSize);
    const bar = progress(`export ${name}`, totalBytes);
    try {
      await runPool(Math.ceil(totalBytes / chunkSize), options.concurrency, async (index) => {
        const offset = index * chunkSize;
        const length = Math.min(chunkSize, totalBytes - offset);
        const data = await client.read(name, offset, length, { signal: interrupt.signal });
        // Zero chunks are left as holes: the file is sized by truncate below, so it reads the same.
        if (!isAllZero(data, zeros)) {
          let written = 0;
          while (written < length) {
            const { bytesWritten } = await file
              .write(data, written, length - written, offset + written)
              .catch((error: unknown) => {
                throw fileError('write', path, error);
              });
            written += bytesWritten;
          }
        }
        bar.add(length);
      });
    } finally {
      bar.stop();
    }
    await file.truncate(totalBytes).catch((error: unknown) => {
      throw fileError('truncate', path, error);
    });
    await file.sync().catch((error: unknown) => {
      throw fileError('sync', path, error);
    });
    print(`exported volume ${name} (${totalBytes} bytes) to ${path}`);
  } finally {
    await file.close();
  }
}

function transferOptions(command: Command): Command {
  return command
    .addOption(
      new Option('--concurrency <n>', 'chunks in flight at once')
        .argParser(integerArgument(1, TRANSFER_CONCURRENCY_MAX))
        .default(16),
    )
    .addOption(
      new Option('--chunk-size <size>', `bytes per request (at most ${formatSize(IO_REQUEST_BYTES_MAX)})`)
        .argParser((text) => {
          const size = sizeArgument(text);
          if (size < 1 || size > IO_REQUEST_BYTES_MAX) {
            throw new InvalidArgumentError(`expected 1 byte to ${formatSize(IO_REQUEST_BYTES_MAX)}`);
          }
          return size;
        })
        .default(1024 * 1024, '1MiB'),
    );
}

/** Builds the command tree (exported for tests of the parser). */
function buildProgram(): Command {
  const program = new Command('rdlctl')
    .description('Control an rdl cluster: status, volumes, import/export, leadership.')
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)')
    .addOption(
      new Option('--endpoints <list>', 'block API addresses host:port of the regions, comma separated')
        .env('RDL_ENDPOINTS')
        .default(DEFAULT_ENDPOINTS),
    )
    .addOption(
      new Option('--timeout <ms>', 'deadline of each call, retries included')
        .argParser(integerArgument(1, 24 * 3600_000))
        .default(15_000),
    );

  program
    .command('status')
    .description('members, leader, term, commit and applied index, per-follower lag')
    .option('--json', 'print JSON (its `leader` field holds the region and client address of the leader)')
    .action(async (options: { json?: boolean }, command: Command) => {
      const status = await withClient(command, (client) => client.status({ signal: interrupt.signal }));
      if (options.json === true) printJson({ ...status, leader: status.leader ?? null });
      else printStatus(status);
    });

  const volume = program
    .command('volume')
    .description('create, list, inspect, grow, delete, import and export volumes');
  volume
    .command('create <name>')
    .description('create a volume (idempotent when it exists with the same size)')
    .requiredOption('--size <size>', 'size, e.g. 64MiB, 10GiB (multiple of 4 KiB)', sizeArgument)
    .option('--json', 'print JSON')
    .action(async (name: string, options: { size: number; json?: boolean }, command: Command) => {
      const created = await withClient(command, (client) => client.createVolume(name, options.size));
      if (options.json === true) printJson(created);
      else print(`${created.isCreated ? 'created' : 'exists (same size)'}: ${describeVolume(created.volume)}`);
    });
  volume
    .command('list')
    .description('list volumes')
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean }, command: Command) => {
      const volumes = await withClient(command, (client) => client.listVolumes());
      if (options.json === true) {
        printJson(volumes);
        return;
      }
      if (volumes.length === 0) {
        print('no volumes');
        return;
      }
      const rows = [['NAME', 'SIZE', 'BYTES', 'CREATED']];
      for (const v of volumes) {
        rows.push([v.name, formatSize(v.sizeBytes), String(v.sizeBytes), new Date(v.createdAtMs).toISOString()]);
      }
      print(table(rows));
    });
  volume
    .command('stat <name>')
    .description('show one volume')
    .option('--json', 'print JSON')
    .action(async (name: string, options: { json?: boolean }, command: Command) => {
      const info = await withClient(command, (client) => client.statVolume(name));
      if (options.json === true) printJson(info);
      else print(describeVolume(info));
    });
  volume
    .command('delete <name>')
    .description('delete a volume and its data')
    .action(async (name: string, _options: unknown, command: Command) => {
      await withClient(command, (client) => client.deleteVolume(name));
      print(`deleted ${name}`);
    });
  volume
    .command('grow <name>')
    .description('grow a volume')
    .requiredOption('--size <size>', 'new size, e.g. 128MiB (at least the current size)', sizeArgument)
    .action(async (name: string, options: { size: number }, command: Command) => {
      const info = await withClient(command, (client) => client.growVolume(name, options.size));
      print(`grown: ${describeVolume(info)}`);
    });
  transferOptions(
    volume
      .command('import <name> <file>')
      .description('copy a file into a volume (created, sized to the file rounded up to 4 KiB, if missing)'),
  ).action(async (name: string, path: string, options: TransferOptions, command: Command) => {
    await withClient(command, (client) => importVolume(client, name, path, options));
  });
  transferOptions(
    volume
      .command('export <name> <file>')
      .description('copy a volume into a file (zero ranges become holes)')
      .option('--length <size>', 'export only the first bytes (e.g. the size of the imported file)', sizeArgument),
  ).action(async (name: string, path: string, options: TransferOptions & { length?: number }, command: Command) => {
    await withClient(command, (client) => exportVolume(client, name, path, options));
  });

  const leader = program.command('leader').description('leadership');
  leader
    .command('transfer <region>')
    .description('hand leadership to a region and wait until it leads')
    .action(async (region: string, _options: unknown, command: Command) => {
      const moved = await withClient(command, (client) => client.transferLeader(region));
      print(`leader is now ${moved.leader.region} (${moved.leader.clientAddress})`);
    });
  return program;
}

/** Parses `argv` and runs the command; returns the exit status instead of exiting. */
async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander has printed the message (or the help) already; --help and --version exit 0.
      if (error.exitCode === 0) return 0;
      return 2;
    }
    if (interrupt.signal.aborted) {
      process.stderr.write('rdlctl: interrupted\n');
      return 130;
    }
    if (hasCode(error, ClientCode.CLIENT_USAGE) || hasCode(error, ClientCode.CLIENT_CONFIG_INVALID)) {
      process.stderr.write(`rdlctl: ${(error as RdlError).code}: ${(error as RdlError).message}\n`);
      return 2;
    }
    if (error instanceof RdlError) {
      const hint =
        error.leaderAddress === undefined ? '' : ` (leader: ${error.leader ?? '?'} at ${error.leaderAddress})`;
      process.stderr.write(`rdlctl: ${error.code}: ${error.message}${hint}\n`);
      return 1;
    }
    process.stderr.write(
      `rdlctl: unexpected error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    return 1;
  }
}

// Every chunk of an import or export listens to this one signal.
setMaxListeners(0, interrupt.signal);
// `rdlctl status | head -1` closes stdout early: that is not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw error;
});
const onSignal = (): void => interrupt.abort(new Error('interrupted'));
process.once('SIGINT', onSignal);
process.once('SIGTERM', onSignal);
process.exitCode = await main(process.argv.slice(2));
process.removeListener('SIGINT', onSignal);
process.removeListener('SIGTERM', onSignal);
