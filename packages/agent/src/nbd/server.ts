/**
 * The NBD server: fixed-newstyle handshake and the transmission phase with simple replies, written
 * from the NBD protocol specification (doc/proto.md of the NBD project).
 *
 * - Handshake: NBD_FLAG_FIXED_NEWSTYLE and NBD_FLAG_NO_ZEROES; options NBD_OPT_EXPORT_NAME,
 *   NBD_OPT_GO, NBD_OPT_INFO (replying NBD_INFO_EXPORT, NBD_INFO_BLOCK_SIZE and, if asked,
 *   NBD_INFO_NAME), NBD_OPT_LIST, NBD_OPT_ABORT; every other option (structured replies, TLS,
 *   metadata contexts) gets NBD_REP_ERR_UNSUP. The export name is the volume name.
 * - Transmission: READ, WRITE (with FUA), FLUSH, TRIM, WRITE_ZEROES (with NO_HOLE), DISC. Many
 *   requests per connection run concurrently and are answered as they complete (out of order).
 * - Bounded memory: per connection at most `inflightRequestsMax` requests and `inflightBytesMax`
 *   payload bytes are in flight; past that the server stops reading the socket (TCP back-pressure)
 *   until replies go out. It also stops reading while the socket's unsent reply bytes exceed
 *   `inflightBytesMax` (a client that does not read its replies cannot grow our memory).
 * - Hostile or broken clients (bad magic, unknown client flags, an option or a write payload over
 *   the limits, an option flood, a stalled handshake) are hard-disconnected; other connections are
 *   untouched.
 * - NBD_FLAG_CAN_MULTI_CONN is advertised only for handles whose `isFlushShared` is true: the rdl
 *   provider acknowledges a write only after the cluster committed it, so a flush on any
 *   connection trivially covers writes acknowledged on every connection.
 */
import net from 'node:net';
import fs from 'node:fs';
import { pino, type Logger } from 'pino';
import { AgentError, AgentErrorCode } from '../errors.js';
import { ByteQueue } from './byte-queue.js';
import * as P from './protocol.js';
import type { VolumeHandle, VolumeProvider } from './volume.js';

/** Options of `NbdServer`; every limit has a default and is validated once in the constructor. */
export interface NbdServerOptions {
  /** Where volumes come from. */
  readonly provider: VolumeProvider;
  /** Root logger; the server logs through a `{ module: 'nbd' }` child. Default: silent. */
  readonly logger?: Logger;
  /** Serve every export read-only (NBD_FLAG_READ_ONLY; writes get EPERM). Default false. */
  readonly isReadOnly?: boolean;
  /** Requests in flight per connection before the server stops reading. Default 128. */
  readonly inflightRequestsMax?: number;
  /** Payload bytes (write data + read data) in flight per connection. Default 64 MiB. */
  readonly inflightBytesMax?: number;
  /** Largest READ/WRITE length, advertised as the maximum block size. Default 32 MiB. A WRITE
   *  above it is a hard disconnect (its payload would be a denial of service); a READ gets EINVAL. */
  readonly requestBytesMax?: number;
  /** Time a client has from connecting to entering transmission. Default 10 s. */
  readonly handshakeTimeoutMs?: number;
  /** Disconnect a transmission-phase client idle this long with nothing in flight; 0 = never
   *  (the default, since a kernel NBD client of an idle filesystem legitimately sends nothing). */
  readonly idleTimeoutMs?: number;
  /** Options a client may send in one handshake. Default 64. */
  readonly optionsMax?: number;
  /** Largest option payload accepted. Default 8 KiB (an export name is at most 4 KiB). */
  readonly optionBytesMax?: number;
  /** Open connections before new ones are refused. Default 1024. */
  readonly connectionsMax?: number;
  /** How long `close()` waits for in-flight requests before cutting connections. Default 10 s. */
  readonly shutdownTimeoutMs?: number;
}

/** Where to listen: TCP host and port (port 0 = ephemeral), or a unix socket path. */
export type NbdListenAddress = { readonly host: string; readonly port: number } | { readonly path: string };

/** Counters of one server since it started, for metrics. Gauges are marked. */
export interface NbdCounters {
  connectionsAccepted: number;
  connectionsRefused: number;
  /** Gauge: connections open now. */
  connectionsOpen: number;
  handshakesCompleted: number;
  handshakeTimeouts: number;
  idleTimeouts: number;
  protocolViolations: number;
  requestsRead: number;
  requestsWrite: number;
  requestsFlush: number;
  requestsTrim: number;
  requestsWriteZeroes: number;
  requestsOther: number;
  /** Requests answered with a nonzero NBD error. */
  requestErrors: number;
  bytesRead: number;
  bytesWritten: number;
  /** Times a connection stopped reading because a limit was reached. */
  backpressurePauses: number;
  /** Gauge: requests in flight over all connections. */
  inflightRequests: number;
  /** Gauge: payload bytes in flight over all connections. */
  inflightBytes: number;
}

interface Limits {
  readonly inflightRequestsMax: number;
  readonly inflightBytesMax: number;
  readonly requestBytesMax: number;
  readonly handshakeTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly optionsMax: number;
  readonly optionBytesMax: number;
  readonly connectionsMax: number;
  readonly shutdownTimeoutMs: number;
}

const MiB = 1024 * 1024;

function validateLimits(options: NbdServerOptions): Limits {
  const limits: Limits = {
    inflightRequestsMax: options.inflightRequestsMax ?? 128,
    inflightBytesMax: options.inflightBytesMax ?? 64 * MiB,
    requestBytesMax: options.requestBytesMax ?? 32 * MiB,
    handshakeTimeoutMs: options.handshakeTimeoutMs ?? 10_000,
    idleTimeoutMs: options.idleTimeoutMs ?? 0,
    optionsMax: options.optionsMax ?? 64,
    optionBytesMax: options.optionBytesMax ?? 8192,
    connectionsMax: options.connectionsMax ?? 1024,
    shutdownTimeoutMs: options.shutdownTimeoutMs ?? 10_000,
  };
  const problems: string[] = [];
  for (const [key, value] of Object.entries(limits)) {
    const isZeroAllowed = key === 'idleTimeoutMs';
    if (!Number.isSafeInteger(value) || value < (isZeroAllowed ? 0 : 1)) {
      problems.push(`${key} must be an integer ≥ ${isZeroAllowed ? 0 : 1} (got ${value})`);
    }
  }
  if (limits.requestBytesMax > 0xffffffff) problems.push('requestBytesMax must fit in 32 bits');
  if (limits.inflightBytesMax < limits.requestBytesMax) {
    problems.push('inflightBytesMax must be ≥ requestBytesMax, or a largest request could never run');
  }
  if (limits.optionBytesMax < P.NBD_STRING_BYTES_MAX + 8) {
    problems.push(`optionBytesMax must be ≥ ${P.NBD_STRING_BYTES_MAX + 8} to carry a longest export name`);
  }
  if (problems.length > 0) {
    throw new AgentError(AgentErrorCode.ConfigInvalid, `invalid NBD server options: ${problems.join('; ')}`);
  }
  return Object.freeze(limits);
}

/**
 * An NBD server over TCP and/or unix sockets. `listen()` may be called several times (one TCP
 * and one unix socket, say); `close()` stops them all, lets in-flight requests finish (up to
 * `shutdownTimeoutMs`) and then closes every connection.
 */
export class NbdServer {
  readonly #provider: VolumeProvider;
  readonly #log: Logger;
  readonly #isReadOnly: boolean;
  readonly #limits: Limits;
  readonly #listeners: net.Server[] = [];
  readonly #connections = new Set<NbdConnection>();
  readonly #counters: NbdCounters = {
    connectionsAccepted: 0,
    connectionsRefused: 0,
    connectionsOpen: 0,
    handshakesCompleted: 0,
    handshakeTimeouts: 0,
    idleTimeouts: 0,
    protocolViolations: 0,
    requestsRead: 0,
    requestsWrite: 0,
    requestsFlush: 0,
    requestsTrim: 0,
    requestsWriteZeroes: 0,
    requestsOther: 0,
    requestErrors: 0,
    bytesRead: 0,
    bytesWritten: 0,
    backpressurePauses: 0,
    inflightRequests: 0,
    inflightBytes: 0,
  };
  #nextConnectionId = 1;
  #isClosing = false;

  constructor(options: NbdServerOptions) {
    this.#limits = validateLimits(options);
    this.#provider = options.provider;
    this.#isReadOnly = options.isReadOnly ?? false;
    this.#log = (options.logger ?? pino({ enabled: false })).child({ module: 'nbd' });
  }

  /** A copy of the counters (gauges are current values). */
  get counters(): NbdCounters {
    return { ...this.#counters };
  }

  /** The validated, frozen limits in force. */
  get limits(): Readonly<Limits> {
    return this.#limits;
  }

  /**
   * Starts listening; resolves with the bound address (`{ host, port }` with the real port when 0
   * was asked, or `{ path }`). A stale unix socket file left by a dead agent is replaced; a live
   * one is not. Rejects with `AGENT_NBD_LISTEN_FAILED`.
   */
  async listen(address: NbdListenAddress): Promise<NbdListenAddress> {
    if (this.#isClosing) throw new AgentError(AgentErrorCode.NbdListenFailed, 'server is closing');
    if ('path' in address) await removeStaleSocket(address.path);
    const listener = net.createServer({ noDelay: true }, (socket) => this.#accept(socket));
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => {
        reject(
          new AgentError(AgentErrorCode.NbdListenFailed, `cannot listen on ${describe(address)}: ${err.message}`, {
            cause: err,
          }),
        );
      };
      listener.once('error', onError);
      const onListening = (): void => {
        listener.off('error', onError);
        resolve();
      };
      if ('path' in address) listener.listen(address.path, onListening);
      else listener.listen(address.port, address.host, onListening);
    });
    listener.on('error', (err) => this.#log.error({ err }, 'listener error'));
    this.#listeners.push(listener);
    const bound = listener.address();
    const result: NbdListenAddress =
      typeof bound === 'string' || bound === null
        ? { path: (address as { path: string }).path }
        : { host: bound.address, port: bound.port };
    this.#log.info({ address: describe(result), limits: this.#limits }, 'NBD server listening');
    return result;
  }

  /** Stops listening, drains in-flight requests (bounded by `shutdownTimeoutMs`), closes all connections. */
  async close(): Promise<void> {
    if (this.#isClosing) return;
    this.#isClosing = true;
    const listenersClosed = this.#listeners.map(
      (listener) => new Promise<void>((resolve) => listener.close(() => resolve())),
    );
    await Promise.all([...this.#connections].map((c) => c.shutdown(this.#limits.shutdownTimeoutMs)));
    await Promise.all(listenersClosed);
    this.#log.info('NBD server closed');
  }

  #accept(socket: net.Socket): void {
    if (this.#isClosing || this.#connections.size >= this.#limits.connectionsMax) {
      this.#counters.connectionsRefused++;
      this.#log.warn(
        { code: AgentErrorCode.NbdTooManyConnections, open: this.#connections.size },
        'refusing NBD connection',
      );
      socket.destroy();
      return;
    }
    this.#counters.connectionsAccepted++;
    this.#counters.connectionsOpen++;
    const id = this.#nextConnectionId++;
    const log = this.#log.child({ connection: id, remote: socket.remoteAddress ?? 'unix' });
    const connection = new NbdConnection(socket, {
      provider: this.#provider,
      log,
      limits: this.#limits,
      counters: this.#counters,
      isReadOnly: this.#isReadOnly,
      onClosed: () => {
        this.#connections.delete(connection);
        this.#counters.connectionsOpen--;
      },
    });
    this.#connections.add(connection);
    connection.start();
  }
}

function describe(address: NbdListenAddress): string {
  return 'path' in address ? `unix:${address.path}` : `${address.host}:${address.port}`;
}

/** Deletes `path` if it is a unix socket nobody listens on (left over from a crashed agent). */
async function removeStaleSocket(path: string): Promise<void> {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(path);
  } catch {
    return;
  }
  if (!stat.isSocket()) return; // Not ours to delete: listen() will fail with a clear error.
  const isLive = await new Promise<boolean>((resolve) => {
    const probe = net.connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (!isLive) fs.unlinkSync(path);
}

/** One transmission request, from header parse to reply. */
class NbdRequest {
  /** NBD error of the reply (0 = success); set when the request completes. */
  error = 0;
  /** Read data to send after the reply header; set when a read completes. */
  data: Buffer | undefined = undefined;

  constructor(
    readonly handleHigh: number,
    readonly handleLow: number,
    readonly type: number,
    readonly flags: number,
    readonly offset: number,
    readonly length: number,
    /** Bytes this request holds against `inflightBytesMax` (write payload or read reply). */
    readonly costBytes: number,
    readonly payload: Buffer | undefined,
  ) {}
}

interface ConnectionContext {
  readonly provider: VolumeProvider;
  readonly log: Logger;
  readonly limits: Limits;
  readonly counters: NbdCounters;
  readonly isReadOnly: boolean;
  readonly onClosed: () => void;
}

const enum Phase {
  /** Greeting sent; waiting for the 32-bit client flags. */
  ClientFlags,
  /** Option haggling. */
  Options,
  /** An option is being answered asynchronously; input is paused. */
  OptionBusy,
  Transmission,
  /** DISC received, shutdown or violation: no more input is parsed. */
  Closing,
}

const KNOWN_CLIENT_FLAGS = P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES;
const OPTS_MAGIC_HIGH = Number(P.NBD_OPTS_MAGIC >> 32n);
const OPTS_MAGIC_LOW = Number(P.NBD_OPTS_MAGIC & 0xffffffffn);
const FLAGS_ALLOWED_BY_COMMAND: Readonly<Record<number, number>> = {
  [P.NBD_CMD_READ]: P.NBD_CMD_FLAG_FUA,
  [P.NBD_CMD_WRITE]: P.NBD_CMD_FLAG_FUA,
  [P.NBD_CMD_FLUSH]: P.NBD_CMD_FLAG_FUA,
  [P.NBD_CMD_TRIM]: P.NBD_CMD_FLAG_FUA,
  [P.NBD_CMD_WRITE_ZEROES]: P.NBD_CMD_FLAG_FUA | P.NBD_CMD_FLAG_NO_HOLE,
  [P.NBD_CMD_DISC]: P.NBD_CMD_FLAG_FUA,
};
/**
 * Largest reply batch with read data that is still copied into one buffer: below half of Node's
 * `Buffer.poolSize` (4 KiB by default) `Buffer.allocUnsafe` carves from the shared pool. Anything
 * larger would be a fresh allocation outside the JS heap per batch, and those allocations drove a
 * full (mark-compact) collection every 80-100 ms on the NBD read path (measured: 39-50 in 4 s of
 * randread against the in-memory volume, 1 without them; 13-24 against the cluster in 5 s,
 * 1 without them); such batches go out as one writev of the read data buffers as they are.
 */
const REPLY_COPY_BYTES_MAX = (Buffer.poolSize >>> 1) - 1;

/** Writes the simple reply header of `reply` at `at`; returns the offset after it. */
function writeReplyHeader(out: Buffer, at: number, reply: NbdRequest): number {
  out.writeUInt32BE(P.NBD_SIMPLE_REPLY_MAGIC, at);
  out.writeUInt32BE(reply.error, at + 4);
  out.writeUInt32BE(reply.handleHigh, at + 8);
  out.writeUInt32BE(reply.handleLow, at + 12);
  return at + P.NBD_SIMPLE_REPLY_HEADER_BYTES;
}

/** 2^53 / 2^32: an offset whose high word reaches this is not a safe integer, hence out of range. */
const OFFSET_HIGH_LIMIT = 0x200000;

/** One client connection: handshake state machine, request parser, reply writer. */
class NbdConnection {
  readonly #socket: net.Socket;
  readonly #context: ConnectionContext;
  readonly #log: Logger;
  readonly #limits: Limits;
  readonly #counters: NbdCounters;
  readonly #input = new ByteQueue();
  #phase = Phase.ClientFlags;
  #isNoZeroes = false;
  #optionCount = 0;
  #handshakeTimer: NodeJS.Timeout | undefined;
  #handle: VolumeHandle | undefined;
  #transmissionFlags = 0;
  #inflightRequests = 0;
  #inflightBytes = 0;
  #isPaused = false;
  #isWriteBlocked = false;
  /**
   * Replies completed in this turn of the event loop and not yet handed to the socket. They leave
   * together in one socket write from a `setImmediate` callback (after the poll phase has run
   * every ready IO callback): one write system call per batch instead of one per reply, which on
   * loopback also wakes the client once per batch.
   */
  #replies: NbdRequest[] = [];
  /** Bytes of `#replies` (headers and read data). */
  #replyBytes = 0;
  #isReplyFlushScheduled = false;
  #isClosed = false;
  #isPumping = false;
  #isPumpRequested = false;
  /** Resolvers waiting for in-flight requests to reach zero (DISC and shutdown). */
  #drainWaiters: (() => void)[] = [];
  readonly #flushReplies = (): void => {
    this.#isReplyFlushScheduled = false;
    const replies = this.#replies;
    const totalBytes = this.#replyBytes;
    this.#replies = [];
    this.#replyBytes = 0;
    if (this.#isClosed || replies.length === 0) return;
    const socket = this.#socket;
    const headerBytes = replies.length * P.NBD_SIMPLE_REPLY_HEADER_BYTES;
    if (totalBytes === headerBytes || totalBytes <= REPLY_COPY_BYTES_MAX) {
      // Headers alone, or with a little read data, in one buffer: one write, one allocation.
      const out = Buffer.allocUnsafe(totalBytes);
      let at = 0;
      for (const reply of replies) {
        at = writeReplyHeader(out, at, reply);
        if (reply.data !== undefined) at += reply.data.copy(out, at);
      }
      socket.write(out);
    } else {
      // Read data is not copied: the headers live in one buffer, and the runs of headers between
      // data buffers leave together with them in one writev (cork/uncork).
      const headers = Buffer.allocUnsafe(headerBytes);
      let at = 0;
      let unsentFrom = 0;
      socket.cork();
      for (const reply of replies) {
        at = writeReplyHeader(headers, at, reply);
        if (reply.data === undefined) continue;
        socket.write(headers.subarray(unsentFrom, at));
        socket.write(reply.data);
        unsentFrom = at;
      }
      if (unsentFrom < at) socket.write(headers.subarray(unsentFrom, at));
      socket.uncork();
    }
    if (socket.writableLength > this.#limits.inflightBytesMax) this.#isWriteBlocked = true;
    else if (this.#isWriteBlocked) {
      this.#isWriteBlocked = false;
      if (this.#phase === Phase.Transmission) this.#pump();
    }
  };
  readonly #onDrain = (): void => {
    this.#isWriteBlocked = false;
    this.#pump();
  };

  constructor(socket: net.Socket, context: ConnectionContext) {
    this.#socket = socket;
    this.#context = context;
    this.#log = context.log;
    this.#limits = context.limits;
    this.#counters = context.counters;
  }

  start(): void {
    const socket = this.#socket;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.#input.push(chunk);
      this.#pump();
    });
    socket.on('drain', this.#onDrain);
    socket.on('error', (err) => this.#log.debug({ err }, 'socket error'));
    socket.on('close', () => this.#onClose());
    this.#handshakeTimer = setTimeout(() => {
      this.#counters.handshakeTimeouts++;
      this.#log.warn({ code: AgentErrorCode.NbdHandshakeTimeout }, 'handshake timed out; disconnecting');
      socket.destroy();
    }, this.#limits.handshakeTimeoutMs);
    this.#handshakeTimer.unref();
    const greeting = Buffer.allocUnsafe(18);
    greeting.writeBigUInt64BE(P.NBD_INIT_MAGIC, 0);
    greeting.writeBigUInt64BE(P.NBD_OPTS_MAGIC, 8);
    greeting.writeUInt16BE(P.NBD_FLAG_FIXED_NEWSTYLE | P.NBD_FLAG_NO_ZEROES, 16);
    socket.write(greeting);
  }

  /** Stops taking requests, waits for in-flight ones (bounded), then closes. */
  async shutdown(timeoutMs: number): Promise<void> {
    if (this.#isClosed) return;
    if (this.#phase !== Phase.Transmission) {
      this.#socket.destroy();
      return;
    }
    this.#phase = Phase.Closing;
    this.#pause();
    const timer = setTimeout(() => this.#socket.destroy(), timeoutMs);
    await this.#whenDrained();
    clearTimeout(timer);
    await this.#end();
  }

  // ---------------------------------------------------------------- input

  /**
   * Parses as much queued input as the phase and the limits allow. A parser that needs more bytes
   * resumes the socket; one stopped by a limit pauses it. Re-entrant calls (a reply sent while
   * parsing) only request another pass, so the stack stays flat.
   */
  #pump(): void {
    if (this.#isPumping) {
      this.#isPumpRequested = true;
      return;
    }
    this.#isPumping = true;
    try {
      do {
        this.#isPumpRequested = false;
        this.#pumpOnce();
      } while (this.#isPumpRequested && !this.#isClosed);
    } finally {
      this.#isPumping = false;
    }
  }

  #pumpOnce(): void {
    try {
      while (!this.#isClosed) {
        let isProgress: boolean;
        switch (this.#phase) {
          case Phase.ClientFlags:
            isProgress = this.#parseClientFlags();
            break;
          case Phase.Options:
            isProgress = this.#parseOption();
            break;
          case Phase.Transmission:
            isProgress = this.#parseRequest();
            break;
          default:
            isProgress = false;
        }
        if (!isProgress) break;
      }
    } catch (err) {
      // A bug, not a client error: log loudly and drop only this connection.
      this.#log.error({ err }, 'NBD connection failed');
      this.#socket.destroy();
    }
  }

  #violation(reason: string): false {
    this.#counters.protocolViolations++;
    this.#log.warn({ code: AgentErrorCode.NbdProtocolViolation, reason }, 'NBD protocol violation; disconnecting');
    this.#phase = Phase.Closing;
    this.#socket.destroy();
    return false;
  }

  #pause(): void {
    if (this.#isPaused) return;
    this.#isPaused = true;
    this.#socket.pause();
  }

  #resume(): void {
    if (!this.#isPaused) return;
    this.#isPaused = false;
    this.#socket.resume();
  }

  // ---------------------------------------------------------------- handshake

  /** Returns false after asking the socket for more bytes. */
  #needMore(): false {
    this.#resume();
    return false;
  }

  #parseClientFlags(): boolean {
    if (this.#input.length < 4) return this.#needMore();
    const buffer = this.#input.contiguous(4);
    const flags = buffer.readUInt32BE(this.#input.headOffset);
    this.#input.skip(4);
    if ((flags & ~KNOWN_CLIENT_FLAGS) !== 0) return this.#violation(`unknown client flags 0x${flags.toString(16)}`);
    this.#isNoZeroes = (flags & P.NBD_FLAG_C_NO_ZEROES) !== 0;
    this.#phase = Phase.Options;
    return true;
  }

  #parseOption(): boolean {
    if (this.#input.length < P.NBD_OPTION_HEADER_BYTES) return this.#needMore();
    const buffer = this.#input.contiguous(P.NBD_OPTION_HEADER_BYTES);
    const at = this.#input.headOffset;
    if (buffer.readUInt32BE(at) !== OPTS_MAGIC_HIGH || buffer.readUInt32BE(at + 4) !== OPTS_MAGIC_LOW) {
      return this.#violation('bad option magic');
    }
    const option = buffer.readUInt32BE(at + 8);
    const length = buffer.readUInt32BE(at + 12);
    if (length > this.#limits.optionBytesMax) {
      return this.#violation(`option ${option} carries ${length} bytes (limit ${this.#limits.optionBytesMax})`);
    }
    if (this.#input.length < P.NBD_OPTION_HEADER_BYTES + length) return this.#needMore();
    if (++this.#optionCount > this.#limits.optionsMax) {
      return this.#violation(`more than ${this.#limits.optionsMax} options in one handshake`);
    }
    this.#input.skip(P.NBD_OPTION_HEADER_BYTES);
    const data = this.#input.take(length);
    // Answer asynchronously with input paused: a client must wait for the final reply anyway,
    // and pausing keeps a flooding client from growing the queue.
    this.#phase = Phase.OptionBusy;
    this.#pause();
    this.#handleOption(option, data).then(
      (next) => {
        if (this.#isClosed) {
          // The client left while the option was answered: release a handle opened meanwhile.
          if (next === Phase.Transmission) void this.#handle?.close();
          return;
        }
        if (this.#phase !== Phase.OptionBusy) return;
        this.#phase = next;
        if (next === Phase.Transmission) this.#enterTransmission();
        this.#pump();
      },
      (err: unknown) => {
        this.#log.error({ err }, 'option handling failed');
        this.#socket.destroy();
      },
    );
    return false;
  }

  /** Answers one option; resolves with the phase to continue in. */
  async #handleOption(option: number, data: Buffer): Promise<Phase> {
    switch (option) {
      case P.NBD_OPT_EXPORT_NAME:
        return this.#optExportName(data);
      case P.NBD_OPT_ABORT:
        this.#sendOptionReply(option, P.NBD_REP_ACK);
        void this.#end();
        return Phase.Closing;
      case P.NBD_OPT_LIST:
        return this.#optList(data);
      case P.NBD_OPT_INFO:
      case P.NBD_OPT_GO:
        return this.#optInfoOrGo(option, data);
      default:
        // STRUCTURED_REPLY, STARTTLS, metadata contexts and anything unknown: simple replies only.
        this.#sendOptionReply(option, P.NBD_REP_ERR_UNSUP, `option ${option} is not supported`);
        return Phase.Options;
    }
  }

  async #optExportName(data: Buffer): Promise<Phase> {
    const name = data.toString('utf8');
    const handle = await this.#open(name);
    if (handle === undefined) {
      // NBD_OPT_EXPORT_NAME cannot carry an error: the spec mandates terminating the session.
      this.#log.info({ export: name }, 'NBD_OPT_EXPORT_NAME for an unknown export; disconnecting');
      this.#socket.destroy();
      return Phase.Closing;
    }
    this.#handle = handle;
    this.#transmissionFlags = this.#flagsFor(handle);
    const reply = Buffer.alloc(this.#isNoZeroes ? 10 : 134);
    reply.writeBigUInt64BE(BigInt(handle.sizeBytes), 0);
    reply.writeUInt16BE(this.#transmissionFlags, 8);
    this.#socket.write(reply);
    return Phase.Transmission;
  }

  async #optList(data: Buffer): Promise<Phase> {
    if (data.length !== 0) {
      this.#sendOptionReply(P.NBD_OPT_LIST, P.NBD_REP_ERR_INVALID, 'NBD_OPT_LIST takes no data');
      return Phase.Options;
    }
    let volumes;
    try {
      volumes = await this.#context.provider.list();
    } catch (err) {
      this.#log.warn({ err }, 'listing volumes failed');
      this.#sendOptionReply(P.NBD_OPT_LIST, P.NBD_REP_ERR_POLICY, 'cannot list volumes now');
      return Phase.Options;
    }
    for (const volume of volumes) {
      const name = Buffer.from(volume.name, 'utf8');
      const payload = Buffer.allocUnsafe(4 + name.length);
      payload.writeUInt32BE(name.length, 0);
      name.copy(payload, 4);
      this.#sendOptionReply(P.NBD_OPT_LIST, P.NBD_REP_SERVER, payload);
    }
    this.#sendOptionReply(P.NBD_OPT_LIST, P.NBD_REP_ACK);
    return Phase.Options;
  }

  async #optInfoOrGo(option: number, data: Buffer): Promise<Phase> {
    // Data: 32-bit name length, name, 16-bit count of info requests, 16-bit info types.
    if (data.length < 6) {
      this.#sendOptionReply(option, P.NBD_REP_ERR_INVALID, 'option data too short');
      return Phase.Options;
    }
    const nameLength = data.readUInt32BE(0);
    if (nameLength > data.length - 6 || nameLength > P.NBD_STRING_BYTES_MAX) {
      this.#sendOptionReply(option, P.NBD_REP_ERR_INVALID, 'export name length is inconsistent');
      return Phase.Options;
    }
    const requestCount = data.readUInt16BE(4 + nameLength);
    if (data.length !== 6 + nameLength + 2 * requestCount) {
      this.#sendOptionReply(option, P.NBD_REP_ERR_INVALID, 'information request list is inconsistent');
      return Phase.Options;
    }
    const requests = new Set<number>();
    for (let i = 0; i < requestCount; i++) requests.add(data.readUInt16BE(6 + nameLength + 2 * i));
    const name = data.toString('utf8', 4, 4 + nameLength);
    let handle: VolumeHandle | undefined;
    try {
      handle = await this.#open(name);
    } catch (err) {
      // The backend is unreachable: "the requested export is not available" (NBD_REP_ERR_UNKNOWN).
      this.#log.warn({ err, export: name }, 'opening volume failed');
      this.#sendOptionReply(option, P.NBD_REP_ERR_UNKNOWN, `volume "${name}" is unavailable: ${String(err)}`);
      return Phase.Options;
    }
    if (handle === undefined) {
      this.#sendOptionReply(option, P.NBD_REP_ERR_UNKNOWN, `no volume named "${name}"`);
      return Phase.Options;
    }
    const flags = this.#flagsFor(handle);
    const exportInfo = Buffer.allocUnsafe(12);
    exportInfo.writeUInt16BE(P.NBD_INFO_EXPORT, 0);
    exportInfo.writeBigUInt64BE(BigInt(handle.sizeBytes), 2);
    exportInfo.writeUInt16BE(flags, 10);
    this.#sendOptionReply(option, P.NBD_REP_INFO, exportInfo);
    if (requests.has(P.NBD_INFO_NAME)) {
      const canonical = Buffer.from(handle.name, 'utf8');
      const info = Buffer.allocUnsafe(2 + canonical.length);
      info.writeUInt16BE(P.NBD_INFO_NAME, 0);
      canonical.copy(info, 2);
      this.#sendOptionReply(option, P.NBD_REP_INFO, info);
    }
    // Block sizes are sent unasked too (clients ignore what they did not request): minimum 1
    // (any alignment is served), preferred = the volume's block, maximum = requestBytesMax.
    const blockInfo = Buffer.allocUnsafe(14);
    blockInfo.writeUInt16BE(P.NBD_INFO_BLOCK_SIZE, 0);
    blockInfo.writeUInt32BE(1, 2);
    blockInfo.writeUInt32BE(handle.blockSizeBytes, 6);
    blockInfo.writeUInt32BE(this.#limits.requestBytesMax, 10);
    this.#sendOptionReply(option, P.NBD_REP_INFO, blockInfo);
    this.#sendOptionReply(option, P.NBD_REP_ACK);
    if (option === P.NBD_OPT_INFO) {
      await handle.close();
      return Phase.Options;
    }
    this.#handle = handle;
    this.#transmissionFlags = flags;
    return Phase.Transmission;
  }

  /** Opens a volume, or returns undefined when it does not exist (other failures propagate). */
  async #open(name: string): Promise<VolumeHandle | undefined> {
    try {
      return await this.#context.provider.open(name, { isReadOnly: this.#context.isReadOnly });
    } catch (err) {
      if ((err as { code?: unknown }).code === AgentErrorCode.VolumeNotFound) return undefined;
      throw err;
    }
  }

  #flagsFor(handle: VolumeHandle): number {
    let flags = P.NBD_FLAG_HAS_FLAGS | P.NBD_FLAG_SEND_FLUSH | P.NBD_FLAG_SEND_FUA;
    if (handle.isReadOnly) flags |= P.NBD_FLAG_READ_ONLY;
    else flags |= P.NBD_FLAG_SEND_TRIM | P.NBD_FLAG_SEND_WRITE_ZEROES;
    if (handle.isFlushShared) flags |= P.NBD_FLAG_CAN_MULTI_CONN;
    return flags;
  }

  #sendOptionReply(option: number, type: number, payload?: Buffer | string): void {
    // Messages are strings for humans; the spec caps strings at 4096 bytes.
    const data = typeof payload === 'string' ? Buffer.from(payload.slice(0, 1024), 'utf8') : payload;
    const header = Buffer.allocUnsafe(20);
    header.writeBigUInt64BE(P.NBD_REP_MAGIC, 0);
    header.writeUInt32BE(option, 8);
    header.writeUInt32BE(type, 12);
    header.writeUInt32BE(data?.length ?? 0, 16);
    this.#socket.write(data === undefined || data.length === 0 ? header : Buffer.concat([header, data]));
  }

  #enterTransmission(): void {
    clearTimeout(this.#handshakeTimer);
    this.#counters.handshakesCompleted++;
    this.#log.info(
      { export: this.#handle!.name, flags: this.#transmissionFlags, sizeBytes: this.#handle!.sizeBytes },
      'NBD client entered transmission',
    );
    if (this.#limits.idleTimeoutMs > 0) {
      this.#socket.setTimeout(this.#limits.idleTimeoutMs, () => {
        if (this.#inflightRequests > 0) return; // Slow backend, not an idle client.
        this.#counters.idleTimeouts++;
        this.#log.info({ code: AgentErrorCode.NbdIdleTimeout }, 'idle NBD client; disconnecting');
        this.#socket.destroy();
      });
    }
  }

  // ---------------------------------------------------------------- transmission

  /** Parses one request if the limits allow; returns whether it made progress. */
  #parseRequest(): boolean {
    const input = this.#input;
    if (input.length < P.NBD_REQUEST_HEADER_BYTES) return this.#needMore();
    if (this.#inflightRequests >= this.#limits.inflightRequestsMax || this.#isWriteBlocked) {
      this.#backpressure();
      return false;
    }
    const buffer = input.contiguous(P.NBD_REQUEST_HEADER_BYTES);
    const at = input.headOffset;
    if (buffer.readUInt32BE(at) !== P.NBD_REQUEST_MAGIC)
      return this.#violation(`bad request magic 0x${buffer.readUInt32BE(at).toString(16)}`);
    const flags = buffer.readUInt16BE(at + 4);
    const type = buffer.readUInt16BE(at + 6);
    const handleHigh = buffer.readUInt32BE(at + 8);
    const handleLow = buffer.readUInt32BE(at + 12);
    const offsetHigh = buffer.readUInt32BE(at + 16);
    const offset =
      offsetHigh >= OFFSET_HIGH_LIMIT
        ? Number.MAX_SAFE_INTEGER
        : offsetHigh * 0x100000000 + buffer.readUInt32BE(at + 20);
    const length = buffer.readUInt32BE(at + 24);
    const isWrite = type === P.NBD_CMD_WRITE;
    if (isWrite && length > this.#limits.requestBytesMax) {
      // Consuming the payload would be a denial of service; the spec allows a hard disconnect.
      return this.#violation(`write payload of ${length} bytes (limit ${this.#limits.requestBytesMax})`);
    }
    const costBytes = isWrite || (type === P.NBD_CMD_READ && length <= this.#limits.requestBytesMax) ? length : 0;
    if (this.#inflightBytes + costBytes > this.#limits.inflightBytesMax && this.#inflightRequests > 0) {
      this.#backpressure();
      return false;
    }
    if (isWrite && input.length < P.NBD_REQUEST_HEADER_BYTES + length) {
      return this.#needMore(); // The whole payload; the queue is bounded by requestBytesMax.
    }
    input.skip(P.NBD_REQUEST_HEADER_BYTES);
    const payload = isWrite ? input.take(length) : undefined;
    const request = new NbdRequest(handleHigh, handleLow, type, flags, offset, length, costBytes, payload);
    if (type === P.NBD_CMD_DISC) {
      this.#onDisconnectRequest();
      return false;
    }
    this.#countRequest(type);
    this.#inflightRequests++;
    this.#inflightBytes += costBytes;
    this.#counters.inflightRequests++;
    this.#counters.inflightBytes += costBytes;
    const error = this.#validate(request);
    if (error !== 0) this.#complete(request, error, undefined);
    else if (type === P.NBD_CMD_FLUSH && this.#handle!.flushNow !== undefined) this.#flushNow(request);
    else void this.#execute(request);
    return true;
  }

  #countRequest(type: number): void {
    const counters = this.#counters;
    if (type === P.NBD_CMD_READ) counters.requestsRead++;
    else if (type === P.NBD_CMD_WRITE) counters.requestsWrite++;
    else if (type === P.NBD_CMD_FLUSH) counters.requestsFlush++;
    else if (type === P.NBD_CMD_TRIM) counters.requestsTrim++;
    else if (type === P.NBD_CMD_WRITE_ZEROES) counters.requestsWriteZeroes++;
    else counters.requestsOther++;
  }

  #backpressure(): void {
    if (!this.#isPaused) this.#counters.backpressurePauses++;
    this.#pause();
  }

  /** The NBD error for a request the server refuses before touching the backend, or 0. */
  #validate(request: NbdRequest): number {
    const handle = this.#handle!;
    const allowedFlags = FLAGS_ALLOWED_BY_COMMAND[request.type];
    if (allowedFlags === undefined) return P.NBD_EINVAL; // Unknown command, CACHE, BLOCK_STATUS.
    if ((request.flags & ~allowedFlags) !== 0) return P.NBD_EINVAL;
    const end = request.offset + request.length;
    switch (request.type) {
      case P.NBD_CMD_READ:
        if (request.length > this.#limits.requestBytesMax) return P.NBD_EINVAL;
        return end > handle.sizeBytes ? P.NBD_EINVAL : 0;
      case P.NBD_CMD_WRITE:
      case P.NBD_CMD_WRITE_ZEROES:
        if (handle.isReadOnly) return P.NBD_EPERM;
        return end > handle.sizeBytes ? P.NBD_ENOSPC : 0;
      case P.NBD_CMD_TRIM:
        if (handle.isReadOnly) return P.NBD_EPERM;
        return end > handle.sizeBytes ? P.NBD_EINVAL : 0;
      case P.NBD_CMD_FLUSH:
        return request.offset !== 0 || request.length !== 0 ? P.NBD_EINVAL : 0;
      default:
        return P.NBD_EINVAL;
    }
  }

  /**
   * Answers a validated FLUSH in this turn through the handle's synchronous `flushNow` (fio's
   * `--fsync=1` sends one per write): no async function, promise or microtask per flush. The
   * reply still leaves with the turn's batch, after the replies of writes completed before it.
   */
  #flushNow(request: NbdRequest): void {
    let error = 0;
    try {
      this.#handle!.flushNow!();
    } catch (err) {
      error = P.nbdErrorFor(err, false);
      this.#log.warn({ err, command: 'flush', error }, 'NBD request failed');
    }
    this.#complete(request, error, undefined);
  }

  /** Runs a validated request against the volume and replies. */
  async #execute(request: NbdRequest): Promise<void> {
    const handle = this.#handle!;
    const isFua = (request.flags & P.NBD_CMD_FLAG_FUA) !== 0;
    const counters = this.#counters;
    let data: Buffer | undefined;
    let error = 0;
    try {
      switch (request.type) {
        case P.NBD_CMD_READ:
          if (request.length > 0) {
            data = await handle.read(request.offset, request.length);
            if (data.length !== request.length) {
              throw new AgentError(
                AgentErrorCode.VolumeIoFailed,
                `backend returned ${data.length} of ${request.length} bytes`,
              );
            }
            counters.bytesRead += request.length;
          }
          break;
        case P.NBD_CMD_WRITE:
          if (request.length > 0) await handle.write(request.offset, request.payload!, { isFua });
          counters.bytesWritten += request.length;
          break;
        case P.NBD_CMD_WRITE_ZEROES:
          if (request.length > 0) {
            await handle.writeZeroes(request.offset, request.length, {
              isFua,
              mayTrim: (request.flags & P.NBD_CMD_FLAG_NO_HOLE) === 0,
            });
          }
          break;
        case P.NBD_CMD_TRIM:
          if (request.length > 0) await handle.trim(request.offset, request.length, { isFua });
          break;
        case P.NBD_CMD_FLUSH:
          await handle.flush();
          break;
      }
    } catch (err) {
      const isWrite = request.type === P.NBD_CMD_WRITE || request.type === P.NBD_CMD_WRITE_ZEROES;
      error = P.nbdErrorFor(err, isWrite);
      data = undefined;
      this.#log.warn(
        { err, command: P.NBD_CMD_NAMES[request.type], offset: request.offset, length: request.length, error },
        'NBD request failed',
      );
    }
    this.#complete(request, error, data);
  }

  /** Sends the reply (if the socket is still open) and releases the request's in-flight share. */
  #complete(request: NbdRequest, error: number, data: Buffer | undefined): void {
    if (error !== 0) this.#counters.requestErrors++;
    if (!this.#isClosed) {
      request.error = error;
      request.data = error === 0 ? data : undefined;
      this.#replies.push(request);
      this.#replyBytes += P.NBD_SIMPLE_REPLY_HEADER_BYTES + (request.data?.length ?? 0);
      if (!this.#isReplyFlushScheduled) {
        this.#isReplyFlushScheduled = true;
        setImmediate(this.#flushReplies);
      }
      // Replies waiting for the batch count as unsent bytes too.
      if (this.#socket.writableLength + this.#replyBytes > this.#limits.inflightBytesMax) this.#isWriteBlocked = true;
    }
    this.#inflightRequests--;
    this.#inflightBytes -= request.costBytes;
    this.#counters.inflightRequests--;
    this.#counters.inflightBytes -= request.costBytes;
    if (this.#inflightRequests === 0 && this.#drainWaiters.length > 0) {
      const waiters = this.#drainWaiters;
      this.#drainWaiters = [];
      for (const resolve of waiters) resolve();
    }
    if (this.#phase === Phase.Transmission) this.#pump();
  }

  #onDisconnectRequest(): void {
    // The spec: handle all outstanding requests, then close. Nothing more is read.
    this.#phase = Phase.Closing;
    this.#pause();
    this.#log.debug({ inflight: this.#inflightRequests }, 'NBD_CMD_DISC');
    void this.#whenDrained().then(() => this.#end());
  }

  #whenDrained(): Promise<void> {
    if (this.#inflightRequests === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /** Flushes pending replies and closes the socket gracefully. */
  #end(): Promise<void> {
    if (this.#isClosed) return Promise.resolve();
    return new Promise((resolve) => {
      this.#socket.once('close', () => resolve());
      this.#flushReplies();
      this.#socket.end();
      // A peer that never reads its replies must not keep the socket alive forever.
      setTimeout(() => this.#socket.destroy(), this.#limits.shutdownTimeoutMs).unref();
    });
  }

  #onClose(): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    this.#phase = Phase.Closing;
    clearTimeout(this.#handshakeTimer);
    this.#context.onClosed();
    this.#log.debug({ inflight: this.#inflightRequests }, 'NBD connection closed');
    // Requests still running finish at the backend; their replies are dropped. The handle is
    // closed once they are done so none of them uses a closed handle.
    const handle = this.#handle;
    if (handle !== undefined) {
      void this.#whenDrained()
        .then(() => handle.close())
        .catch((err: unknown) => this.#log.warn({ err }, 'closing volume handle failed'));
    }
  }
}
