import { hostname } from 'node:os';
import { parseSize } from '@rdl/client';
import { AgentError, AgentErrorCode } from '../errors.js';
import { socketPathOfEndpoint } from './server.js';
import type { CsiMode } from './server.js';
import { volumeBlockSizeBytes, volumeSizeBytesMax } from './validation.js';

/** The flags of `rdl-agent csi` as commander hands them over (strings, before validation). */
export interface CsiFlags {
  endpoint: string;
  nodeId?: string;
  rdlEndpoints?: string;
  mode: string;
  stateDir: string;
  nbdHost: string;
  nbdPort: string;
  nbdDevicesMax: string;
  maxVolumesPerNode: string;
  defaultVolumeSize: string;
  maxVolumeSize: string;
  capacity: string;
  requestTimeoutMs: string;
  commandTimeoutMs: string;
  logLevel: string;
}

/** The validated, frozen configuration of the CSI driver. */
export interface CsiConfig {
  readonly endpoint: string;
  readonly nodeId: string;
  readonly rdlEndpoints: readonly string[];
  readonly mode: CsiMode;
  readonly stateDir: string;
  readonly nbdHost: string;
  readonly nbdPort: number;
  readonly nbdDevicesMax: number;
  readonly maxVolumesPerNode: number;
  readonly defaultVolumeSizeBytes: number;
  readonly maxVolumeSizeBytes: number;
  readonly capacityBytes: number;
  readonly requestTimeoutMs: number;
  readonly commandTimeoutMs: number;
  readonly logLevel: string;
}

/** Defaults of the flags (also shown by `rdl-agent csi --help`). */
export const csiFlagDefaults = Object.freeze({
  endpoint: 'unix:///csi/csi.sock',
  mode: 'all',
  stateDir: '/var/lib/rdl-agent/csi',
  nbdHost: '127.0.0.1',
  nbdPort: '10809',
  nbdDevicesMax: '16',
  maxVolumesPerNode: '16',
  defaultVolumeSize: '1GiB',
  maxVolumeSize: '16TiB',
  capacity: '100TiB',
  requestTimeoutMs: '10000',
  commandTimeoutMs: '120000',
  logLevel: 'info',
});

const logLevels = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

/**
 * Validates the flags once, reporting every problem in one AGENT_CONFIG_INVALID error, and
 * returns the frozen configuration. `--node-id` defaults to the NODE_ID environment variable (the
 * DaemonSet sets it from spec.nodeName), then the host name.
 */
export function parseCsiFlags(flags: CsiFlags, env: NodeJS.ProcessEnv = process.env): CsiConfig {
  const problems: string[] = [];
  const integer = (name: string, text: string, min: number, max: number): number => {
    const value = /^[0-9]+$/.test(text) ? Number(text) : Number.NaN;
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      problems.push(`--${name} must be an integer in [${min}, ${max}], got ${JSON.stringify(text)}`);
      return min;
    }
    return value;
  };
  const size = (name: string, text: string): number => {
    let bytes: number;
    try {
      bytes = parseSize(text);
    } catch (err) {
      problems.push(`--${name}: ${(err as Error).message}`);
      return volumeBlockSizeBytes;
    }
    if (bytes <= 0 || bytes % volumeBlockSizeBytes !== 0 || bytes > volumeSizeBytesMax) {
      problems.push(`--${name} must be a positive multiple of ${volumeBlockSizeBytes} bytes up to 1PiB, got ${text}`);
    }
    return bytes;
  };

  const mode = flags.mode;
  if (mode !== 'controller' && mode !== 'node' && mode !== 'all') {
    problems.push(`--mode must be controller, node or all, got ${JSON.stringify(mode)}`);
  }
  try {
    socketPathOfEndpoint(flags.endpoint);
  } catch (err) {
    problems.push(`--endpoint: ${(err as Error).message}`);
  }
  const nodeId = flags.nodeId ?? env.NODE_ID ?? hostname();
  if (nodeId === '' || Buffer.byteLength(nodeId) > 128) problems.push('--node-id must be 1 to 128 bytes');
  const rdlEndpoints = (flags.rdlEndpoints ?? env.RDL_ENDPOINTS ?? '')
    .split(',')
    .map((endpoint) => endpoint.trim())
    .filter((endpoint) => endpoint !== '');
  if (rdlEndpoints.length === 0)
    problems.push('--rdl-endpoints is required (host:port of the rdld block API, comma-separated)');
  for (const endpoint of rdlEndpoints) {
    if (!/^[^\s:]+:[0-9]{1,5}$/.test(endpoint) && !/^\[[0-9a-fA-F:]+\]:[0-9]{1,5}$/.test(endpoint)) {
      problems.push(`--rdl-endpoints: ${JSON.stringify(endpoint)} is not host:port`);
    }
  }
  if (!flags.stateDir.startsWith('/')) problems.push('--state-dir must be an absolute path');
  if (flags.nbdHost === '') problems.push('--nbd-host is required');
  const nbdPort = integer('nbd-port', flags.nbdPort, 1, 65535);
  const nbdDevicesMax = integer('nbd-devices-max', flags.nbdDevicesMax, 1, 1024);
  const maxVolumesPerNode = integer('max-volumes-per-node', flags.maxVolumesPerNode, 1, 1024);
  const defaultVolumeSizeBytes = size('default-volume-size', flags.defaultVolumeSize);
  const maxVolumeSizeBytes = size('max-volume-size', flags.maxVolumeSize);
  const capacityBytes = size('capacity', flags.capacity);
  if (defaultVolumeSizeBytes > maxVolumeSizeBytes) problems.push('--default-volume-size exceeds --max-volume-size');
  const requestTimeoutMs = integer('request-timeout-ms', flags.requestTimeoutMs, 100, 600_000);
  const commandTimeoutMs = integer('command-timeout-ms', flags.commandTimeoutMs, 100, 3_600_000);
  if (!logLevels.has(flags.logLevel)) problems.push(`--log-level must be one of ${[...logLevels].join(', ')}`);

  if (problems.length > 0) {
    throw new AgentError(AgentErrorCode.ConfigInvalid, `invalid csi flags:\n  - ${problems.join('\n  - ')}`);
  }
  return Object.freeze({
    endpoint: flags.endpoint,
    nodeId,
    rdlEndpoints: Object.freeze(rdlEndpoints),
    mode: mode as CsiMode,
    stateDir: flags.stateDir,
    nbdHost: flags.nbdHost,
    nbdPort,
    nbdDevicesMax,
    maxVolumesPerNode,
    defaultVolumeSizeBytes,
    maxVolumeSizeBytes,
    capacityBytes,
    requestTimeoutMs,
    commandTimeoutMs,
    logLevel: flags.logLevel,
  });
}
