/**
 * `rdld` entry point (bin/rdld.js imports this): parse flags, load and validate the config, start
 * the daemon, report readiness to systemd, and stop gracefully on SIGTERM / SIGINT.
 *
 * Exit status: 0 after a clean stop; 2 for a configuration error (the unit's
 * RestartPreventExitStatus=2 keeps systemd from restarting into the same mistake); 1 for any other
 * start-up failure (port in use, locked data directory...) or a fatal storage failure.
 */
import { spawn } from 'node:child_process';
import { Daemon, startupCode } from './daemon.js';
import { loadConfig, parseArgs } from './config.js';
import type { DaemonConfig, FlagValues } from './config.js';
import { createRootLogger } from './logging.js';
import { RDLD_ENVIRONMENT, isGlibcRuntime, missingEnvironment, missingNodeFlags } from './node-flags.js';
import type { Logger } from './logging.js';
import { levelDbBinary } from './storage/database.js';

/** Exit status for configuration errors. */
export const EXIT_CONFIG = 2;
/** Exit status for other start-up failures and fatal errors. */
export const EXIT_FAILURE = 1;

/**
 * Tells systemd (Type=notify) about a state change when NOTIFY_SOCKET is set, through the
 * `systemd-notify` helper (a child process: the unit sets NotifyAccess=all). Never throws.
 */
export function notifySystemd(logger: Logger, ...assignments: string[]): void {
  if (!process.env.NOTIFY_SOCKET) return;
  try {
    const child = spawn('systemd-notify', [`--pid=${process.pid}`, ...assignments], { stdio: 'ignore' });
    child.on('error', (err) => logger.warn({ err }, 'systemd-notify failed'));
  } catch (err) {
    logger.warn({ err }, 'systemd-notify failed');
  }
}

async function main(argv: readonly string[]): Promise<void> {
  let flags: FlagValues;
  let config: DaemonConfig;
  try {
    flags = parseArgs(argv);
    config = loadConfig({ flags });
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'commander.helpDisplayed') {
      process.exitCode = 0;
      return;
    }
    process.stderr.write(`rdld: ${code ?? 'DAEMON_CONFIG_INVALID'}: ${(err as Error).message}\n`);
    process.exitCode = EXIT_CONFIG;
    return;
  }
  const logger = createRootLogger({ region: config.region, level: config.log.level as 'info' });
  const environment = Object.fromEntries(
    Object.keys(RDLD_ENVIRONMENT).map((name) => [name, process.env[name] ?? null]),
  );
  logger.info(
    { config, nodeFlags: process.execArgv, environment, leveldb: levelDbBinary() },
    'effective configuration',
  );
  const missing = missingNodeFlags(process.execArgv);
  if (missing.length > 0) {
    // Still correct without them, only slower: say so once rather than refuse to start.
    logger.warn(
      { missing },
      `node runs without ${missing.join(' ')}: expect about four times as many full garbage collections under load; run rdld as "rdld" (its shebang passes them), through the systemd unit, or as "node ${missing.join(' ')} bin/rdld.js" (docs/operations.md)`,
    );
  }
  const missingEnv = missingEnvironment(process.env, isGlibcRuntime());
  if (missingEnv.length > 0) {
    logger.warn(
      { missingEnvironment: missingEnv },
      `rdld runs without ${missingEnv.join(' ')}: glibc's malloc hands large freed buffers back to the kernel and takes fresh zeroed pages again, about 10% more CPU per write under load; run rdld as "rdld" (its shebang sets it) or through the systemd unit (docs/operations.md)`,
    );
  }

  let daemon: Daemon;
  try {
    daemon = await Daemon.start(config, {
      logger,
      onFatal: (error) => {
        process.stderr.write(`rdld: fatal: ${error.message}\n`);
        // Exit without a graceful stop: the storage can no longer be trusted to write.
        process.exit(EXIT_FAILURE);
      },
    });
  } catch (err) {
    const code = startupCode(err);
    logger.fatal({ err, code }, 'start-up failed');
    process.stderr.write(`rdld: ${code}: ${(err as Error).message}\n`);
    process.exitCode = EXIT_FAILURE;
    return;
  }

  notifySystemd(logger, '--ready', `--status=serving clients on port ${daemon.ports.client}`);

  let signalCount = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signalCount += 1;
    if (signalCount > 1) {
      logger.warn({ signal }, 'second signal: exiting without waiting');
      process.exit(EXIT_FAILURE);
    }
    logger.info({ signal }, 'stopping on signal');
    notifySystemd(logger, 'STOPPING=1');
    daemon.stop().then(
      () => {
        process.exitCode = 0;
        // Let pending log writes and sockets finish; anything still holding the loop is a bug, so
        // do not wait for it forever.
        setTimeout(() => process.exit(0), 2000).unref();
      },
      (err: unknown) => {
        logger.error({ err }, 'stop failed');
        process.exit(EXIT_FAILURE);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`rdld: unexpected failure: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(EXIT_FAILURE);
});
