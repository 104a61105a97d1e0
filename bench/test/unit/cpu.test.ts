// Proves the CPU accounting: utime and stime are read from the right fields of a /proc/<pid>/stat
// line even when the command name holds spaces and parentheses, malformed lines are
// BENCH_PROC_STAT_INVALID, and the per-1,000-operations figure is computed from two samples.
import test from 'ava';

import { cpuSecondsOf, cpuSecondsPer1kOps, parseProcStat } from '../../src/cpu.js';

const codeOf = (err: unknown): string | undefined => (err as { code?: string } | undefined)?.code;

// A real line from `cat /proc/self/stat` (utime 12, stime 34 substituted in fields 14 and 15).
const line =
  '8066 (cat) R 8058 8058 6482 0 -1 4194304 97 0 0 0 12 34 0 0 20 0 1 0 54770 3133440 358 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0';

test('utime and stime are fields 14 and 15', (t) => {
  t.deepEqual(parseProcStat(line), { userTicks: 12, systemTicks: 34 });
});

test('a command name with spaces and parentheses does not shift the fields', (t) => {
  const tricky = line.replace('(cat)', '(node (rdld) x)');
  t.deepEqual(parseProcStat(tricky), { userTicks: 12, systemTicks: 34 });
});

test('malformed lines are BENCH_PROC_STAT_INVALID', (t) => {
  t.is(codeOf(t.throws(() => parseProcStat('8066 cat R'))), 'BENCH_PROC_STAT_INVALID');
  t.is(codeOf(t.throws(() => parseProcStat('8066 (cat) R 1 2'))), 'BENCH_PROC_STAT_INVALID');
});

test('CPU seconds per 1,000 operations from two samples', (t) => {
  t.is(cpuSecondsPer1kOps(10, 12.5, 5000), 0.5);
  t.is(cpuSecondsPer1kOps(null, 12.5, 5000), null);
  t.is(cpuSecondsPer1kOps(10, 12.5, 0), null);
});

test('cpuSecondsOf reads this very process and gives null for a process that does not exist', (t) => {
  const seconds = cpuSecondsOf([process.pid], 100);
  t.true(seconds !== null && seconds >= 0);
  t.is(cpuSecondsOf([process.pid, 2 ** 22 + 12345]), null);
});
