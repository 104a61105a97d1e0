// Proves the closed loop's bookkeeping with an in-memory operation (no server, no timing
// assertions): never more than `concurrency` requests in flight, the `opsMax` bound, failures
// counted by code with an early stop at `errorsMax`, and the seeded offsets staying inside the
// volume and block-aligned; write payloads differ from write to write and do not compress.
import test from 'ava';

import { figureOf, runClosedLoop } from '../../src/closed-loop.js';
import { deflateRawSync } from 'node:zlib';
import { PayloadSource, offsetOf, payloadOf } from '../../src/loop-workload.js';
import { SeededRandom } from '../../src/rng.js';
import type { LoopWorkload } from '../../src/workloads.js';

const codeOf = (err: unknown): string | undefined => (err as { code?: string } | undefined)?.code;

test('in-flight requests never exceed the concurrency, and opsMax bounds the loop', async (t) => {
  let inFlight = 0;
  let inFlightMax = 0;
  let calls = 0;
  const result = await runClosedLoop(
    async () => {
      calls++;
      inFlight++;
      inFlightMax = Math.max(inFlightMax, inFlight);
      await new Promise((resolve) => setImmediate(resolve));
      inFlight--;
      return 4096;
    },
    { concurrency: 8, warmupMs: 0, durationMs: 60_000, opsMax: 500, errorsMax: 10 },
  );
  t.is(inFlightMax, 8);
  t.is(calls, 500);
  t.is(result.ops, 500);
  t.is(result.bytes, 500 * 4096);
  const figure = figureOf(result, null);
  t.is(figure.ops, 500);
  t.true(figure.latencyUs.p50 >= 1);
});

test('failures are counted by code and stop the loop at errorsMax', async (t) => {
  let windowEvents = '';
  const result = await runClosedLoop(
    async (_worker, seq) => {
      await new Promise((resolve) => setImmediate(resolve));
      if (seq % 2 === 1) throw Object.assign(new Error('no'), { code: 'RAFT_NOT_LEADER' });
      return 1;
    },
    {
      concurrency: 2,
      warmupMs: 0,
      durationMs: 60_000,
      opsMax: 1_000_000,
      errorsMax: 20,
      onWindowStart: () => (windowEvents += 'start,'),
      onWindowEnd: () => (windowEvents += 'end'),
    },
  );
  t.is(result.errors.RAFT_NOT_LEADER, 20);
  t.true(result.ops >= 18 && result.ops <= 22, `ops ${result.ops}`);
  t.is((result.firstError as { code: string }).code, 'RAFT_NOT_LEADER');
  t.is(windowEvents, 'start,end', 'the CPU window opens and closes exactly once');
});

const random4k: LoopWorkload = {
  kind: 'loop',
  name: 'w',
  system: 'rdl',
  op: 'write',
  readPercent: 0,
  sizeBytes: 4096,
  concurrency: 4,
  pattern: 'random',
};

test('offsets are aligned, inside the volume, reproducible from the seed; sequential stripes per worker', (t) => {
  const volumeBytes = 1024 * 4096;
  const a = new SeededRandom(7);
  const b = new SeededRandom(7);
  for (let i = 0; i < 1000; i++) {
    const offset = offsetOf(random4k, volumeBytes, 0, i, a);
    t.is(offset % 4096, 0);
    t.true(offset >= 0 && offset < volumeBytes);
    t.is(offset, offsetOf(random4k, volumeBytes, 0, i, b));
  }
  const sequential: LoopWorkload = { ...random4k, pattern: 'sequential', sizeBytes: 64 * 1024 };
  // 64 blocks of 64 KiB, 4 workers: worker 1 streams through blocks 16..31 and wraps.
  t.is(offsetOf(sequential, volumeBytes, 1, 0, a), 16 * 64 * 1024);
  t.is(offsetOf(sequential, volumeBytes, 1, 1, a), 17 * 64 * 1024);
  t.is(offsetOf(sequential, volumeBytes, 1, 16, a), 16 * 64 * 1024);
  t.is(codeOf(t.throws(() => offsetOf(sequential, 1000, 0, 0, a))), 'BENCH_ARGS_INVALID');
  t.deepEqual(payloadOf(4096, 1), payloadOf(4096, 1));
  t.notDeepEqual(payloadOf(4096, 1), payloadOf(4096, 2));
});

test('write payloads differ from write to write, do not compress together, and are reproducible', (t) => {
  const next = (source: PayloadSource, rng: SeededRandom, n: number): Buffer[] =>
    Array.from({ length: n }, () => Buffer.from(source.next(rng)));
  const payloads = next(new PayloadSource(4096, 7), new SeededRandom(1), 64);
  t.true(payloads.every((p) => p.length === 4096));
  t.is(new Set(payloads.map((p) => p.toString('hex'))).size, 64, 'no two alike');
  // Four in a row, as four values in one of LevelDB's 16 KiB table blocks: one payload repeated
  // would deflate to about a quarter; distinct random ones not at all.
  for (let i = 0; i < 64; i += 4) {
    const block = Buffer.concat(payloads.slice(i, i + 4));
    t.true(deflateRawSync(block).length > 0.99 * block.length, `payloads ${i}..${i + 3} compress`);
  }
  t.true(deflateRawSync(Buffer.concat(Array(4).fill(payloads[0]))).length < 0.3 * 4 * 4096, 'the check would notice');
  t.deepEqual(next(new PayloadSource(4096, 7), new SeededRandom(1), 64), payloads);
  const large = new PayloadSource(1024 * 1024, 7).next(new SeededRandom(2));
  t.is(large.length, 1024 * 1024);
});
