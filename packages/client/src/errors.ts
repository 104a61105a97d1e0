import { WireCode } from './wire/errors.js';
import type { WireError } from './wire/types.js';

/**
 * Codes that only the SDK (or `rdlctl`) produces; the server's codes (`WireCode`) come back
 * unchanged. Prefixed `CLIENT_` so a caller can tell a local give-up from a server answer.
 */
export const ClientCode = Object.freeze({
  /** The call did not finish within its deadline (`requestTimeoutMs` or `timeoutMs`); `cause` holds the last error. */
  CLIENT_DEADLINE_EXCEEDED: 'CLIENT_DEADLINE_EXCEEDED',
  /** The caller's `AbortSignal` fired; `cause` holds the signal's reason. */
  CLIENT_ABORTED: 'CLIENT_ABORTED',
  /** The `RdlClient` was closed before or during the call. */
  CLIENT_CLOSED: 'CLIENT_CLOSED',
  /** `RdlClient` options are invalid (every problem listed in the message). */
  CLIENT_CONFIG_INVALID: 'CLIENT_CONFIG_INVALID',
  /** More IO calls are waiting for a window slot than `ioQueueMax`. */
  CLIENT_QUEUE_FULL: 'CLIENT_QUEUE_FULL',
  /** The server answered something that breaks the protocol (e.g. a read of the wrong length). */
  CLIENT_PROTOCOL_ERROR: 'CLIENT_PROTOCOL_ERROR',
  /** `rdlctl`: a local file given to `volume import` / `volume export` cannot be read or written. */
  CLIENT_FILE_ERROR: 'CLIENT_FILE_ERROR',
  /** `rdlctl`: bad command-line usage (unknown option, malformed size); exit status 2. */
  CLIENT_USAGE: 'CLIENT_USAGE',
} as const);

/** One of the client-only codes. */
export type ClientCode = (typeof ClientCode)[keyof typeof ClientCode];

/** Every code an `RdlError` may carry: the server's, then the client's. */
export const ERROR_CODES: readonly string[] = Object.freeze([...Object.values(WireCode), ...Object.values(ClientCode)]);

/** Options of `RdlError`. */
export interface RdlErrorOptions {
  cause?: unknown;
  /** Leader region hint (with `NOT_LEADER`). */
  leader?: string;
  /** Leader client address hint (with `NOT_LEADER`). */
  leaderAddress?: string;
}

/**
 * The one error class of `@rdl/client`. Match on `err.code` (stable, see docs/errors.md), never on
 * the message. Server errors keep the server's code; `cause` carries the underlying error.
 */
export class RdlError extends Error {
  /** Stable string code: a `WireCode` or a `ClientCode`. */
  readonly code: string;
  /** Leader region, when the server said where it is. */
  readonly leader: string | undefined;
  /** Leader client address `host:port`, when the server said where it is. */
  readonly leaderAddress: string | undefined;

  constructor(code: string, message: string, options: RdlErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RdlError';
    this.code = code;
    this.leader = options.leader;
    this.leaderAddress = options.leaderAddress;
  }

  /** Rebuilds the error the server sent (code, message, leader hints). */
  static fromWire(error: WireError, cause?: unknown): RdlError {
    return new RdlError(error.code, error.message, { cause, leader: error.leader, leaderAddress: error.leaderAddress });
  }
}

/** True when `error` is an `RdlError`-shaped value with the given code (works across module copies). */
export function hasCode(error: unknown, code: string): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === code;
}
