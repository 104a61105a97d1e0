/** A `BlockServer` whose methods all answer UNIMPLEMENTED except those a test supplies. */
import * as grpc from '@grpc/grpc-js';
import type { BlockServer } from '../../src/wire/index.js';

export function stubBlockServer(methods: Partial<BlockServer>): BlockServer {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- one stub serves every unary method
  const unimplemented: grpc.handleUnaryCall<any, any> = (_call, callback) =>
    callback({ code: grpc.status.UNIMPLEMENTED });
  const unimplementedStream: BlockServer['io'] = (call) =>
    call.destroy(Object.assign(new Error('not implemented'), { code: grpc.status.UNIMPLEMENTED }));
  return {
    createVolume: unimplemented,
    deleteVolume: unimplemented,
    listVolumes: unimplemented,
    growVolume: unimplemented,
    status: unimplemented,
    transferLeader: unimplemented,
    statVolume: unimplemented,
    io: unimplementedStream,
    ...methods,
  };
}
