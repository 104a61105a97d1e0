// A fake rdl cluster for the SDK and rdlctl tests: N real grpc-js servers on 127.0.0.1:0 that
// implement the rdl.v1.Block wire protocol over one shared in-memory state (volumes as Buffers,
// a (session, seq) dedup table like the real state machine's), with one "leader" the test moves
// at will. Followers answer NOT_LEADER with (or, on request, without) the leader hint. Hooks let a
// test hold, reorder, swallow or fail IO requests and drop streams. It is not the daemon: it
// checks the client side of the protocol.
import { createServer, type Server as NetServer } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import {
  BLOCK_SIZE_BYTES,
  GRPC_SERVER_OPTIONS,
  IO_BATCH_BYTES_MAX,
  IO_BATCH_REQUESTS_MAX,
  WireCode,
  blockService,
  checkIoBatch,
  checkIoRequest,
  checkVolumeName,
  checkVolumeSize,
  isMutatingOp,
  toGrpcError,
} from '../../src/wire/index.js';
import type {
  BlockServer,
  IoRequest,
  IoRequestBatch,
  IoResponse,
  IoResponseBatch,
  MemberStatus,
  StatusResponse,
  TransferLeaderResponse,
  VolumeInfo,
  WireError,
} from '../../src/wire/index.js';

/** What a hook decides for one IO request reaching the leader. */
export type IoHookResult =
  | { action: 'serve' }
  /** Apply (if mutating) but never answer. */
  | { action: 'applyAndSwallow' }
  /** Neither apply nor answer. */
  | { action: 'swallow' }
  /** Answer with this error without applying. */
  | { action: 'error'; error: WireError }
  /** Keep it; the test answers later through `release`. */
  | { action: 'hold' }
  /** Apply (if mutating), then end the whole stream with UNAVAILABLE before answering. */
  | { action: 'applyAndDropStream' };

/** One IO request as a node saw it. */
export interface SeenIo {
  node: number;
  streamId: number;
  request: IoRequest;
}

type IoCall = grpc.ServerDuplexStream<IoRequestBatch, IoResponseBatch>;

interface Held {
  node: number;
  request: IoRequest;
  call: IoCall;
}

interface Volume {
  info: VolumeInfo;
  data: Buffer;
}

export const REGIONS = ['geneva', 'gland', 'lucerne', 'zurich', 'basel'];

export class FakeCluster {
  readonly servers: (grpc.Server | undefined)[] = [];
  readonly addresses: string[] = [];
  /** Listeners holding the ports of stopped nodes (see `stop`). */
  private readonly blockers: NetServer[] = [];
  leader = 0;
  term = 1;
  /** When false, followers answer NOT_LEADER without the leader hint. */
  isHinting = true;
  readonly volumes = new Map<string, Volume>();
  /** session -> seqs applied and not yet released by ackedBelow. */
  readonly sessions = new Map<string, Set<number>>();
  /** "session:seq" -> times the mutation was applied (must stay 1). */
  readonly applyCounts = new Map<string, number>();
  readonly seen: SeenIo[] = [];
  readonly held: Held[] = [];
  ioHook: ((seen: SeenIo) => IoHookResult) | undefined = undefined;
  unaryHook: ((node: number, method: string, request: unknown) => WireError | undefined) | undefined = undefined;
  /** Most requests seen in flight at once on one stream. */
  inflightPeak = 0;
  streamsOpened = 0;
  /** Number of requests in each Io message the nodes received, in arrival order. */
  readonly batchSizes: number[] = [];
  private readonly streams = new Set<IoCall>();
  private readonly inflightByStream = new Map<number, number>();

  static async start(size = 3): Promise<FakeCluster> {
    const cluster = new FakeCluster();
    for (let node = 0; node < size; node++) {
      const server = new grpc.Server(GRPC_SERVER_OPTIONS);
      server.addService(blockService, cluster.implementation(node));
      const port = await new Promise<number>((resolve, reject) =>
        server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
          e ? reject(e) : resolve(p),
        ),
      );
      cluster.servers.push(server);
      cluster.addresses.push(`127.0.0.1:${port}`);
    }
    return cluster;
  }

  /** Moves leadership (new term); open streams to the old leader get NOT_LEADER from now on. */
  setLeader(node: number): void {
    this.leader = node;
    this.term++;
  }

  /**
   * Stops one node hard and keeps its port: a plain TCP listener takes it over and resets every
   * connection, so the address stays dead. A freed port could otherwise be bound by another test's
   * fake node running at the same time (AVA runs a file's tests concurrently), and a client would
   * then reach that other cluster through the "stopped" address.
   */
  async stop(node: number): Promise<void> {
    const server = this.servers[node];
    if (server === undefined) return;
    server.forceShutdown();
    this.servers[node] = undefined;
    const port = Number(this.addresses[node].split(':')[1]);
    const blocker = createServer((socket) => socket.resetAndDestroy());
    // The gRPC listener closes asynchronously: retry the bind a bounded number of times.
    for (let attempt = 1; ; attempt++) {
      try {
        await new Promise<void>((resolve, reject) => {
          blocker.once('error', reject);
          blocker.listen(port, '127.0.0.1', () => {
            blocker.off('error', reject);
            resolve();
          });
        });
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt === 50) throw error;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    }
    this.blockers.push(blocker);
  }

  /** Ends every open Io stream with UNAVAILABLE. */
  dropStreams(): void {
    for (const call of [...this.streams]) {
      call.emit('error', toGrpcError({ code: WireCode.UNAVAILABLE, message: 'fake: stream dropped' }));
    }
  }

  /** Answers every held request in the given order (default: reverse arrival order). */
  release(order: 'reverse' | 'arrival' = 'reverse'): void {
    const held = this.held.splice(0);
    if (order === 'reverse') held.reverse();
    for (const item of held) {
      if (!this.streams.has(item.call)) continue;
      this.answer(item.call, this.serve(item.node, item.request));
    }
  }

  applied(session: string, seq: number): number {
    return this.applyCounts.get(`${session}:${seq}`) ?? 0;
  }

  async close(): Promise<void> {
    for (const server of this.servers) server?.forceShutdown();
    for (const blocker of this.blockers.splice(0)) blocker.close();
  }

  private notLeader(): WireError {
    const error: WireError = { code: WireCode.NOT_LEADER, message: 'fake: not the leader' };
    if (this.isHinting) {
      error.leader = REGIONS[this.leader];
      error.leaderAddress = this.addresses[this.leader];
    }
    return error;
  }

  /**
   * Answers in as few messages as the batch limits allow (a real server gathers the answers of
   * one turn the same way).
   */
  private answer(call: IoCall, ...responses: IoResponse[]): void {
    if (responses.length === 0) return;
    const streamId = (call as unknown as { fakeId: number }).fakeId;
    this.inflightByStream.set(streamId, (this.inflightByStream.get(streamId) ?? responses.length) - responses.length);
    let batch: IoResponse[] = [];
    let bytes = 0;
    for (const response of responses) {
      const size = response.data?.length ?? 0;
      if (batch.length > 0 && (batch.length >= IO_BATCH_REQUESTS_MAX || bytes + size > IO_BATCH_BYTES_MAX)) {
        call.write({ responses: batch });
        batch = [];
        bytes = 0;
      }
      batch.push(response);
      bytes += size;
    }
    call.write({ responses: batch });
  }

  /** Serves one IO request as a leader would, with the dedup the state machine does. */
  private serve(node: number, request: IoRequest): IoResponse {
    const problem = checkIoRequest(request);
    if (problem !== undefined) return { id: request.id, ok: false, error: problem };
    if (node !== this.leader) return { id: request.id, ok: false, error: this.notLeader() };
    const volume = this.volumes.get(request.volume);
    if (volume === undefined) {
      return { id: request.id, ok: false, error: { code: WireCode.VOLUME_NOT_FOUND, message: 'fake: no volume' } };
    }
    if (request.offset + request.length > volume.info.sizeBytes) {
      return { id: request.id, ok: false, error: { code: WireCode.OUT_OF_RANGE, message: 'fake: out of range' } };
    }
    if (request.op === 'read') {
      // A copy, as a real server's reply is its own buffer.
      return {
        id: request.id,
        ok: true,
        data: Buffer.from(volume.data.subarray(request.offset, request.offset + request.length)),
      };
    }
    if (isMutatingOp(request.op)) {
      // checkIoRequest guarantees the session fields of a mutating op.
      const session = request.session!;
      const seq = request.seq!;
      let applied = this.sessions.get(session);
      if (applied === undefined) {
        applied = new Set();
        this.sessions.set(session, applied);
      }
      for (const each of applied) if (each < request.ackedBelow!) applied.delete(each);
      if (!applied.has(seq)) {
        applied.add(seq);
        const key = `${request.session}:${request.seq}`;
        this.applyCounts.set(key, (this.applyCounts.get(key) ?? 0) + 1);
        if (request.op === 'write') volume.data.set(request.data!, request.offset);
        else volume.data.fill(0, request.offset, request.offset + request.length);
      }
    }
    return { id: request.id, ok: true };
  }

  private implementation(node: number): BlockServer {
    const guard = <Req, Res>(
      method: string,
      body: (request: Req) => Res | WireError,
    ): grpc.handleUnaryCall<Req, Res> => {
      return (call, callback) => {
        const hooked = this.unaryHook?.(node, method, call.request);
        if (hooked !== undefined) {
          callback(toGrpcError(hooked));
          return;
        }
        if (method !== 'status' && node !== this.leader) {
          callback(toGrpcError(this.notLeader()));
          return;
        }
        const result = body(call.request);
        if (typeof result === 'object' && result !== null && 'code' in result && 'message' in result) {
          callback(toGrpcError(result as WireError));
        } else {
          callback(null, result as Res);
        }
      };
    };
    const notFound = (name: string): WireError => ({ code: WireCode.VOLUME_NOT_FOUND, message: `no volume ${name}` });
    return {
      createVolume: guard('createVolume', ({ name, sizeBytes }) => {
        const problem = checkVolumeName(name) ?? checkVolumeSize(sizeBytes);
        if (problem !== undefined) return problem;
        const existing = this.volumes.get(name);
        if (existing !== undefined) {
          if (existing.info.sizeBytes !== sizeBytes) {
            return { code: WireCode.VOLUME_EXISTS, message: `volume ${name} exists with another size` };
          }
          return { volume: existing.info, isCreated: false };
        }
        const info: VolumeInfo = { name, sizeBytes, blockSizeBytes: BLOCK_SIZE_BYTES, createdAtMs: 1_700_000_000_000 };
        this.volumes.set(name, { info, data: Buffer.alloc(sizeBytes) });
        return { volume: info, isCreated: true };
      }),
      deleteVolume: guard('deleteVolume', ({ name }) => {
        if (!this.volumes.delete(name)) return notFound(name);
        return {};
      }),
      listVolumes: guard('listVolumes', () => ({
        volumes: [...this.volumes.values()].map((v) => v.info).sort((a, b) => a.name.localeCompare(b.name)),
      })),
      statVolume: guard('statVolume', ({ name }) => {
        const volume = this.volumes.get(name);
        return volume === undefined ? notFound(name) : { volume: volume.info };
      }),
      growVolume: guard('growVolume', ({ name, sizeBytes }) => {
        const volume = this.volumes.get(name);
        if (volume === undefined) return notFound(name);
        if (sizeBytes < volume.info.sizeBytes)
          return { code: WireCode.INVALID_ARGUMENT, message: 'fake: cannot shrink' };
        const data = Buffer.alloc(sizeBytes);
        volume.data.copy(data);
        volume.data = data;
        volume.info = { ...volume.info, sizeBytes };
        return { volume: volume.info };
      }),
      status: guard('status', (): StatusResponse => {
        const members: MemberStatus[] = this.addresses.map((address, index) => {
          const member: MemberStatus = {
            region: REGIONS[index],
            raftAddress: `127.0.0.1:${7101 + index}`,
            clientAddress: address,
            role: index === this.leader ? 'leader' : 'follower',
          };
          if (node === this.leader && index !== this.leader) {
            member.matchIndex = 40 + index;
            member.lagEntries = 2 - index / 2;
          }
          return member;
        });
        return {
          region: REGIONS[node],
          role: node === this.leader ? 'leader' : 'follower',
          term: this.term,
          leader: { region: REGIONS[this.leader], clientAddress: this.addresses[this.leader] },
          commitIndex: 42,
          appliedIndex: 41,
          members,
        };
      }),
      transferLeader: guard('transferLeader', ({ region }): TransferLeaderResponse | WireError => {
        const index = REGIONS.indexOf(region);
        if (index < 0 || index >= this.addresses.length) {
          return { code: WireCode.INVALID_ARGUMENT, message: `fake: unknown region ${region}` };
        }
        this.setLeader(index);
        return { leader: { region, clientAddress: this.addresses[index] } };
      }),
      io: (call) => {
        const streamId = ++this.streamsOpened;
        (call as unknown as { fakeId: number }).fakeId = streamId;
        this.streams.add(call);
        call.on('error', () => this.streams.delete(call));
        call.on('close', () => this.streams.delete(call));
        call.on('cancelled', () => this.streams.delete(call));
        call.on('end', () => {
          this.streams.delete(call);
          call.end();
        });
        call.on('data', (message: IoRequestBatch) => {
          const problem = checkIoBatch(message);
          if (problem !== undefined) {
            call.emit('error', toGrpcError(problem));
            return;
          }
          const batch = message;
          this.batchSizes.push(batch.requests.length);
          const answers: IoResponse[] = [];
          for (const request of batch.requests) {
            const inflight = (this.inflightByStream.get(streamId) ?? 0) + 1;
            this.inflightByStream.set(streamId, inflight);
            this.inflightPeak = Math.max(this.inflightPeak, inflight);
            const seen: SeenIo = { node, streamId, request };
            this.seen.push(seen);
            const decision: IoHookResult =
              node === this.leader && this.ioHook !== undefined ? this.ioHook(seen) : { action: 'serve' };
            switch (decision.action) {
              case 'serve':
                answers.push(this.serve(node, request));
                break;
              case 'applyAndSwallow':
                this.serve(node, request);
                break;
              case 'swallow':
                break;
              case 'error':
                answers.push({ id: request.id, ok: false, error: decision.error });
                break;
              case 'hold':
                this.held.push({ node, request, call });
                break;
              case 'applyAndDropStream':
                this.serve(node, request);
                this.streams.delete(call);
                call.emit('error', toGrpcError({ code: WireCode.UNAVAILABLE, message: 'fake: stream dropped' }));
                return;
            }
          }
          this.answer(call, ...answers);
        });
      },
    };
  }
}

/** Waits until `condition()` holds, polling; fails after `timeoutMs` (no fixed sleeps in tests). */
export async function waitFor(condition: () => boolean, timeoutMs = 5_000, what = 'condition'): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** Small seeded PRNG (mulberry32) for deterministic jitter. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
