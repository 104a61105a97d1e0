/**
 * rdld's configuration: defaults < TOML file < environment (`RDL_*`) < command-line flags,
 * validated once (every problem reported together in one `DAEMON_CONFIG_INVALID` error), then
 * deep-frozen. docs/configuration.md documents every key; `configOptions` below is the single
 * source of truth for scalar keys (name, type, default, environment variable, flag).
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, join, relative, resolve as resolvePath, sep } from 'node:path';
import { Command, Option } from 'commander';
import { parse as parseToml, TomlError } from 'smol-toml';
import { MESSAGE_BYTES_MAX } from '@rdl/client/wire';
import { DaemonError, DaemonErrorCode } from './errors.js';
import { logLevels } from './logging.js';

/** One other member of the Raft group. */
export interface PeerConfig {
  /** Region name (Raft node id), e.g. `gland`. */
  readonly id: string;
  /** `host:port` of that daemon's peer (Raft transport) listener. */
  readonly peerAddress: string;
  /** `host:port` clients use to reach that daemon (returned in NOT_LEADER redirects), or null if unknown. */
  readonly clientAddress: string | null;
  /** Artificial one-way delay added to every message sent to this peer (region-latency emulation). */
  readonly delayMs: number;
}

/** Raft tuning passed to `RaftNode` (see the raft API for meanings). */
export interface RaftTuning {
  readonly tickIntervalMs: number;
  readonly electionTimeoutTicks: number;
  readonly heartbeatTicks: number;
  readonly isPreVoteEnabled: boolean;
  readonly isCheckQuorumEnabled: boolean;
  readonly isCommitPiggybackEnabled: boolean;
  readonly inflightMessagesMax: number;
  readonly inflightBytesMax: number;
  readonly entryBytesMax: number;
  readonly appendBatchBytesMax: number;
  readonly uncommittedBytesMax: number;
  readonly isLeaseReadEnabled: boolean;
  readonly clockDriftBoundMs: number;
  readonly applyBatchBytesMax: number;
  readonly logEntriesMax: number;
  readonly logBytesMax: number;
  readonly logEntriesKeep: number;
  readonly snapshotChunkBytes: number;
  readonly snapshotChunksInflightMax: number;
  readonly snapshotIdleTicks: number;
  readonly snapshotIdleRoundsMax: number;
}

/** The validated, frozen configuration of one rdld process. */
export interface DaemonConfig {
  /** This daemon's region (its Raft node id). */
  readonly region: string;
  /** Absolute path of the data directory (LevelDB databases live below it). */
  readonly dataDir: string;
  readonly listen: {
    /** Block API (gRPC) listen address. */
    readonly client: string;
    /** Peer (Raft transport, gRPC) listen address. */
    readonly peer: string;
    /** HTTP /metrics, /healthz, /readyz listen address, or null to disable. */
    readonly metrics: string | null;
  };
  /** Client address other daemons hand out in NOT_LEADER redirects for this daemon. */
  readonly advertiseClient: string;
  /** The other members, sorted by id. */
  readonly peers: readonly PeerConfig[];
  readonly raft: RaftTuning;
  readonly api: {
    /** Largest encoded request accepted on the block API (gRPC max receive message size). */
    readonly requestBytesMax: number;
    /** Largest read or write payload of one IO request. */
    readonly ioBytesMax: number;
    /** IO requests in flight on one Io stream before new ones get RESOURCE_EXHAUSTED. */
    readonly streamInflightMax: number;
    /** Bytes of IO payload in flight on one Io stream before new ones get RESOURCE_EXHAUSTED. */
    readonly streamInflightBytesMax: number;
    /** IO requests in flight on the whole daemon before new ones get RESOURCE_EXHAUSTED. */
    readonly daemonInflightMax: number;
    /** IO payload bytes in flight on the whole daemon before new requests get RESOURCE_EXHAUSTED. */
    readonly daemonInflightBytesMax: number;
    /** How long a request waits for commit (writes) or a read index (reads) before DEADLINE_EXCEEDED. */
    readonly requestTimeoutMs: number;
  };
  readonly transport: {
    /** Messages queued per peer before new ones are dropped. */
    readonly queueMessagesMax: number;
    /** Bytes queued per peer before new ones are dropped. */
    readonly queueBytesMax: number;
    /** Largest encoded batch accepted from a peer. */
    readonly messageBytesMax: number;
    /** First reconnect delay after a peer stream fails; doubles up to the maximum. */
    readonly reconnectDelayMsMin: number;
    readonly reconnectDelayMsMax: number;
  };
  readonly storage: {
    /** Absolute path of the Raft WAL's directory (`storage.wal_dir`; `<dataDir>/wal` unless set). */
    readonly walDir: string;
    /** Size of each Raft WAL segment file (preallocated with zeros). */
    readonly walSegmentBytes: number;
    /** Nice value of LevelDB's compaction thread (0 leaves it at the daemon's). */
    readonly compactionNice: number;
    /** LevelDB memtable size: block writes buffered in memory before a flush to a level-0 file. */
    readonly leveldbWriteBufferBytes: number;
    /** LevelDB table block size: the unit LevelDB writes, checksums, caches and reads tables in. */
    readonly leveldbBlockBytes: number;
  };
  readonly log: { readonly level: string };
}

type Kind =
  'string' | 'address' | 'optional-address' | 'int' | 'bytes' | 'bool' | 'level' | 'region' | 'path' | 'optional-path';

/** Description of one scalar configuration key (documentation and parsing). */
export interface ConfigOption {
  /** Dotted TOML key, e.g. `raft.tick_interval_ms`. */
  readonly key: string;
  /** Where the value lands in {@link DaemonConfig}. */
  readonly path: readonly string[];
  readonly kind: Kind;
  /** Default value, or undefined when the key is required. */
  readonly defaultValue: string | number | boolean | null | undefined;
  readonly env: string;
  /** Long flag, e.g. `--raft-tick-interval-ms`. */
  readonly flag: string;
  readonly min?: number;
  readonly max?: number;
  readonly description: string;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

function option(
  key: string,
  kind: Kind,
  defaultValue: ConfigOption['defaultValue'],
  description: string,
  bounds: { min?: number; max?: number } = {},
): ConfigOption {
  const path = key.split('.').map((part) => part.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase()));
  const dashed = key.replace(/[._]/g, '-');
  // Raft booleans read as questions in code (`isPreVoteEnabled`) but as plain words in files.
  const fixedPath = path.map((p) =>
    p.endsWith('Enabled') && !p.startsWith('is') ? `is${p[0].toUpperCase()}${p.slice(1)}` : p,
  );
  return {
    key,
    path: fixedPath,
    kind,
    defaultValue,
    env: `RDL_${key.replace(/\./g, '_').toUpperCase()}`,
    flag: `--${dashed}`,
    ...bounds,
    description,
  };
}

/** Every scalar configuration key. Peers are configured separately (see {@link parsePeerSpec}). */
export const configOptions: readonly ConfigOption[] = [
  option(
    'region',
    'region',
    undefined,
    "This daemon's region name and Raft node id (`geneva`, `gland`, `lucerne`). Required.",
  ),
  option(
    'data_dir',
    'path',
    undefined,
    'Data directory (created if missing; must be writable and not used by another rdld). Required.',
  ),
  option(
    'advertise_client',
    'optional-address',
    null,
    'Client address handed to clients in NOT_LEADER redirects for this daemon (default: `listen.client`).',
  ),
  option('listen.client', 'address', '127.0.0.1:7001', 'Block API (gRPC) listen address `host:port`.'),
  option('listen.peer', 'address', '127.0.0.1:7101', 'Peer (Raft transport, gRPC) listen address `host:port`.'),
  option(
    'listen.metrics',
    'optional-address',
    '127.0.0.1:9101',
    'HTTP `/metrics`, `/healthz`, `/readyz` listen address; empty string disables it.',
  ),
  // 100 ms ticks: heartbeats every 100 ms and elections after 1-2 s, etcd's defaults. With 50 ms
  // (elections after 0.5-1 s) a loaded 2-core machine, where scheduling stalls of 300-1000 ms were
  // measured under 1 MiB writes, saw followers campaign and the leader fail CheckQuorum although
  // every daemon was healthy. Reads do not wait for a tick (ReadIndex sends its own heartbeat round).
  option(
    'raft.tick_interval_ms',
    'int',
    100,
    "Raft tick length in milliseconds. Heartbeats every tick and elections after 1-2 s by default (etcd's defaults): shorter timeouts saw needless elections on a loaded 2-core machine.",
    { min: 1, max: 10_000 },
  ),
  option('raft.election_timeout_ticks', 'int', 10, 'Election timeout in ticks (randomised in [e, 2e)).', {
    min: 2,
    max: 10_000,
  }),
  option('raft.heartbeat_ticks', 'int', 1, 'Leader heartbeat interval in ticks (must be below the election timeout).', {
    min: 1,
    max: 10_000,
  }),
  option(
    'raft.pre_vote_enabled',
    'bool',
    true,
    'Pre-vote, so a returning partitioned region does not depose a healthy leader.',
  ),
  option(
    'raft.check_quorum_enabled',
    'bool',
    true,
    'A leader that cannot reach a quorum for an election timeout steps down.',
  ),
  option(
    'raft.commit_piggyback_enabled',
    'bool',
    true,
    'The leader sends a new commit index with its next append or heartbeat instead of an extra append (and reply) per commit; followers apply up to one heartbeat later.',
  ),
  option('raft.inflight_messages_max', 'int', 256, 'AppendEntries messages in flight per follower.', {
    min: 1,
    max: 1_000_000,
  }),
  option('raft.inflight_bytes_max', 'bytes', 32 * MiB, 'Bytes of AppendEntries in flight per follower.', {
    min: 64 * KiB,
    max: 4 * GiB,
  }),
  option('raft.entry_bytes_max', 'bytes', 4 * MiB + 64 * KiB, 'Largest single log entry (one replicated command).', {
    min: 8 * KiB,
    max: 256 * MiB,
  }),
  option('raft.append_batch_bytes_max', 'bytes', 1 * MiB, 'Largest AppendEntries payload.', {
    min: 4 * KiB,
    max: 256 * MiB,
  }),
  option(
    'raft.uncommitted_bytes_max',
    'bytes',
    64 * MiB,
    'Uncommitted bytes a leader accepts before refusing proposals.',
    { min: 64 * KiB, max: 16 * GiB },
  ),
  option(
    'raft.lease_read_enabled',
    'bool',
    false,
    'Serve reads from a leader lease instead of a ReadIndex quorum round (needs bounded clock drift).',
  ),
  option('raft.clock_drift_bound_ms', 'int', 100, 'Assumed clock-drift bound for lease reads.', {
    min: 0,
    max: 60_000,
  }),
  option(
    'raft.apply_batch_bytes_max',
    'bytes',
    4 * MiB,
    'Most bytes of committed entries applied in one state-machine batch.',
    {
      min: 64 * KiB,
      max: 1 * GiB,
    },
  ),
  option(
    'raft.log_entries_max',
    'int',
    50_000,
    'Applied entries kept in the Raft log before it is compacted behind a snapshot.',
    {
      min: 2,
      max: 100_000_000,
    },
  ),
  option(
    'raft.log_bytes_max',
    'bytes',
    256 * MiB,
    'Bytes of applied entries kept in the Raft log before it is compacted.',
    {
      min: 64 * KiB,
      max: 64 * GiB,
    },
  ),
  option(
    'raft.log_entries_keep',
    'int',
    5_000,
    'Applied entries left in the log after a compaction, for followers slightly behind.',
    {
      min: 0,
      max: 100_000_000,
    },
  ),
  option(
    'raft.snapshot_chunk_bytes',
    'bytes',
    1 * MiB,
    'Bytes per snapshot chunk sent to a follower that is too far behind.',
    {
      min: 4 * KiB,
      max: 64 * MiB,
    },
  ),
  option('raft.snapshot_chunks_inflight_max', 'int', 4, 'Snapshot chunks in flight per follower (back-pressure).', {
    min: 1,
    max: 1024,
  }),
  option(
    'raft.snapshot_idle_ticks',
    'int',
    20,
    'Ticks without an acknowledged chunk before resending from the last acknowledged one.',
    {
      min: 1,
      max: 100_000,
    },
  ),
  option(
    'raft.snapshot_idle_rounds_max',
    'int',
    3,
    'Idle periods in a row after which a snapshot transfer is abandoned (and retried later).',
    {
      min: 1,
      max: 1000,
    },
  ),
  option('api.request_bytes_max', 'bytes', 5 * MiB, 'Largest encoded gRPC message accepted on the block API.', {
    min: 64 * KiB,
    max: 256 * MiB,
  }),
  option('api.io_bytes_max', 'bytes', 4 * MiB, 'Largest read or write payload of one IO request.', {
    min: 4 * KiB,
    max: 256 * MiB,
  }),
  option('api.stream_inflight_max', 'int', 256, 'IO requests in flight per Io stream (more get RESOURCE_EXHAUSTED).', {
    min: 1,
    max: 65_536,
  }),
  option('api.stream_inflight_bytes_max', 'bytes', 64 * MiB, 'IO payload bytes in flight per Io stream.', {
    min: 64 * KiB,
    max: 16 * GiB,
  }),
  option('api.daemon_inflight_max', 'int', 4096, 'IO requests in flight on the whole daemon.', {
    min: 1,
    max: 1_000_000,
  }),
  option('api.daemon_inflight_bytes_max', 'bytes', 256 * MiB, 'IO payload bytes in flight on the whole daemon.', {
    min: 64 * KiB,
    max: 64 * GiB,
  }),
  option(
    'api.request_timeout_ms',
    'int',
    10_000,
    'How long a request waits for its commit or read index before DEADLINE_EXCEEDED.',
    {
      min: 100,
      max: 600_000,
    },
  ),
  option(
    'transport.queue_messages_max',
    'int',
    4096,
    'Raft messages queued per peer and lane (control, bulk) before new ones are dropped.',
    {
      min: 16,
      max: 1_000_000,
    },
  ),
  option(
    'transport.queue_bytes_max',
    'bytes',
    64 * MiB,
    'Bytes queued per peer and lane (control, bulk) before new messages are dropped.',
    {
      min: 64 * KiB,
      max: 16 * GiB,
    },
  ),
  option('transport.message_bytes_max', 'bytes', 64 * MiB, 'Largest encoded message batch accepted from a peer.', {
    min: 64 * KiB,
    max: 1 * GiB,
  }),
  option(
    'transport.reconnect_delay_ms_min',
    'int',
    50,
    'First delay before reconnecting to a peer; doubles after each failure.',
    { min: 1, max: 60_000 },
  ),
  option('transport.reconnect_delay_ms_max', 'int', 2000, 'Largest delay between reconnection attempts.', {
    min: 1,
    max: 600_000,
  }),
  option(
    'storage.wal_dir',
    'optional-path',
    null,
    "Directory of the Raft write-ahead log (every write is fsynced there before it is acknowledged). Empty (the default) means `<data_dir>/wal`. Give it a device of its own, as etcd advises for its `--wal-dir`: the WAL's synced writes then do not queue behind LevelDB's flushes and compactions. Must not be `data_dir` itself or inside `<data_dir>/db`. rdld refuses to start on a WAL that is not its data directory's (`DAEMON_WAL_MISMATCH`) or on one without its log when the data directory holds state or a binding (`DAEMON_WAL_MISSING`).",
  ),
  option(
    'storage.wal_segment_bytes',
    'bytes',
    64 * MiB,
    'Size of each Raft write-ahead log segment file in the WAL directory (`storage.wal_dir`, `<data_dir>/wal` by default; written full of zeros ahead of use). Must hold the largest entry (`raft.entry_bytes_max`) plus 128 KiB.',
    { min: 1 * MiB, max: 1 * GiB },
  ),
  option(
    'storage.compaction_nice',
    'int',
    19,
    "Nice value (CPU priority) of LevelDB's background compaction thread on Linux: 1 (slightly lower than the daemon) to 19 (lowest); 0 leaves it at the daemon's. Client IO wins the CPU over compaction.",
    { min: 0, max: 19 },
  ),
  option(
    'storage.leveldb_write_buffer_bytes',
    'bytes',
    64 * MiB,
    "Size of LevelDB's memtable: applied block writes held in memory (and in LevelDB's own log) before they are flushed to a level-0 file. Larger means fewer flushes and less compaction per written block; LevelDB holds up to two (one being flushed), and replays the log into one at start-up.",
    { min: 4 * MiB, max: 1 * GiB },
  ),
  option(
    'storage.leveldb_block_bytes',
    'bytes',
    16 * KiB,
    'Size of the blocks LevelDB builds its table files from (before compression): each block is written, checksummed and cached as one, and a read that misses the block cache reads a whole block. Larger means less work per written 4 KiB block in flushes and compactions; smaller means less read per random 4 KiB read of a block not in memory. Applies to table files written from then on.',
    { min: 4 * KiB, max: 1 * MiB },
  ),
  option('log.level', 'level', 'info', `Log level: ${logLevels.join(', ')}.`),
];

/** Where configuration comes from, besides defaults. */
export interface ConfigSources {
  /** Parsed command-line (see {@link parseArgs}); `config` is the TOML file path. */
  readonly flags?: FlagValues;
  /** Environment (default `process.env`). Only `RDL_*` variables are read. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** TOML text to use instead of reading `flags.config` / `RDL_CONFIG` (tests). */
  readonly fileText?: string;
  /** Directory relative paths are resolved against (default `process.cwd()`). */
  readonly cwd?: string;
}

/** The command-line flags, as strings, keyed by option key; plus repeatable peer flags. */
export interface FlagValues {
  readonly config?: string;
  readonly values: Readonly<Record<string, string>>;
  /** `--peer` values, in order. */
  readonly peers: readonly string[];
  /** `--peer-delay-ms` values, in order. */
  readonly peerDelays: readonly string[];
}

const regionPattern = /^[a-z][a-z0-9-]{0,62}$/;

/**
 * Parses `host:port` (IPv4, hostname, or `[v6]:port`). Returns null when invalid. Port 0 is allowed
 * (the OS picks one; the bound port is logged) so tests can use ephemeral ports.
 */
export function parseAddress(text: string): { host: string; port: number } | null {
  const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(text);
  if (!match) return null;
  const port = Number(match[2]);
  if (port > 65535) return null;
  return { host: match[1], port };
}

/** Parses sizes such as `4096`, `64KiB`, `4MiB`, `1GiB`, `2MB`. Returns null when invalid. */
export function parseBytes(value: unknown): number | null {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : null;
  if (typeof value === 'bigint') return value >= 0n && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : null;
  if (typeof value !== 'string') return null;
  const match = /^\s*(\d+)\s*(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB|k|K|M|G|T)?\s*$/.exec(value);
  if (!match) return null;
  const units: Record<string, number> = {
    B: 1,
    KiB: KiB,
    MiB: MiB,
    GiB: GiB,
    TiB: 1024 * GiB,
    k: KiB,
    K: KiB,
    M: MiB,
    G: GiB,
    T: 1024 * GiB,
    KB: 1000,
    MB: 1000 ** 2,
    GB: 1000 ** 3,
    TB: 1000 ** 4,
  };
  const result = Number(match[1]) * units[match[2] ?? 'B'];
  return Number.isSafeInteger(result) ? result : null;
}

/** A peer as written in config, before validation. */
interface RawPeer {
  id: string;
  peer?: unknown;
  client?: unknown;
  delayMs?: unknown;
  source: string;
}

/**
 * Parses one `--peer` value: `NAME=PEER_ADDR[,client=CLIENT_ADDR][,delay_ms=N]`, e.g.
 * `gland=127.0.0.1:7102,client=127.0.0.1:7002`. The first address after `=` is the peer
 * (Raft) address; `peer=ADDR` may be spelled out too. Problems are appended to `problems`.
 */
export function parsePeerSpec(spec: string, source: string, problems: string[]): RawPeer | null {
  const eq = spec.indexOf('=');
  if (eq <= 0) {
    problems.push(`${source}: "${spec}" is not NAME=PEER_ADDR[,client=ADDR][,delay_ms=N]`);
    return null;
  }
  const raw: RawPeer = { id: spec.slice(0, eq).trim(), source };
  const parts = spec
    .slice(eq + 1)
    .split(',')
    .map((part) => part.trim());
  for (const [i, part] of parts.entries()) {
    const kv = /^([a-z_-]+)=(.*)$/.exec(part);
    if (!kv) {
      if (i === 0) raw.peer = part;
      else problems.push(`${source}: "${part}" in peer ${raw.id} is not KEY=VALUE (keys: peer, client, delay_ms)`);
      continue;
    }
    const key = kv[1].replace(/-/g, '_');
    if (key === 'peer') raw.peer = kv[2];
    else if (key === 'client') raw.client = kv[2];
    else if (key === 'delay_ms') raw.delayMs = kv[2];
    else problems.push(`${source}: unknown peer key "${kv[1]}" in peer ${raw.id} (keys: peer, client, delay_ms)`);
  }
  return raw;
}

/** Builds the commander program for `rdld`. Exported so `--help` text and tests share it. */
export function buildCommand(): Command {
  const program = new Command('rdld')
    .description('rdl regional daemon: one member of the Raft group serving the block API')
    .option('-c, --config <file>', 'TOML configuration file (env RDL_CONFIG)')
    .addOption(
      new Option(
        '--peer <spec>',
        'another member: NAME=PEER_ADDR[,client=CLIENT_ADDR][,delay_ms=N]; repeat per peer (env RDL_PEERS, ";"-separated)',
      )
        .argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value])
        .default(undefined),
    )
    .addOption(
      new Option('--peer-delay-ms <spec>', 'artificial delay to a peer: NAME=MS; repeatable (region-latency emulation)')
        .argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value])
        .default(undefined),
    )
    .helpOption('-h, --help', 'show this help')
    .allowExcessArguments(false)
    .showHelpAfterError();
  for (const opt of configOptions) {
    const argument = opt.kind === 'bool' ? '<true|false>' : '<value>';
    const shown = opt.defaultValue === undefined ? 'required' : `default ${JSON.stringify(opt.defaultValue)}`;
    program.option(`${opt.flag} ${argument}`, `${opt.description} (${shown}; env ${opt.env})`);
  }
  return program;
}

/** Parses argv (without node and script) into {@link FlagValues}. Throws DAEMON_CONFIG_INVALID on unknown flags. */
export function parseArgs(argv: readonly string[]): FlagValues {
  const program = buildCommand();
  program.exitOverride();
  program.configureOutput({ writeErr: () => undefined, writeOut: (s) => process.stdout.write(s) });
  try {
    program.parse([...argv], { from: 'user' });
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'commander.helpDisplayed' || code === 'commander.version') throw err;
    throw new DaemonError(DaemonErrorCode.ConfigInvalid, `invalid command line: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const opts = program.opts<Record<string, unknown>>();
  const values: Record<string, string> = {};
  for (const opt of configOptions) {
    const name = opt.flag.slice(2).replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
    const value = opts[name];
    if (typeof value === 'string') values[opt.key] = value;
  }
  return {
    config: typeof opts.config === 'string' ? opts.config : undefined,
    values,
    peers: (opts.peer as string[] | undefined) ?? [],
    peerDelays: (opts.peerDelayMs as string[] | undefined) ?? [],
  };
}

function getPath(object: Record<string, unknown>, key: string): { found: boolean; value: unknown } {
  let current: unknown = object;
  for (const part of key.split('.')) {
    if (typeof current !== 'object' || current === null || !Object.hasOwn(current, part)) {
      return { found: false, value: undefined };
    }
    current = (current as Record<string, unknown>)[part];
  }
  return { found: true, value: current };
}

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let current = target;
  for (const part of path.slice(0, -1)) {
    current[part] ??= {};
    current = current[part] as Record<string, unknown>;
  }
  current[path[path.length - 1]] = value;
}

/** Converts one raw value (TOML-typed from the file, string from env/flags) to the option's type. */
function convert(opt: ConfigOption, raw: unknown, source: string, problems: string[]): unknown {
  const where = `${source} ${opt.key}`;
  switch (opt.kind) {
    case 'optional-path':
      if (raw === '' || raw === null) return null;
      if (typeof raw !== 'string') {
        problems.push(`${where}: expected a path or an empty string, got ${JSON.stringify(raw)}`);
        return undefined;
      }
      return raw;
    case 'string':
    case 'path':
      if (typeof raw !== 'string' || raw === '') {
        problems.push(`${where}: expected a non-empty string, got ${JSON.stringify(raw)}`);
        return undefined;
      }
      return raw;
    case 'region':
      if (typeof raw !== 'string' || !regionPattern.test(raw)) {
        problems.push(`${where}: expected a region name matching ${regionPattern}, got ${JSON.stringify(raw)}`);
        return undefined;
      }
      return raw;
    case 'address':
    case 'optional-address':
      if (opt.kind === 'optional-address' && (raw === '' || raw === null)) return null;
      if (typeof raw !== 'string' || parseAddress(raw) === null) {
        problems.push(`${where}: expected host:port, got ${JSON.stringify(raw)}`);
        return undefined;
      }
      return raw;
    case 'level':
      if (typeof raw !== 'string' || !logLevels.includes(raw as never)) {
        problems.push(`${where}: expected one of ${logLevels.join(', ')}, got ${JSON.stringify(raw)}`);
        return undefined;
      }
      return raw;
    case 'bool':
      if (typeof raw === 'boolean') return raw;
      if (raw === 'true' || raw === '1' || raw === 'yes') return true;
      if (raw === 'false' || raw === '0' || raw === 'no') return false;
      problems.push(`${where}: expected true or false, got ${JSON.stringify(raw)}`);
      return undefined;
    case 'int':
    case 'bytes': {
      let value: number | null;
      if (opt.kind === 'bytes') value = parseBytes(raw);
      else if (typeof raw === 'number') value = Number.isSafeInteger(raw) ? raw : null;
      else if (typeof raw === 'bigint') value = Number(raw);
      else if (typeof raw === 'string' && /^\s*-?\d+\s*$/.test(raw)) value = Number(raw);
      else value = null;
      if (value === null) {
        const what = opt.kind === 'bytes' ? 'a size such as 4096 or "4MiB"' : 'an integer';
        problems.push(`${where}: expected ${what}, got ${JSON.stringify(raw)}`);
        return undefined;
      }
      if ((opt.min !== undefined && value < opt.min) || (opt.max !== undefined && value > opt.max)) {
        problems.push(`${where}: ${value} is outside [${opt.min ?? '-inf'}, ${opt.max ?? 'inf'}]`);
        return undefined;
      }
      return value;
    }
  }
}

/** Lists dotted keys of a parsed TOML document that no option knows (typos are errors, not silence). */
function unknownKeys(document: Record<string, unknown>): string[] {
  const known = new Set(configOptions.map((opt) => opt.key));
  const sections = new Set(configOptions.filter((o) => o.key.includes('.')).map((o) => o.key.split('.')[0]));
  const unknown: string[] = [];
  for (const [key, value] of Object.entries(document)) {
    if (key === 'peers') continue;
    if (sections.has(key) && typeof value === 'object' && value !== null && !Array.isArray(value)) {
      for (const sub of Object.keys(value)) if (!known.has(`${key}.${sub}`)) unknown.push(`${key}.${sub}`);
    } else if (!known.has(key)) {
      unknown.push(key);
    }
  }
  return unknown;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

/**
 * Loads, layers, validates and freezes the configuration. Throws one `DaemonError` with code
 * `DAEMON_CONFIG_INVALID` listing every problem (its `problems` property holds them as an array),
 * or `DAEMON_CONFIG_UNREADABLE` when the file cannot be read or parsed.
 */
export function loadConfig(sources: ConfigSources = {}): DaemonConfig {
  const env = sources.env ?? process.env;
  const cwd = sources.cwd ?? process.cwd();
  const flags: FlagValues = sources.flags ?? { values: {}, peers: [], peerDelays: [] };
  const problems: string[] = [];

  // The file.
  let document: Record<string, unknown> = {};
  const configPath = flags.config ?? env.RDL_CONFIG;
  let fileLabel = 'config file';
  if (sources.fileText !== undefined || configPath !== undefined) {
    let text = sources.fileText;
    if (text === undefined) {
      const absolute = resolvePath(cwd, configPath as string);
      fileLabel = absolute;
      try {
        text = readFileSync(absolute, 'utf8');
      } catch (err) {
        throw new DaemonError(
          DaemonErrorCode.ConfigUnreadable,
          `cannot read config file ${absolute}: ${(err as Error).message}`,
          { cause: err },
        );
      }
    }
    try {
      document = parseToml(text) as Record<string, unknown>;
    } catch (err) {
      const detail = err instanceof TomlError ? `line ${err.line}, column ${err.column}: ${err.message}` : String(err);
      throw new DaemonError(DaemonErrorCode.ConfigUnreadable, `config file ${fileLabel} is not valid TOML: ${detail}`, {
        cause: err,
      });
    }
    for (const key of unknownKeys(document)) problems.push(`${fileLabel}: unknown key "${key}"`);
  }

  // Scalars: default < file < env < flag.
  const result: Record<string, unknown> = {};
  for (const opt of configOptions) {
    let value: unknown = opt.defaultValue;
    let isSet = opt.defaultValue !== undefined;
    const fromFile = getPath(document, opt.key);
    if (fromFile.found) {
      value = convert(opt, fromFile.value, fileLabel, problems);
      isSet = true;
    }
    const fromEnv = env[opt.env];
    if (fromEnv !== undefined) {
      value = convert(opt, fromEnv, `environment ${opt.env} =`, problems);
      isSet = true;
    }
    const fromFlag = flags.values[opt.key];
    if (fromFlag !== undefined) {
      value = convert(opt, fromFlag, `flag ${opt.flag} =`, problems);
      isSet = true;
    }
    if (!isSet) problems.push(`${opt.key} is required (file key ${opt.key}, env ${opt.env} or flag ${opt.flag})`);
    if ((opt.kind === 'path' || opt.kind === 'optional-path') && typeof value === 'string') {
      value = resolvePath(cwd, value);
    }
    setPath(result, opt.path, value);
  }

  // Peers: the flag list replaces env, which replaces the file (a list is not merged key by key).
  let rawPeers: RawPeer[] = [];
  if (flags.peers.length > 0) {
    rawPeers = flags.peers.flatMap((spec) => parsePeerSpec(spec, 'flag --peer', problems) ?? []);
  } else if (env.RDL_PEERS !== undefined && env.RDL_PEERS.trim() !== '') {
    rawPeers = env.RDL_PEERS.split(';')
      .filter((spec) => spec.trim() !== '')
      .flatMap((spec) => parsePeerSpec(spec.trim(), 'environment RDL_PEERS', problems) ?? []);
  } else if (document.peers !== undefined) {
    const table = document.peers;
    if (typeof table !== 'object' || table === null || Array.isArray(table)) {
      problems.push(`${fileLabel}: "peers" must be a table of [peers.NAME] sections`);
    } else {
      for (const [id, entry] of Object.entries(table)) {
        if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
          problems.push(`${fileLabel}: [peers.${id}] must be a table with peer = "host:port"`);
          continue;
        }
        const fields = entry as Record<string, unknown>;
        for (const field of Object.keys(fields)) {
          if (!['peer', 'client', 'delay_ms'].includes(field)) {
            problems.push(`${fileLabel}: unknown key "peers.${id}.${field}" (keys: peer, client, delay_ms)`);
          }
        }
        rawPeers.push({ id, peer: fields.peer, client: fields.client, delayMs: fields.delay_ms, source: fileLabel });
      }
    }
  }
  const delays = new Map<string, unknown>();
  for (const spec of flags.peerDelays) {
    const match = /^([^=]+)=(.*)$/.exec(spec);
    if (!match) problems.push(`flag --peer-delay-ms: "${spec}" is not NAME=MS`);
    else delays.set(match[1].trim(), match[2].trim());
  }

  const peers: PeerConfig[] = [];
  const seen = new Set<string>();
  for (const raw of rawPeers) {
    const where = `${raw.source} peer ${JSON.stringify(raw.id)}`;
    if (!regionPattern.test(raw.id)) problems.push(`${where}: name must match ${regionPattern}`);
    if (raw.id === result.region) problems.push(`${where}: a daemon must not list itself as a peer`);
    if (seen.has(raw.id)) problems.push(`${where}: listed twice`);
    seen.add(raw.id);
    if (typeof raw.peer !== 'string' || parseAddress(raw.peer) === null) {
      problems.push(`${where}: peer address must be host:port, got ${JSON.stringify(raw.peer)}`);
    }
    if (raw.client !== undefined && (typeof raw.client !== 'string' || parseAddress(raw.client) === null)) {
      problems.push(`${where}: client address must be host:port, got ${JSON.stringify(raw.client)}`);
    }
    let delayMs = 0;
    const delayRaw = delays.has(raw.id) ? delays.get(raw.id) : raw.delayMs;
    if (delayRaw !== undefined) {
      const parsed = typeof delayRaw === 'string' ? Number(delayRaw) : delayRaw;
      if (typeof parsed !== 'number' || !Number.isFinite(parsed) || parsed < 0 || parsed > 10_000) {
        problems.push(
          `${where}: delay_ms must be a number of milliseconds in [0, 10000], got ${JSON.stringify(delayRaw)}`,
        );
      } else {
        delayMs = parsed;
      }
    }
    peers.push({
      id: raw.id,
      peerAddress: String(raw.peer),
      clientAddress: typeof raw.client === 'string' ? raw.client : null,
      delayMs,
    });
  }
  for (const id of delays.keys()) {
    if (!seen.has(id)) problems.push(`flag --peer-delay-ms: "${id}" is not a configured peer`);
  }
  peers.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

  // Cross-field rules.
  const raft = result.raft as Record<string, number> | undefined;
  if (raft && raft.heartbeatTicks >= raft.electionTimeoutTicks) {
    problems.push(
      `raft.heartbeat_ticks (${raft.heartbeatTicks}) must be below raft.election_timeout_ticks (${raft.electionTimeoutTicks})`,
    );
  }
  if (raft && raft.appendBatchBytesMax > raft.inflightBytesMax) {
    problems.push('raft.append_batch_bytes_max must not exceed raft.inflight_bytes_max');
  }
  const transport = result.transport as Record<string, number> | undefined;
  if (transport && transport.reconnectDelayMsMin > transport.reconnectDelayMsMax) {
    problems.push('transport.reconnect_delay_ms_min must not exceed transport.reconnect_delay_ms_max');
  }
  const api = result.api as Record<string, number> | undefined;
  if (api && raft && api.ioBytesMax + 64 * KiB > raft.entryBytesMax) {
    problems.push(
      `api.io_bytes_max (${api.ioBytesMax}) plus 64 KiB of command overhead must fit in raft.entry_bytes_max (${raft.entryBytesMax})`,
    );
  }
  if (api && (api.ioBytesMax > api.streamInflightBytesMax || api.streamInflightBytesMax > api.daemonInflightBytesMax)) {
    problems.push('api.io_bytes_max <= api.stream_inflight_bytes_max <= api.daemon_inflight_bytes_max must hold');
  }
  if (api && api.ioBytesMax + 64 * KiB > api.requestBytesMax) {
    problems.push(`api.io_bytes_max plus 64 KiB of framing must fit in api.request_bytes_max`);
  }
  // The SDK fills one Io message with up to IO_BATCH_BYTES_MAX of payload whatever this daemon's
  // io_bytes_max is, so a smaller receive limit would fail well-formed batches at the gRPC layer.
  if (api && api.requestBytesMax < MESSAGE_BYTES_MAX) {
    problems.push(
      `api.request_bytes_max (${api.requestBytesMax}) must be at least ${MESSAGE_BYTES_MAX}, the largest Io message the SDK sends`,
    );
  }
  if (transport && raft && transport.messageBytesMax < raft.appendBatchBytesMax + raft.entryBytesMax) {
    problems.push('transport.message_bytes_max must hold one AppendEntries batch plus one largest entry');
  }
  if (transport && raft && transport.messageBytesMax < raft.snapshotChunkBytes + 64 * KiB) {
    problems.push('transport.message_bytes_max must hold one snapshot chunk (raft.snapshot_chunk_bytes) plus 64 KiB');
  }
  const storage = result.storage as Record<string, number> | undefined;
  if (storage && raft && storage.walSegmentBytes < raft.entryBytesMax + 128 * KiB) {
    problems.push(
      `storage.wal_segment_bytes (${storage.walSegmentBytes}) must hold raft.entry_bytes_max (${raft.entryBytesMax}) plus 128 KiB`,
    );
  }
  const dataDir = result.dataDir as string | undefined;
  const storagePaths = result.storage as { walDir?: string | null } | undefined;
  if (storagePaths && typeof dataDir === 'string' && storagePaths.walDir !== undefined) {
    const walDir = storagePaths.walDir ?? join(dataDir, 'wal');
    storagePaths.walDir = walDir;
    const isWithin = (inner: string, outer: string): boolean => {
      const path = relative(outer, inner);
      return path === '' || (path !== '..' && !path.startsWith(`..${sep}`) && !isAbsolute(path));
    };
    if (walDir === dataDir || isWithin(walDir, join(dataDir, 'db'))) {
      problems.push(`storage.wal_dir (${walDir}) must not be data_dir itself or inside <data_dir>/db`);
    } else if (isWithin(dataDir, walDir)) {
      problems.push(`storage.wal_dir (${walDir}) must not contain data_dir (${dataDir})`);
    }
  }
  if (raft && raft.logEntriesKeep >= raft.logEntriesMax) {
    problems.push('raft.log_entries_keep must be below raft.log_entries_max');
  }
  const listen = result.listen as Record<string, string | null> | undefined;
  if (listen) {
    const addresses = [listen.client, listen.peer, listen.metrics].filter(
      (a): a is string => typeof a === 'string' && !a.endsWith(':0'),
    );
    if (new Set(addresses).size !== addresses.length)
      problems.push('listen.client, listen.peer and listen.metrics must differ');
    result.advertiseClient ??= listen.client;
  }

  if (problems.length > 0) {
    const error = new DaemonError(
      DaemonErrorCode.ConfigInvalid,
      `invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n  - ${problems.join('\n  - ')}`,
    );
    (error as DaemonError & { problems: readonly string[] }).problems = Object.freeze([...problems]);
    throw error;
  }
  result.peers = peers;
  return deepFreeze(result as unknown as DaemonConfig);
}
