/**
 * `@rdl/client/wire`: the `rdl.v1.Block` gRPC protocol shared by the daemon (server) and the SDK
 * (client): service definition with msgpack serialization, message types, limits, error codes
 * and their gRPC mapping, and input checks. It imports nothing of the daemon or the SDK.
 */
export { encode, decode } from './codec.js';
export { encodeIoResponseBatchTransient } from './response-codec.js';
export {
  BLOCK_SIZE_BYTES,
  GRPC_CHANNEL_OPTIONS,
  GRPC_SERVER_OPTIONS,
  IO_BATCH_BYTES_MAX,
  IO_BATCH_REQUESTS_MAX,
  IO_RECEIVE_WINDOW_BYTES,
  IO_REQUEST_BYTES_MAX,
  IO_STREAM_INFLIGHT_BYTES_MAX,
  IO_STREAM_INFLIGHT_MAX,
  MESSAGE_BYTES_MAX,
  SESSION_ID_PATTERN,
  VOLUME_NAME_PATTERN,
  VOLUME_SIZE_BYTES_MAX,
} from './limits.js';
export {
  METADATA_CODE,
  METADATA_LEADER,
  METADATA_LEADER_ADDRESS,
  WireCode,
  errorMetadata,
  fromGrpcError,
  grpcStatusOf,
  isRetryableCode,
  toGrpcError,
} from './errors.js';
export { BLOCK_SERVICE_NAME, blockService } from './service.js';
export type { BlockServer, BlockUnaryMethod } from './service.js';
export {
  checkIoBatch,
  checkIoRequest,
  checkVolumeName,
  checkVolumeSize,
  isIoRequestId,
  isMutatingOp,
} from './validate.js';
export type {
  CreateVolumeRequest,
  CreateVolumeResponse,
  DeleteVolumeRequest,
  DeleteVolumeResponse,
  GrowVolumeRequest,
  GrowVolumeResponse,
  IoOp,
  IoRequest,
  IoRequestBatch,
  IoResponse,
  IoResponseBatch,
  LeaderInfo,
  ListVolumesRequest,
  ListVolumesResponse,
  MemberRole,
  MemberStatus,
  StatVolumeRequest,
  StatVolumeResponse,
  StatusRequest,
  StatusResponse,
  TransferLeaderRequest,
  TransferLeaderResponse,
  VolumeInfo,
  WireError,
} from './types.js';
