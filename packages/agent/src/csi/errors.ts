import { Metadata, status as GrpcStatus } from '@grpc/grpc-js';
import type { ServerErrorResponse } from '@grpc/grpc-js';
import { AgentError, codeOf } from '../errors.js';

/**
 * Stable codes of the CSI driver. They are raised as `AgentError` (the agent's one base error
 * class) and reach the CO as the gRPC status the CSI specification prescribes for the condition
 * (`grpcStatusOfCsiCode`), with the code itself in the `rdl-code` trailing metadata entry.
 */
export const CsiErrorCode = {
  /** A field the CSI specification marks REQUIRED is missing (gRPC INVALID_ARGUMENT). */
  ArgumentMissing: 'AGENT_CSI_ARGUMENT_MISSING',
  /** A field has a value the plugin does not accept (gRPC INVALID_ARGUMENT). */
  ArgumentInvalid: 'AGENT_CSI_ARGUMENT_INVALID',
  /** A volume capability rdl does not support, on a controller-side call (gRPC INVALID_ARGUMENT). */
  CapabilityUnsupported: 'AGENT_CSI_CAPABILITY_UNSUPPORTED',
  /** A volume capability rdl does not support, on NodeStage/NodePublish (gRPC FAILED_PRECONDITION,
   *  "Exceeds capabilities" in the specification). */
  CapabilityExceeded: 'AGENT_CSI_CAPABILITY_EXCEEDED',
  /** The volume does not exist in rdl, or is not staged on this node (gRPC NOT_FOUND). */
  VolumeNotFound: 'AGENT_CSI_VOLUME_NOT_FOUND',
  /** The volume exists (or is staged/published) with incompatible arguments (gRPC ALREADY_EXISTS). */
  VolumeIncompatible: 'AGENT_CSI_VOLUME_INCOMPATIBLE',
  /** The capacity range cannot be satisfied (gRPC OUT_OF_RANGE). */
  CapacityOutOfRange: 'AGENT_CSI_CAPACITY_OUT_OF_RANGE',
  /** NodePublish without a matching NodeStage (gRPC FAILED_PRECONDITION). */
  VolumeNotStaged: 'AGENT_CSI_VOLUME_NOT_STAGED',
  /** The volume is in use where the call needs it free: unstage while published, a second
   *  publish of a single-writer volume (gRPC FAILED_PRECONDITION). */
  VolumeInUse: 'AGENT_CSI_VOLUME_IN_USE',
  /** NodeExpandVolume: the kernel NBD device still reports the old size (gRPC FAILED_PRECONDITION). */
  DeviceTooSmall: 'AGENT_CSI_DEVICE_TOO_SMALL',
  /** Another call for the same volume is in progress (gRPC ABORTED). */
  OperationPending: 'AGENT_CSI_OPERATION_PENDING',
  /** ListVolumes `starting_token` is not one this plugin issued (gRPC ABORTED). */
  TokenInvalid: 'AGENT_CSI_TOKEN_INVALID',
  /** Every /dev/nbdX device of the node is in use (gRPC RESOURCE_EXHAUSTED). */
  NoFreeDevice: 'AGENT_CSI_NO_FREE_DEVICE',
  /** A host command (nbd-client, mkfs, mount, ...) exited non-zero or could not start (gRPC INTERNAL). */
  CommandFailed: 'AGENT_CSI_COMMAND_FAILED',
  /** A host command did not finish within its timeout and was killed (gRPC DEADLINE_EXCEEDED). */
  CommandTimeout: 'AGENT_CSI_COMMAND_TIMEOUT',
  /** The node state file exists but cannot be parsed (gRPC INTERNAL). */
  StateCorrupt: 'AGENT_CSI_STATE_CORRUPT',
  /** The rdl cluster failed or could not be reached for a volume operation (gRPC UNAVAILABLE). */
  BackendFailed: 'AGENT_CSI_BACKEND_FAILED',
  /** The CSI endpoint is not a `unix://` URL with an absolute path (start-up). */
  EndpointInvalid: 'AGENT_CSI_ENDPOINT_INVALID',
  /** The CSI unix socket could not be bound (start-up). */
  ListenFailed: 'AGENT_CSI_LISTEN_FAILED',
  /** An unexpected failure inside the driver (gRPC INTERNAL). */
  Internal: 'AGENT_CSI_INTERNAL',
} as const;
/** One of the CSI driver's error codes. */
export type CsiErrorCode = (typeof CsiErrorCode)[keyof typeof CsiErrorCode];

const statusByCode: Readonly<Record<CsiErrorCode, GrpcStatus>> = Object.freeze({
  AGENT_CSI_ARGUMENT_MISSING: GrpcStatus.INVALID_ARGUMENT,
  AGENT_CSI_ARGUMENT_INVALID: GrpcStatus.INVALID_ARGUMENT,
  AGENT_CSI_CAPABILITY_UNSUPPORTED: GrpcStatus.INVALID_ARGUMENT,
  AGENT_CSI_CAPABILITY_EXCEEDED: GrpcStatus.FAILED_PRECONDITION,
  AGENT_CSI_VOLUME_NOT_FOUND: GrpcStatus.NOT_FOUND,
  AGENT_CSI_VOLUME_INCOMPATIBLE: GrpcStatus.ALREADY_EXISTS,
  AGENT_CSI_CAPACITY_OUT_OF_RANGE: GrpcStatus.OUT_OF_RANGE,
  AGENT_CSI_VOLUME_NOT_STAGED: GrpcStatus.FAILED_PRECONDITION,
  AGENT_CSI_VOLUME_IN_USE: GrpcStatus.FAILED_PRECONDITION,
  AGENT_CSI_DEVICE_TOO_SMALL: GrpcStatus.FAILED_PRECONDITION,
  AGENT_CSI_OPERATION_PENDING: GrpcStatus.ABORTED,
  AGENT_CSI_TOKEN_INVALID: GrpcStatus.ABORTED,
  AGENT_CSI_NO_FREE_DEVICE: GrpcStatus.RESOURCE_EXHAUSTED,
  AGENT_CSI_COMMAND_FAILED: GrpcStatus.INTERNAL,
  AGENT_CSI_COMMAND_TIMEOUT: GrpcStatus.DEADLINE_EXCEEDED,
  AGENT_CSI_STATE_CORRUPT: GrpcStatus.INTERNAL,
  AGENT_CSI_BACKEND_FAILED: GrpcStatus.UNAVAILABLE,
  AGENT_CSI_ENDPOINT_INVALID: GrpcStatus.INTERNAL,
  AGENT_CSI_LISTEN_FAILED: GrpcStatus.INTERNAL,
  AGENT_CSI_INTERNAL: GrpcStatus.INTERNAL,
});

/** The gRPC status a CSI code travels with; any other code travels as INTERNAL. */
export function grpcStatusOfCsiCode(code: string): GrpcStatus {
  return (statusByCode as Record<string, GrpcStatus>)[code] ?? GrpcStatus.INTERNAL;
}

/** Raises the agent's base error with a CSI code. */
export function csiError(code: CsiErrorCode, message: string, cause?: unknown): AgentError {
  return new AgentError(code, message, cause === undefined ? undefined : { cause });
}

/**
 * Turns anything a handler threw into what a grpc-js unary callback takes: the status mapped from
 * the error's code (unknown errors become `AGENT_CSI_INTERNAL`), the message as details, and the
 * code in the `rdl-code` trailing metadata entry.
 */
export function toCsiGrpcError(err: unknown): ServerErrorResponse {
  const code = codeOf(err);
  const isCsiCode = code !== undefined && code in statusByCode;
  const finalCode = isCsiCode ? code : CsiErrorCode.Internal;
  const message = err instanceof Error ? err.message : String(err);
  const result = new Error(message) as ServerErrorResponse;
  result.code = grpcStatusOfCsiCode(finalCode);
  result.details = isCsiCode ? message : `${code === undefined ? '' : `${code}: `}${message}`;
  const metadata = new Metadata();
  metadata.set('rdl-code', finalCode);
  result.metadata = metadata;
  return result;
}
