import { execFile } from 'node:child_process';
import { CsiErrorCode, csiError } from './errors.js';

/** What a finished command left behind. */
export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Per-call options. */
export interface CommandOptions {
  /** Kill the command (SIGKILL) after this long; defaults to the runner's timeout. */
  timeoutMs?: number;
}

/**
 * Runs host commands for the node service (nbd-client, blkid, mkfs, mount, ...). Commands are
 * argv arrays, never shell strings, so no volume id, path or mount flag is ever interpreted by a
 * shell. `run` resolves with the exit code, whatever it is (callers decide which codes mean
 * what); it rejects with COMMAND_TIMEOUT when the command was killed for running too long and
 * with COMMAND_FAILED when it could not be started at all.
 */
export interface CommandRunner {
  run(argv: readonly string[], options?: CommandOptions): Promise<CommandResult>;
}

/** Output kept per stream; a command printing more is a bug or an attack, and is cut off. */
const outputBytesMax = 1024 * 1024;

/** Runs commands with `execFile` (no shell), a timeout and bounded output. */
export class ExecCommandRunner implements CommandRunner {
  readonly #timeoutMs: number;

  constructor(options: { timeoutMs: number }) {
    this.#timeoutMs = options.timeoutMs;
  }

  run(argv: readonly string[], options: CommandOptions = {}): Promise<CommandResult> {
    if (argv.length === 0) throw new Error('assertion failed: empty argv');
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    return new Promise((resolve, reject) => {
      execFile(
        argv[0],
        argv.slice(1),
        { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: outputBytesMax, encoding: 'utf8', shell: false },
        (error, stdout, stderr) => {
          if (error === null) {
            resolve({ exitCode: 0, stdout, stderr });
            return;
          }
          const failure = error as NodeJS.ErrnoException & { killed?: boolean; code?: unknown; signal?: unknown };
          if (failure.killed === true && failure.signal === 'SIGKILL') {
            reject(
              csiError(CsiErrorCode.CommandTimeout, `${argv.join(' ')} did not finish within ${timeoutMs} ms`, error),
            );
          } else if (typeof failure.code === 'number') {
            resolve({ exitCode: failure.code, stdout, stderr });
          } else {
            reject(csiError(CsiErrorCode.CommandFailed, `${argv[0]} could not run: ${error.message}`, error));
          }
        },
      );
    });
  }
}

/** Runs `argv` and fails with COMMAND_FAILED (stderr in the message) unless it exits 0. */
export async function runChecked(runner: CommandRunner, argv: readonly string[]): Promise<CommandResult> {
  const result = await runner.run(argv);
  if (result.exitCode !== 0) {
    const stderr = result.stderr.trim().slice(0, 2000);
    throw csiError(
      CsiErrorCode.CommandFailed,
      `${argv.join(' ')} exited with ${result.exitCode}${stderr === '' ? '' : `: ${stderr}`}`,
    );
  }
  return result;
}
