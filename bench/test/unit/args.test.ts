// Proves the harness parses its command line as documented: defaults and --quick, --rtt pairs
// (units, validation, one-way delays per daemon) and --only selectors, with BENCH_ARGS_INVALID on
// bad input. Pure functions, no processes.
import test from 'ava';

import { oneWayDelaysMs, parseArgs, parseDurationMs, parseRtt, rttBetweenMs } from '../../src/args.js';
import { rdldArgs } from '../../src/rdl/cluster.js';
import { rows, selectWorkloads, workloadsOf } from '../../src/workloads.js';

const codeOf = (err: unknown): string | undefined => (err as { code?: string } | undefined)?.code;

test('defaults: 15 s per workload after a 3 s warm-up, 3 runs, 256 MiB volume', (t) => {
  const options = parseArgs([]);
  t.is(options.durationMs, 15_000);
  t.is(options.warmupMs, 3_000);
  t.is(options.runs, 3);
  t.is(options.volumeBytes, 256 * 1024 * 1024);
  t.is(options.jsonPath, null);
  t.is(options.only, null);
  t.is(options.rtt, null);
  t.true(options.isPeers);
  t.false(parseArgs(['--no-peers']).isPeers);
  t.false(options.isQuick);
  t.true(Object.isFrozen(options));
});

test('--quick shortens workloads to a few seconds and one run; explicit flags still win', (t) => {
  const quick = parseArgs(['--quick']);
  t.true(quick.isQuick);
  t.is(quick.durationMs, 3_000);
  t.is(quick.runs, 1);
  const custom = parseArgs(['--quick', '--duration', '5', '--runs', '2', '--json', 'out.json']);
  t.is(custom.durationMs, 5_000);
  t.is(custom.runs, 2);
  t.is(custom.jsonPath, 'out.json');
});

test('--system-warmup: 10 s per started system by default, 3 s with --quick, 0 turns it off', (t) => {
  t.is(parseArgs([]).systemWarmupMs, 10_000);
  t.is(parseArgs(['--quick']).systemWarmupMs, 3_000);
  t.is(parseArgs(['--quick', '--system-warmup', '0']).systemWarmupMs, 0);
  t.is(parseArgs(['--system-warmup', '2.5']).systemWarmupMs, 2_500);
  t.is(codeOf(t.throws(() => parseArgs(['--system-warmup', '-1']))), 'BENCH_ARGS_INVALID');
  t.is(codeOf(t.throws(() => parseArgs(['--system-warmup', 'soon']))), 'BENCH_ARGS_INVALID');
});

test('bad flags are BENCH_ARGS_INVALID errors, not exits', (t) => {
  t.is(codeOf(t.throws(() => parseArgs(['--runs', '0']))), 'BENCH_ARGS_INVALID');
  t.is(codeOf(t.throws(() => parseArgs(['--runs', '1.5']))), 'BENCH_ARGS_INVALID');
  t.is(codeOf(t.throws(() => parseArgs(['--no-such-flag']))), 'BENCH_ARGS_INVALID');
  t.is(codeOf(t.throws(() => parseArgs(['--only', ' , ']))), 'BENCH_ARGS_INVALID');
});

test('--help is not an argument error', (t) => {
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = (() => true) as typeof process.stdout.write;
  try {
    t.is(codeOf(t.throws(() => parseArgs(['--help']))), 'commander.helpDisplayed');
  } finally {
    process.stdout.write = write;
  }
});

test('durations accept ms, us and s, and default to milliseconds', (t) => {
  t.is(parseDurationMs('0.35ms'), 0.35);
  t.is(parseDurationMs('350us'), 0.35);
  t.is(parseDurationMs('2'), 2);
  t.is(parseDurationMs('1s'), 1000);
  t.is(codeOf(t.throws(() => parseDurationMs('fast'))), 'BENCH_ARGS_INVALID');
  t.is(codeOf(t.throws(() => parseDurationMs('-1ms'))), 'BENCH_ARGS_INVALID');
});

test('--rtt parses the three region pairs and splits each round trip into two one-way delays', (t) => {
  const rtt = parseArgs(['--rtt', 'geneva-gland=0.35ms,geneva-lucerne=2.5ms,gland-lucerne=2.4ms']).rtt!;
  t.is(rtt.length, 3);
  t.is(rttBetweenMs(rtt, 'gland', 'geneva'), 0.35);
  t.is(rttBetweenMs(rtt, 'lucerne', 'gland'), 2.4);
  t.deepEqual(
    [...oneWayDelaysMs(rtt, 'geneva')],
    [
      ['gland', 0.175],
      ['lucerne', 1.25],
    ],
  );
  t.deepEqual(
    [...oneWayDelaysMs(rtt, 'lucerne')],
    [
      ['geneva', 1.25],
      ['gland', 1.2],
    ],
  );
  // A pair not given has no delay at all.
  t.deepEqual([...oneWayDelaysMs(parseRtt('geneva-gland=1ms'), 'lucerne')], []);
});

test('--rtt rejects unknown regions, self pairs, repeated pairs and garbage', (t) => {
  for (const spec of ['geneva-zurich=1ms', 'geneva-geneva=1ms', 'geneva-gland=1ms,gland-geneva=2ms', 'geneva=1', '']) {
    t.is(codeOf(t.throws(() => parseRtt(spec))), 'BENCH_ARGS_INVALID', spec);
  }
});

test('--only: an rdl workload or group keeps its peer; rdl/peer groups select one side', (t) => {
  t.deepEqual([...selectWorkloads(['sdk-write-4k-qd64'])].sort(), ['etcd-put-4k-qd64', 'sdk-write-4k-qd64']);
  const nbd = selectWorkloads(['nbd']);
  t.true(nbd.has('nbd-randwrite-4k-qd32') && nbd.has('nbdkit-randwrite-4k-qd32'));
  t.false(nbd.has('sdk-write-4k-qd1'));
  const peers = selectWorkloads(['peers']);
  t.true([...peers].every((name) => name.startsWith('etcd-') || name.startsWith('nbdkit-')));
  t.is(peers.size, rows.filter((r) => r.peer !== null).length);
  const rdl = selectWorkloads(['rdl']);
  t.is(rdl.size, rows.length);
  t.deepEqual(
    workloadsOf('etcd', selectWorkloads(['etcd'])).map((w) => w.name),
    rows.filter((r) => r.peer?.system === 'etcd').map((r) => r.peer!.name),
  );
  t.is(selectWorkloads(null).size, rows.length + rows.filter((r) => r.peer !== null).length);
  // --no-peers: the rows' rdl side only, and nothing at all for peer-only selectors.
  t.deepEqual([...selectWorkloads(['sdk-write-4k-qd64', 'nbd-randwrite-4k-qd32'], false)].sort(), [
    'nbd-randwrite-4k-qd32',
    'sdk-write-4k-qd64',
  ]);
  t.is(selectWorkloads(null, false).size, rows.length);
  t.is(codeOf(t.throws(() => selectWorkloads(['peers'], false))), 'BENCH_ARGS_INVALID');
  t.is(codeOf(t.throws(() => selectWorkloads(['sdk-write-4k-qd3']))), 'BENCH_ARGS_INVALID');
});

test('--wal-dir resolves to an absolute directory and reaches rdld as --storage-wal-dir; empty is rejected', (t) => {
  t.is(parseArgs([]).walRoot, null);
  t.is(parseArgs(['--wal-dir', '/mnt/wal']).walRoot, '/mnt/wal');
  t.is(parseArgs(['--wal-dir', 'wal']).walRoot, `${process.cwd()}/wal`);
  t.is(codeOf(t.throws(() => parseArgs(['--wal-dir', ' ']))), 'BENCH_ARGS_INVALID');
  const ports = new Map(
    (['geneva', 'gland', 'lucerne'] as const).map((region, i) => [
      region,
      { client: i, peer: 10 + i, metrics: 20 + i },
    ]),
  );
  const withWal = rdldArgs('gland', '/d/gland', ports, null, '/mnt/wal/rdld-gland');
  t.deepEqual(withWal.slice(withWal.indexOf('--storage-wal-dir'), withWal.indexOf('--storage-wal-dir') + 2), [
    '--storage-wal-dir',
    '/mnt/wal/rdld-gland',
  ]);
  t.false(rdldArgs('gland', '/d/gland', ports, null).includes('--storage-wal-dir'));
});
