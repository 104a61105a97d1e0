/**
 * The daemon's one base error class. Every error the daemon raises on purpose carries a stable
 * string `code` (listed in docs/errors.md, Daemon section) and, when it wraps another error, the
 * original as `cause`. Match on `err.code`, never on the message or the class.
 */

/** Codes raised by the daemon's own modules (config, start-up, transport, API plumbing). */
export const DaemonErrorCode = {
  /** The configuration (file, environment or flags) has one or more problems; all are listed. */
  ConfigInvalid: 'DAEMON_CONFIG_INVALID',
  /** The configuration file could not be read or is not valid TOML. */
  ConfigUnreadable: 'DAEMON_CONFIG_UNREADABLE',
  /** The data directory cannot be created or written by this user. */
  DataDirUnwritable: 'DAEMON_DATA_DIR_UNWRITABLE',
  /** Another rdld process holds the data directory's lock. */
  DataDirLocked: 'DAEMON_DATA_DIR_LOCKED',
  /** A listen address is already bound by another process. */
  PortInUse: 'DAEMON_PORT_IN_USE',
  /** A listen address could not be bound for another reason (bad host, permission). */
  ListenFailed: 'DAEMON_LISTEN_FAILED',
  /** A peer sent bytes that do not decode to a valid Raft message batch. */
  PeerMessageInvalid: 'DAEMON_PEER_MESSAGE_INVALID',
  /** A peer stream carried a message whose `from` is not the peer that opened the stream, or an unknown peer. */
  PeerIdentityMismatch: 'DAEMON_PEER_IDENTITY_MISMATCH',
  /** A peer speaks another version of the peer frame format (rdld versions that cannot interoperate). */
  PeerProtocolMismatch: 'DAEMON_PEER_PROTOCOL_MISMATCH',
  /** The daemon is stopping or stopped; the request was not served. */
  Stopped: 'DAEMON_STOPPED',
  /** Start-up failed for a reason without a more specific code (see the log line's `err`). */
  StartFailed: 'DAEMON_START_FAILED',
} as const;
/** One of the daemon's own error codes (storage modules may add theirs as plain strings). */
export type DaemonErrorCode = (typeof DaemonErrorCode)[keyof typeof DaemonErrorCode];

/** Base error of `@rdl/daemon`: a message, a stable `code` and an optional `cause`. */
export class DaemonError extends Error {
  /** Stable machine-readable code, e.g. `DAEMON_PORT_IN_USE`. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'DaemonError';
    this.code = code;
  }
}

/** True when `err` is an object with the given string `code` (works across error classes). */
export function hasCode(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}

/** The `code` of an error-like value, or undefined. */
export function codeOf(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}
