import type {
  MethodDefinition,
  ServiceDefinition,
  UntypedServiceImplementation,
  handleBidiStreamingCall,
  handleUnaryCall,
} from '@grpc/grpc-js';
import { decode, encode } from './codec.js';
import { encodeIoResponseBatchTransient } from './response-codec.js';
import type {
  CreateVolumeRequest,
  CreateVolumeResponse,
  DeleteVolumeRequest,
  DeleteVolumeResponse,
  GrowVolumeRequest,
  GrowVolumeResponse,
  IoRequestBatch,
  IoResponseBatch,
  ListVolumesRequest,
  ListVolumesResponse,
  StatVolumeRequest,
  StatVolumeResponse,
  StatusRequest,
  StatusResponse,
  TransferLeaderRequest,
  TransferLeaderResponse,
} from './types.js';

/** Fully qualified gRPC service name. */
export const BLOCK_SERVICE_NAME = 'rdl.v1.Block';

function method<Request, Response>(
  name: string,
  isStreaming: boolean,
  responseSerialize: (value: Response) => Buffer = encode,
): MethodDefinition<Request, Response> {
  return {
    path: `/${BLOCK_SERVICE_NAME}/${name}`,
    requestStream: isStreaming,
    responseStream: isStreaming,
    requestSerialize: encode,
    requestDeserialize: decode<Request>,
    responseSerialize,
    responseDeserialize: decode<Response>,
    originalName: name.charAt(0).toLowerCase() + name.slice(1),
  };
}

/**
 * The server side of `rdl.v1.Block` as grpc-js wants it: `server.addService(blockService, impl)`.
 * Unary calls fail with `callback(toGrpcError(e))`; `io` reads `IoRequestBatch` messages, answers
 * each request with one `IoResponse` (any order, gathered into `IoResponseBatch` messages) and ends
 * the stream with `call.emit('error', toGrpcError(e))` only for stream-wide failures (a malformed
 * batch, or e.g. the daemon stopped being leader and drops every in-flight request).
 */
export interface BlockServer extends UntypedServiceImplementation {
  createVolume: handleUnaryCall<CreateVolumeRequest, CreateVolumeResponse>;
  deleteVolume: handleUnaryCall<DeleteVolumeRequest, DeleteVolumeResponse>;
  listVolumes: handleUnaryCall<ListVolumesRequest, ListVolumesResponse>;
  statVolume: handleUnaryCall<StatVolumeRequest, StatVolumeResponse>;
  growVolume: handleUnaryCall<GrowVolumeRequest, GrowVolumeResponse>;
  status: handleUnaryCall<StatusRequest, StatusResponse>;
  transferLeader: handleUnaryCall<TransferLeaderRequest, TransferLeaderResponse>;
  io: handleBidiStreamingCall<IoRequestBatch, IoResponseBatch>;
}

/**
 * The `rdl.v1.Block` service definition (msgpack serialization), usable both by grpc-js servers
 * (`addService`) and clients (`makeGenericClientConstructor`, or `Client.makeUnaryRequest` with
 * the `path` and serializers of one method). The `Io` method's `responseSerialize` is
 * `encodeIoResponseBatchTransient`: same bytes as `encode`, but its result is only valid until
 * its next call, which suits grpc-js's server (it copies the result at once); do not call it
 * yourself and keep the result.
 */
export const blockService = Object.freeze({
  createVolume: method<CreateVolumeRequest, CreateVolumeResponse>('CreateVolume', false),
  deleteVolume: method<DeleteVolumeRequest, DeleteVolumeResponse>('DeleteVolume', false),
  listVolumes: method<ListVolumesRequest, ListVolumesResponse>('ListVolumes', false),
  statVolume: method<StatVolumeRequest, StatVolumeResponse>('StatVolume', false),
  growVolume: method<GrowVolumeRequest, GrowVolumeResponse>('GrowVolume', false),
  status: method<StatusRequest, StatusResponse>('Status', false),
  transferLeader: method<TransferLeaderRequest, TransferLeaderResponse>('TransferLeader', false),
  io: method<IoRequestBatch, IoResponseBatch>('Io', true, encodeIoResponseBatchTransient),
}) satisfies ServiceDefinition<BlockServer>;

/** Names of the unary methods of the service. */
export type BlockUnaryMethod = Exclude<keyof typeof blockService, 'io'>;
