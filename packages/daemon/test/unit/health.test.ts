// Proves the operator HTTP endpoint serves Prometheus text with the daemon's metric families and
// region label, /healthz, and a /readyz that follows the Raft status (no leader → 503, applied behind
// commit → 503, caught up → 200), by starting it on an ephemeral port and fetching from 127.0.0.1.
import test from 'ava';
import { pino } from 'pino';
import { DaemonMetrics } from '../../src/metrics.js';
import { readinessOf, startHealthServer } from '../../src/health.js';

test('metrics, healthz and readyz', async (t) => {
  const metrics = new DaemonMetrics({ region: 'geneva', isDefaultMetricsEnabled: false });
  let status: { leader: string | null; commitIndex: number; appliedIndex: number } | null = null;
  metrics.setRaftSource(() => ({
    term: 7,
    commitIndex: 10,
    appliedIndex: 9,
    lastIndex: 12,
    isLeader: true,
    followerLagEntries: { gland: 3 },
  }));
  metrics.setTransportSource(() => ({
    queuedBytes: { gland: 100 },
    queuedMessages: { gland: 2 },
    isConnected: { gland: true },
  }));
  metrics.ioOps.inc({ volume: 'demo', op: 'write', result: 'ok' });
  metrics.ioBytes.inc({ volume: 'demo', op: 'write' }, 4096);
  metrics.fsyncSeconds.observe(0.0004);
  const server = await startHealthServer({
    host: '127.0.0.1',
    port: 0,
    registry: metrics.registry,
    readiness: () => readinessOf(status),
    logger: pino({ level: 'silent' }),
  });
  t.teardown(() => server.close());
  const base = `http://127.0.0.1:${server.port}`;

  const text = await (await fetch(`${base}/metrics`)).text();
  for (const fragment of [
    'rdl_raft_term{region="geneva"} 7',
    'rdl_raft_follower_lag_entries{follower="gland",region="geneva"} 3',
    'rdl_peer_queue_bytes{peer="gland",region="geneva"} 100',
    'rdl_io_bytes_total{volume="demo",op="write",region="geneva"} 4096',
    'rdl_raft_fsync_seconds_bucket',
    'rdl_raft_commit_seconds_bucket',
    'rdl_raft_apply_seconds_bucket',
    'rdl_raft_leader_changes_total',
  ]) {
    t.true(text.includes(fragment), `missing ${fragment}`);
  }

  t.is((await fetch(`${base}/healthz`)).status, 200);
  t.is((await fetch(`${base}/readyz`)).status, 503); // starting
  status = { leader: null, commitIndex: 0, appliedIndex: 0 };
  t.is((await fetch(`${base}/readyz`)).status, 503);
  status = { leader: 'geneva', commitIndex: 5, appliedIndex: 4 };
  const behind = await fetch(`${base}/readyz`);
  t.is(behind.status, 503);
  t.regex(((await behind.json()) as { reason: string }).reason, /applying/);
  status = { leader: 'geneva', commitIndex: 5, appliedIndex: 5 };
  t.is((await fetch(`${base}/readyz`)).status, 200);
  t.is((await fetch(`${base}/nope`)).status, 404);
  t.is((await fetch(`${base}/metrics`, { method: 'POST' })).status, 405);
});
