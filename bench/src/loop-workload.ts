import { figureOf, runClosedLoop } from './closed-loop.js';
import { cpuSecondsOf, cpuSecondsPer1kOps } from './cpu.js';
import { BenchError } from './errors.js';
import { SeededRandom } from './rng.js';
import type { Figure } from './stats.js';
import type { LoopWorkload } from './workloads.js';

/**
 * What a closed-loop workload drives: byte-addressed block reads and writes. rdl's SDK maps them to
 * volume offsets; the etcd peer maps each block to one key.
 */
export interface BlockTarget {
  /** Writes `data` at `offsetBytes`; resolves once the write is durable (committed). */
  write(offsetBytes: number, data: Buffer): Promise<void>;
  /** Reads `lengthBytes` at `offsetBytes` (linearizable). */
  read(offsetBytes: number, lengthBytes: number): Promise<unknown>;
}

/** Timing and bounds of one closed-loop workload. */
export interface LoopRunOptions {
  readonly warmupMs: number;
  readonly durationMs: number;
  readonly opsMax: number;
  readonly volumeBytes: number;
  /** The server processes whose CPU is charged to the workload. */
  readonly serverPids: readonly number[];
  readonly seed: number;
  readonly onProgress?: (measuredOps: number, measuredMs: number) => void;
  /** Called when the measured window opens and closes (besides the CPU samples). */
  readonly onWindowStart?: () => void;
  readonly onWindowEnd?: () => void;
}

/** A payload of `sizeBytes` pseudo-random bytes from `seed` (incompressible, reproducible). */
export function payloadOf(sizeBytes: number, seed: number): Buffer {
  const rng = new SeededRandom(seed);
  const buffer = Buffer.allocUnsafe(sizeBytes);
  for (let i = 0; i < sizeBytes; i += 4) buffer.writeUInt32LE(Math.floor(rng.next() * 4294967296), i);
  return buffer;
}

/** Bytes of the pool write payloads are cut from: 8,192 times a 4 KiB write, 32 times a 1 MiB one. */
export const PAYLOAD_POOL_BYTES = 32 * 1024 * 1024;

/**
 * Payloads of `sizeBytes` that differ from write to write, as a volume's real blocks do: views of a
 * seeded pseudo-random pool at a random byte offset each, so no write allocates or generates bytes.
 *
 * Why not one payload for every write: rdl's LevelDB compresses its table blocks (snappy), and a
 * 16 KiB table block of four identical 4 KiB values shrinks about four times; with one payload the
 * bench measured a store that writes a quarter of the table bytes a real volume makes it write.
 * Two writes share bytes only when their offsets are less than `sizeBytes` apart (for 4 KiB
 * writes, about 1 pair in 4,000), so table blocks stay incompressible.
 */
export class PayloadSource {
  private readonly pool: Buffer;

  constructor(
    private readonly sizeBytes: number,
    seed: number,
  ) {
    this.pool = payloadOf(Math.max(PAYLOAD_POOL_BYTES, 2 * sizeBytes), seed);
  }

  /** The next payload: a view, valid as long as this source (the pool is never written again). */
  next(rng: SeededRandom): Buffer {
    const offset = rng.below(this.pool.length - this.sizeBytes + 1);
    return this.pool.subarray(offset, offset + this.sizeBytes);
  }
}

/**
 * The offset of operation `seq` of `worker`: a random aligned block for random workloads; for
 * sequential ones, each worker streams through its own stripe of the volume, wrapping around.
 */
export function offsetOf(
  workload: LoopWorkload,
  volumeBytes: number,
  worker: number,
  seq: number,
  rng: SeededRandom,
): number {
  const blocks = Math.floor(volumeBytes / workload.sizeBytes);
  if (blocks < 1) {
    throw new BenchError(
      'BENCH_ARGS_INVALID',
      `volume of ${volumeBytes} bytes is smaller than one ${workload.name} op`,
    );
  }
  if (workload.pattern === 'random') return rng.below(blocks) * workload.sizeBytes;
  const stripeBlocks = Math.max(1, Math.floor(blocks / workload.concurrency));
  const first = (worker * stripeBlocks) % blocks;
  return ((first + (seq % stripeBlocks)) % blocks) * workload.sizeBytes;
}

/**
 * Runs one closed-loop workload against `target` and returns its figure, with the servers' CPU
 * sampled at the edges of the measured window. Stops early (BENCH_WORKLOAD_FAILED) when more than
 * 1,000 operations fail, or when every operation fails.
 */
export async function runLoopWorkload(
  workload: LoopWorkload,
  target: BlockTarget,
  options: LoopRunOptions,
): Promise<Figure> {
  const payloads = new PayloadSource(workload.sizeBytes, options.seed);
  const rngs = Array.from({ length: workload.concurrency }, (_, i) => new SeededRandom(options.seed * 7919 + i));
  // Separate streams for the payloads, so that offsets and the read/write mix stay what they were.
  const payloadRngs = Array.from(
    { length: workload.concurrency },
    (_, i) => new SeededRandom(options.seed * 104_729 + i),
  );
  let cpuBefore: number | null = null;
  let cpuAfter: number | null = null;
  const result = await runClosedLoop(
    async (worker, seq) => {
      const rng = rngs[worker];
      const offset = offsetOf(workload, options.volumeBytes, worker, seq, rng);
      const isRead = workload.op === 'read' || (workload.op === 'mixed' && rng.below(100) < workload.readPercent);
      if (isRead) await target.read(offset, workload.sizeBytes);
      else await target.write(offset, payloads.next(payloadRngs[worker]));
      return workload.sizeBytes;
    },
    {
      concurrency: workload.concurrency,
      warmupMs: options.warmupMs,
      durationMs: options.durationMs,
      opsMax: options.opsMax,
      errorsMax: 1000,
      onWindowStart: () => {
        cpuBefore = cpuSecondsOf(options.serverPids);
        options.onWindowStart?.();
      },
      onWindowEnd: () => {
        cpuAfter = cpuSecondsOf(options.serverPids);
        options.onWindowEnd?.();
      },
      onProgress: options.onProgress,
    },
  );
  const errorCount = Object.values(result.errors).reduce((a, b) => a + b, 0);
  if (errorCount >= 1000 || (result.ops === 0 && errorCount > 0)) {
    const first = result.firstError;
    throw new BenchError(
      'BENCH_WORKLOAD_FAILED',
      `${workload.name}: ${errorCount} operations failed (${JSON.stringify(result.errors)}); first: ${
        first instanceof Error ? first.message : String(first)
      }`,
      { cause: first },
    );
  }
  return figureOf(result, cpuSecondsPer1kOps(cpuBefore, cpuAfter, result.ops));
}
