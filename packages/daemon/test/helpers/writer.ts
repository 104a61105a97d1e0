/**
 * A test writer that behaves like a careful client: it sends each write to the leader it knows,
 * follows NOT_LEADER hints, and on a failed stream or a retryable error finds the leader again and
 * retries the SAME (session, seq), so the daemon's exactly-once dedup is exercised. It records which
 * writes were acknowledged.
 */
import type { IoRequest, IoResponse } from '@rdl/client/wire';
import type { IoStream } from './block-client.js';
import type { Cluster } from './cluster.js';

const retryable = new Set(['NOT_LEADER', 'UNAVAILABLE', 'DEADLINE_EXCEEDED', 'RESOURCE_EXHAUSTED']);

/** Shared view of who leads, so writers do not each rediscover it. */
export class LeaderTracker {
  leader: string | null = null;
  constructor(private readonly cluster: Cluster) {}

  async current(): Promise<string> {
    if (this.leader !== null && this.cluster.member(this.leader).process !== null) return this.leader;
    this.leader = await this.cluster.waitForLeader(30_000);
    return this.leader;
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms);
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e as Error);
      },
    );
  });
}

/** One client session: sequential requests with retries until acknowledged (or `deadlineMs`). */
export class RetryingClient {
  private readonly streams = new Map<string, IoStream>();
  retries = 0;

  constructor(
    private readonly cluster: Cluster,
    private readonly tracker: LeaderTracker,
  ) {}

  private stream(region: string): IoStream {
    let stream = this.streams.get(region);
    if (stream === undefined || stream.failure !== null) {
      stream = this.cluster.member(region).client.io();
      this.streams.set(region, stream);
    }
    return stream;
  }

  /** Sends `request` until it is answered ok; returns the response. Throws on a non-retryable error. */
  async send(request: Omit<IoRequest, 'id'>, deadlineMs = 60_000): Promise<IoResponse> {
    const deadline = Date.now() + deadlineMs;
    for (;;) {
      if (Date.now() > deadline) throw new Error(`gave up on ${request.op} seq ${request.seq}`);
      const region = await this.tracker.current();
      let response: IoResponse;
      try {
        response = await withTimeout(this.stream(region).request(request), 5_000);
      } catch {
        this.retries += 1;
        this.streams.get(region)?.cancel();
        this.streams.delete(region);
        if (this.tracker.leader === region) this.tracker.leader = null;
        await new Promise((resolve) => setTimeout(resolve, 50));
        continue;
      }
      if (response.ok) return response;
      const code = response.error?.code ?? 'INTERNAL';
      if (!retryable.has(code)) throw new Error(`${request.op} failed: ${code}: ${response.error?.message}`);
      this.retries += 1;
      if (code === 'NOT_LEADER' && response.error?.leader) this.tracker.leader = response.error.leader;
      else if (this.tracker.leader === region) this.tracker.leader = null;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  close(): void {
    for (const stream of this.streams.values()) stream.cancel();
    this.streams.clear();
  }
}

/** The 4 KiB block pattern writer tests use: every byte derived from (block, writer). */
export function blockPattern(block: number, salt = 0): Buffer {
  const bytes = Buffer.alloc(4096);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (block * 31 + i * 7 + salt) & 0xff;
  return bytes;
}

/**
 * The exactly-once write of block `block` of volume `v` (its `blockPattern`) as sequence number
 * `seq` of `session`, acknowledging everything below it: what the writer tests send and retry.
 */
export function blockWrite(block: number, session: string, seq: number): Omit<IoRequest, 'id'> {
  return {
    op: 'write',
    volume: 'v',
    offset: block * 4096,
    length: 4096,
    data: blockPattern(block),
    session,
    seq,
    ackedBelow: seq,
  };
}
