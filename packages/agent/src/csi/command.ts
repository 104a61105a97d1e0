import type { Command } from 'commander';
import { pino } from 'pino';
import type { Logger } from 'pino';
import { RdlClient } from '@rdl/client';
import { codeOf } from '../errors.js';
import { ExecCommandRunner } from './command-runner.js';
import { csiFlagDefaults, parseCsiFlags } from './config.js';
import type { CsiConfig, CsiFlags } from './config.js';
import { NodeStateStore } from './node-state.js';
import { RdlVolumeAdmin } from './rdl-volume-admin.js';
import { startCsiServer } from './server.js';
import type { CsiServer } from './server.js';

/** A running `rdl-agent csi`: the server and the SDK client it owns. */
export interface CsiDriver {
  readonly server: CsiServer;
  /** Stops serving and closes the rdl client. */
  close(): Promise<void>;
}

/**
 * Starts the CSI driver for a validated configuration: an `RdlClient` for the rdld endpoints,
 * host commands through `ExecCommandRunner`, node state in `stateDir`, the socket at `endpoint`.
 */
export async function runCsiDriver(config: CsiConfig, logger: Logger): Promise<CsiDriver> {
  const client = new RdlClient({ endpoints: config.rdlEndpoints, requestTimeoutMs: config.requestTimeoutMs });
  const volumeAdmin = new RdlVolumeAdmin(client, { requestTimeoutMs: config.requestTimeoutMs });
  try {
    const server = await startCsiServer({
      endpoint: config.endpoint,
      mode: config.mode,
      logger,
      controller: {
        volumeAdmin,
        defaultVolumeSizeBytes: config.defaultVolumeSizeBytes,
        maxVolumeSizeBytes: config.maxVolumeSizeBytes,
        capacityBytes: config.capacityBytes,
        listEntriesMax: 1000,
      },
      node: {
        nodeId: config.nodeId,
        volumeAdmin,
        runner: new ExecCommandRunner({ timeoutMs: config.commandTimeoutMs }),
        stateStore: new NodeStateStore(config.stateDir),
        nbdHost: config.nbdHost,
        nbdPort: config.nbdPort,
        sysBlockDir: '/sys/block',
        devDir: '/dev',
        nbdDevicesMax: config.nbdDevicesMax,
        maxVolumesPerNode: config.maxVolumesPerNode,
      },
    });
    return {
      server,
      async close() {
        await server.close();
        await client.close();
      },
    };
  } catch (err) {
    await client.close();
    throw err;
  }
}

/**
 * Adds `rdl-agent csi` to the CLI: serves the CSI Identity service plus the Controller and/or
 * Node service (`--mode`) on a unix socket until SIGTERM or SIGINT. Bad flags print every problem
 * with the AGENT_CONFIG_INVALID code and exit with status 2; a failure to start exits with 1.
 */
export function registerCsiCommand(program: Command): void {
  program
    .command('csi')
    .description('serve the CSI driver (Identity, Controller, Node) for Kubernetes on a unix socket')
    .option('--endpoint <url>', 'CSI socket, unix:///path', csiFlagDefaults.endpoint)
    .option('--node-id <name>', 'this node (NodeGetInfo); default $NODE_ID, then the host name')
    .option('--rdl-endpoints <list>', 'rdld block API addresses host:port,... (default $RDL_ENDPOINTS)')
    .option('--mode <mode>', 'controller, node or all', csiFlagDefaults.mode)
    .option('--state-dir <dir>', 'node state (staged and published volumes)', csiFlagDefaults.stateDir)
    .option('--nbd-host <host>', "the agent's NBD server, as nbd-client reaches it", csiFlagDefaults.nbdHost)
    .option('--nbd-port <port>', "the agent's NBD server port", csiFlagDefaults.nbdPort)
    .option('--nbd-devices-max <n>', '/dev/nbdX devices to use (nbd module nbds_max)', csiFlagDefaults.nbdDevicesMax)
    .option('--max-volumes-per-node <n>', 'NodeGetInfo.max_volumes_per_node', csiFlagDefaults.maxVolumesPerNode)
    .option('--default-volume-size <size>', 'size when a claim sets none', csiFlagDefaults.defaultVolumeSize)
    .option('--max-volume-size <size>', 'largest volume CreateVolume makes', csiFlagDefaults.maxVolumeSize)
    .option('--capacity <size>', 'pool quota GetCapacity reports from', csiFlagDefaults.capacity)
    .option('--request-timeout-ms <ms>', 'deadline of one rdl call, retries included', csiFlagDefaults.requestTimeoutMs)
    .option(
      '--command-timeout-ms <ms>',
      'kill a host command (mkfs, mount...) after this long',
      csiFlagDefaults.commandTimeoutMs,
    )
    .option('--log-level <level>', 'pino log level', csiFlagDefaults.logLevel)
    .action(async (flags: CsiFlags) => {
      let config: CsiConfig;
      try {
        config = parseCsiFlags(flags);
      } catch (err) {
        process.stderr.write(`rdl-agent csi: [${codeOf(err) ?? 'ERROR'}] ${(err as Error).message}\n`);
        process.exitCode = 2;
        return;
      }
      const logger = pino({ level: config.logLevel, base: { module: 'rdl-agent', nodeId: config.nodeId } });
      logger.info({ config }, 'effective csi configuration');
      let driver: CsiDriver;
      try {
        driver = await runCsiDriver(config, logger);
      } catch (err) {
        logger.error({ code: codeOf(err), err: (err as Error).message }, 'csi driver failed to start');
        process.exitCode = 1;
        return;
      }
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          logger.info({ signal }, 'stopping csi driver');
          resolve();
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
      await driver.close();
    });
}
