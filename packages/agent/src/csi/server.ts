import { lstat, mkdir, unlink } from 'node:fs/promises';
import { dirname, isAbsolute } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { controllerService } from './controller.js';
import type { ControllerOptions } from './controller.js';
import { CsiErrorCode, csiError } from './errors.js';
import { identityService } from './identity.js';
import { nodeService } from './node.js';
import type { NodeServiceOptions } from './node.js';
import { loadCsiServices } from './proto.js';

/** Which CSI services a process serves: the controller Deployment, the node DaemonSet, or both. */
export type CsiMode = 'controller' | 'node' | 'all';

/** Options of `startCsiServer`. */
export interface CsiServerOptions {
  /** `unix:///absolute/path.sock`: CSI is served over a unix socket only. */
  endpoint: string;
  mode: CsiMode;
  logger: Logger;
  /** Required when mode is controller or all. */
  controller?: ControllerOptions;
  /** Required when mode is node or all. */
  node?: NodeServiceOptions;
}

/** A running CSI server. */
export interface CsiServer {
  /** The unix socket path served. */
  readonly socketPath: string;
  /** Stops accepting calls, waits for calls in progress (up to `graceMs`), removes the socket. */
  close(graceMs?: number): Promise<void>;
}

/** Concurrent calls one connection may carry; the sidecars and kubelet use a handful. */
const concurrentStreamsMax = 64;
/** CSI messages are small (the largest are maps bounded to 4 KiB by the spec). */
const messageBytesMax = 1024 * 1024;

/** The socket path of a `unix://` endpoint; ENDPOINT_INVALID for anything else. */
export function socketPathOfEndpoint(endpoint: string): string {
  const match = /^unix:\/\/(\/.*)$/.exec(endpoint) ?? /^unix:(\/.*)$/.exec(endpoint);
  const path = match?.[1];
  if (path === undefined || !isAbsolute(path) || path.endsWith('/')) {
    throw csiError(
      CsiErrorCode.EndpointInvalid,
      `CSI endpoint must be unix:///absolute/path.sock, got ${JSON.stringify(endpoint)}`,
    );
  }
  return path;
}

/**
 * Serves Identity plus Controller and/or Node (by `mode`) on the endpoint's unix socket. A stale
 * socket file left by a previous process is removed first; any other file at that path is an
 * error rather than something to delete.
 */
export async function startCsiServer(options: CsiServerOptions): Promise<CsiServer> {
  const socketPath = socketPathOfEndpoint(options.endpoint);
  const hasController = options.mode === 'controller' || options.mode === 'all';
  const hasNode = options.mode === 'node' || options.mode === 'all';
  if (hasController && options.controller === undefined)
    throw new Error('assertion failed: controller options missing');
  if (hasNode && options.node === undefined) throw new Error('assertion failed: node options missing');

  await mkdir(dirname(socketPath), { recursive: true });
  try {
    const info = await lstat(socketPath);
    if (!info.isSocket()) {
      throw csiError(CsiErrorCode.ListenFailed, `${socketPath} exists and is not a socket; refusing to replace it`);
    }
    await unlink(socketPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }

  const logger = options.logger.child({ module: 'csi' });
  const context = { logger };
  let isReady = false;
  const services = loadCsiServices();
  const server = new grpc.Server({
    'grpc.max_concurrent_streams': concurrentStreamsMax,
    'grpc.max_receive_message_length': messageBytesMax,
    'grpc.max_send_message_length': messageBytesMax,
  });
  server.addService(services.Identity.service, identityService(context, { isReady: () => isReady }));
  if (hasController) server.addService(services.Controller.service, controllerService(context, options.controller!));
  if (hasNode) server.addService(services.Node.service, nodeService(context, options.node!));

  await new Promise<void>((resolve, reject) => {
    server.bindAsync(`unix://${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => {
      if (err === null) resolve();
      else reject(csiError(CsiErrorCode.ListenFailed, `cannot serve CSI on ${socketPath}: ${err.message}`, err));
    });
  });
  isReady = true;
  logger.info({ socketPath, mode: options.mode }, 'CSI driver serving');

  return {
    socketPath,
    async close(graceMs = 5000): Promise<void> {
      isReady = false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      await unlink(socketPath).catch(() => undefined);
      logger.info({ socketPath }, 'CSI driver stopped');
    },
  };
}
