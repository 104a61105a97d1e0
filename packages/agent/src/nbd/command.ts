/**
 * `rdl-agent nbd`: serve rdl volumes over NBD. Flags are validated once into a frozen
 * `NbdAgentConfig` (every problem listed in one `AGENT_CONFIG_INVALID`), the effective config is
 * logged, and SIGINT/SIGTERM drain in-flight requests before exiting.
 */
import type { Command } from 'commander';
import { pino, type Logger } from 'pino';
import { RdlClient, parseSize } from '@rdl/client';
import { AgentError, AgentErrorCode, codeOf } from '../errors.js';
import { MemoryVolumeProvider } from './memory-volume.js';
import { RdlVolumeProvider } from './rdl-volume.js';
import { NbdServer, type NbdListenAddress } from './server.js';
import type { VolumeProvider } from './volume.js';

/** Raw flags as commander hands them over (strings, repeatable lists, booleans). */
export interface NbdFlags {
  endpoints?: string;
  listen?: string;
  socket?: string;
  memoryVolume?: string[];
  ensureVolume?: string[];
  requestTimeoutMs?: string;
  readOnly?: boolean;
  inflightRequestsMax?: string;
  inflightBytesMax?: string;
  requestBytesMax?: string;
  handshakeTimeoutMs?: string;
  idleTimeoutMs?: string;
  connectionsMax?: string;
  logLevel?: string;
}

/** Validated, frozen configuration of `rdl-agent nbd`. */
export interface NbdAgentConfig {
  /** rdld block API addresses; empty when serving memory volumes. */
  readonly endpoints: readonly string[];
  /** In-memory volumes (not durable: demos and tests). */
  readonly memoryVolumes: readonly { readonly name: string; readonly sizeBytes: number }[];
  /** Cluster volumes to create at start-up if missing (idempotent; same size required if present). */
  readonly ensureVolumes: readonly { readonly name: string; readonly sizeBytes: number }[];
  readonly listen: readonly NbdListenAddress[];
  readonly requestTimeoutMs: number;
  readonly isReadOnly: boolean;
  readonly inflightRequestsMax: number;
  readonly inflightBytesMax: number;
  readonly requestBytesMax: number;
  readonly handshakeTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly connectionsMax: number;
  readonly logLevel: string;
}

/** Defaults of the flags (strings, as on the command line). */
export const nbdFlagDefaults = Object.freeze({
  listen: '127.0.0.1:10809',
  requestTimeoutMs: '30000',
  inflightRequestsMax: '128',
  inflightBytesMax: '64MiB',
  requestBytesMax: '32MiB',
  handshakeTimeoutMs: '10000',
  idleTimeoutMs: '0',
  connectionsMax: '1024',
  logLevel: 'info',
});

const LOG_LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

/** Parses `host:port` (IPv6 as `[::1]:port`); returns undefined when malformed. */
function parseHostPort(text: string): { host: string; port: number } | undefined {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):([0-9]{1,5})$/.exec(text.trim());
  if (match === null) return undefined;
  const port = Number(match[3]);
  if (port > 65535) return undefined;
  return { host: match[1] ?? match[2], port };
}

/** Validates the flags; throws one `AGENT_CONFIG_INVALID` listing every problem. */
export function parseNbdFlags(flags: NbdFlags, env: NodeJS.ProcessEnv = process.env): NbdAgentConfig {
  const problems: string[] = [];
  const integer = (name: string, text: string | undefined, fallback: string, min: number): number => {
    const value = Number(text ?? fallback);
    if (!Number.isSafeInteger(value) || value < min) {
      problems.push(`--${name} must be an integer ≥ ${min} (got ${JSON.stringify(text)})`);
      return Number(fallback);
    }
    return value;
  };
  const size = (name: string, text: string | undefined, fallback: string): number => {
    try {
      const value = parseSize(text ?? fallback);
      if (value < 1) throw new Error('zero');
      return value;
    } catch {
      problems.push(`--${name} must be a positive size like 64MiB (got ${JSON.stringify(text)})`);
      return parseSize(fallback);
    }
  };

  const endpointsText = flags.endpoints ?? env.RDL_ENDPOINTS ?? '';
  const endpoints = endpointsText
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e.length > 0);
  for (const endpoint of endpoints) {
    if (parseHostPort(endpoint) === undefined)
      problems.push(`--endpoints: ${JSON.stringify(endpoint)} is not host:port`);
  }
  const volumeSpecs = (flag: string, specs: readonly string[]): { name: string; sizeBytes: number }[] => {
    const volumes: { name: string; sizeBytes: number }[] = [];
    for (const spec of specs) {
      const at = spec.lastIndexOf(':');
      const name = at > 0 ? spec.slice(0, at) : '';
      let sizeBytes: number;
      try {
        sizeBytes = at > 0 ? parseSize(spec.slice(at + 1)) : 0;
      } catch {
        sizeBytes = 0;
      }
      if (name.length === 0 || sizeBytes < 1) {
        problems.push(`--${flag} must be NAME:SIZE like demo:1GiB (got ${JSON.stringify(spec)})`);
      } else if (volumes.some((v) => v.name === name)) {
        problems.push(`--${flag} ${JSON.stringify(name)} is given twice`);
      } else {
        volumes.push({ name, sizeBytes });
      }
    }
    return volumes;
  };
  const memoryVolumes = volumeSpecs('memory-volume', flags.memoryVolume ?? []);
  const ensureVolumes = volumeSpecs('ensure-volume', flags.ensureVolume ?? []);
  if (ensureVolumes.length > 0 && endpoints.length === 0) {
    problems.push('--ensure-volume needs --endpoints (memory volumes are created by --memory-volume)');
  }
  if (endpoints.length === 0 && memoryVolumes.length === 0) {
    problems.push(
      'give --endpoints host:port,... (or $RDL_ENDPOINTS) to serve rdl volumes, or --memory-volume NAME:SIZE',
    );
  }
  if (endpoints.length > 0 && memoryVolumes.length > 0) {
    problems.push('--endpoints and --memory-volume are exclusive');
  }
  const listen: NbdListenAddress[] = [];
  if (flags.listen !== undefined || flags.socket === undefined) {
    const address = parseHostPort(flags.listen ?? nbdFlagDefaults.listen);
    if (address === undefined) problems.push(`--listen must be host:port (got ${JSON.stringify(flags.listen)})`);
    else listen.push(address);
  }
  if (flags.socket !== undefined) {
    if (flags.socket.length === 0 || flags.socket.length > 100)
      problems.push('--socket must be a path of 1-100 characters');
    else listen.push({ path: flags.socket });
  }
  const logLevel = flags.logLevel ?? nbdFlagDefaults.logLevel;
  if (!LOG_LEVELS.has(logLevel)) problems.push(`--log-level must be one of ${[...LOG_LEVELS].join(', ')}`);
  const config: NbdAgentConfig = {
    endpoints,
    memoryVolumes,
    ensureVolumes,
    listen,
    requestTimeoutMs: integer('request-timeout-ms', flags.requestTimeoutMs, nbdFlagDefaults.requestTimeoutMs, 1),
    isReadOnly: flags.readOnly ?? false,
    inflightRequestsMax: integer(
      'inflight-requests-max',
      flags.inflightRequestsMax,
      nbdFlagDefaults.inflightRequestsMax,
      1,
    ),
    inflightBytesMax: size('inflight-bytes-max', flags.inflightBytesMax, nbdFlagDefaults.inflightBytesMax),
    requestBytesMax: size('request-bytes-max', flags.requestBytesMax, nbdFlagDefaults.requestBytesMax),
    handshakeTimeoutMs: integer(
      'handshake-timeout-ms',
      flags.handshakeTimeoutMs,
      nbdFlagDefaults.handshakeTimeoutMs,
      1,
    ),
    idleTimeoutMs: integer('idle-timeout-ms', flags.idleTimeoutMs, nbdFlagDefaults.idleTimeoutMs, 0),
    connectionsMax: integer('connections-max', flags.connectionsMax, nbdFlagDefaults.connectionsMax, 1),
    logLevel,
  };
  if (config.inflightBytesMax < config.requestBytesMax)
    problems.push('--inflight-bytes-max must be ≥ --request-bytes-max');
  if (config.requestBytesMax > 0xffffffff) problems.push('--request-bytes-max must be below 4 GiB');
  if (problems.length > 0) {
    throw new AgentError(AgentErrorCode.ConfigInvalid, `invalid rdl-agent nbd flags:\n  - ${problems.join('\n  - ')}`);
  }
  return Object.freeze({
    ...config,
    listen: Object.freeze(listen),
    memoryVolumes: Object.freeze(memoryVolumes),
    ensureVolumes: Object.freeze(ensureVolumes),
  });
}

/** A running `rdl-agent nbd`. */
export interface NbdAgent {
  readonly server: NbdServer;
  /** Bound addresses (real ports when 0 was asked). */
  readonly addresses: readonly NbdListenAddress[];
  /** Drains in-flight requests, stops serving, closes the rdl client. */
  close(): Promise<void>;
}

/**
 * Creates the `--ensure-volume` volumes that do not exist yet. `createVolume` is idempotent for an
 * equal size, so restarts are harmless; an existing volume of another size is a configuration
 * error. The SDK waits (within the request timeout) for a leader, so the agent may start before
 * the cluster has elected one.
 */
async function ensureVolumes(client: RdlClient, config: NbdAgentConfig, logger: Logger): Promise<void> {
  for (const volume of config.ensureVolumes) {
    try {
      const { isCreated } = await client.createVolume(volume.name, volume.sizeBytes, {
        timeoutMs: config.requestTimeoutMs,
      });
      logger.info({ volume: volume.name, sizeBytes: volume.sizeBytes, isCreated }, 'volume ensured');
    } catch (err) {
      const code = codeOf(err);
      const message = `--ensure-volume ${volume.name}: ${code ?? 'ERROR'} ${(err as Error).message}`;
      throw new AgentError(
        code === 'VOLUME_EXISTS' || code === 'INVALID_ARGUMENT'
          ? AgentErrorCode.ConfigInvalid
          : AgentErrorCode.VolumeIoFailed,
        message,
        { cause: err },
      );
    }
  }
}

/** Starts the NBD server for a validated configuration. */
export async function runNbdAgent(config: NbdAgentConfig, logger: Logger): Promise<NbdAgent> {
  let provider: VolumeProvider;
  let client: RdlClient | undefined;
  if (config.endpoints.length > 0) {
    client = new RdlClient({ endpoints: config.endpoints, requestTimeoutMs: config.requestTimeoutMs });
    provider = new RdlVolumeProvider(client, { requestTimeoutMs: config.requestTimeoutMs });
    try {
      await ensureVolumes(client, config, logger);
    } catch (err) {
      await client.close();
      throw err;
    }
  } else {
    const memory = new MemoryVolumeProvider();
    for (const volume of config.memoryVolumes) memory.createVolume(volume.name, volume.sizeBytes);
    provider = memory;
  }
  const server = new NbdServer({
    provider,
    logger,
    isReadOnly: config.isReadOnly,
    inflightRequestsMax: config.inflightRequestsMax,
    inflightBytesMax: config.inflightBytesMax,
    requestBytesMax: config.requestBytesMax,
    handshakeTimeoutMs: config.handshakeTimeoutMs,
    idleTimeoutMs: config.idleTimeoutMs,
    connectionsMax: config.connectionsMax,
  });
  const addresses: NbdListenAddress[] = [];
  try {
    for (const address of config.listen) addresses.push(await server.listen(address));
  } catch (err) {
    await server.close();
    await client?.close();
    throw err;
  }
  return {
    server,
    addresses,
    async close() {
      await server.close();
      await client?.close();
    },
  };
}

/** Adds `rdl-agent nbd` to the program. */
export function registerNbdCommand(program: Command): void {
  program
    .command('nbd')
    .description('serve rdl volumes over NBD (export name = volume name)')
    .option('--endpoints <list>', 'rdld block API addresses host:port,... (default $RDL_ENDPOINTS)')
    .option('--listen <host:port>', `TCP address (default ${nbdFlagDefaults.listen} unless only --socket is given)`)
    .option('--socket <path>', 'also (or only) listen on this unix socket')
    .option(
      '--memory-volume <name:size>',
      'serve an in-memory volume instead of the cluster (NOT durable; demos and tests), repeatable',
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option(
      '--ensure-volume <name:size>',
      'create this cluster volume at start-up unless it exists (same size), repeatable',
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option(
      '--request-timeout-ms <ms>',
      'deadline of one NBD request; the SDK retries leader changes and failed regions within it, then EIO',
      nbdFlagDefaults.requestTimeoutMs,
    )
    .option('--read-only', 'export every volume read-only (writes get EPERM)')
    .option(
      '--inflight-requests-max <n>',
      'requests in flight per connection before reading stops',
      nbdFlagDefaults.inflightRequestsMax,
    )
    .option('--inflight-bytes-max <size>', 'payload bytes in flight per connection', nbdFlagDefaults.inflightBytesMax)
    .option(
      '--request-bytes-max <size>',
      'largest READ/WRITE (advertised maximum block size)',
      nbdFlagDefaults.requestBytesMax,
    )
    .option(
      '--handshake-timeout-ms <ms>',
      'time a client has to finish the handshake',
      nbdFlagDefaults.handshakeTimeoutMs,
    )
    .option('--idle-timeout-ms <ms>', 'disconnect clients idle this long (0 = never)', nbdFlagDefaults.idleTimeoutMs)
    .option('--connections-max <n>', 'open connections before new ones are refused', nbdFlagDefaults.connectionsMax)
    .option('--log-level <level>', 'pino log level', nbdFlagDefaults.logLevel)
    .action(async (flags: NbdFlags) => {
      let config: NbdAgentConfig;
      try {
        config = parseNbdFlags(flags);
      } catch (err) {
        process.stderr.write(`rdl-agent nbd: [${codeOf(err) ?? 'ERROR'}] ${(err as Error).message}\n`);
        process.exitCode = 2;
        return;
      }
      const logger = pino({ level: config.logLevel, base: { module: 'rdl-agent' } });
      logger.info({ config }, 'effective nbd configuration');
      let agent: NbdAgent;
      try {
        agent = await runNbdAgent(config, logger);
      } catch (err) {
        logger.error({ code: codeOf(err), err: (err as Error).message }, 'nbd server failed to start');
        process.stderr.write(`rdl-agent nbd: [${codeOf(err) ?? 'ERROR'}] ${(err as Error).message}\n`);
        process.exitCode = 1;
        return;
      }
      await new Promise<void>((resolve) => {
        const stop = (signal: string): void => {
          logger.info({ signal }, 'stopping nbd server (draining in-flight requests)');
          resolve();
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
      await agent.close();
      logger.info({ counters: agent.server.counters }, 'nbd server stopped');
    });
}
