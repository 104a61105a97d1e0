/**
 * `Daemon`: one rdld wired together. The Raft log in a write-ahead log of segment files under
 * `storage.wal_dir` (`<data_dir>/wal` by default) and the block state machine in LevelDB under
 * `<data_dir>/db`, the gRPC peer transport, the Raft node, the block API server and the operator
 * HTTP endpoint. `Daemon.start` brings them up in dependency order and tears down whatever it had
 * opened if a later step fails; `stop` takes them down in reverse order.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Server } from '@grpc/grpc-js';
import { GRPC_SERVER_OPTIONS } from '@rdl/client/wire';
import { RaftNode } from '@rdl/raft';
import type { Clock, Random, RaftObserver } from '@rdl/raft';
import { BlockApi, blockServerDefinition } from './api/block-service.js';
import type { DaemonConfig } from './config.js';
import { parseAddress } from './config.js';
import { DaemonError, DaemonErrorCode, codeOf } from './errors.js';
import { readinessOf, startHealthServer } from './health.js';
import type { HealthServer } from './health.js';
import { createRootLogger, moduleLogger } from './logging.js';
import type { Logger } from './logging.js';
import { DaemonMetrics } from './metrics.js';
import { BlockStateMachine } from './storage/block-store.js';
import { CompactionPriorityGovernor } from './storage/compaction-priority.js';
import type { CompactionPriority } from './storage/compaction-priority.js';
import { openDatabase } from './storage/database.js';
import type { Database } from './storage/database.js';
import { bindWal } from './storage/wal-binding.js';
import { openRaftLog } from './storage/wal-migration.js';
import type { WalLogStore } from './storage/wal-log-store.js';
import { bindGrpcServer, listenError } from './transport/listen.js';
import { GrpcTransport } from './transport/grpc-transport.js';

/** The real clock: monotonic milliseconds and Node timers. */
export const realClock: Clock = {
  now: () => performance.now(),
  setInterval(fn, intervalMs) {
    const timer = setInterval(fn, intervalMs);
    return () => clearInterval(timer);
  },
  setTimeout(fn, delayMs) {
    const timer = setTimeout(fn, delayMs);
    return () => clearTimeout(timer);
  },
};

/** Election-timeout randomness. Not seeded: in production it only has to differ between regions. */
export const realRandom: Random = {
  nextInt: (bound) => Math.floor(Math.random() * bound),
};

/** Options of {@link Daemon.start}. */
export interface DaemonOptions {
  /** Root logger (default: a new pino logger at `config.log.level` on stdout). */
  logger?: Logger;
  /** Called once if the Raft node stops on a storage failure; the process should exit non-zero. */
  onFatal?: (error: Error) => void;
}

/** The bound ports (the configured ones, or the OS's choice for port 0). */
export interface DaemonPorts {
  readonly client: number;
  readonly peer: number;
  readonly metrics: number | null;
}

async function closeQuietly(what: string, logger: Logger, close: () => Promise<unknown>): Promise<void> {
  try {
    await close();
  } catch (err) {
    logger.warn({ err }, `closing ${what} failed`);
  }
}

function shutdownGrpc(server: Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** One running rdld. */
export class Daemon {
  private isStopped = false;
  private stopping: Promise<void> | null = null;

  private constructor(
    readonly config: DaemonConfig,
    readonly ports: DaemonPorts,
    readonly metrics: DaemonMetrics,
    private readonly logger: Logger,
    private readonly parts: {
      db: Database;
      governor: CompactionPriorityGovernor | null;
      logStore: WalLogStore;
      blocks: BlockStateMachine;
      transport: GrpcTransport;
      node: RaftNode;
      api: BlockApi;
      apiServer: Server;
      health: HealthServer | null;
    },
  ) {}

  /** The Raft node (status, for tests and the dev cluster). */
  get node(): RaftNode {
    return this.parts.node;
  }

  /**
   * Starts a daemon. Rejects with a coded `DaemonError`: `DAEMON_DATA_DIR_UNWRITABLE`,
   * `DAEMON_DATA_DIR_LOCKED`, `DAEMON_PORT_IN_USE`, `DAEMON_LISTEN_FAILED`, or the storage's codes
   * when the data is damaged. Resolves once every listener is bound and the Raft node runs.
   */
  static async start(config: DaemonConfig, options: DaemonOptions = {}): Promise<Daemon> {
    const root = options.logger ?? createRootLogger({ region: config.region, level: config.log.level as 'info' });
    const log = moduleLogger(root, 'daemon');
    const metrics = new DaemonMetrics({ region: config.region });
    const cleanups: { what: string; close: () => Promise<unknown> }[] = [];
    const fail = async (err: unknown): Promise<never> => {
      for (const { what, close } of cleanups.reverse()) await closeQuietly(what, log, close);
      throw err;
    };

    // Storage: LevelDB first: its LOCK file is what keeps two daemons off one data directory
    // (the WAL beside it is only touched once the lock is held).
    let db: Database;
    // Set by the callback below (typed this way so TypeScript does not narrow it to null).
    let priority = null as CompactionPriority | null;
    const storageLog = moduleLogger(root, 'storage');
    try {
      db = await openDatabase(join(config.dataDir, 'db'), {
        compactionNice: config.storage.compactionNice,
        writeBufferSizeBytes: config.storage.leveldbWriteBufferBytes,
        blockSizeBytes: config.storage.leveldbBlockBytes,
        onCompactionPriority(result) {
          priority = result;
          if (result.status === 'lowered') {
            storageLog.info(result, `LevelDB compaction thread ${result.threadId} runs at nice ${result.nice}`);
          } else {
            storageLog.warn(result, `LevelDB compaction thread priority unchanged: ${result.reason}`);
          }
        },
      });
    } catch (err) {
      return fail(err);
    }
    cleanups.push({ what: 'database', close: () => db.close() });
    const level0Files = (): number => Number(db.getProperty('leveldb.num-files-at-level0'));
    // Low priority while compaction keeps up, the daemon's own while level 0 backs up.
    let governor: CompactionPriorityGovernor | null = null;
    const lowered = priority;
    if (lowered?.status === 'lowered') {
      const started = new CompactionPriorityGovernor({
        threadId: lowered.threadId,
        lowNice: lowered.nice,
        level0Files,
        onError: (error) => storageLog.warn({ err: error }, 'LevelDB compaction thread priority no longer governed'),
      });
      started.start();
      cleanups.push({ what: 'compaction governor', close: async () => started.stop() });
      governor = started;
    }
    metrics.setStorageSource(() => {
      try {
        return {
          level0Files: level0Files(),
          compactionNice: governor?.nice ?? null,
          compactionBoosts: governor?.boosts ?? 0,
          memoryBytes: Number(db.getProperty('leveldb.approximate-memory-usage')),
        };
      } catch {
        return null; // the database is closed
      }
    });
    let blocks: BlockStateMachine;
    let logStore: WalLogStore;
    try {
      const walLog = moduleLogger(root, 'storage');
      const opened = await openRaftLog(config.storage.walDir, db, {
        segmentBytes: config.storage.walSegmentBytes,
        // As many free segments as one compaction frees (the log reaches that size anyway just
        // before it compacts, so the disk footprint does not grow); docs/storage.md "Recycled segments".
        recycledSegmentsMax: Math.min(16, Math.ceil(config.raft.logBytesMax / config.storage.walSegmentBytes)),
        observer: {
          onSegmentPrepared(how, zeroBytes) {
            metrics.walSegments.inc({ how });
            walLog.info({ how, zeroBytes }, `WAL segment ready (${how})`);
          },
        },
      });
      logStore = opened.store;
      if (opened.migratedEntries !== null) {
        log.info({ entries: opened.migratedEntries }, 'moved the Raft log from LevelDB to the WAL');
      }
      metrics.setStorageDirectories({ data: config.dataDir, wal: config.storage.walDir });
      // Before anything reads the WAL: refuse one that is not this data directory's.
      const binding = await bindWal(db, config.storage.walDir, {
        region: config.region,
        dataDirectory: config.dataDir,
      });
      // Whether the WAL has a device of its own (docs/operations.md "The WAL on a device of its own").
      const [walStat, dataStat] = await Promise.all([stat(config.storage.walDir), stat(config.dataDir)]);
      walLog.info(
        { walDir: config.storage.walDir, binding, isWalOnOwnDevice: walStat.dev !== dataStat.dev },
        {
          verified: 'WAL binding verified',
          bound: 'WAL bound to this data directory (new binding)',
          completed: 'WAL binding completed (an earlier start stopped between its two writes)',
        }[binding.status],
      );
      blocks = await BlockStateMachine.open(db, { log: logStore });
    } catch (err) {
      return fail(err);
    }
    // Apply batches wait for the WAL (write-behind); compaction waits for the state they carry.
    logStore.setStateBarrier((index) => blocks.whenDurableThrough(index));
    cleanups.push({ what: 'block store', close: () => blocks.close() });
    // Closed before the block store (cleanups run in reverse): batches still waiting for a WAL
    // sync that will never come (appends the stopped node never issued) then fail instead of hanging.
    cleanups.push({ what: 'log store', close: () => logStore.close() });

    // Peer transport: binds the peer port (DAEMON_PORT_IN_USE) and starts dialling.
    const transport = new GrpcTransport({
      self: config.region,
      listenAddress: config.listen.peer,
      peers: config.peers.map((p) => ({ id: p.id, address: p.peerAddress, delayMs: p.delayMs })),
      queueMessagesMax: config.transport.queueMessagesMax,
      queueBytesMax: config.transport.queueBytesMax,
      messageBytesMax: config.transport.messageBytesMax,
      reconnectDelayMsMin: config.transport.reconnectDelayMsMin,
      reconnectDelayMsMax: config.transport.reconnectDelayMsMax,
      logger: moduleLogger(root, 'transport'),
      metrics,
    });
    let peerPort: number;
    try {
      peerPort = await transport.start();
    } catch (err) {
      await transport.close();
      return fail(err);
    }
    cleanups.push({ what: 'transport', close: () => transport.close() });

    // Raft.
    let fatalReported = false;
    const observer: RaftObserver = {
      onLeaderChange(leader, term) {
        metrics.leaderChanges.inc();
        moduleLogger(root, 'raft').info({ leader, term }, leader === null ? 'no leader' : `leader is ${leader}`);
      },
      onFsync(durationMs) {
        metrics.fsyncSeconds.observe(durationMs / 1000);
      },
      onApply(durationMs) {
        metrics.applySeconds.observe(durationMs / 1000);
      },
      onFatal(error) {
        if (fatalReported) return;
        fatalReported = true;
        log.fatal({ err: error, code: error.code }, 'Raft node stopped on a storage failure');
        options.onFatal?.(error);
      },
    };
    let node: RaftNode;
    try {
      node = await RaftNode.create({
        id: config.region,
        peers: [config.region, ...config.peers.map((p) => p.id)],
        storage: logStore,
        transport,
        stateMachine: blocks,
        clock: realClock,
        random: realRandom,
        config: { ...config.raft },
        logger: moduleLogger(root, 'raft'),
        observer,
      });
    } catch (err) {
      return fail(err);
    }
    cleanups.push({ what: 'raft node', close: () => node.stop() });

    // Block API.
    const advertisedPeers = new Map(config.peers.map((p) => [p.id, p]));
    const api = new BlockApi({
      region: config.region,
      node,
      store: blocks,
      members: [
        { region: config.region, raftAddress: config.listen.peer, clientAddress: config.advertiseClient },
        ...[...advertisedPeers.values()].map((p) => ({
          region: p.id,
          raftAddress: p.peerAddress,
          clientAddress: p.clientAddress,
        })),
      ].sort((a, b) => (a.region < b.region ? -1 : 1)),
      limits: config.api,
      logger: moduleLogger(root, 'api'),
      metrics,
    });
    const apiServer = new Server({
      ...GRPC_SERVER_OPTIONS,
      'grpc.max_receive_message_length': config.api.requestBytesMax,
      'grpc.max_send_message_length': config.api.requestBytesMax,
    });
    apiServer.addService(blockServerDefinition, api.handlers());
    let clientPort: number;
    try {
      clientPort = await bindGrpcServer(apiServer, config.listen.client, 'clients');
    } catch (err) {
      apiServer.forceShutdown();
      return fail(err);
    }
    cleanups.push({
      what: 'api server',
      close: async () => {
        api.stop();
        await shutdownGrpc(apiServer, 2000);
      },
    });

    metrics.setRaftSource(() => {
      const status = node.status();
      const lag: Record<string, number> = {};
      for (const [id, progress] of Object.entries(status.progress))
        lag[id] = Math.max(0, status.lastIndex - progress.match);
      return {
        term: status.term,
        commitIndex: status.commitIndex,
        appliedIndex: status.appliedIndex,
        lastIndex: status.lastIndex,
        isLeader: status.role === 'leader',
        followerLagEntries: lag,
      };
    });

    // Operator endpoint.
    let health: HealthServer | null = null;
    if (config.listen.metrics !== null) {
      const address = parseAddress(config.listen.metrics);
      if (address === null) return fail(new DaemonError(DaemonErrorCode.ListenFailed, 'bad metrics address'));
      try {
        health = await startHealthServer({
          host: address.host,
          port: address.port,
          registry: metrics.registry,
          readiness: () => readinessOf(node.status()),
          logger: moduleLogger(root, 'health'),
        });
      } catch (err) {
        return fail(listenError('metrics', config.listen.metrics, err));
      }
      const server = health;
      cleanups.push({ what: 'health server', close: () => server.close() });
    }

    node.start();
    const ports: DaemonPorts = { client: clientPort, peer: peerPort, metrics: health?.port ?? null };
    log.info({ ports, peers: config.peers.map((p) => p.id) }, 'rdld serving');
    return new Daemon(config, ports, metrics, log, {
      db,
      governor,
      logStore,
      blocks,
      transport,
      node,
      api,
      apiServer,
      health,
    });
  }

  /**
   * Stops gracefully: refuses new requests and fails open IO streams with UNAVAILABLE, stops the
   * Raft node (pending proposals fail with RAFT_STOPPED, the write in flight completes), closes
   * the transport, the HTTP endpoint and LevelDB. Idempotent; concurrent calls share one stop.
   */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    if (this.isStopped) return;
    this.isStopped = true;
    const { api, apiServer, node, transport, health, blocks, logStore, db, governor } = this.parts;
    const log = this.logger;
    log.info('stopping');
    api.stop();
    await closeQuietly('api server', log, () => shutdownGrpc(apiServer, 2000));
    await closeQuietly('raft node', log, () => node.stop());
    await closeQuietly('transport', log, () => transport.close());
    if (health) await closeQuietly('health server', log, () => health.close());
    // The log store first: block batches waiting for a WAL sync that will never come (appends the
    // stopped node never issued) then fail instead of holding the block store's close forever.
    await closeQuietly('log store', log, () => logStore.close());
    await closeQuietly('block store', log, () => blocks.close());
    governor?.stop();
    await closeQuietly('database', log, () => db.close());
    log.info('stopped');
  }
}

/** The code of a start-up failure, for exit status and messages. */
export function startupCode(err: unknown): string {
  return codeOf(err) ?? DaemonErrorCode.StartFailed;
}
