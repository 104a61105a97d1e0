/**
 * The agent's one base error class. Every error `@rdl/agent` raises on purpose carries a stable
 * string `code` (listed in docs/errors.md, Agent section) and, when it wraps another error, the
 * original as `cause`. Match on `err.code`, never on the message or the class.
 *
 * The NBD server's codes are below; the CSI driver (src/csi) raises `AgentError` with its own
 * `AGENT_CSI_*` codes, so both halves of the agent share this one class.
 */

/** Codes raised by the NBD server, the volume providers and the `rdl-agent` CLI. */
export const AgentErrorCode = {
  /** The agent's command-line flags have one or more problems; all are listed in the message. */
  ConfigInvalid: 'AGENT_CONFIG_INVALID',
  /** The NBD listen address could not be bound (port in use, bad host, socket path not writable). */
  NbdListenFailed: 'AGENT_NBD_LISTEN_FAILED',
  /** An NBD client broke a mandatory rule of the protocol (bad magic, unknown client flags, an
   *  option or payload over the limits); the server hard-disconnected that client only. */
  NbdProtocolViolation: 'AGENT_NBD_PROTOCOL_VIOLATION',
  /** An NBD client did not finish the handshake within `handshakeTimeoutMs`. */
  NbdHandshakeTimeout: 'AGENT_NBD_HANDSHAKE_TIMEOUT',
  /** An NBD client sent nothing for `idleTimeoutMs` while it had no request in flight. */
  NbdIdleTimeout: 'AGENT_NBD_IDLE_TIMEOUT',
  /** The NBD server refused a connection because `connectionsMax` connections are open. */
  NbdTooManyConnections: 'AGENT_NBD_TOO_MANY_CONNECTIONS',
  /** The export (volume) named by the client does not exist. */
  VolumeNotFound: 'AGENT_VOLUME_NOT_FOUND',
  /** A write, trim or write-zeroes reached a read-only volume (NBD error EPERM). */
  VolumeReadOnly: 'AGENT_VOLUME_READ_ONLY',
  /** A request touched bytes beyond the end of the volume (NBD error EINVAL, or ENOSPC for writes). */
  VolumeOutOfRange: 'AGENT_VOLUME_OUT_OF_RANGE',
  /** The backend (the rdl cluster through the client SDK) failed the request, or did not complete
   *  it within the request timeout (NBD error EIO). */
  VolumeIoFailed: 'AGENT_VOLUME_IO_FAILED',
  /** The volume handle was used after `close()`. */
  VolumeClosed: 'AGENT_VOLUME_CLOSED',
} as const;
/** One of the NBD side's error codes. */
export type AgentErrorCode = (typeof AgentErrorCode)[keyof typeof AgentErrorCode];

/** Base error of `@rdl/agent`: a message, a stable `code` and an optional `cause`. */
export class AgentError extends Error {
  /** Stable machine-readable code, e.g. `AGENT_VOLUME_NOT_FOUND`. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AgentError';
    this.code = code;
  }
}

/** The string `code` of an error-like value, or undefined (works across error classes). */
export function codeOf(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}
