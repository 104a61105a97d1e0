/**
 * Prometheus metrics of one rdld (prom-client, its own registry so tests can build several).
 * What an operator watches: commit, fsync and apply latency; leader changes and term; commit and
 * applied index; per-follower lag; bytes in flight (API and peer queues); IO per volume.
 */
import { statfs } from 'node:fs/promises';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { HistogramConfiguration, LabelValues } from 'prom-client';

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
  /**
   * Messages written to / received from each peer since the transport started (monotonic). The
   * transport counts them in plain numbers, read at scrape time: a labelled counter update per
   * frame cost more than encoding the frame's messages.
   */
  sentMessages?: Record<string, number>;
  receivedMessages?: Record<string, number>;
}

/** A point-in-time view of LevelDB's compaction, read at scrape time. */
export interface StorageGaugeSource {
  /** Files in LevelDB's level 0 (LevelDB delays writers from 8 and stops them at 12). */
  level0Files: number;
  /** Nice value of LevelDB's compaction thread, or null when it was left alone. */
  compactionNice: number | null;
  /** Times the compaction thread was given the process's priority back (monotonic). */
  compactionBoosts: number;
  /**
   * LevelDB's own estimate of its memory (`leveldb.approximate-memory-usage`): its memtables (up
   * to two of `storage.leveldb_write_buffer_bytes`) and the block cache in use.
   */
  memoryBytes: number;
}

/**
 * The `collect` hook of a counter fed from monotonic totals read at scrape time: adds what each
 * label value gained since the previous scrape (all of it if the total went back, a new source).
 */
function pullCounter(read: () => Record<string, number> | undefined, label: string): (this: Counter<string>) => void {
  const last = new Map<string, number>();
  return function collect(this: Counter<string>): void {
    const totals = read();
    if (totals === undefined) return;
    for (const [key, total] of Object.entries(totals)) {
      const previous = last.get(key) ?? 0;
      const delta = total >= previous ? total - previous : total;
      last.set(key, total);
      if (delta > 0) this.inc({ [label]: key }, delta);
    }
  };
}

/** prom-client 15's per-label-set record of a histogram (`hashMap` values), which `FastHistogram` updates in place. */
interface HistogramRecord {
  sum: number;
  count: number;
  bucketValues: Record<string, number>;
}

/**
 * A prom-client `Histogram` whose `observe` costs a bucket search and three additions instead of
 * label validation, label hashing and a bucket search (about 0.5 µs each time, observed on every
 * write): the first observation of a label set goes through prom-client and creates its record;
 * later ones update that record directly, found by the label values. `reset`, `remove` and `zero`
 * replace records, so they drop the shortcut. If the record does not look as expected (another
 * prom-client version), it falls back to prom-client for good; test/unit/metrics.test.ts compares
 * the exposition against a plain `Histogram` fed the same observations.
 */
export class FastHistogram<T extends string = string> extends Histogram<T> {
  private readonly bounds: readonly number[];
  private readonly boundKeys: readonly string[];
  private readonly names: readonly T[];
  private readonly records = new Map<string, HistogramRecord>();
  private isShortcutBroken = false;

  constructor(configuration: HistogramConfiguration<T>) {
    super(configuration);
    this.bounds = [...(configuration.buckets ?? [])].sort((a, b) => a - b);
    this.boundKeys = this.bounds.map(String);
    this.names = [...(configuration.labelNames ?? [])];
    // prom-client assigns `observe` per instance in its constructor, so the shortcut replaces it
    // the same way; with exemplars it is left alone.
    if (configuration.enableExemplars === true) return;
    const slow = this.observe as (labelsOrValue: LabelValues<T> | number, value?: number) => void;
    this.observe = ((labelsOrValue: LabelValues<T> | number, maybeValue?: number): void => {
      const isBare = typeof labelsOrValue === 'number';
      const value = isBare ? labelsOrValue : (maybeValue as number);
      const labels = isBare ? undefined : labelsOrValue;
      const key = labels === undefined ? '' : this.keyOf(labels);
      const record =
        key === null || this.isShortcutBroken || !Number.isFinite(value) ? undefined : this.records.get(key);
      if (record === undefined) {
        slow.call(this, labelsOrValue, maybeValue);
        if (key !== null) this.remember(key, labels);
        return;
      }
      record.sum += value;
      record.count += 1;
      const bounds = this.bounds;
      for (let i = 0; i < bounds.length; i++) {
        if (value <= bounds[i]) {
          record.bucketValues[this.boundKeys[i]] += 1;
          break;
        }
      }
    }) as Histogram<T>['observe'];
  }

  /** Whether observations of label sets seen before take the shortcut (false after a fallback). */
  get isShortcutActive(): boolean {
    return !this.isShortcutBroken && this.records.size > 0;
  }

  override reset(): void {
    // prom-client's constructor calls reset() before this class's fields exist.
    (this.records as Map<string, HistogramRecord> | undefined)?.clear();
    super.reset();
  }

  override remove(...values: string[]): void;
  override remove(labels: LabelValues<T>): void;
  override remove(...args: unknown[]): void {
    this.records.clear();
    (super.remove as (...values: unknown[]) => void).apply(this, args);
  }

  override zero(labels: LabelValues<T>): void {
    this.records.clear();
    super.zero(labels);
  }

  /** The label values as one string, or null when a value is not a plain string/number (prom-client validates those). */
  private keyOf(labels: LabelValues<T>): string | null {
    const names = this.names;
    if (names.length === 1) {
      const v = labels[names[0]];
      return typeof v === 'string' || typeof v === 'number' ? String(v) : null;
    }
    let key = '';
    for (const name of names) {
      const v = labels[name];
      if (typeof v !== 'string' && typeof v !== 'number') return null;
      key += `${v}\u0000`;
    }
    return key;
  }

  /** Finds the record prom-client just created or updated for these labels and keeps it. */
  private remember(key: string, labels: LabelValues<T> | undefined): void {
    if (this.isShortcutBroken || this.records.has(key)) return;
    const hashMap = (this as unknown as { hashMap?: Record<string, HistogramRecord & { labels?: LabelValues<T> }> })
      .hashMap;
    const found = Object.values(hashMap ?? {}).find((record) =>
      this.names.every((name) => String(record.labels?.[name]) === String(labels?.[name])),
    );
    const isExpectedShape =
      found !== undefined &&
      typeof found.sum === 'number' &&
      typeof found.count === 'number' &&
      this.boundKeys.every((k) => typeof found.bucketValues?.[k] === 'number');
    if (!isExpectedShape) {
      this.isShortcutBroken = true;
      this.records.clear();
      return;
    }
    this.records.set(key, found);
  }
}

/** The daemon's metric set. Create one per daemon; `registry.metrics()` renders the text format. */
export class DaemonMetrics {
  readonly registry = new Registry();
  readonly commitSeconds: Histogram;
  readonly fsyncSeconds: Histogram;
  readonly applySeconds: Histogram;
  readonly leaderChanges: Counter;
  /** Raft WAL segment files made, by how: `zero-filled` (a new file written full of zeros) or `recycled`. */
  readonly walSegments: Counter<'how'>;
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
  private storageSource: (() => StorageGaugeSource | null) | null = null;
  private storageDirectories: { readonly data: string; readonly wal: string } | null = null;

  constructor(options: { region: string; isDefaultMetricsEnabled?: boolean }) {
    const registry = this.registry;
    registry.setDefaultLabels({ region: options.region });
    if (options.isDefaultMetricsEnabled ?? true) collectDefaultMetrics({ register: registry, prefix: 'rdl_process_' });
    this.commitSeconds = new FastHistogram({
      name: 'rdl_raft_commit_seconds',
      help: 'Time from proposing a command on the leader to its commit and local apply (what a write waits for).',
      buckets: latencyBuckets,
      registers: [registry],
    });
    this.fsyncSeconds = new FastHistogram({
      name: 'rdl_raft_fsync_seconds',
      help: 'Duration of one synced Raft log append (a group commit of every entry that arrived meanwhile).',
      buckets: latencyBuckets,
      registers: [registry],
    });
    this.applySeconds = new FastHistogram({
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
    this.walSegments = new Counter({
      name: 'rdl_wal_segments_total',
      help: 'Raft WAL segment files made: zero-filled (written full of zeros first) or recycled (a compacted segment reused).',
      labelNames: ['how'],
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
      collect: pullCounter(() => transport()?.sentMessages, 'peer'),
    });
    this.peerMessagesReceived = new Counter({
      name: 'rdl_peer_messages_received_total',
      help: 'Raft messages received from a peer and handed to the Raft node.',
      labelNames: ['peer'],
      registers: [registry],
      collect: pullCounter(() => transport()?.receivedMessages, 'peer'),
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
    this.ioSeconds = new FastHistogram({
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
    const storage = (): StorageGaugeSource | null => this.storageSource?.() ?? null;
    // A gauge read from the storage source at scrape time; absent while the value is null.
    const storageGauge = (name: string, help: string, read: (s: StorageGaugeSource) => number | null): void => {
      new Gauge({
        name,
        help,
        registers: [registry],
        collect() {
          const s = storage();
          const value = s === null ? null : read(s);
          if (value !== null) this.set(value);
        },
      });
    };
    storageGauge(
      'rdl_leveldb_level0_files',
      "Files in LevelDB's level 0: compaction backlog (LevelDB delays writes from 8 files and stops them at 12).",
      (s) => s.level0Files,
    );
    storageGauge(
      'rdl_leveldb_memory_bytes',
      "LevelDB's estimate of its memory use: memtables (up to two of storage.leveldb_write_buffer_bytes) and block cache.",
      (s) => s.memoryBytes,
    );
    storageGauge(
      'rdl_leveldb_compaction_nice',
      "Nice value of LevelDB's compaction thread (storage.compaction_nice while it keeps up; the daemon's own while level 0 backs up).",
      (s) => s.compactionNice,
    );
    // A statfs per directory and gauge at scrape time; a directory that cannot be read (removed,
    // say) is left out rather than reported as 0 bytes free.
    const fileSystems = async (): Promise<{ dir: 'data' | 'wal'; available: number; capacity: number }[]> => {
      const directories = this.storageDirectories;
      if (directories === null) return [];
      const results = await Promise.all(
        (['data', 'wal'] as const).map(async (dir) => {
          try {
            const stats = await statfs(directories[dir]);
            return { dir, available: stats.bavail * stats.bsize, capacity: stats.blocks * stats.bsize };
          } catch {
            return null;
          }
        }),
      );
      return results.filter((r) => r !== null);
    };
    new Gauge<'dir'>({
      name: 'rdl_storage_available_bytes',
      help: 'Bytes available to rdld on the file system of the data directory (dir="data") and of the WAL directory (dir="wal", storage.wal_dir).',
      labelNames: ['dir'],
      registers: [registry],
      async collect() {
        this.reset();
        for (const fs of await fileSystems()) this.set({ dir: fs.dir }, fs.available);
      },
    });
    new Gauge<'dir'>({
      name: 'rdl_storage_capacity_bytes',
      help: 'Size of the file system of the data directory (dir="data") and of the WAL directory (dir="wal").',
      labelNames: ['dir'],
      registers: [registry],
      async collect() {
        this.reset();
        for (const fs of await fileSystems()) this.set({ dir: fs.dir }, fs.capacity);
      },
    });
    let lastBoosts = 0;
    new Counter({
      name: 'rdl_leveldb_compaction_boosts_total',
      help: "Times LevelDB's compaction thread got the daemon's priority back because level 0 backed up.",
      registers: [registry],
      collect() {
        const s = storage();
        if (s && s.compactionBoosts > lastBoosts) this.inc(s.compactionBoosts - lastBoosts);
        if (s) lastBoosts = s.compactionBoosts;
      },
    });
  }

  /**
   * Reports the file systems holding the data directory and the WAL directory (statfs at scrape
   * time) as `rdl_storage_available_bytes{dir}` and `rdl_storage_capacity_bytes{dir}`. With
   * `storage.wal_dir` on a device of its own, the WAL can fill up on its own: a full WAL device
   * fails every write's fsync (DAEMON_STORAGE_FAILED).
   */
  setStorageDirectories(directories: { readonly data: string; readonly wal: string }): void {
    this.storageDirectories = directories;
  }

  /** Sets the function read at scrape time for the LevelDB compaction gauges. */
  setStorageSource(source: () => StorageGaugeSource | null): void {
    this.storageSource = source;
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
