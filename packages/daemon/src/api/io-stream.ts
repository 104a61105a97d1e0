/**
 * One `Io` stream of the block API, server side: batches of requests in, batches of responses out.
 *
 * Per message: decode once, check the envelope (`checkIoBatch`) and every id (a batch with a
 * request that cannot be answered fails the stream), then check and admit each request on its own
 * (per-request errors for the rest), propose the mutations with one `proposeMany` call (the Raft
 * node batches them into entries) and ask ONE ReadIndex for all the reads of the message; they
 * are read with one `readMany`, started at once when this node has applied all it knows committed
 * (used only if that state is at or after the read index), else after the ReadIndex (shared by the
 * messages whose ReadIndex resolved together).
 * Responses ready in the same turn of the event loop leave together in one message, flushed on
 * `setImmediate` so the LevelDB reads that complete in the same poll phase share it.
 *
 * Limits are those of the pre-batch stream: requests and bytes in flight per stream and per daemon
 * (RESOURCE_EXHAUSTED beyond), a deadline per request enforced by a sweep, and back-pressure: when
 * the stream's write buffer is high (grpc-js's write() returns false, or more than
 * `WRITE_BUFFER_BYTES_HIGH` of response messages are not yet taken by HTTP/2) the stream stops
 * reading requests and keeps the slots of what the message answered until the buffer drains. The
 * byte bound is new with batches: grpc-js counts its buffer in messages (16), and 16 batches can
 * hold far more than 16 single answers did.
 *
 * Hot-path allocations are per message where they can be: one `InflightIo` per admitted request
 * (no closures or `AbortSignal` of its own), one callback per message for its proposals
 * (`proposeMany`) and one `readMany` for its reads, no copy of a write's payload (a view into the
 * received message, until the Raft command encoder).
 */
import type { ServerDuplexStream } from '@grpc/grpc-js';
import {
  IO_BATCH_BYTES_MAX,
  IO_BATCH_REQUESTS_MAX,
  WireCode,
  checkIoBatch,
  checkIoRequest,
  decode,
  isIoRequestId,
  toGrpcError,
} from '@rdl/client/wire';
import type { IoOp, IoRequest, IoRequestBatch, IoResponse, IoResponseBatch, WireError } from '@rdl/client/wire';
import { encodeCommand } from '../storage/commands.js';
import type { ApplyResult, BlockStore } from '../storage/commands.js';
import type { Logger } from '../logging.js';
import type { DaemonMetrics } from '../metrics.js';

/**
 * Response bytes handed to gRPC but not yet written to HTTP/2 above which the stream counts as
 * backed up: one full message may wait, a second one pauses the stream.
 */
export const WRITE_BUFFER_BYTES_HIGH = IO_BATCH_BYTES_MAX;

/**
 * Bytes counted per response besides its payload when filling a message: the msgpack envelope
 * (id, ok, an error's code and message) stays below it, so a message of answers stays within the
 * payload budget plus one answer.
 */
const RESPONSE_ENVELOPE_BYTES = 512;

/** Most messages whose reads skip the read-ahead after dropped ones (see `readAheadSkips`). */
const READ_AHEAD_SKIP_MAX = 64;

/** `RaftNode.proposeMany`'s callback: per proposal, null and the apply result, or the error. */
export type IoProposalCallback = (slot: number, error: unknown, result: unknown) => void;

/** The indexes of `RaftNode.status()` an Io stream reads (`RaftStatus` has them). */
export interface IoRaftIndexes {
  /** Highest log index known committed on this node (never decreases). */
  readonly commitIndex: number;
  /** Highest log index this node applied to the state machine (the block store has at least it). */
  readonly appliedIndex: number;
}

/** The part of `RaftNode` an Io stream uses. */
export interface IoRaftNode {
  /**
   * Proposes `data` in order; `onResult(slot, error, result)` once per command (a refused one may
   * be reported before this returns).
   */
  proposeMany(data: readonly Uint8Array[], onResult: IoProposalCallback): void;
  /**
   * Resolves once this node confirmed its leadership with a quorum round begun after the call and
   * applied through the commit index it had then (the read index), which is at most its commit
   * index when this resolves.
   */
  readIndex(): Promise<void>;
  status(): IoRaftIndexes;
}

/** Limits an Io stream enforces (the `[api]` config section). */
export interface IoLimits {
  readonly ioBytesMax: number;
  readonly streamInflightMax: number;
  readonly streamInflightBytesMax: number;
  readonly daemonInflightMax: number;
  readonly daemonInflightBytesMax: number;
  readonly requestTimeoutMs: number;
}

/** A daemon-wide in-flight budget shared by every stream. */
export interface IoBudget {
  requests: number;
  bytes: number;
}

/** What an Io stream needs from the API that owns it. */
export interface IoContext {
  readonly node: IoRaftNode;
  readonly store: BlockStore;
  readonly limits: IoLimits;
  readonly budget: IoBudget;
  readonly metrics: DaemonMetrics | undefined;
  readonly log: Logger;
  /** Wall clock for the `atMs` stamp of commands. */
  nowMs(): number;
  /** Maps a thrown error or a failed apply result to its wire error (logs internal ones). */
  wireError(err: unknown): WireError;
  /** NOT_LEADER (with the hint) when this daemon does not lead, else undefined: `flush`'s answer. */
  checkLeader(): WireError | undefined;
  /** Called once when the stream is over, whatever ended it. */
  onClosed(stream: IoStreamServer): void;
}

/** One admitted request: in the stream's window until its answer was written (or the stream closed). */
class InflightIo {
  isAnswered = false;
  constructor(
    readonly id: number,
    readonly op: IoOp,
    readonly volume: string,
    readonly offset: number,
    readonly length: number,
    /** `performance.now()` when its message arrived: the deadline sweep and the latency metric count from it. */
    readonly startedMs: number,
  ) {}
}

/**
 * The reads of one message read before their ReadIndex resolved (see `IoStreamServer.readAll`):
 * the results are used only if the state they saw is at or after the read index.
 */
class ReadAhead {
  results: (Uint8Array | Error)[] | null = null;
  error: unknown = null;
  hasFailed = false;
  isConfirmed = false;
  constructor(
    readonly reads: InflightIo[],
    /** The node's applied index when the reads started: they see at least this state. */
    readonly appliedIndex: number,
  ) {}
}

function isLogIndex(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** An answer waiting in the outbox, with the slot it frees once written (null: never admitted). */
interface Outgoing {
  readonly response: IoResponse;
  readonly io: InflightIo | null;
  readonly op: string;
  readonly volume: string;
  readonly length: number;
  readonly startedMs: number;
}

function invalid(message: string): WireError {
  return { code: WireCode.INVALID_ARGUMENT, message };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

function isApplyResult(value: unknown): value is ApplyResult {
  return isRecord(value) && typeof value.ok === 'boolean';
}

/** A coded error thrown by our own code (a plain `WireError`) stays as is; anything else is mapped. */
function isWireError(err: unknown): err is WireError {
  return isRecord(err) && typeof err.code === 'string' && !(err instanceof Error);
}

const opLabels: Readonly<Record<string, { op: string }>> = Object.freeze({
  read: Object.freeze({ op: 'read' }),
  write: Object.freeze({ op: 'write' }),
  writeZeroes: Object.freeze({ op: 'writeZeroes' }),
  trim: Object.freeze({ op: 'trim' }),
  flush: Object.freeze({ op: 'flush' }),
  unknown: Object.freeze({ op: 'unknown' }),
});

/** Serves one `Io` call. Created by `BlockApi` per call; it registers its own listeners. */
export class IoStreamServer {
  private readonly inflight = new Map<number, InflightIo>();
  private inflightBytes = 0;
  /** Client half-closed: end the call once everything in flight is answered. */
  private isEnded = false;
  /** The call is over (answered, failed or cancelled). */
  isClosed = false;
  private outbox: Outgoing[] = [];
  private outboxBytes = 0;
  private isFlushScheduled = false;
  /** Reads whose ReadIndex resolved, waiting for the `readMany` scheduled on a microtask. */
  private readsConfirmed: InflightIo[] = [];
  /**
   * Messages whose reads skip the read-ahead: after one was dropped (a write committed during its
   * ReadIndex round), the next 1, 2, 4 ... `READ_AHEAD_SKIP_MAX` messages read after their
   * ReadIndex, so a stream mixing reads and writes does not read most blocks twice.
   */
  private readAheadSkips = 0;
  private readAheadSkipsNext = 1;
  private isReadScheduled = false;
  /** Answered requests whose response message grpc-js buffered: their slots wait for 'drain'. */
  private awaitingDrain: InflightIo[] = [];
  private isPaused = false;
  /** Bytes of response messages handed to gRPC and not yet written to HTTP/2. */
  private writeBufferBytes = 0;
  /** Most bytes of answers (payloads plus `RESPONSE_ENVELOPE_BYTES` each) put in one message. */
  private readonly messageBytesMax: number;

  constructor(
    private readonly call: ServerDuplexStream<Buffer, IoResponseBatch>,
    private readonly context: IoContext,
  ) {
    // Within what this daemon may send (its config keeps api.io_bytes_max + 64 KiB below
    // api.request_bytes_max, grpc's send limit) and what clients accept (MESSAGE_BYTES_MAX).
    this.messageBytesMax = Math.min(IO_BATCH_BYTES_MAX, context.limits.ioBytesMax);
    call.on('data', (bytes: Buffer) => this.onMessage(bytes));
    call.on('drain', this.maybeResume);
    call.on('end', () => {
      this.isEnded = true;
      if (this.inflight.size === 0) this.finish();
    });
    call.on('cancelled', () => this.close());
    call.on('error', (err) => {
      context.log.debug({ err }, 'io stream failed');
      this.close();
    });
  }

  /** Fails the call with `error` (stream-wide) or, without one, ends it after flushing the answers. */
  finish(error?: WireError): void {
    if (this.isClosed) return;
    if (error === undefined) this.flush();
    this.close();
    if (error !== undefined) this.call.emit('error', toGrpcError(error));
    else this.call.end();
  }

  /**
   * Fails every request older than the request timeout with DEADLINE_EXCEEDED (its late result is
   * dropped). Called by the API's periodic sweep, not a timer per request.
   */
  sweep(nowMs: number): void {
    const timeoutMs = this.context.limits.requestTimeoutMs;
    let error: WireError | undefined;
    for (const io of this.inflight.values()) {
      if (io.isAnswered || nowMs - io.startedMs < timeoutMs) continue;
      error ??= {
        code: WireCode.DEADLINE_EXCEEDED,
        message: `no answer within the daemon's request timeout of ${timeoutMs} ms; a write may or may not be applied`,
      };
      this.answer(io, error, undefined);
    }
  }

  // ------------------------------------------------------------------ requests

  private onMessage(bytes: Buffer): void {
    if (this.isClosed) return;
    let message: unknown;
    try {
      message = decode<unknown>(bytes);
    } catch (err) {
      this.finish(invalid(`undecodable Io message: ${(err as Error).message}`));
      return;
    }
    const batchError = checkIoBatch(message);
    if (batchError !== undefined) {
      this.finish(batchError);
      return;
    }
    const requests = (message as IoRequestBatch).requests as unknown[];
    // Every id first: a request without a usable id cannot be answered on its own, so the whole
    // message is refused before anything of it is served.
    const idError = this.checkIds(requests);
    if (idError !== undefined) {
      this.finish(idError);
      return;
    }
    const { limits, budget } = this.context;
    const startedMs = performance.now();
    const atMs = this.context.nowMs();
    let reads: InflightIo[] | null = null;
    let writes: InflightIo[] | null = null;
    let commands: Uint8Array[] | null = null;
    let admitted = 0;
    for (let i = 0; i < requests.length; i++) {
      const request = requests[i] as IoRequest;
      const problem = checkIoRequest(request);
      if (problem !== undefined) {
        this.refuse(request, problem, startedMs);
        continue;
      }
      const length = request.length;
      if (length > limits.ioBytesMax) {
        this.refuse(
          request,
          {
            code: WireCode.TOO_LARGE,
            message: `IO length ${length} is above this daemon's maximum ${limits.ioBytesMax}`,
          },
          startedMs,
        );
        continue;
      }
      if (
        this.inflight.size >= limits.streamInflightMax ||
        this.inflightBytes + length > limits.streamInflightBytesMax ||
        budget.requests >= limits.daemonInflightMax ||
        budget.bytes + length > limits.daemonInflightBytesMax
      ) {
        this.refuse(
          request,
          {
            code: WireCode.RESOURCE_EXHAUSTED,
            message: `too many IO requests in flight (stream: ${this.inflight.size} requests, ${this.inflightBytes} bytes; daemon: ${budget.requests} requests, ${budget.bytes} bytes)`,
          },
          startedMs,
        );
        continue;
      }
      const io = new InflightIo(request.id, request.op, request.volume, request.offset, length, startedMs);
      this.inflight.set(io.id, io);
      this.inflightBytes += length;
      budget.requests += 1;
      budget.bytes += length;
      admitted++;
      switch (io.op) {
        case 'read':
          (reads ??= []).push(io);
          break;
        case 'flush': {
          // Every write this daemon acknowledged is committed (fsynced on a majority) and applied:
          // flush is a barrier with nothing left to wait for, but only the leader may say so.
          this.answer(io, this.context.checkLeader() ?? null, undefined);
          break;
        }
        default:
          (writes ??= []).push(io);
          (commands ??= []).push(this.encode(io, request, atMs));
      }
    }
    if (admitted > 0) this.updateInflightGauges();
    if (writes !== null && commands !== null) this.proposeAll(writes, commands);
    if (reads !== null) this.readAll(reads, writes === null);
  }

  /** Checks every request's id: an integer >= 0, not in flight, not repeated in the message. */
  private checkIds(requests: unknown[]): WireError | undefined {
    const seen = requests.length > 1 ? new Set<number>() : null;
    for (let i = 0; i < requests.length; i++) {
      const request = requests[i];
      const id = isRecord(request) ? request.id : undefined;
      if (!isIoRequestId(id)) return invalid('every IO request needs an integer id >= 0');
      if (this.inflight.has(id) || seen?.has(id) === true) {
        return invalid(`IO request id ${id} is already in flight on this stream`);
      }
      seen?.add(id);
    }
    return undefined;
  }

  /** The Raft command of an admitted write, writeZeroes or trim. */
  private encode(io: InflightIo, request: IoRequest, atMs: number): Uint8Array {
    // checkIoRequest guarantees the session fields of a mutating op. A write's `data` is a view
    // into the received message; encodeCommand copies it once, into the Raft entry.
    return io.op === 'write'
      ? encodeCommand({
          type: 'write',
          volume: io.volume,
          offset: io.offset,
          data: request.data!,
          session: request.session!,
          seq: request.seq!,
          ackedBelow: request.ackedBelow!,
          atMs,
        })
      : encodeCommand({
          type: io.op as 'writeZeroes' | 'trim',
          volume: io.volume,
          offset: io.offset,
          length: io.length,
          session: request.session!,
          seq: request.seq!,
          ackedBelow: request.ackedBelow!,
          atMs,
        });
  }

  /**
   * Proposes the mutations of one message with one call: a callback per message, not a promise
   * and a pair of closures per write. The node batches them into entries as before.
   */
  private proposeAll(writes: InflightIo[], commands: Uint8Array[]): void {
    this.context.node.proposeMany(commands, (slot, error, result) => {
      const io = writes[slot];
      if (error !== null) this.answer(io, this.toWireError(error), undefined);
      else this.onApplied(io, result);
    });
  }

  private onApplied(io: InflightIo, result: unknown): void {
    if (io.isAnswered) return;
    this.context.metrics?.commitSeconds.observe((performance.now() - io.startedMs) / 1000);
    if (!isApplyResult(result)) {
      this.answer(
        io,
        { code: WireCode.INTERNAL, message: 'the state machine returned no result for the command' },
        undefined,
      );
    } else if (!result.ok) {
      this.answer(io, this.context.wireError(result), undefined);
    } else {
      this.answer(io, null, undefined);
    }
  }

  /**
   * One ReadIndex for every read of a message (rather than one each: a promise and a waiter per
   * read inside the node), and no promise per read. No signal: the deadline sweep answers a read
   * that waits too long.
   *
   * When this node has applied everything it knows committed (a read-only load), the reads start
   * at once, with one `readMany`, while the ReadIndex round is on the wire (`readAhead`): the
   * LevelDB round trip overlaps the quorum round instead of following it. Otherwise they wait for
   * the ReadIndex and then share one `readMany` with the other messages of this stream whose
   * ReadIndex resolved in the same round (`readConfirmed`).
   */
  private readAll(reads: InflightIo[], isReadOnly: boolean): void {
    const node = this.context.node;
    // A message that also writes commits an entry during its own round: reading ahead is wasted.
    if (isReadOnly && this.readAheadSkips === 0) {
      const { appliedIndex, commitIndex } = node.status();
      if (isLogIndex(appliedIndex) && isLogIndex(commitIndex) && appliedIndex >= commitIndex) {
        this.readAhead(reads, appliedIndex);
        return;
      }
    } else if (this.readAheadSkips > 0) {
      this.readAheadSkips--;
    }
    node.readIndex().then(
      () => this.onReadIndex(reads),
      (err: unknown) => this.failAll(reads, err),
    );
  }

  /**
   * Reads `reads` now and answers them with what was read once their ReadIndex resolved, if the
   * state read is at or after the read index. Why that is linearizable: the results reflect at
   * least `appliedIndex` (the node's applied index when the reads started; `readMany` sees that
   * state or a later one, all of it committed), and the read index is at most the commit index
   * when the ReadIndex resolved. So if `appliedIndex >= commitIndex` then, the state read holds
   * every write committed before the read arrived, exactly as a read made after the ReadIndex
   * would; the quorum round itself (leadership confirmed after the read arrived) is unchanged. If
   * the commit index moved past `appliedIndex` meanwhile (a write committed), the results are
   * dropped and the reads go through `readConfirmed` like any read after its ReadIndex.
   */
  private readAhead(reads: InflightIo[], appliedIndex: number): void {
    const ahead = new ReadAhead(reads, appliedIndex);
    const node = this.context.node;
    let reading: Promise<(Uint8Array | Error)[]>;
    try {
      reading = this.context.store.readMany(reads);
    } catch (err) {
      reading = Promise.reject(err);
    }
    reading.then(
      (results) => {
        ahead.results = results;
        if (ahead.isConfirmed) this.answerReads(reads, results);
      },
      (err: unknown) => {
        ahead.error = err;
        ahead.hasFailed = true;
        if (ahead.isConfirmed) this.failAll(reads, err);
      },
    );
    node.readIndex().then(
      () => {
        if (this.isClosed) return;
        if (ahead.appliedIndex < node.status().commitIndex) {
          this.readAheadSkips = this.readAheadSkipsNext;
          this.readAheadSkipsNext = Math.min(READ_AHEAD_SKIP_MAX, 2 * this.readAheadSkipsNext);
          this.onReadIndex(reads);
          return;
        }
        this.readAheadSkipsNext = 1;
        ahead.isConfirmed = true;
        if (ahead.results !== null) this.answerReads(reads, ahead.results);
        else if (ahead.hasFailed) this.failAll(reads, ahead.error);
      },
      (err: unknown) => this.failAll(reads, err),
    );
  }

  /** `reads`' ReadIndex resolved: queue them for the next shared `readMany`. */
  private onReadIndex(reads: InflightIo[]): void {
    if (this.isClosed) return;
    // Messages whose ReadIndex resolved in the same round (the node confirms the reads of a
    // turn together) share one readMany, scheduled after the other resolutions of the round.
    for (let i = 0; i < reads.length; i++) if (!reads[i].isAnswered) this.readsConfirmed.push(reads[i]);
    if (!this.isReadScheduled && this.readsConfirmed.length > 0) {
      this.isReadScheduled = true;
      queueMicrotask(this.readConfirmed);
    }
  }

  private answerReads(reads: InflightIo[], results: (Uint8Array | Error)[]): void {
    for (let i = 0; i < reads.length; i++) {
      const result = results[i];
      if (result instanceof Uint8Array) this.answer(reads[i], null, result);
      else this.answer(reads[i], this.toWireError(result), undefined);
    }
  }

  /**
   * Reads every read whose ReadIndex resolved since the last call, with one `readMany`. Each of
   * them had its read index applied before this runs, so what `readMany` sees is at or after it.
   */
  private readonly readConfirmed = (): void => {
    this.isReadScheduled = false;
    const waiting = this.readsConfirmed;
    this.readsConfirmed = [];
    if (this.isClosed || waiting.length === 0) return;
    let reading: Promise<(Uint8Array | Error)[]>;
    try {
      reading = this.context.store.readMany(waiting);
    } catch (err) {
      this.failAll(waiting, err);
      return;
    }
    reading.then(
      (results) => this.answerReads(waiting, results),
      (err: unknown) => this.failAll(waiting, err),
    );
  };

  private failAll(ios: InflightIo[], err: unknown): void {
    const error = this.toWireError(err);
    for (let i = 0; i < ios.length; i++) this.answer(ios[i], error, undefined);
  }

  private toWireError(err: unknown): WireError {
    return isWireError(err) ? err : this.context.wireError(err);
  }

  // ------------------------------------------------------------------ answers

  /** Answers a request that was never admitted (bad shape, too large, no room): no slot to free. */
  private refuse(request: IoRequest, error: WireError, startedMs: number): void {
    // Only known ops become metric labels: a client must not create unbounded series.
    const op = typeof request.op === 'string' && Object.hasOwn(opLabels, request.op) ? request.op : 'unknown';
    const volume = typeof request.volume === 'string' ? request.volume : '';
    this.enqueue(
      { response: { id: request.id, ok: false, error }, io: null, op, volume, length: 0, startedMs },
      RESPONSE_ENVELOPE_BYTES,
    );
  }

  /** Answers an admitted request once (later results, e.g. after its deadline, are dropped). */
  private answer(io: InflightIo, error: WireError | null, data: Uint8Array | undefined): void {
    if (io.isAnswered) return;
    io.isAnswered = true;
    if (this.isClosed) {
      this.release(io);
      return;
    }
    let response: IoResponse;
    if (error !== null) response = { id: io.id, ok: false, error };
    else if (data === undefined) response = { id: io.id, ok: true };
    else response = { id: io.id, ok: true, data };
    this.enqueue(
      { response, io, op: io.op, volume: io.volume, length: io.length, startedMs: io.startedMs },
      RESPONSE_ENVELOPE_BYTES + (data === undefined ? 0 : data.length),
    );
  }

  /** Adds an answer to the outbox; flushes first when it would not fit the message's limits. */
  private enqueue(outgoing: Outgoing, bytes: number): void {
    if (this.isClosed) return;
    if (
      this.outbox.length >= IO_BATCH_REQUESTS_MAX ||
      (this.outbox.length > 0 && this.outboxBytes + bytes > this.messageBytesMax)
    ) {
      this.flush();
    }
    this.outbox.push(outgoing);
    this.outboxBytes += bytes;
    if (!this.isFlushScheduled) {
      this.isFlushScheduled = true;
      setImmediate(this.onFlushDue);
    }
  }

  private readonly onFlushDue = (): void => {
    this.isFlushScheduled = false;
    this.flush();
  };

  /** Writes the outbox as one message, then frees the slots it answered (or holds them for 'drain'). */
  private flush(): void {
    if (this.outbox.length === 0 || this.isClosed) return;
    const outbox = this.outbox;
    const bytes = this.outboxBytes;
    this.outbox = [];
    this.outboxBytes = 0;
    const responses: IoResponse[] = new Array(outbox.length);
    for (let i = 0; i < outbox.length; i++) responses[i] = outbox[i].response;
    this.writeBufferBytes += bytes;
    const isAccepted = this.call.write({ responses }, () => {
      this.writeBufferBytes -= bytes;
      this.maybeResume();
    });
    const isFlushed = isAccepted && this.writeBufferBytes <= WRITE_BUFFER_BYTES_HIGH;
    this.recordMetrics(outbox);
    if (!isFlushed && !this.isPaused) {
      // Back-pressure towards a client that does not read its responses: stop reading requests
      // from it and keep the slots of the answered requests taken until the buffer drains. Memory
      // per stream stays within its in-flight limits, and the daemon-wide budget is not handed to
      // others meanwhile.
      this.isPaused = true;
      this.call.pause();
    }
    let released = 0;
    for (let i = 0; i < outbox.length; i++) {
      const io = outbox[i].io;
      if (io === null) continue;
      if (isFlushed) {
        this.release(io);
        released++;
      } else {
        this.awaitingDrain.push(io);
      }
    }
    if (released > 0) {
      this.updateInflightGauges();
      if (this.isEnded && this.inflight.size === 0) this.finish();
    }
  }

  /** On 'drain' and after each message written: resumes once the write buffer is low again. */
  private readonly maybeResume = (): void => {
    if (!this.isPaused || this.isClosed) return;
    if (this.call.writableNeedDrain || this.writeBufferBytes > WRITE_BUFFER_BYTES_HIGH) return;
    this.isPaused = false;
    this.releaseAwaiting();
    if (!this.isClosed) this.call.resume();
  };

  private releaseAwaiting(): void {
    if (this.awaitingDrain.length === 0) return;
    const waiting = this.awaitingDrain;
    this.awaitingDrain = [];
    for (const io of waiting) this.release(io);
    this.updateInflightGauges();
    if (this.isEnded && this.inflight.size === 0) this.finish();
  }

  /** Returns a request's slot to the stream's window and the daemon's budget (once). */
  private release(io: InflightIo): void {
    if (this.inflight.get(io.id) !== io) return;
    this.inflight.delete(io.id);
    this.inflightBytes -= io.length;
    this.context.budget.requests -= 1;
    this.context.budget.bytes -= io.length;
  }

  private updateInflightGauges(): void {
    const metrics = this.context.metrics;
    if (metrics === undefined) return;
    metrics.apiInflightRequests.set(this.context.budget.requests);
    metrics.apiInflightBytes.set(this.context.budget.bytes);
  }

  /**
   * Counts the answers of one written message: ops and bytes summed per (volume, op, result) so the
   * counters are touched once per kind, not once per request; latency observed per request.
   */
  private recordMetrics(outbox: Outgoing[]): void {
    const metrics = this.context.metrics;
    if (metrics === undefined) return;
    const store = this.context.store;
    const nowMs = performance.now();
    // A message's answers are nearly always of one or two kinds: a linear scan of the few tallies
    // (no key string per answer), and one volume lookup per run of answers to the same volume.
    const tally: { volume: string; op: string; result: string; count: number; bytes: number }[] = [];
    let lastVolume: string | null = null;
    let label = '(none)';
    for (let i = 0; i < outbox.length; i++) {
      const { response, op, volume, length, startedMs } = outbox[i];
      if (volume !== lastVolume) {
        // Label by volume only for existing volumes: unknown names from clients must not create
        // unbounded metric series.
        label = volume !== '' && store.getVolume(volume) !== null ? volume : '(none)';
        lastVolume = volume;
      }
      const result = response.ok ? 'ok' : (response.error?.code ?? WireCode.INTERNAL);
      let entry = null;
      for (let j = 0; j < tally.length; j++) {
        const candidate = tally[j];
        if (candidate.volume === label && candidate.op === op && candidate.result === result) {
          entry = candidate;
          break;
        }
      }
      if (entry === null) {
        entry = { volume: label, op, result, count: 0, bytes: 0 };
        tally.push(entry);
      }
      entry.count++;
      if (response.ok) {
        if (op !== 'flush') entry.bytes += length;
        metrics.ioSeconds.observe(opLabels[op] ?? opLabels.unknown, (nowMs - startedMs) / 1000);
      }
    }
    for (const { volume, op, result, count, bytes } of tally) {
      metrics.ioOps.inc({ volume, op, result }, count);
      if (bytes > 0) metrics.ioBytes.inc({ volume, op }, bytes);
    }
  }

  // ------------------------------------------------------------------ teardown

  /**
   * The call is over. Requests still waiting are failed (their late results dropped) and every
   * slot returns to the daemon's budget at once; their outcome is unknown to the client.
   */
  private close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const outgoing of this.outbox) if (outgoing.io !== null) this.release(outgoing.io);
    this.outbox = [];
    this.outboxBytes = 0;
    const waiting = this.awaitingDrain;
    this.awaitingDrain = [];
    for (const io of waiting) this.release(io);
    let failed: Outgoing[] | null = null;
    for (const io of [...this.inflight.values()]) {
      if (!io.isAnswered) {
        io.isAnswered = true;
        const error: WireError = { code: WireCode.DEADLINE_EXCEEDED, message: 'the IO stream closed' };
        (failed ??= []).push({
          response: { id: io.id, ok: false, error },
          io,
          op: io.op,
          volume: io.volume,
          length: io.length,
          startedMs: io.startedMs,
        });
      }
      this.release(io);
    }
    if (failed !== null) this.recordMetrics(failed);
    this.updateInflightGauges();
    this.context.onClosed(this);
  }
}
