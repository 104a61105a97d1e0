/**
 * Prometheus metrics of one rdld (prom-client, its own registry so tests can build several).
 * What an operator watches: commit, fsync and apply latency; leader changes and term; commit and
 * applied index; per-follower lag; bytes in flight (API and peer queues); IO per volume.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Latency buckets in seconds, from 50 µs (a batched fsync) to 10 s (an election in the way). */
const latencyBuckets = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10,
];

/** A point-in-time view of the Raft node, read at scrape time. */
export interface RaftGaugeSource {
  term: number;
  commitIndex: number;
  appliedIndex: number;
  lastIndex: number;
  isLeader: boolean;
  /** Entries each follower is behind the leader's last index (leader only; empty elsewhere). */
  followerLagEntries: Record<string, number>;
}

/** A point-in-time view of the peer transport queues, read at scrape time. */
export interface TransportGaugeSource {
  /** Bytes queued or being written, per peer. */
  queuedBytes: Record<string, number>;
  queuedMessages: Record<string, number>;
  /** 1 when the stream to the peer is open. */
  isConnected: Record<string, boolean>;
}

/** The daemon's metric set. Create one per daemon; `registry.metrics()` renders the text format. */
export class DaemonMetrics {
  readonly registry = new Registry();
  readonly commitSeconds: Histogram;
  readonly fsyncSeconds: Histogram;
  readonly applySeconds: Histogram;
  readonly leaderChanges: Counter;
  readonly ioOps: Counter<'volume' | 'op' | 'result'>;
  readonly ioBytes: Counter<'volume' | 'op'>;
  readonly ioSeconds: Histogram<'op'>;
  readonly apiInflightRequests: Gauge;
  readonly apiInflightBytes: Gauge;
  readonly peerMessagesSent: Counter<'peer'>;
  readonly peerMessagesReceived: Counter<'peer'>;
  readonly peerMessagesDropped: Counter<'peer' | 'reason'>;
  readonly peerMessagesRejected: Counter<'peer' | 'code'>;
  readonly peerReconnects: Counter<'peer'>;
  private raftSource: (() => RaftGaugeSource | null) | null = null;
  private transportSource: (() => TransportGaugeSource) | null = null;

  constructor(options: { region: string; isDefaultMetricsEnabled?: boolean }) {
    const registry = this.registry;
    registry.setDefaultLabels({ region: options.region });
    if (options.isDefaultMetricsEnabled ?? true) collectDefaultMetrics({ register: registry, prefix: 'rdl_process_' });
    this.commitSeconds = new Histogram({
      name: 'rdl_raft_commit_seconds',
      help: 'Time from proposing a command on the leader to its commit and local apply (what a write waits for).',
      buckets: latencyBuckets,
      registers: [registry],
    });
    this.fsyncSeconds = new Histogram({
      name: 'rdl_raft_fsync_seconds',
      help: 'Duration of one synced Raft log append (a group commit of every entry that arrived meanwhile).',
      buckets: latencyBuckets,
      registers: [registry],
    });
    this.applySeconds = new Histogram({
      name: 'rdl_raft_apply_seconds',
      help: 'Duration of applying one batch of committed entries to the block store.',
      buckets: latencyBuckets,
      registers: [registry],
    });
    this.leaderChanges = new Counter({
      name: 'rdl_raft_leader_changes_total',
      help: 'Times the known leader changed (including to "none").',
      registers: [registry],
    });
    // Collect callbacks run with `this` bound to the metric, so the sources are reached through closures.
    const raft = (): RaftGaugeSource | null => this.raftSource?.() ?? null;
    const transport = (): TransportGaugeSource | null => this.transportSource?.() ?? null;
    new Gauge({
      name: 'rdl_raft_term',
      help: 'Current Raft term.',
      registers: [registry],
      collect() {
        const s = raft();
        if (s) this.set(s.term);
      },
    });
    new Gauge({
      name: 'rdl_raft_is_leader',
      help: '1 when this daemon is the leader.',
      registers: [registry],
      collect() {
        const s = raft();
        if (s) this.set(s.isLeader ? 1 : 0);
      },
    });
    new Gauge({
      name: 'rdl_raft_commit_index',
      help: 'Highest log index known committed.',
      registers: [registry],
      collect() {
        const s = raft();
        if (s) this.set(s.commitIndex);
      },
    });
    new Gauge({
      name: 'rdl_raft_applied_index',
      help: 'Highest log index applied to the block store.',
      registers: [registry],
      collect() {
        const s = raft();
        if (s) this.set(s.appliedIndex);
      },
    });
    new Gauge({
      name: 'rdl_raft_last_index',
      help: 'Last index of the local Raft log.',
      registers: [registry],
      collect() {
        const s = raft();
        if (s) this.set(s.lastIndex);
      },
    });
    new Gauge<'follower'>({
      name: 'rdl_raft_follower_lag_entries',
      help: "Entries a follower is behind the leader's last index (reported by the leader only).",
      labelNames: ['follower'],
      registers: [registry],
      collect() {
        this.reset();
        const s = raft();
        if (s) for (const [follower, lag] of Object.entries(s.followerLagEntries)) this.set({ follower }, lag);
      },
    });
    new Gauge<'peer'>({
      name: 'rdl_peer_queue_bytes',
      help: 'Bytes of Raft messages queued or being written to a peer (bytes in flight on the peer transport).',
      labelNames: ['peer'],
      registers: [registry],
      collect() {
        this.reset();
        const s = transport();
        if (s) for (const [peer, bytes] of Object.entries(s.queuedBytes)) this.set({ peer }, bytes);
      },
    });
    new Gauge<'peer'>({
      name: 'rdl_peer_queue_messages',
      help: 'Raft messages queued to a peer.',
      labelNames: ['peer'],
      registers: [registry],
      collect() {
        this.reset();
        const s = transport();
        if (s) for (const [peer, count] of Object.entries(s.queuedMessages)) this.set({ peer }, count);
      },
    });
    new Gauge<'peer'>({
      name: 'rdl_peer_connected',
      help: '1 when the outgoing stream to a peer is open.',
      labelNames: ['peer'],
      registers: [registry],
      collect() {
        this.reset();
        const s = transport();
        if (s) for (const [peer, isUp] of Object.entries(s.isConnected)) this.set({ peer }, isUp ? 1 : 0);
      },
    });
    this.peerMessagesSent = new Counter({
      name: 'rdl_peer_messages_sent_total',
      help: 'Raft messages written to a peer stream.',
      labelNames: ['peer'],
      registers: [registry],
    });
    this.peerMessagesReceived = new Counter({
      name: 'rdl_peer_messages_received_total',
      help: 'Raft messages received from a peer and handed to the Raft node.',
      labelNames: ['peer'],
      registers: [registry],
    });
    this.peerMessagesDropped = new Counter({
      name: 'rdl_peer_messages_dropped_total',
      help: 'Raft messages dropped before sending (queue full, unknown peer, stream failed). Raft retransmits.',
      labelNames: ['peer', 'reason'],
      registers: [registry],
    });
    this.peerMessagesRejected = new Counter({
      name: 'rdl_peer_messages_rejected_total',
      help: 'Incoming peer messages rejected (malformed, identity mismatch, too large).',
      labelNames: ['peer', 'code'],
      registers: [registry],
    });
    this.peerReconnects = new Counter({
      name: 'rdl_peer_reconnects_total',
      help: 'Times the outgoing stream to a peer was (re)opened.',
      labelNames: ['peer'],
      registers: [registry],
    });
    this.ioOps = new Counter({
      name: 'rdl_io_ops_total',
      help: 'Block API IO requests answered, by volume, op and result code ("ok" on success).',
      labelNames: ['volume', 'op', 'result'],
      registers: [registry],
    });
    this.ioBytes = new Counter({
      name: 'rdl_io_bytes_total',
      help: 'Payload bytes of successful IO requests, by volume and op (writeZeroes/trim count their range).',
      labelNames: ['volume', 'op'],
      registers: [registry],
    });
    this.ioSeconds = new Histogram({
      name: 'rdl_io_seconds',
      help: 'Block API IO latency from request received to response written, by op.',
      labelNames: ['op'],
      buckets: latencyBuckets,
      registers: [registry],
    });
    this.apiInflightRequests = new Gauge({
      name: 'rdl_api_inflight_requests',
      help: 'IO requests being served by the block API.',
      registers: [registry],
    });
    this.apiInflightBytes = new Gauge({
      name: 'rdl_api_inflight_bytes',
      help: 'IO payload bytes being served by the block API (bytes in flight).',
      registers: [registry],
    });
  }

  /** Sets the function read at scrape time for the Raft gauges (null while the node is not running). */
  setRaftSource(source: () => RaftGaugeSource | null): void {
    this.raftSource = source;
  }

  /** Sets the function read at scrape time for the transport gauges. */
  setTransportSource(source: () => TransportGaugeSource): void {
    this.transportSource = source;
  }
}
