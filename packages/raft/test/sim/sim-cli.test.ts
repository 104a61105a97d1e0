// Proves the `npm run sim` CLI's contract by spawning it: it prints the tally of every fault kind
// and a membership/snapshot summary and a snapshot-transfer summary, and ends with `N seeds, V violations` (exit 0 when clean);
// with a driver broken on purpose it prints each failing seed with the exact command (flags
// included) that replays it, and exits 1.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FAULT_KINDS } from '../../src/testing/simulator.js';

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/testing/sim-cli.js');

function run(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

test('a clean run prints the tally and ends with the summary line', (t) => {
  const result = run(['--seeds', '3', '--seed-start', '10']);
  t.is(result.status, 0, result.stdout + result.stderr);
  for (const kind of FAULT_KINDS) t.regex(result.stdout, new RegExp(`^  ${kind} +\\d+$`, 'm'));
  t.regex(
    result.stdout,
    /^membership: \d+ added, \d+ removed, \d+ replaced \(\d+ through a joint configuration, \d+ removing the leader\), \d+ proposals refused; snapshots: \d+ installed of \d+ sent$/m,
  );
  t.regex(
    result.stdout,
    /^snapshot transfers: \d+ chunks sent \(\d+ resent, \d+ lost\), \d+ resumed from the last acknowledged chunk, \d+ restarted from chunk 0 \(receiver restarted or replaced\), \d+ abandoned \(stalled, sender crashed or lost leadership\)$/m,
  );
  const lines = result.stdout.trimEnd().split('\n');
  t.is(lines[lines.length - 1], '3 seeds, 0 violations');
});

test('--no-membership leaves membership changes out of the fault mix (the fault mix of issue 2)', (t) => {
  const withChanges = run(['--seeds', '20', '--seed-start', '1']);
  t.notRegex(withChanges.stdout, /^membership: 0 added, 0 removed, 0 replaced/m);
  const without = run(['--seeds', '20', '--seed-start', '1', '--no-membership']);
  t.is(without.status, 0, without.stdout + without.stderr);
  t.regex(
    without.stdout,
    /^membership: 0 added, 0 removed, 0 replaced \(0 through a joint configuration, 0 removing the leader\), 0 proposals refused;/m,
  );
});

test('a failing seed prints its replay command and the run exits 1', (t) => {
  const result = run(['--seeds', '2', '--seed-start', '1', '--driver-bug', 'ack-before-fsync', '--no-joint-replace']);
  t.is(result.status, 1);
  t.regex(result.stdout, /^seed 1 FAILED: /m);
  t.regex(
    result.stdout,
    /replay: npm run sim -- --seeds 1 --seed-start 1 --no-joint-replace --driver-bug ack-before-fsync --trace/,
  );
  t.regex(result.stdout, /\n2 seeds, 2 violations\n$/);
});

test('bad arguments are refused with a usage error', (t) => {
  const result = run(['--seeds', 'many']);
  t.not(result.status, 0);
  t.regex(result.stderr, /--seeds.*must be an integer/);
});
