import type { handleUnaryCall, sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { codeOf } from '../errors.js';
import { toCsiGrpcError } from './errors.js';

/** What every CSI handler gets: the driver's logger. */
export interface HandlerContext {
  logger: Logger;
}

/**
 * Wraps an async handler as a grpc-js unary handler: its result is the response, anything it
 * throws becomes the mapped gRPC status (`toCsiGrpcError`). Only the method and the volume id are
 * logged, never the request, because requests carry `secrets` and mount flags the spec says not
 * to leak.
 */
export function unaryHandler<Request, Response>(
  context: HandlerContext,
  method: string,
  fn: (request: Request) => Promise<Response>,
): handleUnaryCall<Request, Response> {
  return (call: ServerUnaryCall<Request, Response>, callback: sendUnaryData<Response>) => {
    const volumeId = (call.request as { volume_id?: unknown } | null)?.volume_id;
    const log = context.logger.child({ method, volumeId: typeof volumeId === 'string' ? volumeId : undefined });
    const startedAtMs = performance.now();
    fn(call.request).then(
      (response) => {
        log.debug({ durationMs: Math.round(performance.now() - startedAtMs) }, 'csi call ok');
        callback(null, response);
      },
      (err: unknown) => {
        const grpcError = toCsiGrpcError(err);
        log.info({ code: codeOf(err), status: grpcError.code, err: (err as Error)?.message }, 'csi call failed');
        callback(grpcError);
      },
    );
  };
}
