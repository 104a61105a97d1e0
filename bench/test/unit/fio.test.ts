// Proves the fio integration's pure parts: the command line (nbd engine, flush after every write,
// new random bytes for every write, ramp time, JSON output) and the parsing of fio's JSON, including the log line fio's nbd engine
// prints before it, the disk probe's fdatasync figures, and BENCH_FIO_OUTPUT_INVALID on output
// that is not fio's.
import test from 'ava';

import { buildFioArgs, parseDiskProbe, parseFioOutput } from '../../src/fio.js';
import type { FioJob } from '../../src/fio.js';

const codeOf = (err: unknown): string | undefined => (err as { code?: string } | undefined)?.code;

const randwrite: FioJob = { rw: 'randwrite', blockSizeBytes: 4096, iodepth: 32 };
const randread: FioJob = { rw: 'randread', blockSizeBytes: 4096, iodepth: 32 };

test('the command line asks fio for the nbd engine, a flush after every write, and JSON', (t) => {
  const args = buildFioArgs(randwrite, 'nbd://127.0.0.1:10809/', { warmupMs: 1000, durationMs: 3000 }, '/tmp/o.json');
  for (const expected of [
    '--ioengine=nbd',
    '--uri=nbd://127.0.0.1:10809/',
    '--rw=randwrite',
    '--bs=4096',
    '--iodepth=32',
    '--fsync=1',
    '--refill_buffers=1',
    '--ramp_time=1000ms',
    '--runtime=3000ms',
    '--output-format=json',
    '--output=/tmp/o.json',
  ]) {
    t.true(args.includes(expected), expected);
  }
  const readArgs = buildFioArgs(randread, 'nbd://127.0.0.1:1/', { warmupMs: 1, durationMs: 1 }, '/tmp/o.json');
  t.false(readArgs.includes('--fsync=1'), 'reads need no flush');
});

function fioOutput(direction: 'read' | 'write'): string {
  const empty = { iops: 0, bw_bytes: 0, total_ios: 0, runtime: 0 };
  const measured = {
    iops: 6865.1,
    bw_bytes: 28_119_482,
    total_ios: 34_353,
    runtime: 5004,
    clat_ns: { percentile: { '50.000000': 1_122_304, '99.000000': 3_817_472, '99.900000': 6_520_832 } },
  };
  const sync = {
    total_ios: 34_372,
    lat_ns: { percentile: { '50.000000': 3_129_344, '99.000000': 6_848_512, '99.900000': 11_468_800 } },
  };
  const job = { jobname: 'bench', error: 0, read: empty, write: empty, [direction]: measured, sync };
  return `fio: connected to NBD server\n${JSON.stringify({ 'fio version': 'fio-3.33', jobs: [job] })}`;
}

test('fio JSON after its log line gives ops/s, bytes/s and latency percentiles in µs', (t) => {
  const figure = parseFioOutput(fioOutput('write'), randwrite);
  // A write is durable once its flush completes: write completion + flush latency.
  t.is(figure.opsPerSecond, 6865.1);
  t.is(figure.bytesPerSecond, 28_119_482);
  t.is(figure.ops, 34_353);
  t.is(figure.elapsedMs, 5004);
  t.deepEqual(figure.latencyUs, { p50: 4252, p99: 10666, p999: 17990 });
  t.deepEqual(figure.errors, {});
  // The read job reads the read direction, not the (empty) write one, and has no flush.
  const read = parseFioOutput(fioOutput('read'), randread);
  t.is(read.opsPerSecond, 6865.1);
  t.deepEqual(read.latencyUs, { p50: 1122, p99: 3817, p999: 6521 });
  t.is(parseFioOutput(fioOutput('read'), randwrite).opsPerSecond, 0);
});

test('output that is not fio JSON is BENCH_FIO_OUTPUT_INVALID', (t) => {
  for (const text of ['', 'fio: connection refused', '{"jobs": []}', '{"jobs": [{}]}', '{ not json']) {
    t.is(codeOf(t.throws(() => parseFioOutput(text, randwrite))), 'BENCH_FIO_OUTPUT_INVALID', text);
  }
});

test('the disk probe reads write IOPS and fdatasync latency percentiles', (t) => {
  const text = JSON.stringify({
    jobs: [
      {
        write: { iops: 188.46 },
        sync: { lat_ns: { percentile: { '50.000000': 4_358_144, '99.000000': 20_578_304 } } },
      },
    ],
  });
  t.deepEqual(parseDiskProbe(text), { writesPerSecond: 188.46, flushP50Us: 4358, flushP99Us: 20578 });
  t.is(codeOf(t.throws(() => parseDiskProbe('{"jobs":[{"write":{"iops":1}}]}'))), 'BENCH_FIO_OUTPUT_INVALID');
});
