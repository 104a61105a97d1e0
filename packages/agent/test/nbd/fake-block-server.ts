/**
 * A one-node stand-in for the rdl daemons in the NBD tests: a real grpc-js server on 127.0.0.1:0
 * speaking the `rdl.v1.Block` wire protocol of `@rdl/client/wire` (createVolume, statVolume,
 * listVolumes and the Io stream) over in-memory volumes. Knobs let a test fail the next IO requests with a retryable
 * code or hold every request unanswered. It checks the agent's side; it is not the daemon.
 */
import * as grpc from '@grpc/grpc-js';
import { GRPC_SERVER_OPTIONS, blockService, toGrpcError } from '@rdl/client/wire';
import type { BlockServer, IoRequest, IoRequestBatch, IoResponse, VolumeInfo } from '@rdl/client/wire';

export interface FakeBlockServer {
  readonly address: string;
  readonly volumes: Map<string, Buffer>;
  /** IO requests received (attempts, retries included). */
  ioRequests: number;
  /** The next this-many IO requests are answered UNAVAILABLE (the SDK retries those). */
  unavailableNext: number;
  /** While true, IO requests are never answered. */
  isHolding: boolean;
  close(): Promise<void>;
}

export async function startFakeBlockServer(volumes: Record<string, number>): Promise<FakeBlockServer> {
  const server = new grpc.Server(GRPC_SERVER_OPTIONS);
  const state: FakeBlockServer = {
    address: '',
    volumes: new Map(Object.entries(volumes).map(([name, size]) => [name, Buffer.alloc(size)])),
    ioRequests: 0,
    unavailableNext: 0,
    isHolding: false,
    close: () =>
      new Promise<void>((resolve) => {
        server.forceShutdown();
        resolve();
      }),
  };
  const info = (name: string): VolumeInfo => ({
    name,
    sizeBytes: state.volumes.get(name)!.length,
    blockSizeBytes: 4096,
    createdAtMs: 1,
  });
  const unimplemented = (_call: unknown, callback: grpc.sendUnaryData<never>): void =>
    callback(toGrpcError({ code: 'INTERNAL', message: 'not implemented by the fake' }));
  const implementation: BlockServer = {
    createVolume: (call, callback) => {
      const { name, sizeBytes } = call.request;
      const existing = state.volumes.get(name);
      if (existing !== undefined && existing.length !== sizeBytes) {
        callback(toGrpcError({ code: 'VOLUME_EXISTS', message: `volume ${name} exists with another size` }));
        return;
      }
      if (existing === undefined) state.volumes.set(name, Buffer.alloc(sizeBytes));
      callback(null, { volume: info(name), isCreated: existing === undefined });
    },
    deleteVolume: unimplemented,
    growVolume: unimplemented,
    status: unimplemented,
    transferLeader: unimplemented,
    listVolumes: (_call, callback) => callback(null, { volumes: [...state.volumes.keys()].sort().map(info) }),
    statVolume: (call, callback) => {
      const name = call.request.name;
      if (!state.volumes.has(name)) {
        callback(toGrpcError({ code: 'VOLUME_NOT_FOUND', message: `volume ${name} does not exist` }));
        return;
      }
      callback(null, { volume: info(name) });
    },
    io: (call) => {
      // Io messages are batches (IoRequestBatch); each request is answered in a message of its own.
      call.on('data', (batch: IoRequestBatch) => {
        for (const request of batch.requests) {
          state.ioRequests++;
          if (state.isHolding) continue;
          if (state.unavailableNext > 0) {
            state.unavailableNext--;
            const error = { code: 'UNAVAILABLE', message: 'fake: no quorum' };
            call.write({ responses: [{ id: request.id, ok: false, error }] });
            continue;
          }
          call.write({ responses: [serve(state, request)] });
        }
      });
      call.on('end', () => call.end());
      call.on('error', () => {});
    },
  };
  server.addService(blockService, implementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, bound) =>
      err === null ? resolve(bound) : reject(err),
    ),
  );
  return Object.assign(state, { address: `127.0.0.1:${port}` });
}

function serve(state: FakeBlockServer, request: IoRequest): IoResponse {
  const volume = state.volumes.get(request.volume);
  if (volume === undefined) {
    return { id: request.id, ok: false, error: { code: 'VOLUME_NOT_FOUND', message: request.volume } };
  }
  const end = request.offset + request.length;
  if (end > volume.length) return { id: request.id, ok: false, error: { code: 'OUT_OF_RANGE', message: 'range' } };
  switch (request.op) {
    case 'read':
      return { id: request.id, ok: true, data: Buffer.from(volume.subarray(request.offset, end)) };
    case 'write':
      volume.set(request.data!, request.offset);
      return { id: request.id, ok: true };
    case 'writeZeroes':
    case 'trim':
      volume.fill(0, request.offset, end);
      return { id: request.id, ok: true };
    case 'flush':
      return { id: request.id, ok: true };
  }
}
