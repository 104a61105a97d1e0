import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

import { BenchError } from './errors.js';

/** CPU time of one process as read from /proc/<pid>/stat, in clock ticks. */
export interface ProcCpuTicks {
  readonly userTicks: number;
  readonly systemTicks: number;
}

/**
 * Parses the content of /proc/<pid>/stat into utime and stime (fields 14 and 15, in clock ticks).
 * The command name (field 2) is in parentheses and may itself contain spaces and parentheses, so
 * fields are counted from the LAST closing parenthesis, as proc(5) advises.
 */
export function parseProcStat(line: string): ProcCpuTicks {
  const close = line.lastIndexOf(')');
  if (close < 0) {
    throw new BenchError('BENCH_PROC_STAT_INVALID', 'no ")" closing the command name in a /proc stat line');
  }
  // After ") " come field 3 (state) onwards; utime is field 14, i.e. index 11 here.
  const rest = line
    .slice(close + 1)
    .trim()
    .split(/\s+/);
  const userTicks = Number(rest[11]);
  const systemTicks = Number(rest[12]);
  if (!Number.isSafeInteger(userTicks) || !Number.isSafeInteger(systemTicks) || userTicks < 0 || systemTicks < 0) {
    throw new BenchError('BENCH_PROC_STAT_INVALID', `utime/stime are not counts in a /proc stat line: ${line}`);
  }
  return { userTicks, systemTicks };
}

let clockTicksPerSecondCached: number | null = null;

/** The kernel's USER_HZ (`getconf CLK_TCK`), 100 when it cannot be read. */
export function clockTicksPerSecond(): number {
  if (clockTicksPerSecondCached === null) {
    try {
      const value = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
      clockTicksPerSecondCached = Number.isSafeInteger(value) && value > 0 ? value : 100;
    } catch {
      clockTicksPerSecondCached = 100;
    }
  }
  return clockTicksPerSecondCached;
}

/**
 * Total CPU seconds (user + system) the given processes have used so far, or null when any of them
 * cannot be read (it has exited, or this is not Linux).
 */
export function cpuSecondsOf(pids: readonly number[], ticksPerSecond = clockTicksPerSecond()): number | null {
  let ticks = 0;
  for (const pid of pids) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      return null;
    }
    const stat = parseProcStat(text);
    ticks += stat.userTicks + stat.systemTicks;
  }
  return ticks / ticksPerSecond;
}

/** CPU seconds per 1,000 operations between two samples, or null when either is missing or ops is 0. */
export function cpuSecondsPer1kOps(before: number | null, after: number | null, ops: number): number | null {
  if (before === null || after === null || ops <= 0) return null;
  return ((after - before) * 1000) / ops;
}
