import { Metadata, status as GrpcStatus } from '@grpc/grpc-js';
import type { ServerErrorResponse, ServiceError } from '@grpc/grpc-js';
import type { WireError } from './types.js';

/**
 * Stable error codes the daemon sends and the SDK rebuilds unchanged (`err.code`). They travel in
 * the `rdl-code` trailing metadata entry of a unary call or a failed `Io` stream, and in
 * `IoResponse.error.code` for one IO request.
 */
export const WireCode = Object.freeze({
  /** The named volume does not exist. */
  VOLUME_NOT_FOUND: 'VOLUME_NOT_FOUND',
  /** A volume of that name exists with a different size (create is idempotent only on equal size). */
  VOLUME_EXISTS: 'VOLUME_EXISTS',
  /** The byte range is outside the volume. */
  OUT_OF_RANGE: 'OUT_OF_RANGE',
  /** A malformed request: bad name, negative or unsafe number, unknown op, shrink, unknown region... */
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  /** One IO request above `IO_REQUEST_BYTES_MAX`, or one `Io` message above `IO_BATCH_REQUESTS_MAX` requests. */
  TOO_LARGE: 'TOO_LARGE',
  /** This daemon is not the leader; `leader` / `leaderAddress` tell where it is when known. */
  NOT_LEADER: 'NOT_LEADER',
  /** The daemon cannot serve now (no quorum, starting, stopping). Retry elsewhere or later. */
  UNAVAILABLE: 'UNAVAILABLE',
  /** The daemon gave up waiting (commit or ReadIndex took too long); a write's outcome is unknown. */
  DEADLINE_EXCEEDED: 'DEADLINE_EXCEEDED',
  /** A queue or in-flight window of the daemon is full. Retry after a back-off. */
  RESOURCE_EXHAUSTED: 'RESOURCE_EXHAUSTED',
  /** The daemon no longer knows the client session (evicted); a retried write's outcome is unknown. */
  SESSION_EXPIRED: 'SESSION_EXPIRED',
  /** Leadership did not move to the requested region in time. */
  LEADER_TRANSFER_FAILED: 'LEADER_TRANSFER_FAILED',
  /** A bug or an unexpected failure inside the daemon (or a transport failure without a code). */
  INTERNAL: 'INTERNAL',
} as const);

/** One of the server-originated codes. */
export type WireCode = (typeof WireCode)[keyof typeof WireCode];

/** Trailing metadata key holding the rdl code. */
export const METADATA_CODE = 'rdl-code';
/** Trailing metadata key holding the leader's region (with `NOT_LEADER`). */
export const METADATA_LEADER = 'rdl-leader';
/** Trailing metadata key holding the leader's client address `host:port` (with `NOT_LEADER`). */
export const METADATA_LEADER_ADDRESS = 'rdl-leader-address';

const statusByCode: Readonly<Record<string, GrpcStatus>> = Object.freeze({
  VOLUME_NOT_FOUND: GrpcStatus.NOT_FOUND,
  VOLUME_EXISTS: GrpcStatus.ALREADY_EXISTS,
  OUT_OF_RANGE: GrpcStatus.OUT_OF_RANGE,
  INVALID_ARGUMENT: GrpcStatus.INVALID_ARGUMENT,
  TOO_LARGE: GrpcStatus.INVALID_ARGUMENT,
  // FAILED_PRECONDITION rather than UNAVAILABLE: generic gRPC tooling retries UNAVAILABLE on the
  // same address, which would loop on a follower; the redirect needs the rdl-leader-address hint.
  NOT_LEADER: GrpcStatus.FAILED_PRECONDITION,
  UNAVAILABLE: GrpcStatus.UNAVAILABLE,
  DEADLINE_EXCEEDED: GrpcStatus.DEADLINE_EXCEEDED,
  RESOURCE_EXHAUSTED: GrpcStatus.RESOURCE_EXHAUSTED,
  SESSION_EXPIRED: GrpcStatus.FAILED_PRECONDITION,
  LEADER_TRANSFER_FAILED: GrpcStatus.ABORTED,
  INTERNAL: GrpcStatus.INTERNAL,
});

/** The gRPC status a code travels with; unknown codes travel as `INTERNAL`. */
export function grpcStatusOf(code: string): GrpcStatus {
  return statusByCode[code] ?? GrpcStatus.INTERNAL;
}

/** Codes after which the same request may be sent again (to the leader hint or after a back-off). */
const retryableCodes: ReadonlySet<string> = new Set<string>([
  WireCode.NOT_LEADER,
  WireCode.UNAVAILABLE,
  WireCode.DEADLINE_EXCEEDED,
  WireCode.RESOURCE_EXHAUSTED,
]);

/**
 * True when a request that failed with `code` may be retried. Writes stay exactly-once across
 * retries because they are retried with the same (session, seq).
 */
export function isRetryableCode(code: string): boolean {
  return retryableCodes.has(code);
}

/** Trailing metadata for an error: `rdl-code` always, the leader hints when present. */
export function errorMetadata(error: WireError): Metadata {
  const metadata = new Metadata();
  metadata.set(METADATA_CODE, error.code);
  if (error.leader !== undefined) metadata.set(METADATA_LEADER, error.leader);
  if (error.leaderAddress !== undefined) metadata.set(METADATA_LEADER_ADDRESS, error.leaderAddress);
  return metadata;
}

/**
 * Maps an rdl error to the object grpc-js servers take: pass it to a unary callback
 * (`callback(toGrpcError(e))`) or end an `Io` stream with it (`call.emit('error', toGrpcError(e))`).
 * The status is `grpcStatusOf(code)`, details the message, trailing metadata `errorMetadata`.
 */
export function toGrpcError(error: WireError): ServerErrorResponse {
  const result = new Error(error.message) as ServerErrorResponse;
  result.code = grpcStatusOf(error.code);
  result.details = error.message;
  result.metadata = errorMetadata(error);
  return result;
}

function metadataString(metadata: Metadata | undefined, key: string): string | undefined {
  const values = metadata?.get(key);
  if (values === undefined || values.length === 0) return undefined;
  const value = values[0];
  return typeof value === 'string' ? value : value.toString('utf8');
}

/** Codes given to gRPC failures that carry no `rdl-code` (transport errors, foreign servers). */
const codeByStatus: Readonly<Partial<Record<GrpcStatus, WireCode>>> = Object.freeze({
  [GrpcStatus.UNAVAILABLE]: WireCode.UNAVAILABLE,
  [GrpcStatus.DEADLINE_EXCEEDED]: WireCode.DEADLINE_EXCEEDED,
  [GrpcStatus.RESOURCE_EXHAUSTED]: WireCode.RESOURCE_EXHAUSTED,
  [GrpcStatus.CANCELLED]: WireCode.UNAVAILABLE,
  [GrpcStatus.NOT_FOUND]: WireCode.VOLUME_NOT_FOUND,
  [GrpcStatus.OUT_OF_RANGE]: WireCode.OUT_OF_RANGE,
  [GrpcStatus.INVALID_ARGUMENT]: WireCode.INVALID_ARGUMENT,
});

/**
 * Rebuilds the wire error from a failed gRPC call: the `rdl-code` and leader hints from the
 * trailing metadata, else a code derived from the gRPC status (a dropped connection is
 * `UNAVAILABLE`, anything unexpected `INTERNAL`).
 */
export function fromGrpcError(error: Partial<ServiceError> & Error): WireError {
  const code = metadataString(error.metadata, METADATA_CODE);
  const status = typeof error.code === 'number' ? (error.code as GrpcStatus) : GrpcStatus.UNKNOWN;
  const result: WireError = {
    code: code ?? codeByStatus[status] ?? WireCode.INTERNAL,
    message: error.details ?? error.message,
  };
  const leader = metadataString(error.metadata, METADATA_LEADER);
  if (leader !== undefined) result.leader = leader;
  const leaderAddress = metadataString(error.metadata, METADATA_LEADER_ADDRESS);
  if (leaderAddress !== undefined) result.leaderAddress = leaderAddress;
  return result;
}
