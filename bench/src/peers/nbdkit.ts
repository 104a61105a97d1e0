import { closeSync, ftruncateSync, openSync } from 'node:fs';
import { join } from 'node:path';

import { freePorts, startProcess, stopProcess, waitForPort } from '../processes.js';
import type { ManagedProcess } from '../processes.js';

/** A running nbdkit serving one file over NBD on loopback. */
export interface NbdkitServer {
  /** nbd://127.0.0.1:PORT/ for fio's nbd engine. */
  readonly uri: string;
  readonly process: ManagedProcess;
  stop(): Promise<void>;
}

/**
 * Starts nbdkit's file plugin on a fresh file of `sizeBytes` under `workDir`: the unreplicated,
 * durable ceiling (a flush from the client becomes an fsync of the file). nbdkit exits with its
 * parent, so even a killed harness leaves no nbdkit behind.
 */
export async function startNbdkit(workDir: string, sizeBytes: number, timeoutMs = 15_000): Promise<NbdkitServer> {
  const imagePath = join(workDir, 'nbdkit-disk.img');
  const fd = openSync(imagePath, 'w');
  try {
    ftruncateSync(fd, sizeBytes);
  } finally {
    closeSync(fd);
  }
  const [port] = await freePorts(1);
  const proc = startProcess(
    'nbdkit',
    'nbdkit',
    ['--foreground', '--exit-with-parent', '-i', '127.0.0.1', '-p', String(port), 'file', `file=${imagePath}`],
    join(workDir, 'nbdkit.log'),
  );
  const stop = (): Promise<void> => stopProcess(proc);
  try {
    await waitForPort('nbdkit', port, timeoutMs, [proc]);
  } catch (err) {
    await stop();
    throw err;
  }
  return { uri: `nbd://127.0.0.1:${port}/`, process: proc, stop };
}
