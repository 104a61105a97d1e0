import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';

import { BenchError } from './errors.js';

/** A child process the harness started, with its log file. */
export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  readonly logPath: string;
  readonly child: ChildProcess;
  /** Resolves with the exit code (or signal name) when the process exits. */
  readonly exited: Promise<number | string>;
  readonly hasExited: () => boolean;
}

/** Every live child of the harness, so that Ctrl-C, an error or process exit leaves no orphan. */
const live = new Set<ManagedProcess>();
/** Temporary directories to delete if the harness is interrupted before it cleans up itself. */
const tempDirs = new Set<string>();

/** Registers a temporary directory for deletion on interruption; returns a function unregistering it. */
export function trackTempDir(path: string): () => void {
  tempDirs.add(path);
  return () => tempDirs.delete(path);
}
let areHandlersInstalled = false;

function killAllNow(): void {
  for (const proc of live) {
    try {
      proc.child.kill('SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

function installHandlers(): void {
  if (areHandlersInstalled) return;
  areHandlersInstalled = true;
  // A synchronous last resort: 'exit' handlers cannot wait, so SIGKILL whatever is left.
  process.on('exit', killAllNow);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      process.stderr.write(`\nbench: ${signal}, stopping ${live.size} child process(es)\n`);
      void stopAll().finally(() => {
        for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
        process.exit(130);
      });
    });
  }
}

/** Whether an executable is on the PATH (runs `<command> --version`, bounded to 10 s). */
export function isInstalled(command: string): boolean {
  const result = spawnSync(command, ['--version'], { stdio: 'ignore', timeout: 10_000 });
  return result.error === undefined && result.status === 0;
}

/**
 * Starts `command args` with stdout and stderr appended to `logPath`, and tracks it until it exits.
 * The child gets its own stdin closed; it is killed when the harness stops, fails or is interrupted.
 */
export function startProcess(
  name: string,
  command: string,
  args: readonly string[],
  logPath: string,
  env: NodeJS.ProcessEnv = process.env,
): ManagedProcess {
  installHandlers();
  const fd = openSync(logPath, 'a');
  let child: ChildProcess;
  try {
    child = spawn(command, [...args], { stdio: ['ignore', fd, fd], env });
  } finally {
    closeSync(fd);
  }
  if (child.pid === undefined) {
    throw new BenchError('BENCH_PROCESS_FAILED', `${name}: could not start ${command}`);
  }
  let hasExited = false;
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => {
      hasExited = true;
      live.delete(proc);
      resolve(code ?? signal ?? 'unknown');
    });
    child.once('error', () => {
      hasExited = true;
      live.delete(proc);
      resolve('spawn-error');
    });
  });
  const proc: ManagedProcess = { name, pid: child.pid, logPath, child, exited, hasExited: () => hasExited };
  live.add(proc);
  return proc;
}

/** The last `lines` lines of a log file, for error messages. */
export function tailOf(logPath: string, lines = 15): string {
  try {
    return readFileSync(logPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * Stops a process: SIGTERM, then SIGKILL if it has not exited after `graceMs`. Resolves once it
 * has exited.
 */
export async function stopProcess(proc: ManagedProcess, graceMs = 5000): Promise<void> {
  if (proc.hasExited()) return;
  proc.child.kill('SIGTERM');
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), graceMs);
  try {
    await proc.exited;
  } finally {
    clearTimeout(timer);
  }
}

/** Stops every live child of the harness. */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((proc) => stopProcess(proc)));
}

/**
 * Reserves `count` distinct free TCP ports on 127.0.0.1 by binding port 0 and closing. Another
 * process could take one in between; the daemons' start-up then fails with a clear log line.
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers = [];
  const ports: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve());
      });
      const address = server.address();
      if (address === null || typeof address === 'string') throw new Error('no port');
      ports.push(address.port);
    }
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
  return ports;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Polls `check` every `intervalMs` until it returns true, or throws BENCH_STARTUP_TIMEOUT after
 * `timeoutMs`. Fails fast with BENCH_PROCESS_FAILED when one of `watched` exits meanwhile.
 */
export async function waitUntil(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs: number,
  watched: readonly ManagedProcess[] = [],
  intervalMs = 100,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    for (const proc of watched) {
      if (proc.hasExited()) {
        throw new BenchError(
          'BENCH_PROCESS_FAILED',
          `${proc.name} exited while waiting for ${what}; log ${proc.logPath}:\n${tailOf(proc.logPath)}`,
        );
      }
    }
    if (await check().catch(() => false)) return;
    if (performance.now() >= deadline) {
      const logs = watched.map((p) => `--- ${p.name} (${p.logPath}):\n${tailOf(p.logPath, 8)}`).join('\n');
      throw new BenchError('BENCH_STARTUP_TIMEOUT', `timed out after ${timeoutMs} ms waiting for ${what}\n${logs}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Waits until 127.0.0.1:`port` accepts TCP connections. */
export function waitForPort(
  what: string,
  port: number,
  timeoutMs: number,
  watched: readonly ManagedProcess[] = [],
): Promise<void> {
  return waitUntil(`${what} on 127.0.0.1:${port}`, () => canConnect(port), timeoutMs, watched);
}

/** Runs a command to completion with a time bound; resolves with its exit code and output. */
export function runToCompletion(
  command: string,
  args: readonly string[],
  timeoutMs: number,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    installHandlers();
    const child = spawn(command, [...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const proc: ManagedProcess = {
      name: command,
      pid: child.pid ?? -1,
      logPath: '',
      child,
      exited: Promise.resolve(0),
      hasExited: () => child.exitCode !== null,
    };
    live.add(proc);
    let stdout = '';
    let stderr = '';
    const cap = 4 * 1024 * 1024;
    child.stdout!.on('data', (chunk: Buffer) => {
      if (stdout.length < cap) stdout += chunk.toString('utf8');
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      if (stderr.length < cap) stderr += chunk.toString('utf8');
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      live.delete(proc);
      reject(new BenchError('BENCH_PROCESS_FAILED', `could not run ${command}`, { cause: err }));
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      live.delete(proc);
      resolve({ code, stdout, stderr });
    });
  });
}
