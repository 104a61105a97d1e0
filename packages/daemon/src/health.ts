/**
 * The operator HTTP endpoint: `GET /metrics` (Prometheus text), `GET /healthz` (the process is up
 * and its event loop turns), `GET /readyz` (ready to serve: a leader is known and this daemon has
 * applied everything it knows committed). Anything else is 404; only GET and HEAD are accepted.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from './logging.js';

/** Readiness as /readyz reports it. */
export interface Readiness {
  isReady: boolean;
  /** Why not ready (or "ready"), for humans. */
  reason: string;
  leader: string | null;
  commitIndex: number;
  appliedIndex: number;
}

/** Computes readiness from a Raft status: ready when a leader is known and applied has caught up to commit. */
export function readinessOf(
  status: { leader: string | null; commitIndex: number; appliedIndex: number } | null,
): Readiness {
  if (status === null) return { isReady: false, reason: 'starting', leader: null, commitIndex: 0, appliedIndex: 0 };
  const { leader, commitIndex, appliedIndex } = status;
  if (leader === null) return { isReady: false, reason: 'no leader known', leader, commitIndex, appliedIndex };
  if (appliedIndex < commitIndex) {
    return { isReady: false, reason: `applying: ${appliedIndex} of ${commitIndex}`, leader, commitIndex, appliedIndex };
  }
  return { isReady: true, reason: 'ready', leader, commitIndex, appliedIndex };
}

/** Options of {@link startHealthServer}. */
export interface HealthServerOptions {
  host: string;
  port: number;
  registry: Registry;
  readiness: () => Readiness;
  logger: Logger;
}

/** A running health server. */
export interface HealthServer {
  /** The bound port (useful with port 0). */
  readonly port: number;
  close(): Promise<void>;
}

function send(response: ServerResponse, status: number, contentType: string, body: string, isHead: boolean): void {
  response.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
  response.end(isHead ? undefined : body);
}

/**
 * Starts the HTTP server. Rejects with the listen error (EADDRINUSE...) for the caller to map to a
 * daemon error code.
 */
export async function startHealthServer(options: HealthServerOptions): Promise<HealthServer> {
  const { registry, readiness, logger } = options;
  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const isHead = request.method === 'HEAD';
    if (request.method !== 'GET' && !isHead) {
      send(response, 405, 'text/plain', 'method not allowed\n', false);
      return;
    }
    const path = (request.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      send(response, 200, registry.contentType, await registry.metrics(), isHead);
    } else if (path === '/healthz') {
      send(response, 200, 'text/plain', 'ok\n', isHead);
    } else if (path === '/readyz') {
      const state = readiness();
      send(response, state.isReady ? 200 : 503, 'application/json', `${JSON.stringify(state)}\n`, isHead);
    } else {
      send(response, 404, 'text/plain', 'not found: try /metrics, /healthz or /readyz\n', isHead);
    }
  };
  const server: Server = createServer((request, response) => {
    handle(request, response).catch((err: unknown) => {
      logger.error({ err }, 'health endpoint failed');
      if (!response.headersSent) send(response, 500, 'text/plain', 'internal error\n', false);
      else response.destroy();
    });
  });
  // Bound idle connections: a scraper that stalls must not pin sockets forever.
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  server.maxHeadersCount = 64;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => logger.error({ err }, 'health server error'));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
