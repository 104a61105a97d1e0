import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { AGENT_NODE_FLAGS } from '@rdl/agent';
import { BenchError } from '../errors.js';
import { freePorts, startProcess, stopProcess, waitForPort } from '../processes.js';
import type { ManagedProcess } from '../processes.js';
import { repoRoot } from './cluster.js';

/** The compiled agent entry point the harness runs (`rdl-agent`). */
export const agentMainPath = join(repoRoot, 'packages/agent/dist/src/main.js');

/** A running `rdl-agent nbd` serving the cluster's volumes over NBD on loopback. */
export interface AgentHandle {
  readonly port: number;
  readonly process: ManagedProcess;
  /** nbd://127.0.0.1:PORT/VOLUME (the NBD export name is the volume name). */
  uriOf(volume: string): string;
  stop(): Promise<void>;
}

/**
 * Starts `rdl-agent nbd --endpoints A,B,C --listen 127.0.0.1:PORT` and waits until it accepts
 * connections. Its log goes to `workDir/rdl-agent.log`.
 */
export async function startAgent(
  workDir: string,
  endpoints: readonly string[],
  timeoutMs = 30_000,
): Promise<AgentHandle> {
  if (!existsSync(agentMainPath)) {
    throw new BenchError(
      'BENCH_PROCESS_FAILED',
      `rdl-agent is not built (${agentMainPath} missing): run npm run build`,
    );
  }
  const [port] = await freePorts(1);
  const proc = startProcess(
    'rdl-agent',
    process.execPath,
    [
      // The agent's own flags first; RDL_BENCH_AGENT_NODE_ARGS: extra node flags for the agent
      // (e.g. --cpu-prof; later flags win), as RDL_BENCH_NODE_ARGS does for the daemons.
      ...AGENT_NODE_FLAGS,
      ...(process.env.RDL_BENCH_AGENT_NODE_ARGS ?? '').split(' ').filter((s) => s !== ''),
      agentMainPath,
      'nbd',
      '--endpoints',
      endpoints.join(','),
      '--listen',
      `127.0.0.1:${port}`,
      '--log-level',
      'warn',
    ],
    join(workDir, 'rdl-agent.log'),
  );
  const stop = (): Promise<void> => stopProcess(proc, 10_000);
  try {
    await waitForPort('rdl-agent nbd', port, timeoutMs, [proc]);
  } catch (err) {
    await stop();
    throw err;
  }
  return { port, process: proc, uriOf: (volume) => `nbd://127.0.0.1:${port}/${volume}`, stop };
}
