/**
 * `GrpcTransport`: the Raft `Transport` between daemons over gRPC (`rdl.v1.Peer`, see
 * peer-protocol.ts). Two lanes per peer, each one long-lived outgoing bidi stream on its own HTTP/2
 * connection: the bulk lane carries the messages with log entries or snapshot data (App, Prop,
 * Snap), the control lane everything else (heartbeats, votes, acknowledgements). A heartbeat or an
 * append acknowledgement therefore never waits behind megabytes of appends in a queue, an HTTP/2
 * flow-control window or a socket buffer; followers would otherwise miss heartbeats and the leader
 * would fail CheckQuorum under 1 MiB writes. Raft tolerates the reordering between lanes (the
 * `Transport` contract); order within a lane is kept, so appends still arrive in order. Messages
 * queued during an event-loop turn are written as frames of at most `FRAME_BYTES_TARGET` (more only
 * for a single larger message), so a follower can start persisting the first entries of a burst
 * while the rest is on the wire. Per-lane queues are bounded by messages and bytes and drop when
 * full (Raft retransmits). A failed stream is reopened with exponential back-off; while a
 * peer is unreachable its messages are dropped at once rather than piling up. An optional per-peer
 * delay emulates inter-region latency.
 *
 * Incoming streams: the dialler's identity (metadata) must be a configured peer and its target
 * must be this daemon, and it must speak this daemon's frame format version (both directions are
 * checked at stream open: DAEMON_PEER_PROTOCOL_MISMATCH); every message's `from`/`to` must match
 * the stream. Anything malformed is rejected with a coded notice and a metric, never by crashing
 * the daemon.
 */
import { Client, Metadata, Server, credentials, status as GrpcStatus } from '@grpc/grpc-js';
import type { ClientDuplexStream, ServerDuplexStream, ServiceError } from '@grpc/grpc-js';
import type { RaftMessage, Transport } from '../raft-types.js';
import { DaemonError, DaemonErrorCode } from '../errors.js';
import type { Logger } from '../logging.js';
import type { DaemonMetrics, TransportGaugeSource } from '../metrics.js';
import { preciseAlarm } from './precise-alarm.js';
import { MessageType } from '@rdl/raft';
import { bindGrpcServer } from './listen.js';
import {
  METADATA_PEER_FROM,
  METADATA_PEER_PROTOCOL,
  METADATA_PEER_TO,
  PEER_PROTOCOL_VERSION,
  compactBytes,
  decodeFrame,
  decodeNotice,
  encodeFrame,
  encodeNotice,
  estimateMessageBytes,
  peerService,
  peerStreamMethod,
  releaseFrame,
} from './peer-protocol.js';

/** One peer as the transport needs it. */
export interface TransportPeer {
  readonly id: string;
  /** `host:port` of the peer's peer listener. */
  readonly address: string;
  /** Artificial one-way delay for messages to this peer, in milliseconds (may be fractional). */
  readonly delayMs: number;
}

/** Options of {@link GrpcTransport}. */
export interface GrpcTransportOptions {
  /** This daemon's region. */
  readonly self: string;
  /** Listen address `host:port` of the peer service (port 0 = ephemeral). */
  readonly listenAddress: string;
  readonly peers: readonly TransportPeer[];
  /** Messages queued per peer and lane before new ones are dropped. */
  readonly queueMessagesMax: number;
  /** Bytes queued per peer and lane before new messages are dropped. */
  readonly queueBytesMax: number;
  /** Largest frame accepted from a peer (and largest single message sent). */
  readonly messageBytesMax: number;
  readonly reconnectDelayMsMin: number;
  readonly reconnectDelayMsMax: number;
  readonly logger: Logger;
  readonly metrics?: DaemonMetrics;
}

/** Which stream of a peer a message travels on (see the file comment). */
export type PeerLane = 'control' | 'bulk';

/**
 * The lane of `message`: bulk for messages that carry log entries or snapshot data, and for every
 * App (an empty App must not overtake a full one: the follower would reject it and the leader
 * would fall back to probing and re-send the entries in flight); control for everything else.
 */
export function laneOf(message: RaftMessage): PeerLane {
  const m = message as { type?: unknown; entries?: { length: number }; snapshot?: unknown };
  if (m.type === MessageType.App || m.type === MessageType.Prop || m.type === MessageType.Snap) return 'bulk';
  if ((m.entries !== undefined && m.entries.length > 0) || m.snapshot !== undefined) return 'bulk';
  return 'control';
}

type DropReason = 'queue-full' | 'unreachable' | 'too-large' | 'unknown-peer' | 'closed' | 'disconnected';

/** Frames written per flush are capped so one flush cannot monopolise the event loop. */
const FRAME_MESSAGES_MAX = 512;
/**
 * A frame is closed once it holds this many bytes. gRPC delivers a frame only when all of it
 * arrived, so four 1 MiB appends in one frame would make the follower wait for the fourth before it
 * can persist the first; smaller frames let the receiver's disk work overlap the transfer.
 */
export const FRAME_BYTES_TARGET = 256 * 1024;
const NOTICE_INTERVAL_MS = 1000;

interface Queued {
  readonly message: RaftMessage;
  readonly bytes: number;
  /** `compactBytes(message)`, computed once at send time. */
  readonly compact: number;
  /** When the message may leave (performance.now() ms); 0 when not delayed. */
  readonly dueMs: number;
}

/** The sending half for one lane of one peer: bounded queue, optional delay line, one stream, back-off. */
class PeerSender {
  private state: 'connecting' | 'open' | 'backoff' | 'closed' = 'backoff';
  private readonly client: Client;
  private call: ClientDuplexStream<Buffer, Buffer> | null = null;
  /** FIFO of messages ready to write (delayed ones join once due). Index `head` is the oldest. */
  private ready: Queued[] = [];
  private head = 0;
  private delayed: Queued[] = [];
  private delayedHead = 0;
  private queuedBytes = 0;
  private isWaitingForDrain = false;
  private isFlushScheduled = false;
  /** Cancels the pending delay-line wake-up, while one is scheduled. */
  private cancelDelay: (() => void) | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private failures = 0;
  /** Messages written to the stream, read by the metrics at scrape time. */
  sentMessages = 0;
  private readonly logger: Logger;

  constructor(
    private readonly peer: TransportPeer,
    private readonly options: GrpcTransportOptions,
    readonly lane: PeerLane,
  ) {
    this.logger = options.logger.child({ peer: peer.id, lane });
    this.client = new Client(peer.address, credentials.createInsecure(), {
      // Each lane has its own HTTP/2 connection (grpc-js would otherwise share one subchannel between
      // the two clients): streams of one connection share its flow-control window and socket.
      'grpc.use_local_subchannel_pool': 1,
      'grpc.max_receive_message_length': 1024 * 1024,
      'grpc.max_send_message_length': options.messageBytesMax,
      'grpc.keepalive_time_ms': 5_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.keepalive_permit_without_calls': 1,
      // Our own back-off governs reconnection; keep grpc's short so a returning peer is seen quickly.
      'grpc.initial_reconnect_backoff_ms': options.reconnectDelayMsMin,
      'grpc.max_reconnect_backoff_ms': options.reconnectDelayMsMax,
    });
  }

  get queuedMessages(): number {
    return this.ready.length - this.head + this.delayed.length - this.delayedHead;
  }

  get bytes(): number {
    return this.queuedBytes;
  }

  get isConnected(): boolean {
    return this.state === 'open';
  }

  start(): void {
    this.connect();
  }

  send(message: RaftMessage): void {
    if (this.state === 'closed') return this.drop('closed');
    // While the peer is unreachable, queueing only delays the inevitable drop and wastes memory.
    if (this.state === 'backoff') return this.drop('unreachable');
    const compact = compactBytes(message);
    const bytes = estimateMessageBytes(message, compact);
    if (bytes > this.options.messageBytesMax) return this.drop('too-large');
    if (this.queuedMessages >= this.options.queueMessagesMax || this.queuedBytes + bytes > this.options.queueBytesMax) {
      return this.drop('queue-full');
    }
    this.queuedBytes += bytes;
    if (this.peer.delayMs > 0) {
      this.delayed.push({ message, bytes, compact, dueMs: performance.now() + this.peer.delayMs });
      this.scheduleDelayed();
    } else {
      this.ready.push({ message, bytes, compact, dueMs: 0 });
      this.scheduleFlush();
    }
  }

  private drop(reason: DropReason, count = 1): void {
    this.options.metrics?.peerMessagesDropped.inc({ peer: this.peer.id, reason }, count);
  }

  private connect(): void {
    if (this.state === 'closed') return;
    this.state = 'connecting';
    const metadata = new Metadata();
    metadata.set(METADATA_PEER_FROM, this.options.self);
    metadata.set(METADATA_PEER_TO, this.peer.id);
    metadata.set(METADATA_PEER_PROTOCOL, String(PEER_PROTOCOL_VERSION));
    const call = this.client.makeBidiStreamRequest(
      peerStreamMethod.path,
      peerStreamMethod.requestSerialize,
      peerStreamMethod.responseDeserialize,
      metadata,
    );
    this.call = call;
    this.options.metrics?.peerReconnects.inc({ peer: this.peer.id });
    // The server sends its headers as soon as it accepts the stream: that is "connected".
    call.on('metadata', (headers: Metadata) => {
      if (this.call !== call || this.state !== 'connecting') return;
      const version = headers.get(METADATA_PEER_PROTOCOL)[0];
      if (version !== String(PEER_PROTOCOL_VERSION)) {
        // A daemon of another version (version 1 sends no version header): it would misread our
        // frames or we its. Refuse the stream and retry with back-off until it is upgraded.
        const error = new DaemonError(
          DaemonErrorCode.PeerProtocolMismatch,
          `peer ${this.peer.id} speaks peer protocol version ${typeof version === 'string' ? version : 1}; this daemon speaks ${PEER_PROTOCOL_VERSION}`,
        );
        if (this.failures === 0 || this.failures % 50 === 0) this.logger.error({ code: error.code }, error.message);
        this.options.metrics?.peerMessagesRejected.inc({ peer: this.peer.id, code: error.code });
        this.onStreamEnd(call, null, true);
        return;
      }
      this.state = 'open';
      if (this.failures > 0) this.logger.info({ failures: this.failures }, 'peer stream open again');
      else this.logger.info('peer stream open');
      this.failures = 0;
      this.scheduleFlush();
    });
    call.on('data', (frame: Buffer) => {
      const notice = decodeNotice(frame);
      if (notice) this.logger.warn({ code: notice.code, detail: notice.message }, 'peer rejected messages we sent');
    });
    call.on('error', (err: ServiceError) => this.onStreamEnd(call, err));
    call.on('end', () => this.onStreamEnd(call, null));
  }

  private onStreamEnd(call: ClientDuplexStream<Buffer, Buffer>, err: ServiceError | null, isRefused = false): void {
    if (this.call !== call) return;
    this.call = null;
    call.removeAllListeners('drain');
    call.on('error', () => undefined); // late errors of a discarded call are expected
    call.cancel();
    this.isWaitingForDrain = false;
    const wasOpen = this.state === 'open';
    const isRefusal =
      isRefused || err?.code === GrpcStatus.PERMISSION_DENIED || err?.code === GrpcStatus.FAILED_PRECONDITION;
    // Queued messages are stale by the time a new stream opens (heartbeats, old appends): Raft
    // re-sends what still matters, so drop them rather than replay a burst.
    this.dropQueued('disconnected');
    if (this.state === 'closed') return;
    this.state = 'backoff';
    this.failures += 1;
    const base = Math.min(
      this.options.reconnectDelayMsMax,
      this.options.reconnectDelayMsMin * 2 ** Math.min(this.failures - 1, 20),
    );
    // Jitter spreads reconnection storms after a network blip; it has no bearing on correctness.
    const delayMs = Math.max(1, Math.round(base * (0.8 + 0.4 * Math.random())));
    const fields = {
      code: err?.code,
      rdlCode: err?.metadata?.get('rdl-code')[0],
      detail: err?.details,
      failures: this.failures,
      delayMs,
    };
    if (isRefused) this.logger.debug(fields, 'peer stream refused; retrying');
    else if (wasOpen || (isRefusal && (this.failures === 1 || this.failures % 50 === 0)))
      this.logger.warn(fields, 'peer stream lost');
    else if (this.failures === 1 || this.failures % 50 === 0) this.logger.info(fields, 'peer unreachable; retrying');
    else this.logger.debug(fields, 'peer unreachable; retrying');
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, delayMs);
  }

  private dropQueued(reason: DropReason): void {
    const count = this.ready.length - this.head;
    if (count > 0) this.drop(reason, count);
    for (let i = this.head; i < this.ready.length; i++) this.queuedBytes -= this.ready[i].bytes;
    this.ready = [];
    this.head = 0;
  }

  private scheduleFlush(): void {
    if (this.isFlushScheduled) return;
    this.isFlushScheduled = true;
    // setImmediate: everything the Raft node sends during this event-loop turn goes in one frame.
    setImmediate(() => {
      this.isFlushScheduled = false;
      this.flush();
    });
  }

  private scheduleDelayed(): void {
    if (this.cancelDelay !== null || this.delayedHead >= this.delayed.length) return;
    // Sub-millisecond delays (0.18 ms one way between nearby regions) with a worker-thread alarm:
    // Node's timers have 1 ms granularity, and spinning on setImmediate starved the other
    // processes sharing the cores (see precise-alarm.ts).
    this.cancelDelay = preciseAlarm.schedule(this.delayed[this.delayedHead].dueMs, () => {
      this.cancelDelay = null;
      this.releaseDue();
      this.scheduleDelayed();
    });
  }

  private releaseDue(): void {
    const now = performance.now();
    let isMoved = false;
    while (this.delayedHead < this.delayed.length && this.delayed[this.delayedHead].dueMs <= now) {
      this.ready.push(this.delayed[this.delayedHead++]);
      isMoved = true;
    }
    if (this.delayedHead > 1024 && this.delayedHead * 2 > this.delayed.length) {
      this.delayed = this.delayed.slice(this.delayedHead);
      this.delayedHead = 0;
    }
    if (isMoved) {
      if (this.state !== 'open' && this.state !== 'connecting') this.dropQueued('unreachable');
      else this.scheduleFlush();
    }
  }

  private flush(): void {
    const call = this.call;
    if (this.state !== 'open' || call === null || this.isWaitingForDrain) return;
    while (this.head < this.ready.length) {
      const batch: RaftMessage[] = [];
      const sizes: number[] = [];
      let bytes = 0;
      while (
        this.head < this.ready.length &&
        batch.length < FRAME_MESSAGES_MAX &&
        (batch.length === 0 ||
          (bytes < FRAME_BYTES_TARGET && bytes + this.ready[this.head].bytes <= this.options.messageBytesMax))
      ) {
        const item = this.ready[this.head++];
        batch.push(item.message);
        sizes.push(item.compact);
        bytes += item.bytes;
      }
      this.queuedBytes -= bytes;
      let frame: Buffer;
      try {
        frame = encodeFrame(batch, sizes);
      } catch (err) {
        // A message msgpack cannot carry is a bug in whoever built it; do not let it wedge the queue.
        this.logger.error({ err }, 'cannot encode Raft messages; dropped');
        this.drop('too-large', batch.length);
        continue;
      }
      this.sentMessages += batch.length;
      // grpc-js has copied the frame by the time it reports the write done: its slab may be reused.
      const isWritable = call.write(frame, (error: unknown) => {
        if (error === null || error === undefined) releaseFrame(frame);
      });
      if (!isWritable) {
        this.isWaitingForDrain = true;
        call.once('drain', () => {
          this.isWaitingForDrain = false;
          this.scheduleFlush();
        });
        break;
      }
    }
    if (this.head === this.ready.length) {
      this.ready = [];
      this.head = 0;
    } else if (this.head > 1024) {
      this.ready = this.ready.slice(this.head);
      this.head = 0;
    }
  }

  close(): void {
    this.state = 'closed';
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.cancelDelay?.();
    this.cancelDelay = null;
    this.dropQueued('closed');
    this.delayed = [];
    this.delayedHead = 0;
    this.queuedBytes = 0;
    const call = this.call;
    this.call = null;
    if (call) {
      call.on('error', () => undefined);
      call.end();
      call.cancel();
    }
    this.client.close();
  }
}

/** The gRPC peer transport. Create, `onMessage` (the Raft node does), `start`, and `close` at shutdown. */
export class GrpcTransport implements Transport {
  private handler: ((message: RaftMessage) => void) | null = null;
  /** Per peer: [control lane, bulk lane]. */
  private readonly senders = new Map<string, readonly [PeerSender, PeerSender]>();
  private readonly server: Server;
  private readonly inbound = new Set<ServerDuplexStream<Buffer, Buffer>>();
  /** Messages received per peer, read by the metrics at scrape time. */
  private readonly receivedMessages = new Map<string, number>();
  private readonly logger: Logger;
  private isClosed = false;
  /** The bound port of the peer listener, once started. */
  port = 0;

  constructor(private readonly options: GrpcTransportOptions) {
    this.logger = options.logger;
    for (const peer of options.peers) {
      this.senders.set(peer.id, [new PeerSender(peer, options, 'control'), new PeerSender(peer, options, 'bulk')]);
    }
    this.server = new Server({
      'grpc.max_receive_message_length': options.messageBytesMax,
      'grpc.max_send_message_length': 1024 * 1024,
      'grpc.keepalive_time_ms': 5_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.http2.min_ping_interval_without_data_ms': 1_000,
      'grpc.keepalive_permit_without_calls': 1,
    });
    this.server.addService(peerService, { stream: (call: ServerDuplexStream<Buffer, Buffer>) => this.accept(call) });
    options.metrics?.setTransportSource(() => this.gauges());
  }

  /** Binds the peer listener and starts dialling every peer. Rejects with DAEMON_PORT_IN_USE / DAEMON_LISTEN_FAILED. */
  async start(): Promise<number> {
    this.port = await bindGrpcServer(this.server, this.options.listenAddress, 'peers');
    for (const lanes of this.senders.values()) for (const sender of lanes) sender.start();
    return this.port;
  }

  send(messages: readonly RaftMessage[]): void {
    for (const message of messages) {
      const lanes = this.senders.get(message.to);
      if (lanes) lanes[laneOf(message) === 'control' ? 0 : 1].send(message);
      else this.options.metrics?.peerMessagesDropped.inc({ peer: String(message.to), reason: 'unknown-peer' });
    }
  }

  onMessage(handler: (message: RaftMessage) => void): void {
    this.handler = handler;
  }

  /** Queue sizes and connection state per peer (for metrics and status). */
  gauges(): TransportGaugeSource {
    const result = {
      queuedBytes: {} as Record<string, number>,
      queuedMessages: {} as Record<string, number>,
      isConnected: {} as Record<string, boolean>,
      sentMessages: {} as Record<string, number>,
      receivedMessages: {} as Record<string, number>,
    } satisfies TransportGaugeSource;
    for (const [id, [control, bulk]] of this.senders) {
      result.queuedBytes[id] = control.bytes + bulk.bytes;
      result.queuedMessages[id] = control.queuedMessages + bulk.queuedMessages;
      result.isConnected[id] = control.isConnected && bulk.isConnected;
      result.sentMessages[id] = control.sentMessages + bulk.sentMessages;
      result.receivedMessages[id] = this.receivedMessages.get(id) ?? 0;
    }
    return result;
  }

  private accept(call: ServerDuplexStream<Buffer, Buffer>): void {
    const fromValues = call.metadata.get(METADATA_PEER_FROM);
    const toValues = call.metadata.get(METADATA_PEER_TO);
    const from = typeof fromValues[0] === 'string' ? fromValues[0] : '';
    const to = typeof toValues[0] === 'string' ? toValues[0] : '';
    if (this.isClosed) {
      call.emit('error', { code: GrpcStatus.UNAVAILABLE, details: 'daemon stopping' });
      return;
    }
    const version = call.metadata.get(METADATA_PEER_PROTOCOL)[0];
    if (version !== String(PEER_PROTOCOL_VERSION)) {
      // A version-1 daemon sends no version: it would send msgpack frames we do not read.
      const error = new DaemonError(
        DaemonErrorCode.PeerProtocolMismatch,
        `peer stream from ${JSON.stringify(from)} refused: it speaks peer protocol version ${typeof version === 'string' ? JSON.stringify(version) : 1}, this daemon ${PEER_PROTOCOL_VERSION}`,
      );
      this.refuse(call, from, error, GrpcStatus.FAILED_PRECONDITION);
      return;
    }
    if (!this.senders.has(from) || to !== this.options.self) {
      const error = new DaemonError(
        DaemonErrorCode.PeerIdentityMismatch,
        `peer stream from ${JSON.stringify(from)} to ${JSON.stringify(to)} refused: this is ${this.options.self} and its peers are ${[...this.senders.keys()].join(', ')}`,
      );
      this.refuse(call, from, error, GrpcStatus.PERMISSION_DENIED);
      return;
    }
    this.inbound.add(call);
    const headers = new Metadata();
    headers.set(METADATA_PEER_PROTOCOL, String(PEER_PROTOCOL_VERSION));
    call.sendMetadata(headers);
    let lastNoticeMs = -Infinity;
    const log = this.logger.child({ peer: from });
    call.on('data', (frame: Buffer) => {
      const { messages, rejected } = decodeFrame(frame, from, this.options.self);
      if (rejected.length > 0) {
        for (const r of rejected) this.options.metrics?.peerMessagesRejected.inc({ peer: from, code: r.code });
        const now = performance.now();
        // Rate-limited: a peer sending garbage must not flood the log or our response stream.
        if (now - lastNoticeMs >= NOTICE_INTERVAL_MS) {
          lastNoticeMs = now;
          log.warn(
            { code: rejected[0].code, detail: rejected[0].message, count: rejected.length },
            'peer messages rejected',
          );
          call.write(encodeNotice(rejected[0]));
        }
      }
      if (messages.length === 0) return;
      this.receivedMessages.set(from, (this.receivedMessages.get(from) ?? 0) + messages.length);
      const handler = this.handler;
      if (handler === null) return; // not started yet: dropping is what an unreliable transport does
      for (const message of messages) {
        try {
          handler(message);
        } catch (err) {
          // The Raft node refused a message whose content it could not make sense of. The message
          // came from outside this process, so it is rejected rather than allowed to stop the daemon.
          this.options.metrics?.peerMessagesRejected.inc({ peer: from, code: DaemonErrorCode.PeerMessageInvalid });
          log.warn({ err, type: message.type }, 'Raft node rejected a peer message');
        }
      }
    });
    const forget = (): void => {
      this.inbound.delete(call);
    };
    call.on('end', () => {
      forget();
      call.end();
    });
    call.on('error', forget);
    call.on('cancelled', forget);
  }

  /** Ends an incoming stream at once with `status` and the error's code in the `rdl-code` trailer. */
  private refuse(call: ServerDuplexStream<Buffer, Buffer>, from: string, error: DaemonError, status: GrpcStatus): void {
    this.logger.warn({ code: error.code, from }, error.message);
    this.options.metrics?.peerMessagesRejected.inc({ peer: from || 'unknown', code: error.code });
    const metadata = new Metadata();
    metadata.set('rdl-code', error.code);
    call.emit('error', { code: status, details: error.message, metadata });
  }

  /** Stops dialling, ends every stream and shuts the listener down. Idempotent. */
  async close(): Promise<void> {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const lanes of this.senders.values()) for (const sender of lanes) sender.close();
    for (const call of this.inbound) call.end();
    this.inbound.clear();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, 1000);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
