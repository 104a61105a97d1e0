/**
 * The block API (`rdl.v1.Block`, defined by `@rdl/client/wire`) served by every daemon.
 *
 * - Volume admin (create, delete, grow) are Raft proposals; stat and list are linearizable reads.
 * - IO travels on the `Io` bidi stream (served by `io-stream.ts`) in batches of requests and of
 *   responses, multiplexed by id and answered in any order: writes (write, writeZeroes, trim) are
 *   proposed and acknowledged only once committed and applied; the reads of one message wait for
 *   one ReadIndex (leadership confirmed by a quorum, applied caught up) and then read the block
 *   store, so they see every write acknowledged before they arrived.
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
import { WireCode, blockService, checkVolumeName, checkVolumeSize, decode, toGrpcError } from '@rdl/client/wire';
import type {
  CreateVolumeResponse,
  IoResponseBatch,
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
import { IoStreamServer } from './io-stream.js';
import type { IoBudget, IoContext, IoProposalCallback } from './io-stream.js';

/** The part of `RaftNode` the API uses (an interface so tests can stand in for it). */
export interface ApiRaftNode {
  propose(data: Uint8Array, options?: { signal?: AbortSignal }): Promise<unknown>;
  /** `RaftNode.proposeMany`: the Io stream proposes a message's mutations with one call. */
  proposeMany(data: readonly Uint8Array[], onResult: IoProposalCallback): void;
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

/** The block API implementation. `handlers()` gives grpc-js its implementation object. */
export class BlockApi {
  private readonly log: Logger;
  private readonly membersByRegion: Map<string, ApiMember>;
  private readonly budget: IoBudget = { requests: 0, bytes: 0 };
  /** Open Io streams and their calls. */
  private readonly streams = new Map<IoStreamServer, ServerDuplexStream<Buffer, IoResponseBatch>>();
  private readonly ioContext: IoContext;
  private readonly nowMs: () => number;
  private isStopping = false;
  private sweepTimer: NodeJS.Timeout | null = null;

  constructor(private readonly options: BlockApiOptions) {
    this.log = options.logger;
    this.membersByRegion = new Map(options.members.map((m) => [m.region, m]));
    this.nowMs = options.nowMs ?? Date.now;
    this.ioContext = {
      node: options.node,
      store: options.store,
      limits: options.limits,
      budget: this.budget,
      metrics: options.metrics,
      log: this.log,
      nowMs: this.nowMs,
      wireError: (err) => this.wireError(err),
      checkLeader: () => {
        const status = this.options.node.status();
        return status.role === 'leader' ? undefined : notLeader(status.leader, this.addressOf, this.options.region);
      },
      onClosed: (stream) => {
        this.streams.delete(stream);
      },
    };
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
    for (const stream of [...this.streams.keys()]) {
      stream.finish({ code: WireCode.UNAVAILABLE, message: `${this.options.region} is stopping` });
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
      io: (call: ServerDuplexStream<Buffer, IoResponseBatch>) => this.serveIo(call),
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
      if (this.streams.size === 0) {
        clearInterval(this.sweepTimer!);
        this.sweepTimer = null;
        return;
      }
      const nowMs = performance.now();
      for (const stream of this.streams.keys()) stream.sweep(nowMs);
    }, periodMs);
    this.sweepTimer.unref();
  }

  private serveIo(call: ServerDuplexStream<Buffer, IoResponseBatch>): void {
    if (this.isStopping) {
      call.emit('error', toGrpcError({ code: WireCode.UNAVAILABLE, message: `${this.options.region} is stopping` }));
      return;
    }
    const stream = new IoStreamServer(call, this.ioContext);
    this.streams.set(stream, call);
    this.startSweeping();
  }
}
