/**
 * A minimal raw client of `rdl.v1.Block` for daemon tests, built on `@rdl/client/wire` only (the
 * SDK is tested by its own package; here the daemon's answers are checked as they are sent).
 */
import { Client, credentials, Metadata } from '@grpc/grpc-js';
import type { ClientDuplexStream, ServiceError } from '@grpc/grpc-js';
import { GRPC_CHANNEL_OPTIONS, blockService, fromGrpcError } from '@rdl/client/wire';
import type {
  IoRequest,
  IoRequestBatch,
  IoResponse,
  IoResponseBatch,
  StatusResponse,
  WireError,
} from '@rdl/client/wire';

/** A failed call: the wire error rebuilt from status and metadata, plus the raw gRPC status. */
export class CallError extends Error {
  constructor(
    readonly wire: WireError,
    readonly grpcCode: number,
  ) {
    super(`${wire.code}: ${wire.message}`);
  }
  get code(): string {
    return this.wire.code;
  }
}

type UnaryName = Exclude<keyof typeof blockService, 'io'>;

/** One connection to one daemon's block API. */
export class BlockClient {
  readonly client: Client;

  constructor(readonly address: string) {
    // Short reconnect back-off: tests start clients before daemons listen and kill daemons on purpose;
    // grpc's default (1 s growing to 2 min) would make every test wait for it.
    this.client = new Client(address, credentials.createInsecure(), {
      ...GRPC_CHANNEL_OPTIONS,
      'grpc.initial_reconnect_backoff_ms': 50,
      'grpc.max_reconnect_backoff_ms': 250,
    });
  }

  /** Calls a unary method; rejects with {@link CallError}. */
  call<T = Record<string, unknown>>(method: UnaryName, request: unknown, timeoutMs = 10_000): Promise<T> {
    const definition = blockService[method];
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        definition.path,
        definition.requestSerialize as (value: unknown) => Buffer,
        definition.responseDeserialize as (bytes: Buffer) => T,
        request,
        new Metadata(),
        { deadline: Date.now() + timeoutMs },
        (err: ServiceError | null, response?: T) => {
          if (err) reject(new CallError(fromGrpcError(err), err.code));
          else resolve(response as T);
        },
      );
    });
  }

  /** Calls a unary method with raw request bytes (for malformed-input tests). */
  callRaw(method: UnaryName, bytes: Buffer, timeoutMs = 10_000): Promise<unknown> {
    const definition = blockService[method];
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        definition.path,
        (value: Buffer) => value,
        definition.responseDeserialize as (bytes: Buffer) => unknown,
        bytes,
        new Metadata(),
        { deadline: Date.now() + timeoutMs },
        (err: ServiceError | null, response?: unknown) => {
          if (err) reject(new CallError(fromGrpcError(err), err.code));
          else resolve(response);
        },
      );
    });
  }

  status(timeoutMs = 10_000): Promise<StatusResponse> {
    return this.call<StatusResponse>('status', {}, timeoutMs);
  }

  /** Opens an Io stream. */
  io(): IoStream {
    const definition = blockService.io;
    const call = this.client.makeBidiStreamRequest(
      definition.path,
      (value: IoRequestBatch | Buffer) => (Buffer.isBuffer(value) ? value : definition.requestSerialize(value)),
      definition.responseDeserialize,
      new Metadata(),
    );
    return new IoStream(call as ClientDuplexStream<IoRequestBatch | Buffer, IoResponseBatch>);
  }

  close(): void {
    this.client.close();
  }
}

/** A request as the tests write it: the id is assigned unless given. */
export type TestIoRequest = Omit<IoRequest, 'id'> & { id?: number };

/**
 * An Io stream: `request` sends one IoRequest (as a batch of one) and resolves with its response;
 * `batch` sends several in one message.
 */
export class IoStream {
  private readonly waiting = new Map<number, (response: IoResponse) => void>();
  private nextId = 1;
  /** Set when the stream failed as a whole. */
  failure: CallError | null = null;
  private readonly failed: Promise<CallError>;
  /** Number of responses in each message received, in order. */
  readonly messageSizes: number[] = [];

  constructor(private readonly call: ClientDuplexStream<IoRequestBatch | Buffer, IoResponseBatch>) {
    call.on('data', (batch: IoResponseBatch) => {
      this.messageSizes.push(batch.responses.length);
      for (const response of batch.responses) {
        const resolve = this.waiting.get(response.id);
        this.waiting.delete(response.id);
        resolve?.(response);
      }
    });
    this.failed = new Promise((resolve) => {
      call.on('error', (err: ServiceError) => {
        this.failure = new CallError(fromGrpcError(err), err.code);
        resolve(this.failure);
      });
    });
  }

  /** Sends a request (id assigned unless given) and waits for its response or the stream's failure. */
  request(request: TestIoRequest): Promise<IoResponse> {
    return this.batch([request])[0];
  }

  /** Sends requests in one message; each promise settles with its response or the stream's failure. */
  batch(requests: readonly TestIoRequest[]): Promise<IoResponse>[] {
    const withIds = requests.map((request) => ({ ...request, id: request.id ?? this.nextId++ }) as IoRequest);
    const responses = withIds.map((request) => {
      const response = new Promise<IoResponse>((resolve) => this.waiting.set(request.id, resolve));
      return Promise.race([
        response,
        this.failed.then((failure) => {
          throw failure;
        }),
      ]);
    });
    this.call.write({ requests: withIds });
    return responses;
  }

  /** Writes raw bytes as one message (malformed-input tests); resolves with the stream's failure. */
  writeRaw(bytes: Buffer): Promise<CallError> {
    this.call.write(bytes);
    return this.failed;
  }

  end(): void {
    this.call.end();
  }

  cancel(): void {
    this.call.cancel();
  }
}

/** A 32-hex-digit session id derived from a number (tests need distinct, reproducible ids). */
export function sessionId(n: number): string {
  return n.toString(16).padStart(32, '0');
}
