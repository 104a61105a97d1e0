// Proves, with a real process that kills itself (SIGKILL) at varied points while an apply or an
// append is in flight, 8 times over one data directory: after each kill the volume holds exactly
// the bytes of entries 1..appliedIndex of a log of overlapping writes (the applied index is atomic
// with the effects: it fails when they are written separately with a window of a few ms), nothing
// reported applied is lost, the log covers the applied index, and resuming at appliedIndex + 1
// ends in the state of the whole log. The Raft log is the WAL (1 MiB segments, so kills also land
// around rollovers) and the block store writes behind it, as in the daemon. (A kill loses no data
// the process had handed to the OS; the power-loss half is in wal-log-store.test.ts, simulated.)
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { VOLUME_SIZE_BYTES, entryAt, modelAt, openStorage, type KillPhase } from './crash-workload.js';
import { sameBytes } from './helpers.js';

const workload = fileURLToPath(new URL('./crash-workload.js', import.meta.url));

/** Runs the child until it kills itself in `phase` at about `killAtApplied`; returns its last report. */
async function runUntilKilled(
  directory: string,
  seed: number,
  killAtApplied: number,
  phase: KillPhase,
): Promise<{ applied: number; last: number }> {
  const child = spawn(process.execPath, [workload, 'child', directory, String(seed), String(killAtApplied), phase], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
  const timeout = setTimeout(() => child.kill('SIGKILL'), 60_000);
  let report = { applied: 0, last: 0 };
  for await (const line of createInterface({ input: child.stdout })) {
    report = JSON.parse(line) as { applied: number; last: number };
  }
  const signal = await exited;
  clearTimeout(timeout);
  if (signal !== 'SIGKILL' || stderr !== '') throw new Error(`the child ended with ${signal}: ${stderr}`);
  return report;
}

test('SIGKILL during appends and applies: applied index atomic with effects, resume completes the log', async (t) => {
  const directory = await mkdtemp(join(tmpdir(), 'rdl-crash-'));
  let target = 0;
  for (let cycle = 0; cycle < 8; cycle++) {
    target += 40;
    const phase: KillPhase = cycle % 4 === 3 ? 'append' : 'apply';
    const report = await runUntilKilled(directory, cycle + 1, target, phase);
    const storage = await openStorage(directory);
    const { logStore, machine } = storage;
    const state = await logStore.load();
    const applied = await machine.appliedIndex();
    const last = state.entries.length > 0 ? state.entries[state.entries.length - 1].index : 0;
    t.true(applied >= report.applied, `cycle ${cycle}: applied ${applied} >= reported ${report.applied}`);
    t.true(last >= applied, `cycle ${cycle}: the log (to ${last}) covers the applied index ${applied}`);
    sameBytes(
      t,
      await machine.read('v', 0, VOLUME_SIZE_BYTES),
      modelAt(applied),
      `cycle ${cycle}: state = entries 1..${applied}`,
    );
    target = Math.max(target, applied);
    await storage.close();
  }
  // Resume like the driver: apply what the log holds after the applied index.
  const storage = await openStorage(directory);
  const { logStore, machine } = storage;
  const state = await logStore.load();
  const from = (await machine.appliedIndex()) + 1;
  const last = state.entries[state.entries.length - 1].index;
  const rest = state.entries.filter((entry) => entry.index >= from);
  t.deepEqual(
    rest.map((entry) => entry.index),
    Array.from({ length: last - from + 1 }, (_, i) => from + i),
  );
  t.true(
    rest.every((entry) => Buffer.from(entry.data).equals(Buffer.from(entryAt(entry.index).data))),
    'the log holds exactly the appended entries',
  );
  if (rest.length > 0) await machine.apply(rest);
  sameBytes(t, await machine.read('v', 0, VOLUME_SIZE_BYTES), modelAt(last), 'the whole log applied');
  await machine.whenWritten();
  t.true(logStore.segmentSeqs.length > 1, `the WAL rolled over (segments ${logStore.segmentSeqs.join(',')})`);
  await storage.close();
  await rm(directory, { recursive: true, force: true });
});
