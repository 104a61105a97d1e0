// Proves the daemon's metric shortcuts report exactly what plain prom-client would: FastHistogram
// (observe updates prom-client's record in place) against a plain Histogram fed the same seeded
// observations, with and without labels, on bucket bounds, above the last bucket, and across
// reset/zero/remove; and the pull counters (transport totals read at scrape) adding only what
// each peer gained since the previous scrape; and the storage gauges reading statfs of the data and
// WAL directories at scrape time.
import { mkdirSync, mkdtempSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { Histogram, Registry } from 'prom-client';
import { DaemonMetrics, FastHistogram } from '../../src/metrics.js';

const buckets = [0.001, 0.01, 0.1, 1];

function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

function pair(labelNames: string[]): { fast: Registry; plain: Registry; f: FastHistogram; p: Histogram } {
  const fast = new Registry();
  const plain = new Registry();
  const f = new FastHistogram({ name: 'h', help: 'h', buckets, labelNames, registers: [fast] });
  const p = new Histogram({ name: 'h', help: 'h', buckets, labelNames, registers: [plain] });
  return { fast, plain, f, p };
}

test('FastHistogram without labels reports what a plain Histogram reports', async (t) => {
  const { fast, plain, f, p } = pair([]);
  const random = seeded(1);
  const values = [0.001, 0.01, 0.1, 1, 5, 0, ...Array.from({ length: 1000 }, () => random() ** 4 * 2)];
  for (const v of values) {
    f.observe(v);
    p.observe(v);
  }
  t.true(f.isShortcutActive, 'observations after the first took the shortcut');
  const text = await fast.metrics();
  t.is(text, await plain.metrics());
  t.regex(text, /h_count 1006/);
  f.reset();
  p.reset();
  f.observe(0.5);
  p.observe(0.5);
  t.is(await fast.metrics(), await plain.metrics());
});

test('FastHistogram with labels reports what a plain Histogram reports, across zero and remove', async (t) => {
  const { fast, plain, f, p } = pair(['op', 'volume']);
  const random = seeded(2);
  const ops = ['read', 'write', 'flush'];
  const feed = (n: number): void => {
    for (let i = 0; i < n; i++) {
      const labels = { op: ops[Math.floor(random() * 3)], volume: `v${Math.floor(random() * 2)}` };
      const v = random() ** 3 * 3;
      f.observe(labels, v);
      p.observe(labels, v);
    }
  };
  feed(2000);
  t.true(f.isShortcutActive);
  t.is(await fast.metrics(), await plain.metrics());
  f.zero({ op: 'read', volume: 'v0' });
  p.zero({ op: 'read', volume: 'v0' });
  feed(500);
  t.is(await fast.metrics(), await plain.metrics());
  f.remove({ op: 'write', volume: 'v1' });
  p.remove({ op: 'write', volume: 'v1' });
  feed(500);
  t.is(await fast.metrics(), await plain.metrics());
  // Bad input still gets prom-client's own errors.
  t.throws(() => f.observe({ op: 'read', volume: 'v0' }, Number.NaN));
});

test('peer message counters add what each peer gained since the previous scrape', async (t) => {
  const metrics = new DaemonMetrics({ region: 'geneva', isDefaultMetricsEnabled: false });
  const totals = { sent: { gland: 0, lucerne: 0 }, received: { gland: 0 } };
  metrics.setTransportSource(() => ({
    queuedBytes: {},
    queuedMessages: {},
    isConnected: {},
    sentMessages: { ...totals.sent },
    receivedMessages: { ...totals.received },
  }));
  const read = async (name: string, peer: string): Promise<number> => {
    const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
    return (metric?.values as { labels: { peer?: string }; value: number }[]).find((v) => v.labels.peer === peer)
      ?.value as number;
  };
  totals.sent.gland = 5;
  totals.received.gland = 3;
  t.is(await read('rdl_peer_messages_sent_total', 'gland'), 5);
  totals.sent.gland = 12;
  totals.sent.lucerne = 1;
  t.is(await read('rdl_peer_messages_sent_total', 'gland'), 12);
  t.is(await read('rdl_peer_messages_sent_total', 'lucerne'), 1);
  t.is(await read('rdl_peer_messages_received_total', 'gland'), 3);
  // A new transport (totals back to small numbers) adds its whole total, the counter never goes back.
  totals.sent.gland = 2;
  t.is(await read('rdl_peer_messages_sent_total', 'gland'), 14);
});

test('storage gauges report statfs of the data and WAL directories, and leave out one that cannot be read', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'rdl-metrics-'));
  try {
    const metrics = new DaemonMetrics({ region: 'geneva', isDefaultMetricsEnabled: false });
    const before = await metrics.registry.metrics();
    t.notRegex(before, /rdl_storage_available_bytes\{/, 'nothing before the directories are known');
    mkdirSync(join(root, 'data'));
    mkdirSync(join(root, 'wal'));
    metrics.setStorageDirectories({ data: join(root, 'data'), wal: join(root, 'wal') });
    const expected = statfsSync(root);
    const text = await metrics.registry.metrics();
    for (const dir of ['data', 'wal']) {
      const available = Number(
        new RegExp(`rdl_storage_available_bytes\\{dir="${dir}",region="geneva"\\} (\\d+)`).exec(text)?.[1],
      );
      const capacity = Number(
        new RegExp(`rdl_storage_capacity_bytes\\{dir="${dir}",region="geneva"\\} (\\d+)`).exec(text)?.[1],
      );
      t.is(capacity, expected.blocks * expected.bsize, `${dir} capacity`);
      // Other processes write to the same file system meanwhile: within 1 GiB of the reading above.
      t.true(Math.abs(available - expected.bavail * expected.bsize) < 2 ** 30, `${dir} available ${available}`);
    }
    rmSync(join(root, 'wal'), { recursive: true });
    const after = await metrics.registry.metrics();
    t.regex(after, /rdl_storage_available_bytes\{dir="data"/);
    t.notRegex(after, /rdl_storage_available_bytes\{dir="wal"/, 'a missing directory is left out, not 0');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
