// Proves the delay line's alarm: wake-ups run on the main thread, in due order, never before their
// due time, a pending one keeps the process alive, cancelled ones never run, and waiting leaves
// the event loop idle (the old setImmediate re-check loop kept it busy for the whole wait). Timing
// bounds are one-sided (never early; utilization at most half), so a slow machine cannot fail it.
import test from 'ava';
import { PreciseAlarm } from '../../src/transport/precise-alarm.js';

test('wake-ups run in due order, never early; cancelled ones never run', async (t) => {
  const alarm = new PreciseAlarm();
  const ran: { name: string; lateMs: number }[] = [];
  const done = new Promise<void>((resolve) => {
    const start = performance.now();
    for (const [name, delayMs] of [
      ['c', 2.4],
      ['a', 0.2],
      ['b', 0.9],
    ] as const) {
      const dueMs = start + delayMs;
      alarm.schedule(dueMs, () => {
        ran.push({ name, lateMs: performance.now() - dueMs });
        if (ran.length === 3) resolve();
      });
    }
  });
  const cancel = alarm.schedule(performance.now() + 0.5, () => t.fail('a cancelled wake-up ran'));
  cancel();
  await done;
  t.deepEqual(
    ran.map((r) => r.name),
    ['a', 'b', 'c'],
  );
  for (const r of ran) t.true(r.lateMs >= 0, `${r.name} ran ${-r.lateMs} ms early`);
  t.is(alarm.pendingCount, 0);
});

test('waiting for a wake-up leaves the event loop idle (no spinning)', async (t) => {
  const alarm = new PreciseAlarm();
  // Warm the worker up so its start-up is not part of the measured wait.
  await new Promise<void>((resolve) => alarm.schedule(performance.now() + 0.1, resolve));
  const waitMs = 60;
  // Event-loop utilization is per thread, so other test files running meanwhile do not count.
  const before = performance.eventLoopUtilization();
  const started = performance.now();
  await new Promise<void>((resolve) => alarm.schedule(performance.now() + waitMs, resolve));
  const waitedMs = performance.now() - started;
  const { utilization } = performance.eventLoopUtilization(before);
  t.log(`waited ${waitedMs.toFixed(1)} ms; event-loop utilization ${utilization.toFixed(3)}`);
  t.true(waitedMs >= waitMs);
  // A setImmediate re-check loop keeps the loop busy for the whole wait (utilization near 1).
  t.true(utilization < 0.5, `event-loop utilization ${utilization} during the wait`);
  t.is(alarm.pendingCount, 0);
});
