/**
 * Serves a `BlockApi` over real gRPC on 127.0.0.1 (an ephemeral port) for unit tests that stand in
 * for the Raft node and the block store, and stops it when the test ends.
 */
import { Server, ServerCredentials } from '@grpc/grpc-js';
import type { ExecutionContext } from 'ava';
import pino from 'pino';
import { BlockApi, blockServerDefinition } from '../../src/api/block-service.js';
import type { ApiRaftNode } from '../../src/api/block-service.js';
import type { DaemonMetrics } from '../../src/metrics.js';
import type { BlockStore } from '../../src/storage/commands.js';

/** The one volume the stand-in stores of these tests hold. */
export const TEST_VOLUME = Object.freeze({ name: 'v', sizeBytes: 1 << 20, blockSizeBytes: 4096, createdAtMs: 0 });

/** Limits no test reaches unless it means to. */
export const ROOMY_LIMITS = Object.freeze({
  ioBytesMax: 1 << 20,
  streamInflightMax: 1024,
  streamInflightBytesMax: 1 << 26,
  daemonInflightMax: 4096,
  daemonInflightBytesMax: 1 << 28,
  requestTimeoutMs: 10_000,
});

/** Starts the API for region geneva on `node` and `store`; resolves with its port. */
export async function serveBlockApi(
  t: ExecutionContext,
  options: { node: ApiRaftNode; store: BlockStore; limits?: typeof ROOMY_LIMITS; metrics?: DaemonMetrics },
): Promise<number> {
  const api = new BlockApi({
    region: 'geneva',
    node: options.node,
    store: options.store,
    members: [{ region: 'geneva', raftAddress: '127.0.0.1:1', clientAddress: null }],
    limits: options.limits ?? ROOMY_LIMITS,
    logger: pino({ level: 'silent' }),
    ...(options.metrics === undefined ? {} : { metrics: options.metrics }),
  });
  const server = new Server();
  server.addService(blockServerDefinition, api.handlers());
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, bound) =>
      err ? reject(err) : resolve(bound),
    ),
  );
  t.teardown(async () => {
    api.stop();
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
  });
  return port;
}
