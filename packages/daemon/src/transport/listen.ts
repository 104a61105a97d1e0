/**
 * Binding listeners with coded errors: `DAEMON_PORT_IN_USE` when another process holds the
 * address, `DAEMON_LISTEN_FAILED` for anything else (unknown host, no permission).
 */
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { DaemonError, DaemonErrorCode } from '../errors.js';
import { parseAddress } from '../config.js';

/** Maps a listen failure (Node's or grpc-js's) of `what` on `address` to a DaemonError. */
export function listenError(what: string, address: string, err: unknown): DaemonError {
  const text = `${(err as { code?: string }).code ?? ''} ${(err as Error).message ?? String(err)}`;
  if (text.includes('EADDRINUSE')) {
    return new DaemonError(
      DaemonErrorCode.PortInUse,
      `cannot listen for ${what} on ${address}: the address is already in use (another rdld or program holds it)`,
      { cause: err },
    );
  }
  return new DaemonError(DaemonErrorCode.ListenFailed, `cannot listen for ${what} on ${address}: ${text.trim()}`, {
    cause: err,
  });
}

/**
 * Binds a grpc-js server to `address` (`host:port`, port 0 = ephemeral) without TLS and resolves
 * with the bound port. grpc-js (>= 1.10) starts serving on bind; no `start()` call is needed.
 */
export function bindGrpcServer(server: Server, address: string, what: string): Promise<number> {
  const parsed = parseAddress(address);
  if (parsed === null) return Promise.reject(listenError(what, address, new Error('not host:port')));
  // grpc-js reads "localhost:0" as every resolved address; bind exactly what was asked for.
  return new Promise((resolve, reject) => {
    server.bindAsync(`${parsed.host}:${parsed.port}`, ServerCredentials.createInsecure(), (err, port) => {
      if (err) reject(listenError(what, address, err));
      else resolve(port);
    });
  });
}

/** `host:port` with the port replaced (used to report the bound port of a `:0` address). */
export function withPort(address: string, port: number): string {
  const parsed = parseAddress(address);
  return parsed === null ? address : `${parsed.host}:${port}`;
}
