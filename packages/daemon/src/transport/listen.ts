/**
 * Binding listeners with coded errors: `DAEMON_PORT_IN_USE` when another process holds the
 * address, `DAEMON_LISTEN_FAILED` for anything else (unknown host, no permission). Every listener
 * bound here gets wide HTTP/2 receive windows (see `RECEIVE_STREAM_WINDOW_BYTES`).
 */
import type { Http2Session, Settings } from 'node:http2';
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
 * HTTP/2 receive window of each stream of an incoming connection. The HTTP/2 default is 64 KiB: a
 * 1 MiB message (an AppendEntries, a client's 1 MiB write) then needs 16 window updates, each a trip
 * through the receiving daemon's event loop, and on a busy daemon moving 1 MiB over loopback took
 * hundreds of milliseconds (measured: leader send to follower ack 400-1300 ms, of which the
 * follower's own fsync 10-100 ms). The window is also the bound on bytes a peer may have sent that
 * this daemon has not read yet.
 */
export const RECEIVE_STREAM_WINDOW_BYTES = 16 * 1024 * 1024;
/** HTTP/2 receive window of a whole incoming connection (all its streams together). */
export const RECEIVE_CONNECTION_WINDOW_BYTES = 32 * 1024 * 1024;
/** Largest HTTP/2 DATA frame a sender may use towards us (the default, 16 KiB, is 64 frames and callbacks per MiB). */
export const RECEIVE_FRAME_BYTES_MAX = 1024 * 1024;

/** Raises the receive windows and frame size of one incoming HTTP/2 connection. Never throws. */
export function widenReceiveWindows(session: Http2Session): boolean {
  try {
    session.setLocalWindowSize(RECEIVE_CONNECTION_WINDOW_BYTES);
    // SETTINGS_INITIAL_WINDOW_SIZE applies to streams already open too (RFC 9113 §6.9.2).
    const settings: Settings = {
      initialWindowSize: RECEIVE_STREAM_WINDOW_BYTES,
      maxFrameSize: RECEIVE_FRAME_BYTES_MAX,
    };
    session.settings(settings);
    return true;
  } catch {
    return false; // a session closing as it opens: nothing to tune
  }
}

/**
 * The Node HTTP/2 servers under a bound grpc-js server. grpc-js takes no receive-window option on
 * the server side (its client does: 'grpc-node.flow_control_window'), so this reads its private
 * `http2Servers` map (grpc-js 1.x); a unit test fails if an upgrade moves it, and listeners then
 * keep the default windows (slower, still correct).
 */
function http2ServersOf(server: Server): { on(event: 'session', listener: (session: Http2Session) => void): void }[] {
  const servers = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(servers instanceof Map)) return [];
  return [...servers.keys()].filter((s): s is { on(event: 'session', l: (session: Http2Session) => void): void } => {
    return s !== null && typeof s === 'object' && typeof (s as { on?: unknown }).on === 'function';
  });
}

/**
 * Binds a grpc-js server to `address` (`host:port`, port 0 = ephemeral) without TLS and resolves
 * with the bound port; every connection it accepts gets the wide receive windows above. grpc-js
 * (>= 1.10) starts serving on bind; no `start()` call is needed.
 */
export function bindGrpcServer(server: Server, address: string, what: string): Promise<number> {
  const parsed = parseAddress(address);
  if (parsed === null) return Promise.reject(listenError(what, address, new Error('not host:port')));
  // grpc-js reads "localhost:0" as every resolved address; bind exactly what was asked for.
  return new Promise((resolve, reject) => {
    server.bindAsync(`${parsed.host}:${parsed.port}`, ServerCredentials.createInsecure(), (err, port) => {
      if (err) {
        reject(listenError(what, address, err));
        return;
      }
      for (const http2Server of http2ServersOf(server)) {
        http2Server.on('session', (session) => widenReceiveWindows(session));
      }
      resolve(port);
    });
  });
}

/** `host:port` with the port replaced (used to report the bound port of a `:0` address). */
export function withPort(address: string, port: number): string {
  const parsed = parseAddress(address);
  return parsed === null ? address : `${parsed.host}:${port}`;
}
