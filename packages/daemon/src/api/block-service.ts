/**
 * The block API (`rdl.v1.Block`, defined by `@rdl/client/wire`) served by every daemon.
 *
 * - Volume admin (create, delete, grow) are Raft proposals; stat and list are linearizable reads.
 * - IO travels on the `Io` bidi stream, requests multiplexed by id and answered in any order:
 *   writes (write, writeZeroes, trim) are proposed and acknowledged only once committed and applied;
 *   reads wait for a ReadIndex (leadership confirmed by a quorum, applied caught up) and then read
 *   the block store, so they see every write acknowledged before they arrived.
 * - A follower answers NOT_LEADER with the leader's region and client address.
 * - Limits: request size (grpc max receive), IO payload size, requests and bytes in flight per
 *   stream and per daemon (RESOURCE_EXHAUSTED), a deadline per request (DEADLINE_EXCEEDED).
 * - Malformed input is answered with a coded error; it never throws out of a handler. Requests are
 *   decoded here (identity deserializers) rather than by grpc-js, so undecodable bytes get
 *   INVALID_ARGUMENT with `rdl-code` instead of an anonymous INTERNAL.
 */
import type {
  MethodDefinition,
  ServerDuplexStream,
  ServerUnaryCall,
  ServiceDefinition,
  UntypedServiceImplementation,
  sendUnaryData,
} from '@grpc/grpc-js';
import {
  WireCode,
  blockService,
  checkIoRequest,
  checkVolumeName,
  checkVolumeSize,
  decode,
  toGrpcError,
} from '@rdl/client/wire';
import type {
  CreateVolumeResponse,
  IoRequest,
  IoResponse,
  LeaderInfo,
  MemberRole,
  MemberStatus,
  StatusResponse,
  VolumeInfo,
  WireError,
} from '@rdl/client/wire';
import type { RaftStatus } from '../raft-types.js';
import { encodeCommand } from '../storage/commands.js';
import type { ApplyResult, BlockStore, Command } from '../storage/commands.js';
import type { Logger } from '../logging.js';
import type { DaemonMetrics } from '../metrics.js';
import { isInternal, notLeader, toWireError } from './error-map.js';

/** The part of `RaftNode` the API uses (an interface so tests can stand in for it). */
export interface ApiRaftNode {
  propose(data: Uint8Array, options?: { signal?: AbortSignal }): Promise<unknown>;
  readIndex(options?: { signal?: AbortSignal }): Promise<void>;
  transferLeadership(to: string, options?: { signal?: AbortSignal }): Promise<void>;
  status(): RaftStatus;
}

/** One member of the group as the API describes it. */
export interface ApiMember {
  readonly region: string;
  readonly raftAddress: string;
  /** Block API address clients are redirected to; null when not configured. */
  readonly clientAddress: string | null;
}

/** Limits of the API, from the `[api]` config section. */
export interface ApiLimits {
  readonly ioBytesMax: number;
  readonly streamInflightMax: number;
  readonly streamInflightBytesMax: number;
  readonly daemonInflightMax: number;
  readonly daemonInflightBytesMax: number;
  readonly requestTimeoutMs: number;
}

/** Options of {@link BlockApi}. */
export interface BlockApiOptions {
  readonly region: string;
  readonly node: ApiRaftNode;
  readonly store: BlockStore;
  /** Every member, this daemon included. */
  readonly members: readonly ApiMember[];
  readonly limits: ApiLimits;
  readonly logger: Logger;
  readonly metrics?: DaemonMetrics;
  /** Wall clock for creation times and session expiry stamps (default Date.now). */
  readonly nowMs?: () => number;
}

const identity = (value: Buffer): Buffer => value;

/**
 * The service definition the daemon registers: `blockService` (same paths, same response
 * encoding) with request decoding moved into the handlers.
 */
export const blockServerDefinition: ServiceDefinition = Object.fromEntries(
  Object.entries(blockService).map(([name, method]) => [
    name,
    { ...(method as MethodDefinition<unknown, unknown>), requestDeserialize: identity },
  ]),
);

function invalid(message: string): WireError {
  return { code: WireCode.INVALID_ARGUMENT, message };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

function decodeRequest(bytes: Buffer): { value: Record<string, unknown> } | { error: WireError } {
  let value: unknown;
  try {
    value = decode<unknown>(bytes);
  } catch (err) {
    return { error: invalid(`undecodable request: ${(err as Error).message}`) };
  }
  if (!isRecord(value)) return { error: invalid('a request must be a msgpack map') };
  return { value };
}

function isApplyResult(value: unknown): value is ApplyResult {
  return isRecord(value) && typeof value.ok === 'boolean';
}

function roleOf(role: string): MemberRole {
  if (role === 'leader' || role === 'follower' || role === 'learner') return role;
  if (role === 'candidate' || role === 'pre-candidate') return 'candidate';
  return 'unknown';
}

/**
 * One IO request in flight on a stream. Its deadline is enforced by the API's sweep (not a timer
 * or `AbortSignal` per request: those were a visible share of the leader's CPU per write).
 */
interface InflightIo {
  readonly bytes: number;
  readonly startedMs: number;
  /** Answers the request with `error` now (deadline, stream closed); its late result is dropped. */
  fail(error: WireError): void;
}

/** A shared in-flight budget for the whole daemon. */
interface Budget {
  requests: number;
  bytes: number;
}

/** The block API implementation. `handlers()` gives grpc-js its implementation object. */
export class BlockApi {
  private readonly log: Logger;
  private readonly membersByRegion: Map<string, ApiMember>;
  private readonly budget: Budget = { requests: 0, bytes: 0 };
  private readonly streams = new Set<ServerDuplexStream<Buffer, IoResponse>>();
  private readonly nowMs: () => number;
  private isStopping = false;
  /** Per open Io stream: fails its requests older than the request timeout. */
  private readonly deadlineSweeps = new Set<(nowMs: number) => void>();
  private sweepTimer: NodeJS.Timeout | null = null;

  constructor(private readonly options: BlockApiOptions) {
    this.log = options.logger;
    this.membersByRegion = new Map(options.members.map((m) => [m.region, m]));
    this.nowMs = options.nowMs ?? Date.now;
  }

  private readonly addressOf = (region: string): string | null =>
    this.membersByRegion.get(region)?.clientAddress ?? null;

  private wireError(err: unknown): WireError {
    const error = toWireError(err, this.addressOf, this.options.region);
    if (isInternal(error)) this.log.error({ err }, 'internal error serving a request');
    return error;
  }

  private leaderInfo(status: RaftStatus): LeaderInfo | undefined {
    if (status.leader === null) return undefined;
    return { region: status.leader, clientAddress: this.addressOf(status.leader) ?? '' };
  }

  /** Fails every open Io stream with UNAVAILABLE and refuses new calls (daemon shutdown). */
  stop(): void {
    this.isStopping = true;
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    for (const call of this.streams) {
      call.emit('error', toGrpcError({ code: WireCode.UNAVAILABLE, message: `${this.options.region} is stopping` }));
    }
    this.streams.clear();
  }

  /** The implementation object for `server.addService(blockServerDefinition, api.handlers())`. */
  handlers(): UntypedServiceImplementation {
    return {
      createVolume: this.unary(async (request) => {
        const failure = checkVolumeName(request.name) ?? checkVolumeSize(request.sizeBytes);
        if (failure) throw failure;
        const createdAtMs = this.nowMs();
        const result = await this.proposeCommand({
          type: 'createVolume',
          name: request.name as string,
          sizeBytes: request.sizeBytes as number,
          createdAtMs,
        });
        const volume = result.volume as VolumeInfo;
        // An identical volume created earlier keeps its own creation time: that is how a retried
        // or repeated create shows up (`isCreated: false`).
        const response: CreateVolumeResponse = { volume, isCreated: volume.createdAtMs === createdAtMs };
        return response;
      }),
      deleteVolume: this.unary(async (request) => {
        const failure = checkVolumeName(request.name);
        if (failure) throw failure;
        await this.proposeCommand({ type: 'deleteVolume', name: request.name as string, atMs: this.nowMs() });
        return {};
      }),
      growVolume: this.unary(async (request) => {
        const failure = checkVolumeName(request.name) ?? checkVolumeSize(request.sizeBytes);
        if (failure) throw failure;
        const result = await this.proposeCommand({
          type: 'growVolume',
          name: request.name as string,
          sizeBytes: request.sizeBytes as number,
          atMs: this.nowMs(),
        });
        return { volume: result.volume as VolumeInfo };
      }),
      statVolume: this.unary(async (request) => {
        const failure = checkVolumeName(request.name);
        if (failure) throw failure;
        await this.readBarrier();
        const volume = this.options.store.getVolume(request.name as string);
        if (volume === null) {
          throw { code: WireCode.VOLUME_NOT_FOUND, message: `volume ${JSON.stringify(request.name)} does not exist` };
        }
        return { volume };
      }),
      listVolumes: this.unary(async () => {
        await this.readBarrier();
        return { volumes: this.options.store.listVolumes() };
      }),
      status: this.unary(async () => this.statusResponse()),
      transferLeader: this.unary(async (request) => {
        const region = request.region;
        if (typeof region !== 'string' || !this.membersByRegion.has(region)) {
          throw invalid(`region must be one of ${[...this.membersByRegion.keys()].join(', ')}`);
        }
        const status = this.options.node.status();
        if (status.role !== 'leader' && status.leader !== region) {
          throw notLeader(status.leader, this.addressOf, this.options.region);
        }
        if (status.leader !== region) {
          await this.options.node.transferLeadership(region, {
            signal: AbortSignal.timeout(this.options.limits.requestTimeoutMs),
          });
        }
        return { leader: { region, clientAddress: this.addressOf(region) ?? '' } };
      }),
      io: (call: ServerDuplexStream<Buffer, IoResponse>) => this.serveIo(call),
    };
  }

  /** The Status RPC: this daemon's view of the group (any member answers). */
  statusResponse(): StatusResponse {
    const status = this.options.node.status();
    const members: MemberStatus[] = [];
    for (const member of this.options.members) {
      const entry: MemberStatus = {
        region: member.region,
        raftAddress: member.raftAddress,
        clientAddress: member.clientAddress ?? '',
        role:
          member.region === this.options.region
            ? roleOf(status.role)
            : member.region === status.leader
              ? 'leader'
              : status.conf.learners.includes(member.region)
                ? 'learner'
                : status.leader !== null
                  ? 'follower'
                  : 'unknown',
      };
      if (status.role === 'leader') {
        const progress =
          member.region === this.options.region ? { match: status.lastIndex } : status.progress[member.region];
        if (progress !== undefined) {
          entry.matchIndex = progress.match;
          entry.lagEntries = Math.max(0, status.lastIndex - progress.match);
        }
      }
      members.push(entry);
    }
    const response: StatusResponse = {
      region: this.options.region,
      role: roleOf(status.role),
      term: status.term,
      commitIndex: status.commitIndex,
      appliedIndex: status.appliedIndex,
      members,
    };
    const leader = this.leaderInfo(status);
    if (leader !== undefined) response.leader = leader;
    return response;
  }

  private unary(
    serve: (request: Record<string, unknown>) => Promise<unknown>,
  ): (call: ServerUnaryCall<Buffer, unknown>, callback: sendUnaryData<unknown>) => void {
    return (call, callback) => {
      const decoded = decodeRequest(call.request);
      if ('error' in decoded) {
        callback(toGrpcError(decoded.error));
        return;
      }
      if (this.isStopping) {
        callback(toGrpcError({ code: WireCode.UNAVAILABLE, message: `${this.options.region} is stopping` }));
        return;
      }
      serve(decoded.value).then(
        (response) => callback(null, response),
        (err: unknown) => {
          const error =
            isRecord(err) && typeof err.code === 'string' && !(err instanceof Error)
              ? (err as unknown as WireError)
              : this.wireError(err);
          callback(toGrpcError(error));
        },
      );
    };
  }

  /**
   * Proposes a command; resolves with its successful apply result or throws the wire error. With
   * `deadline` null (Io requests) the caller enforces the deadline; else the request timeout.
   */
  private async proposeCommand(command: Command, deadline?: null): Promise<ApplyResult & { ok: true }> {
    const started = performance.now();
    const data = encodeCommand(command);
    const result = await (deadline === null
      ? this.options.node.propose(data)
      : this.options.node.propose(data, { signal: AbortSignal.timeout(this.options.limits.requestTimeoutMs) }));
    this.options.metrics?.commitSeconds.observe((performance.now() - started) / 1000);
    if (!isApplyResult(result)) {
      throw { code: WireCode.INTERNAL, message: 'the state machine returned no result for the command' };
    }
    if (!result.ok) throw this.wireError(result);
    return result;
  }

  /** Waits until a read here is linearizable (ReadIndex confirmed and applied). */
  private async readBarrier(): Promise<void> {
    await this.options.node.readIndex({ signal: AbortSignal.timeout(this.options.limits.requestTimeoutMs) });
  }

  /**
   * Runs the deadline sweep while Io streams are open: a request is failed with DEADLINE_EXCEEDED
   * at most a tenth of the timeout (250 ms at most) after its deadline.
   */
  private startSweeping(): void {
    if (this.sweepTimer !== null) return;
    const timeoutMs = this.options.limits.requestTimeoutMs;
    const periodMs = Math.max(5, Math.min(250, Math.floor(timeoutMs / 10)));
    this.sweepTimer = setInterval(() => {
      if (this.deadlineSweeps.size === 0) {
        clearInterval(this.sweepTimer!);
        this.sweepTimer = null;
        return;
      }
      const nowMs = performance.now();
      for (const sweep of this.deadlineSweeps) sweep(nowMs);
    }, periodMs);
    this.sweepTimer.unref();
  }

  private serveIo(call: ServerDuplexStream<Buffer, IoResponse>): void {
    if (this.isStopping) {
      call.emit('error', toGrpcError({ code: WireCode.UNAVAILABLE, message: `${this.options.region} is stopping` }));
      return;
    }
    const limits = this.options.limits;
    const metrics = this.options.metrics;
    const inflight = new Map<number, InflightIo>();
    let inflightBytes = 0;
    let isEnded = false; // client half-closed
    let isClosed = false; // the call is over (answered, failed or cancelled)
    this.streams.add(call);

    // Requests still waiting when the stream closes are failed (as an aborted wait was before):
    // their slots return to the daemon's budget at once. Their outcome is unknown to the client.
    const failInflight = (): void => {
      if (inflight.size === 0) return;
      const error: WireError = { code: WireCode.DEADLINE_EXCEEDED, message: 'the IO stream closed' };
      for (const request of [...inflight.values()]) request.fail(error);
    };
    const sweep = (nowMs: number): void => {
      const timeoutMs = limits.requestTimeoutMs;
      let expired: InflightIo[] | null = null;
      for (const request of inflight.values()) {
        if (nowMs - request.startedMs >= timeoutMs) (expired ??= []).push(request);
      }
      if (expired === null) return;
      const error: WireError = {
        code: WireCode.DEADLINE_EXCEEDED,
        message: `no answer within the daemon's request timeout of ${timeoutMs} ms; a write may or may not be applied`,
      };
      for (const request of expired) request.fail(error);
    };
    this.deadlineSweeps.add(sweep);
    this.startSweeping();
    const close = (): void => {
      isClosed = true;
      this.streams.delete(call);
      this.deadlineSweeps.delete(sweep);
      failInflight();
      releaseAwaiting();
    };

    const finish = (error?: WireError): void => {
      if (isClosed) return;
      close();
      if (error !== undefined) call.emit('error', toGrpcError(error));
      else call.end();
    };
    const release = (id: number): void => {
      const request = inflight.get(id);
      if (request === undefined) return; // each slot is released once
      const bytes = request.bytes;
      inflight.delete(id);
      inflightBytes -= bytes;
      this.budget.requests -= 1;
      this.budget.bytes -= bytes;
      metrics?.apiInflightRequests.dec();
      metrics?.apiInflightBytes.dec(bytes);
      if (isEnded && inflight.size === 0) finish();
    };
    // Back-pressure towards a client that does not read its responses: once grpc-js buffers a
    // write (write() returns false), stop reading requests from it and keep the in-flight slots of
    // the answered requests taken until the buffer drains. Memory per stream stays within its
    // in-flight limits, and the daemon-wide budget is not handed to others meanwhile.
    const awaitingDrain: number[] = [];
    let isPaused = false;
    const releaseAwaiting = (): void => {
      for (const waiting of awaitingDrain.splice(0)) release(waiting);
    };
    const answer = (response: IoResponse): boolean => {
      if (isClosed) return true;
      const isFlushed = call.write(response);
      if (!isFlushed && !isPaused) {
        isPaused = true;
        call.pause();
        call.once('drain', () => {
          isPaused = false;
          releaseAwaiting();
          if (!isClosed) call.resume();
        });
      }
      return isFlushed;
    };
    const settle = (id: number, isFlushed: boolean): void => {
      if (isFlushed || isClosed) release(id);
      else awaitingDrain.push(id);
    };

    call.on('data', (bytes: Buffer) => {
      if (isClosed) return;
      const decoded = decodeRequest(bytes);
      if ('error' in decoded) {
        // Without a decodable id the request cannot be answered on its own: fail the stream.
        finish(decoded.error);
        return;
      }
      const request = decoded.value as unknown as IoRequest;
      const id = request.id;
      if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) {
        finish(invalid('every IO request needs an integer id >= 0'));
        return;
      }
      if (inflight.has(id)) {
        finish(invalid(`IO request id ${id} is already in flight on this stream`));
        return;
      }
      const started = performance.now();
      const op = typeof request.op === 'string' ? request.op : 'unknown';
      const reply = (error: WireError | null, data?: Uint8Array): boolean => {
        const volume = typeof request.volume === 'string' ? request.volume : '';
        // Label by volume only for existing volumes: unknown names from clients must not create
        // unbounded metric series.
        const label = this.options.store.getVolume(volume) !== null ? volume : '(none)';
        metrics?.ioOps.inc({ volume: label, op, result: error === null ? 'ok' : error.code });
        if (error === null) {
          if (op !== 'flush') metrics?.ioBytes.inc({ volume: label, op }, request.length);
          metrics?.ioSeconds.observe({ op }, (performance.now() - started) / 1000);
          return answer(data === undefined ? { id, ok: true } : { id, ok: true, data });
        }
        return answer({ id, ok: false, error });
      };
      const check = checkIoRequest(request);
      if (check !== undefined) {
        reply(check);
        return;
      }
      if (request.length > limits.ioBytesMax) {
        reply({
          code: WireCode.TOO_LARGE,
          message: `IO length ${request.length} is above this daemon's maximum ${limits.ioBytesMax}`,
        });
        return;
      }
      const payloadBytes = request.length;
      if (
        inflight.size >= limits.streamInflightMax ||
        inflightBytes + payloadBytes > limits.streamInflightBytesMax ||
        this.budget.requests >= limits.daemonInflightMax ||
        this.budget.bytes + payloadBytes > limits.daemonInflightBytesMax
      ) {
        reply({
          code: WireCode.RESOURCE_EXHAUSTED,
          message: `too many IO requests in flight (stream: ${inflight.size} requests, ${inflightBytes} bytes; daemon: ${this.budget.requests} requests, ${this.budget.bytes} bytes)`,
        });
        return;
      }
      let isAnswered = false;
      inflight.set(id, {
        bytes: payloadBytes,
        startedMs: started,
        fail: (error) => {
          if (isAnswered) return;
          isAnswered = true;
          settle(id, reply(error));
        },
      });
      inflightBytes += payloadBytes;
      this.budget.requests += 1;
      this.budget.bytes += payloadBytes;
      metrics?.apiInflightRequests.inc();
      metrics?.apiInflightBytes.inc(payloadBytes);
      this.serveOne(request).then(
        (data) => {
          if (isAnswered) return;
          isAnswered = true;
          settle(id, reply(null, data));
        },
        (err: unknown) => {
          if (isAnswered) return;
          isAnswered = true;
          const error =
            isRecord(err) && typeof err.code === 'string' && !(err instanceof Error)
              ? (err as unknown as WireError)
              : this.wireError(err);
          settle(id, reply(error));
        },
      );
    });
    call.on('end', () => {
      isEnded = true;
      if (inflight.size === 0) finish();
    });
    call.on('cancelled', close);
    call.on('error', (err) => {
      this.log.debug({ err }, 'io stream failed');
      close();
    });
  }

  /** Serves one validated IO request; resolves with read data (or undefined), throws a wire error or an error to map. */
  private async serveOne(request: IoRequest): Promise<Uint8Array | undefined> {
    switch (request.op) {
      case 'read': {
        // No signal: the stream's deadline sweep answers a request that waits too long.
        await this.options.node.readIndex();
        return await this.options.store.read(request.volume, request.offset, request.length);
      }
      case 'write':
        await this.proposeCommand(
          {
            type: 'write',
            volume: request.volume,
            offset: request.offset,
            data: request.data as Uint8Array,
            session: request.session,
            seq: request.seq,
            ackedBelow: request.ackedBelow,
            atMs: this.nowMs(),
          },
          null,
        );
        return undefined;
      case 'writeZeroes':
      case 'trim':
        await this.proposeCommand(
          {
            type: request.op,
            volume: request.volume,
            offset: request.offset,
            length: request.length,
            session: request.session,
            seq: request.seq,
            ackedBelow: request.ackedBelow,
            atMs: this.nowMs(),
          },
          null,
        );
        return undefined;
      case 'flush': {
        // Every write this daemon acknowledged is committed (fsynced on a majority) and applied:
        // flush is a barrier with nothing left to wait for, but only the leader may say so.
        const status = this.options.node.status();
        if (status.role !== 'leader') throw notLeader(status.leader, this.addressOf, this.options.region);
        return undefined;
      }
      default:
        throw invalid(`unknown IO op ${JSON.stringify((request as { op: unknown }).op)}`);
    }
  }
}
