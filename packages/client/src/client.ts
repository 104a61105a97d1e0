import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { Deque } from './deque.js';
import { ClientCode, RdlError } from './errors.js';
import { WireCode, fromGrpcError, isRetryableCode } from './wire/errors.js';
import {
  GRPC_CHANNEL_OPTIONS,
  IO_BATCH_BYTES_MAX,
  IO_BATCH_REQUESTS_MAX,
  IO_REQUEST_BYTES_MAX,
  IO_STREAM_INFLIGHT_BYTES_MAX,
  IO_STREAM_INFLIGHT_MAX,
  SESSION_ID_PATTERN,
} from './wire/limits.js';
import { blockService } from './wire/service.js';
import type { BlockUnaryMethod } from './wire/service.js';
import { checkVolumeName, checkVolumeSize } from './wire/validate.js';
import type {
  CreateVolumeResponse,
  IoOp,
  IoRequest,
  IoRequestBatch,
  IoResponse,
  IoResponseBatch,
  StatusResponse,
  TransferLeaderResponse,
  VolumeInfo,
  WireError,
} from './wire/types.js';

/** Options of `RdlClient`. Validated once by the constructor (`CLIENT_CONFIG_INVALID`), then frozen. */
export interface RdlClientOptions {
  /** Block API address `host:port` of every region (any order; the leader is discovered). */
  endpoints: readonly string[];
  /** Default deadline of one call, retries included. Default 15000. */
  requestTimeoutMs?: number;
  /**
   * Deadline of one attempt of a unary call, after which it is retried elsewhere (a hung daemon
   * must not eat the whole deadline). Default 5000. `transferLeader` uses the whole deadline.
   */
  attemptTimeoutMs?: number;
  /** An Io stream with requests in flight but no answer for this long is treated as dead. Default 3000. */
  streamStallMs?: number;
  /** Most IO requests in flight on the Io stream (callers beyond wait for a slot). Default 256. */
  ioInflightMax?: number;
  /** Most request bytes (the `length` of every IO request) in flight on the Io stream. Default 32 MiB. */
  ioInflightBytesMax?: number;
  /** Most IO requests waiting for a slot; beyond, calls fail with `CLIENT_QUEUE_FULL`. Default 65536. */
  ioQueueMax?: number;
  /** First retry back-off; doubles per failed attempt up to `retryBackoffMsMax`, with jitter. Default 10. */
  retryBackoffMsMin?: number;
  /** Back-off ceiling. Default 1000. */
  retryBackoffMsMax?: number;
  /** Source of jitter in [0, 1). Default `Math.random`; tests pass a seeded one. */
  random?: () => number;
  /** Client session id (32 hex digits) for exactly-once writes. Default 128 random bits. */
  sessionId?: string;
  /** Extra grpc-js channel options (merged over `GRPC_CHANNEL_OPTIONS`). */
  channelOptions?: grpc.ChannelOptions;
}

/** Per-call options. */
export interface CallOptions {
  /** Aborts the call: it rejects with `CLIENT_ABORTED` (a write's outcome is then unknown). */
  signal?: AbortSignal;
  /** Deadline of this call, retries included; default `requestTimeoutMs`. */
  timeoutMs?: number;
}

interface ResolvedOptions {
  readonly endpoints: readonly string[];
  readonly requestTimeoutMs: number;
  readonly attemptTimeoutMs: number;
  readonly streamStallMs: number;
  readonly ioInflightMax: number;
  readonly ioInflightBytesMax: number;
  readonly ioQueueMax: number;
  readonly retryBackoffMsMin: number;
  readonly retryBackoffMsMax: number;
  readonly random: () => number;
  readonly sessionId: string;
  readonly channelOptions: grpc.ChannelOptions;
}

const ENDPOINT_PATTERN = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$/;

function resolveOptions(options: RdlClientOptions): ResolvedOptions {
  const problems: string[] = [];
  const endpoints = Array.isArray(options?.endpoints) ? [...options.endpoints] : [];
  if (endpoints.length === 0) problems.push('endpoints must list at least one host:port');
  for (const endpoint of endpoints) {
    if (typeof endpoint !== 'string' || !ENDPOINT_PATTERN.test(endpoint)) {
      problems.push(`endpoint ${JSON.stringify(endpoint)} is not host:port`);
    }
  }
  const integer = (name: keyof RdlClientOptions, fallback: number, min: number, max: number): number => {
    const value = options?.[name] ?? fallback;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
      problems.push(`${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
      return fallback;
    }
    return value;
  };
  const resolved: ResolvedOptions = {
    endpoints: Object.freeze(endpoints),
    requestTimeoutMs: integer('requestTimeoutMs', 15_000, 1, 24 * 3600_000),
    attemptTimeoutMs: integer('attemptTimeoutMs', 5_000, 1, 24 * 3600_000),
    streamStallMs: integer('streamStallMs', 3_000, 1, 24 * 3600_000),
    ioInflightMax: integer('ioInflightMax', 256, 1, IO_STREAM_INFLIGHT_MAX),
    ioInflightBytesMax: integer(
      'ioInflightBytesMax',
      32 * 1024 * 1024,
      IO_REQUEST_BYTES_MAX,
      IO_STREAM_INFLIGHT_BYTES_MAX,
    ),
    ioQueueMax: integer('ioQueueMax', 65_536, 1, 1 << 24),
    retryBackoffMsMin: integer('retryBackoffMsMin', 10, 0, 60_000),
    retryBackoffMsMax: integer('retryBackoffMsMax', 1_000, 0, 600_000),
    random: options?.random ?? Math.random,
    sessionId: options?.sessionId ?? randomBytes(16).toString('hex'),
    channelOptions: {
      ...GRPC_CHANNEL_OPTIONS,
      // A restarted daemon should be found again within a second, not grpc-js's default 120 s ceiling.
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1_000,
      ...options?.channelOptions,
    },
  };
  if (typeof resolved.random !== 'function') problems.push('random must be a function');
  if (typeof resolved.sessionId !== 'string' || !SESSION_ID_PATTERN.test(resolved.sessionId)) {
    problems.push(`sessionId must match ${SESSION_ID_PATTERN.source}`);
  }
  if (resolved.retryBackoffMsMax < resolved.retryBackoffMsMin) {
    problems.push('retryBackoffMsMax must be >= retryBackoffMsMin');
  }
  if (problems.length > 0) {
    throw new RdlError(ClientCode.CLIENT_CONFIG_INVALID, `invalid RdlClient options: ${problems.join('; ')}`);
  }
  return Object.freeze(resolved);
}

/** Monotonic milliseconds: deadlines must not jump with the wall clock. */
const now = (): number => performance.now();

const mutating: Readonly<Record<IoOp, boolean>> = {
  read: false,
  write: true,
  writeZeroes: true,
  trim: true,
  flush: false,
};

/**
 * A client session for exactly-once writes: its id, the next seq to hand out, and `ackedBelow`
 * (every lower seq is settled and will never be sent again).
 */
class WriteSession {
  nextSeq = 1;
  ackedBelow = 1;
  /** Settled seqs above `ackedBelow` (settled out of order); bounded by the seqs in flight. */
  private readonly settled = new Set<number>();

  constructor(readonly id: string) {}

  /** Marks `seq` settled and advances `ackedBelow` past every settled seq. */
  settle(seq: number): void {
    if (seq !== this.ackedBelow) {
      this.settled.add(seq);
      return;
    }
    this.ackedBelow++;
    while (this.settled.delete(this.ackedBelow)) this.ackedBelow++;
  }
}

/** One IO call on its way: waiting for a slot, in flight on a stream, or waiting to be retried. */
class PendingIo {
  /** Request id on the stream it was last sent on. */
  id = 0;
  attempts = 0;
  isSettled = false;
  lastError: RdlError | undefined = undefined;
  retryTimer: NodeJS.Timeout | undefined = undefined;

  constructor(
    readonly op: IoOp,
    readonly volume: string,
    readonly offset: number,
    readonly length: number,
    readonly data: Uint8Array | undefined,
    /** Session of a mutating op (else undefined); replaced only when the daemon forgot it. */
    public session: WriteSession | undefined,
    /** Session sequence number (mutating ops), else 0. */
    public seq: number,
    /** Payload bytes counted against the in-flight byte window. */
    readonly cost: number,
    readonly timeoutMs: number,
    readonly deadlineMs: number,
    readonly signal: AbortSignal | undefined,
    readonly resolve: (value: Buffer | undefined) => void,
    readonly reject: (error: RdlError) => void,
  ) {}
}

/**
 * When requests sent by `RdlClient.send` leave in one message: after the current macrotask's
 * microtasks and the IO callbacks of the same event-loop turn (`setImmediate`), so that every
 * request issued while handling one batch of answers rides in the next message. Measured against
 * `queueMicrotask` (bench sdk-read-4k-qd64, two runs each, same loaded machine): 0.20 / 0.15 s
 * CPU per 1k reads with setImmediate, 0.36 / 0.25 with queueMicrotask, which flushes before every
 * caller's continuation has run and so sends more, smaller messages.
 */
const scheduleFlush: (callback: () => void) => void = (callback) => setImmediate(callback);

/** The one Io stream of the client, to one daemon. */
class IoStream {
  readonly inflight = new Map<number, PendingIo>();
  inflightBytes = 0;
  lastReceiveMs = now();
  isDead = false;
  /** Requests sent (in `inflight`) but not yet written: they leave together as one batch. */
  outbox: IoRequest[] = [];
  /** Write payload bytes in `outbox`, kept within `IO_BATCH_BYTES_MAX` per message. */
  outboxBytes = 0;
  isFlushScheduled = false;

  constructor(
    readonly address: string,
    readonly call: grpc.ClientDuplexStream<IoRequestBatch, IoResponseBatch>,
  ) {}

  /** Writes the outbox as messages of at most `IO_BATCH_REQUESTS_MAX` requests. */
  flush(): void {
    if (this.outbox.length === 0) return;
    const requests = this.outbox;
    this.outbox = [];
    this.outboxBytes = 0;
    if (this.isDead) return; // its requests were put back in the queue by failStream
    this.call.write({ requests });
  }

  /** The scheduled flush (one callback per stream, not one per batch). */
  readonly onFlushDue = (): void => {
    this.isFlushScheduled = false;
    this.flush();
  };
}

function abortError(signal: AbortSignal): RdlError {
  return new RdlError(ClientCode.CLIENT_ABORTED, 'the call was aborted', { cause: signal.reason });
}

function deadlineError(what: string, timeoutMs: number, lastError: RdlError | undefined): RdlError {
  const last = lastError === undefined ? '' : `; last error ${lastError.code}: ${lastError.message}`;
  return new RdlError(ClientCode.CLIENT_DEADLINE_EXCEEDED, `${what} did not complete within ${timeoutMs} ms${last}`, {
    cause: lastError,
  });
}

function invalidArgument(message: string): RdlError {
  return new RdlError(WireCode.INVALID_ARGUMENT, message);
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/**
 * Client of an rdl cluster. Finds the leader among `endpoints` (following `NOT_LEADER` hints),
 * retries retryable failures (`NOT_LEADER`, `UNAVAILABLE`, `DEADLINE_EXCEEDED`,
 * `RESOURCE_EXHAUSTED`, dropped connections) with exponential back-off and jitter until the call's
 * deadline, and honours an `AbortSignal` on every call.
 *
 * IO rides one long-lived bidirectional `Io` stream to the leader, multiplexing requests by id
 * with a bounded window (`ioInflightMax`, `ioInflightBytesMax`); callers beyond the window wait
 * for a slot (FIFO, bounded by `ioQueueMax` and by their deadline). When the stream fails or the
 * daemon says `NOT_LEADER`, the stream is replaced and its unanswered requests are sent again, to
 * the new leader, ahead of newer ones.
 *
 * Writes are exactly-once: each mutating request carries this client's session id and its own
 * sequence number, reused on every retry, plus `ackedBelow` (every lower seq is settled and will
 * never be retried); the state machine applies each (session, seq) once.
 *
 * Errors are `RdlError` with a stable `code`. Buffers are passed by reference: do not modify a
 * write's `data` until its promise settles; a read's result is a view of the received message.
 */
export class RdlClient {
  /** The validated, frozen options. */
  readonly options: ResolvedOptions;

  private readonly connections = new Map<string, grpc.Client>();
  private leaderAddress: string | undefined = undefined;
  private endpointIndex = 0;
  private isClosed = false;

  private stream: IoStream | undefined = undefined;
  private streamFailures = 0;
  private reopenTimer: NodeJS.Timeout | undefined = undefined;
  private readonly queue = new Deque<PendingIo>();
  private readonly retrying = new Set<PendingIo>();
  private nextRequestId = 1;
  private liveCount = 0;
  private sweepTimer: NodeJS.Timeout | undefined = undefined;
  private readonly sweepIntervalMs: number;

  private session: WriteSession;

  private readonly unaryCalls = new Set<grpc.ClientUnaryCall>();
  /**
   * One abort listener per signal, however many IO calls share it (a caller may pass one signal
   * to thousands of calls; a listener each would be slow and trip Node's leak warning).
   */
  private readonly abortWatches = new Map<AbortSignal, { pendings: Set<PendingIo>; onAbort: () => void }>();

  /** Validates the options (`CLIENT_CONFIG_INVALID`); connects lazily on the first call. */
  constructor(options: RdlClientOptions) {
    this.options = resolveOptions(options);
    this.session = new WriteSession(this.options.sessionId);
    this.sweepIntervalMs = Math.max(5, Math.min(50, Math.floor(this.options.requestTimeoutMs / 10)));
    // Start at a random endpoint so many clients do not all knock on the first one.
    this.endpointIndex = Math.floor(this.options.random() * this.options.endpoints.length);
  }

  /** Address the next attempt goes to: the known leader, else the next endpoint in turn. */
  get currentTarget(): string {
    return this.leaderAddress ?? this.options.endpoints[this.endpointIndex % this.options.endpoints.length];
  }

  /**
   * This client's current session id (exactly-once writes). It changes only if a daemon reports
   * the session expired (idle for long, or evicted) on a write that cannot have been applied.
   */
  get sessionId(): string {
    return this.session.id;
  }

  /** Lowest write sequence number of the current session not yet settled (the next `ackedBelow`). */
  get ackedBelow(): number {
    return this.session.ackedBelow;
  }

  // ---------------------------------------------------------------- volumes

  /**
   * Creates volume `name` of `sizeBytes` (a positive multiple of 4096). Idempotent: if a volume of
   * that name and size exists it is returned with `isCreated: false`; a different size is
   * `VOLUME_EXISTS`.
   */
  async createVolume(name: string, sizeBytes: number, options: CallOptions = {}): Promise<CreateVolumeResponse> {
    this.checkName(name);
    const sizeError = checkVolumeSize(sizeBytes);
    if (sizeError !== undefined) throw RdlError.fromWire(sizeError);
    return this.unary<CreateVolumeResponse>('createVolume', { name, sizeBytes }, options);
  }

  /**
   * Deletes volume `name` (`VOLUME_NOT_FOUND` if absent). When an earlier attempt of this same call
   * failed ambiguously (connection lost, timed out, or the leader stepped down) and a retry finds
   * the volume gone, the call succeeds: that attempt deleted it.
   */
  async deleteVolume(name: string, options: CallOptions = {}): Promise<void> {
    this.checkName(name);
    await this.unary('deleteVolume', { name }, options);
  }

  /** Lists the volumes, sorted by name. */
  async listVolumes(options: CallOptions = {}): Promise<VolumeInfo[]> {
    const response = await this.unary<{ volumes: VolumeInfo[] }>('listVolumes', {}, options);
    return response.volumes;
  }

  /** Returns volume `name` (`VOLUME_NOT_FOUND` if absent). */
  async statVolume(name: string, options: CallOptions = {}): Promise<VolumeInfo> {
    this.checkName(name);
    const response = await this.unary<{ volume: VolumeInfo }>('statVolume', { name }, options);
    return response.volume;
  }

  /** Grows volume `name` to `sizeBytes` (>= its size, multiple of 4096; equal is a no-op). */
  async growVolume(name: string, sizeBytes: number, options: CallOptions = {}): Promise<VolumeInfo> {
    this.checkName(name);
    const sizeError = checkVolumeSize(sizeBytes);
    if (sizeError !== undefined) throw RdlError.fromWire(sizeError);
    const response = await this.unary<{ volume: VolumeInfo }>('growVolume', { name, sizeBytes }, options);
    return response.volume;
  }

  /**
   * Cluster status. Any daemon answers; when the one asked is not the leader but knows it, the
   * leader is asked too (only it knows per-follower lag), falling back to the first answer.
   */
  async status(options: CallOptions = {}): Promise<StatusResponse> {
    const first = await this.unary<StatusResponse>('status', {}, options);
    if (first.role === 'leader' || first.leader === undefined) return first;
    this.leaderAddress = first.leader.clientAddress;
    try {
      const second = await this.unary<StatusResponse>(
        'status',
        {},
        { ...options, timeoutMs: this.statusRetryMs(options) },
      );
      return second;
    } catch (error) {
      if (options.signal?.aborted === true) throw error;
      return first;
    }
  }

  /**
   * Asks the leader to hand leadership to `region`; resolves with the new leader once it leads
   * (`LEADER_TRANSFER_FAILED` if it did not happen in time). The Io stream follows by itself.
   */
  async transferLeader(region: string, options: CallOptions = {}): Promise<TransferLeaderResponse> {
    if (typeof region !== 'string' || region.length === 0) throw invalidArgument('region must be a non-empty string');
    const response = await this.unary<TransferLeaderResponse>('transferLeader', { region }, options);
    this.leaderAddress = response.leader.clientAddress;
    return response;
  }

  // ---------------------------------------------------------------- IO

  /**
   * Reads `length` bytes at byte `offset` of `volume` (linearizable). Ranges above
   * `IO_REQUEST_BYTES_MAX` are split into concurrent requests and joined.
   */
  read(volume: string, offset: number, length: number, options: CallOptions = {}): Promise<Buffer> {
    // Not async: the common case hands back `io`'s promise as is (one promise per call, not two).
    try {
      this.checkRange(volume, offset, length);
    } catch (error) {
      return Promise.reject(error);
    }
    if (length === 0) return Promise.resolve(Buffer.alloc(0));
    if (length <= IO_REQUEST_BYTES_MAX) {
      return this.io('read', volume, offset, length, undefined, options) as Promise<Buffer>;
    }
    return this.readSplit(volume, offset, length, options);
  }

  private async readSplit(volume: string, offset: number, length: number, options: CallOptions): Promise<Buffer> {
    const parts: Promise<Buffer | undefined>[] = [];
    for (let at = 0; at < length; at += IO_REQUEST_BYTES_MAX) {
      parts.push(this.io('read', volume, offset + at, Math.min(IO_REQUEST_BYTES_MAX, length - at), undefined, options));
    }
    return Buffer.concat((await Promise.all(parts)) as Buffer[], length);
  }

  /**
   * Writes `data` at byte `offset` of `volume`; resolves once committed by a majority. Exactly
   * once even when retried. Ranges above `IO_REQUEST_BYTES_MAX` are split (each part atomic).
   */
  write(volume: string, offset: number, data: Uint8Array, options: CallOptions = {}): Promise<void> {
    // Not async: the common case hands back `io`'s promise (it resolves with undefined for writes).
    try {
      if (!(data instanceof Uint8Array)) throw invalidArgument('data must be a Buffer or Uint8Array');
      this.checkRange(volume, offset, data.length);
    } catch (error) {
      return Promise.reject(error);
    }
    if (data.length > 0 && data.length <= IO_REQUEST_BYTES_MAX) {
      return this.io('write', volume, offset, data.length, data, options) as Promise<unknown> as Promise<void>;
    }
    return this.split('write', volume, offset, data.length, data, options);
  }

  /** Makes `length` bytes at `offset` read as zeros (committed, exactly once). */
  async writeZeroes(volume: string, offset: number, length: number, options: CallOptions = {}): Promise<void> {
    this.checkRange(volume, offset, length);
    await this.split('writeZeroes', volume, offset, length, undefined, options);
  }

  /** Discards `length` bytes at `offset` (they read as zeros afterwards; thin provisioning frees them). */
  async trim(volume: string, offset: number, length: number, options: CallOptions = {}): Promise<void> {
    this.checkRange(volume, offset, length);
    await this.split('trim', volume, offset, length, undefined, options);
  }

  /** Barrier: resolves once every write acknowledged before on `volume` is durable. */
  async flush(volume: string, options: CallOptions = {}): Promise<void> {
    this.checkName(volume);
    await this.io('flush', volume, 0, 0, undefined, options);
  }

  /** Fails every pending call with `CLIENT_CLOSED`, ends the stream and closes the connections. */
  async close(): Promise<void> {
    if (this.isClosed) return;
    this.isClosed = true;
    const closed = new RdlError(ClientCode.CLIENT_CLOSED, 'the client was closed');
    clearTimeout(this.reopenTimer);
    this.reopenTimer = undefined;
    const stream = this.stream;
    this.stream = undefined;
    if (stream !== undefined) {
      stream.isDead = true;
      for (const pending of stream.inflight.values()) this.fail(pending, closed);
      stream.inflight.clear();
      stream.call.cancel();
    }
    for (;;) {
      const pending = this.queue.shift();
      if (pending === undefined) break;
      this.fail(pending, closed);
    }
    for (const pending of this.retrying) this.fail(pending, closed);
    this.retrying.clear();
    for (const call of this.unaryCalls) call.cancel();
    this.unaryCalls.clear();
    this.stopSweep();
    for (const connection of this.connections.values()) connection.close();
    this.connections.clear();
  }

  // ---------------------------------------------------------------- internals: validation

  private checkName(name: string): void {
    const error = checkVolumeName(name);
    if (error !== undefined) throw RdlError.fromWire(error);
  }

  private checkRange(volume: string, offset: number, length: number): void {
    this.checkName(volume);
    if (!isCount(offset) || !isCount(length) || !Number.isSafeInteger(offset + length)) {
      throw invalidArgument(`offset and length must be safe non-negative integers, got ${offset} and ${length}`);
    }
  }

  private statusRetryMs(options: CallOptions): number {
    return Math.min(options.timeoutMs ?? this.options.requestTimeoutMs, this.options.attemptTimeoutMs);
  }

  // ---------------------------------------------------------------- internals: leader tracking

  private connection(address: string): grpc.Client {
    let connection = this.connections.get(address);
    if (connection === undefined) {
      connection = new grpc.Client(address, grpc.credentials.createInsecure(), this.options.channelOptions);
      this.connections.set(address, connection);
    }
    return connection;
  }

  /**
   * Records that `address` failed with `error`; returns true when the error named another leader
   * to go to right away, false when the next attempt should back off (and try the next endpoint).
   */
  private noteFailure(address: string, error: WireError): boolean {
    if (error.code === WireCode.NOT_LEADER && error.leaderAddress !== undefined && error.leaderAddress !== address) {
      this.leaderAddress = error.leaderAddress;
      return true;
    }
    const isAddressSuspect =
      error.code === WireCode.NOT_LEADER ||
      error.code === WireCode.UNAVAILABLE ||
      error.code === WireCode.DEADLINE_EXCEEDED;
    if (isAddressSuspect && (this.leaderAddress === undefined || this.leaderAddress === address)) {
      this.leaderAddress = undefined;
      const index = this.options.endpoints.indexOf(address);
      this.endpointIndex = (index >= 0 ? index : this.endpointIndex) + 1;
    }
    return false;
  }

  private backoffMs(attempt: number): number {
    const { retryBackoffMsMin, retryBackoffMsMax, random } = this.options;
    const ceiling = Math.min(retryBackoffMsMax, retryBackoffMsMin * 2 ** Math.min(attempt - 1, 30));
    // "Equal jitter": at least half the ceiling, so back-off still grows; the rest random.
    return ceiling / 2 + random() * (ceiling / 2);
  }

  // ---------------------------------------------------------------- internals: unary

  private async unary<Response>(method: BlockUnaryMethod, request: object, options: CallOptions): Promise<Response> {
    if (this.isClosed) throw new RdlError(ClientCode.CLIENT_CLOSED, 'the client was closed');
    const { signal } = options;
    if (signal?.aborted === true) throw abortError(signal);
    const timeoutMs = options.timeoutMs ?? this.options.requestTimeoutMs;
    const deadlineMs = now() + timeoutMs;
    let attempt = 0;
    let lastError: RdlError | undefined;
    // True once an attempt failed in a way that may have left it applied (see deleteVolume).
    let isAmbiguous = false;
    for (;;) {
      const remainingMs = deadlineMs - now();
      if (remainingMs <= 0) throw deadlineError(method, timeoutMs, lastError);
      const attemptMs =
        method === 'transferLeader' ? remainingMs : Math.min(remainingMs, this.options.attemptTimeoutMs);
      const address = this.currentTarget;
      const wasLeader = this.leaderAddress === address;
      try {
        const response = await this.unaryAttempt<Response>(address, method, request, attemptMs, signal);
        if (method !== 'status') this.leaderAddress = address;
        return response;
      } catch (error) {
        if (!(error instanceof RdlError) || error.code.startsWith('CLIENT_')) throw error;
        if (method === 'deleteVolume' && error.code === WireCode.VOLUME_NOT_FOUND && isAmbiguous) {
          return {} as Response;
        }
        // A follower's NOT_LEADER means it proposed nothing; a lost connection, a timeout or the
        // leader stepping down mid-call may mean the change was committed anyway.
        if (
          error.code === WireCode.UNAVAILABLE ||
          error.code === WireCode.DEADLINE_EXCEEDED ||
          (error.code === WireCode.NOT_LEADER && wasLeader)
        ) {
          isAmbiguous = true;
        }
        if (!isRetryableCode(error.code)) throw error;
        // An attempt cut short by the call's own deadline says less than the failure before it.
        const isCutShort = error.code === WireCode.DEADLINE_EXCEEDED && now() >= deadlineMs;
        if (!isCutShort || lastError === undefined) lastError = error;
        attempt++;
        const isRedirect = this.noteFailure(address, error);
        // Follow fresh redirects at once, but not forever: stale hints can point in a circle.
        const delayMs = isRedirect && attempt <= this.options.endpoints.length ? 0 : this.backoffMs(attempt);
        if (now() + delayMs >= deadlineMs) throw deadlineError(method, timeoutMs, lastError);
        if (delayMs > 0) await this.sleep(delayMs, signal);
      }
    }
  }

  private unaryAttempt<Response>(
    address: string,
    method: BlockUnaryMethod,
    request: object,
    attemptMs: number,
    signal: AbortSignal | undefined,
  ): Promise<Response> {
    const definition = blockService[method];
    return new Promise<Response>((resolve, reject) => {
      let onAbort: (() => void) | undefined;
      const call = this.connection(address).makeUnaryRequest<object, Response>(
        definition.path,
        definition.requestSerialize as (value: object) => Buffer,
        definition.responseDeserialize as (bytes: Buffer) => Response,
        request,
        new grpc.Metadata(),
        { deadline: Date.now() + Math.ceil(attemptMs) },
        (error, response) => {
          this.unaryCalls.delete(call);
          if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
          if (signal?.aborted === true) {
            reject(abortError(signal));
          } else if (this.isClosed) {
            reject(new RdlError(ClientCode.CLIENT_CLOSED, 'the client was closed', { cause: error }));
          } else if (error !== null) {
            reject(RdlError.fromWire(fromGrpcError(error), error));
          } else if (typeof response !== 'object' || response === null) {
            reject(new RdlError(ClientCode.CLIENT_PROTOCOL_ERROR, `${method} answered a non-object`));
          } else {
            resolve(response);
          }
        },
      );
      this.unaryCalls.add(call);
      if (signal !== undefined) {
        onAbort = () => call.cancel();
        signal.addEventListener('abort', onAbort, { once: true });
      }
    });
  }

  private sleep(delayMs: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        clearTimeout(timer);
        reject(abortError(signal!));
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        if (this.isClosed) reject(new RdlError(ClientCode.CLIENT_CLOSED, 'the client was closed'));
        else resolve();
      }, delayMs);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  // ---------------------------------------------------------------- internals: IO

  /** Splits a mutating range into requests of at most `IO_REQUEST_BYTES_MAX` bytes. */
  private async split(
    op: IoOp,
    volume: string,
    offset: number,
    length: number,
    data: Uint8Array | undefined,
    options: CallOptions,
  ): Promise<void> {
    if (length === 0) return;
    if (length <= IO_REQUEST_BYTES_MAX) {
      await this.io(op, volume, offset, length, data, options);
      return;
    }
    const parts: Promise<unknown>[] = [];
    for (let at = 0; at < length; at += IO_REQUEST_BYTES_MAX) {
      const partLength = Math.min(IO_REQUEST_BYTES_MAX, length - at);
      parts.push(this.io(op, volume, offset + at, partLength, data?.subarray(at, at + partLength), options));
    }
    await Promise.all(parts);
  }

  private io(
    op: IoOp,
    volume: string,
    offset: number,
    length: number,
    data: Uint8Array | undefined,
    options: CallOptions,
  ): Promise<Buffer | undefined> {
    if (this.isClosed) return Promise.reject(new RdlError(ClientCode.CLIENT_CLOSED, 'the client was closed'));
    const { signal } = options;
    if (signal?.aborted === true) return Promise.reject(abortError(signal));
    if (this.queue.length >= this.options.ioQueueMax) {
      return Promise.reject(
        new RdlError(ClientCode.CLIENT_QUEUE_FULL, `more than ${this.options.ioQueueMax} IO requests are waiting`),
      );
    }
    const timeoutMs = options.timeoutMs ?? this.options.requestTimeoutMs;
    return new Promise<Buffer | undefined>((resolve, reject) => {
      const isMutating = mutating[op];
      const pending = new PendingIo(
        op,
        volume,
        offset,
        length,
        data,
        isMutating ? this.session : undefined,
        isMutating ? this.session.nextSeq++ : 0,
        // Counted like the daemon counts its window: the request's length, whatever the op.
        length,
        timeoutMs,
        now() + timeoutMs,
        signal,
        resolve,
        reject,
      );
      if (signal !== undefined) this.watchAbort(signal, pending);
      this.liveCount++;
      this.startSweep();
      this.queue.push(pending);
      this.pump();
    });
  }

  private watchAbort(signal: AbortSignal, pending: PendingIo): void {
    let watch = this.abortWatches.get(signal);
    if (watch === undefined) {
      const pendings = new Set<PendingIo>();
      const onAbort = (): void => {
        this.abortWatches.delete(signal);
        const error = abortError(signal);
        for (const each of pendings) this.fail(each, error);
      };
      watch = { pendings, onAbort };
      this.abortWatches.set(signal, watch);
      signal.addEventListener('abort', onAbort, { once: true });
    }
    watch.pendings.add(pending);
  }

  private unwatchAbort(signal: AbortSignal, pending: PendingIo): void {
    const watch = this.abortWatches.get(signal);
    if (watch === undefined) return;
    watch.pendings.delete(pending);
    if (watch.pendings.size === 0) {
      this.abortWatches.delete(signal);
      signal.removeEventListener('abort', watch.onAbort);
    }
  }

  /** Settles a pending call successfully (once). */
  private finish(pending: PendingIo, value: Buffer | undefined): void {
    if (pending.isSettled) return;
    this.settle(pending);
    pending.resolve(value);
  }

  /** Settles a pending call with an error (once). It may stay in a stream's window until answered. */
  private fail(pending: PendingIo, error: RdlError): void {
    if (pending.isSettled) return;
    this.settle(pending);
    pending.reject(error);
  }

  private settle(pending: PendingIo): void {
    pending.isSettled = true;
    if (pending.signal !== undefined) this.unwatchAbort(pending.signal, pending);
    if (pending.retryTimer !== undefined) {
      clearTimeout(pending.retryTimer);
      this.retrying.delete(pending);
    }
    pending.session?.settle(pending.seq);
    // The sweep timer stops itself once nothing is live (see `sweep`): under a closed-loop load
    // every call of a batch settles before the callers issue the next ones, and clearing and
    // re-arming an interval each time cost more than the sweep.
    this.liveCount--;
  }

  /** Moves waiting requests into the stream window while there is room. */
  private pump(): void {
    while (this.queue.length > 0) {
      const pending = this.queue.peek()!;
      if (pending.isSettled) {
        this.queue.shift();
        continue;
      }
      const stream = this.ensureStream();
      if (stream === undefined) return;
      if (stream.inflight.size >= this.options.ioInflightMax) return;
      if (stream.inflightBytes + pending.cost > this.options.ioInflightBytesMax) return;
      this.queue.shift();
      this.send(stream, pending);
    }
  }

  private ensureStream(): IoStream | undefined {
    if (this.stream !== undefined) return this.stream;
    if (this.reopenTimer !== undefined || this.isClosed) return undefined;
    const address = this.currentTarget;
    const definition = blockService.io;
    const call = this.connection(address).makeBidiStreamRequest<IoRequestBatch, IoResponseBatch>(
      definition.path,
      definition.requestSerialize,
      definition.responseDeserialize,
    );
    const stream = new IoStream(address, call);
    call.on('data', (batch: IoResponseBatch) => this.onResponses(stream, batch));
    call.on('error', (error: grpc.ServiceError) => this.failStream(stream, fromGrpcError(error)));
    call.on('status', (status: grpc.StatusObject) => {
      if (status.code === grpc.status.OK) {
        this.failStream(stream, {
          code: WireCode.UNAVAILABLE,
          message: `the Io stream to ${address} was ended by the server`,
        });
      }
    });
    this.stream = stream;
    return stream;
  }

  /**
   * Puts `pending` in the stream's window and its outbox; the outbox is written as one batch once
   * the current turn is over (or at once when the next request would not fit the batch limits).
   */
  private send(stream: IoStream, pending: PendingIo): void {
    if (stream.inflight.size === 0) stream.lastReceiveMs = now();
    const id = this.nextRequestId++;
    pending.id = id;
    pending.attempts++;
    stream.inflight.set(id, pending);
    stream.inflightBytes += pending.cost;
    let request: IoRequest;
    let payloadBytes = 0;
    if (pending.session === undefined) {
      // read, flush: no session fields (the wire allows them absent on non-mutating ops).
      request = { id, op: pending.op, volume: pending.volume, offset: pending.offset, length: pending.length };
    } else if (pending.data === undefined) {
      request = {
        id,
        op: pending.op,
        volume: pending.volume,
        offset: pending.offset,
        length: pending.length,
        session: pending.session.id,
        seq: pending.seq,
        ackedBelow: pending.session.ackedBelow,
      };
    } else {
      payloadBytes = pending.data.length;
      request = {
        id,
        op: pending.op,
        volume: pending.volume,
        offset: pending.offset,
        length: pending.length,
        data: pending.data,
        session: pending.session.id,
        seq: pending.seq,
        ackedBelow: pending.session.ackedBelow,
      };
    }
    if (
      stream.outbox.length >= IO_BATCH_REQUESTS_MAX ||
      (stream.outbox.length > 0 && stream.outboxBytes + payloadBytes > IO_BATCH_BYTES_MAX)
    ) {
      stream.flush();
    }
    stream.outbox.push(request);
    stream.outboxBytes += payloadBytes;
    if (!stream.isFlushScheduled) {
      stream.isFlushScheduled = true;
      scheduleFlush(stream.onFlushDue);
    }
  }

  /** One message of answers: each settles its request; the window is refilled once at the end. */
  private onResponses(stream: IoStream, batch: IoResponseBatch): void {
    if (stream.isDead) return;
    const responses = typeof batch === 'object' && batch !== null ? batch.responses : undefined;
    if (!Array.isArray(responses)) {
      this.failStream(stream, {
        code: WireCode.INTERNAL,
        message: `${stream.address} answered an Io message that is not a batch of responses`,
      });
      return;
    }
    stream.lastReceiveMs = now();
    let notLeader: WireError | undefined;
    for (let i = 0; i < responses.length; i++) {
      const error = this.onResponse(stream, responses[i]);
      if (error !== undefined) notLeader = error;
    }
    // NOT_LEADER: this daemon no longer leads and everything else in flight here will fail the
    // same way. The other answers of the same message were taken first; now replace the stream
    // and send the rest again, to the leader.
    if (notLeader !== undefined) this.failStream(stream, notLeader);
    else this.pump();
  }

  /** Settles the request `response` answers; returns the error when it is NOT_LEADER (caller fails the stream). */
  private onResponse(stream: IoStream, response: IoResponse): WireError | undefined {
    const pending =
      typeof response === 'object' && response !== null && typeof response.id === 'number'
        ? stream.inflight.get(response.id)
        : undefined;
    if (pending === undefined) return undefined; // an id this stream no longer waits for: nothing to settle
    stream.inflight.delete(response.id);
    stream.inflightBytes -= pending.cost;
    if (response.ok === true) {
      this.streamFailures = 0;
      this.leaderAddress = stream.address;
      if (pending.op === 'read') {
        const data = response.data;
        if (!(data instanceof Uint8Array) || data.length !== pending.length) {
          this.fail(
            pending,
            new RdlError(
              ClientCode.CLIENT_PROTOCOL_ERROR,
              `read of ${pending.length} bytes answered ${data instanceof Uint8Array ? data.length : 'no'} bytes`,
            ),
          );
        } else {
          this.finish(pending, Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.length));
        }
      } else {
        this.finish(pending, undefined);
      }
      return undefined;
    }
    const wireError: WireError =
      typeof response.error === 'object' && response.error !== null && typeof response.error.code === 'string'
        ? response.error
        : { code: WireCode.INTERNAL, message: 'the server answered an error without a code' };
    const error = RdlError.fromWire(wireError);
    if (wireError.code === WireCode.NOT_LEADER) {
      if (!pending.isSettled) {
        pending.lastError = error;
        this.queue.unshift(pending);
      }
      return wireError;
    }
    if (wireError.code === WireCode.SESSION_EXPIRED && this.renewSession(pending)) {
      this.queue.unshift(pending);
    } else if (isRetryableCode(wireError.code)) {
      this.retryLater(pending, error);
    } else {
      this.fail(pending, error);
    }
    return undefined;
  }

  /**
   * The daemon forgot the session (idle past its expiry, or evicted). A write sent only once was
   * refused, not applied, so it can safely move to a fresh session with a new seq; one sent more
   * than once may have been applied by an earlier copy, so its outcome is unknown and it fails
   * with `SESSION_EXPIRED`. Returns true when `pending` was moved.
   */
  private renewSession(pending: PendingIo): boolean {
    if (pending.isSettled || pending.session === undefined || pending.attempts !== 1) return false;
    if (pending.session === this.session) this.session = new WriteSession(randomBytes(16).toString('hex'));
    pending.session.settle(pending.seq);
    pending.session = this.session;
    pending.seq = this.session.nextSeq++;
    pending.attempts = 0;
    return true;
  }

  /** Retries one request after a back-off (server said busy or timed out), within its deadline. */
  private retryLater(pending: PendingIo, error: RdlError): void {
    if (pending.isSettled) return;
    pending.lastError = error;
    const delayMs = this.backoffMs(pending.attempts);
    if (now() + delayMs >= pending.deadlineMs) {
      this.fail(pending, deadlineError(pending.op, pending.timeoutMs, error));
      return;
    }
    this.retrying.add(pending);
    pending.retryTimer = setTimeout(() => {
      pending.retryTimer = undefined;
      this.retrying.delete(pending);
      if (pending.isSettled || this.isClosed) return;
      this.queue.unshift(pending);
      this.pump();
    }, delayMs);
  }

  /**
   * Declares `stream` dead: cancels it, puts its unanswered requests back at the front of the
   * queue (in their original order), and reopens at once on a redirect or after a back-off.
   */
  private failStream(stream: IoStream, wireError: WireError): void {
    if (stream.isDead) return;
    stream.isDead = true;
    if (this.stream === stream) this.stream = undefined;
    stream.call.cancel();
    stream.flush(); // drops the unsent batch: its requests are in `inflight`, re-queued below
    const error = RdlError.fromWire(wireError);
    const unanswered = [...stream.inflight.values()];
    stream.inflight.clear();
    stream.inflightBytes = 0;
    for (let i = unanswered.length - 1; i >= 0; i--) {
      const pending = unanswered[i];
      if (pending.isSettled) continue;
      pending.lastError = error;
      this.queue.unshift(pending);
    }
    if (this.isClosed) return;
    this.streamFailures++;
    const isRedirect = this.noteFailure(stream.address, wireError);
    if (isRedirect && this.streamFailures <= this.options.endpoints.length) {
      this.pump();
      return;
    }
    clearTimeout(this.reopenTimer);
    this.reopenTimer = setTimeout(() => {
      this.reopenTimer = undefined;
      this.pump();
    }, this.backoffMs(this.streamFailures));
  }

  private startSweep(): void {
    if (this.sweepTimer !== undefined) return;
    this.sweepTimer = setInterval(() => this.sweep(), this.sweepIntervalMs);
  }

  private stopSweep(): void {
    clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
  }

  /**
   * Periodic check (one timer for all requests, not one per request): fails requests past their
   * deadline and declares a stalled stream dead.
   */
  private sweep(): void {
    if (this.liveCount === 0) {
      this.stopSweep();
      return;
    }
    const nowMs = now();
    const stream = this.stream;
    if (stream !== undefined) {
      for (const pending of stream.inflight.values()) {
        if (!pending.isSettled && nowMs >= pending.deadlineMs) {
          this.fail(pending, deadlineError(pending.op, pending.timeoutMs, pending.lastError));
        }
      }
      if (stream.inflight.size > 0 && nowMs - stream.lastReceiveMs > this.options.streamStallMs) {
        this.failStream(stream, {
          code: WireCode.UNAVAILABLE,
          message: `the Io stream to ${stream.address} answered nothing for ${this.options.streamStallMs} ms`,
        });
      }
    }
    let hasExpired = false;
    this.queue.forEach((pending) => {
      if (!pending.isSettled && nowMs >= pending.deadlineMs) {
        this.fail(pending, deadlineError(pending.op, pending.timeoutMs, pending.lastError));
        hasExpired = true;
      }
    });
    if (hasExpired) this.queue.filter((pending) => !pending.isSettled);
    this.pump();
  }
}
