import { BenchError } from './errors.js';
import type { FioJob } from './fio.js';

/** The systems the harness measures: rdl itself and its two peers. */
export type SystemName = 'rdl' | 'etcd' | 'nbdkit';

/** A closed-loop key-value or block workload driven from Node (rdl's SDK, or etcd's gRPC API). */
export interface LoopWorkload {
  readonly kind: 'loop';
  readonly name: string;
  readonly system: 'rdl' | 'etcd';
  /** What each operation does; `mixed` reads with probability `readPercent`. */
  readonly op: 'write' | 'read' | 'mixed';
  readonly readPercent: number;
  readonly sizeBytes: number;
  readonly concurrency: number;
  /** Random offsets (block-aligned) or one sequential stream per worker. */
  readonly pattern: 'random' | 'sequential';
}

/** An fio job against an NBD server (rdl's agent, or nbdkit's file plugin). */
export interface FioWorkload {
  readonly kind: 'fio';
  readonly name: string;
  readonly system: 'rdl' | 'nbdkit';
  readonly job: FioJob;
}

/** Any workload. */
export type Workload = LoopWorkload | FioWorkload;

/** One line of the report: an rdl workload and the peer workload it is compared with. */
export interface Row {
  readonly rdl: Workload;
  readonly peer: Workload | null;
}

const kib4 = 4096;
const mib1 = 1024 * 1024;

function loop(
  name: string,
  system: 'rdl' | 'etcd',
  op: LoopWorkload['op'],
  sizeBytes: number,
  concurrency: number,
  pattern: LoopWorkload['pattern'] = 'random',
  readPercent = op === 'read' ? 100 : op === 'write' ? 0 : 70,
): LoopWorkload {
  return { kind: 'loop', name, system, op, readPercent, sizeBytes, concurrency, pattern };
}

function fio(name: string, system: 'rdl' | 'nbdkit', job: FioJob): FioWorkload {
  return { kind: 'fio', name, system, job };
}

const randwrite4kQd1: FioJob = { rw: 'randwrite', blockSizeBytes: kib4, iodepth: 1 };
const randwrite4kQd32: FioJob = { rw: 'randwrite', blockSizeBytes: kib4, iodepth: 32 };
const randread4kQd32: FioJob = { rw: 'randread', blockSizeBytes: kib4, iodepth: 32 };
const seqwrite1mQd4: FioJob = { rw: 'write', blockSizeBytes: mib1, iodepth: 4 };

/**
 * Every row of the report, in the order they run. Reads come after the writes on the same system,
 * so that they read written blocks.
 */
export const rows: readonly Row[] = Object.freeze([
  ...[1, 16, 64, 256].map((qd) => ({
    rdl: loop(`sdk-write-4k-qd${qd}`, 'rdl', 'write', kib4, qd),
    peer: loop(`etcd-put-4k-qd${qd}`, 'etcd', 'write', kib4, qd),
  })),
  { rdl: loop('sdk-seqwrite-1m-qd4', 'rdl', 'write', mib1, 4, 'sequential'), peer: null },
  {
    rdl: loop('sdk-read-4k-qd64', 'rdl', 'read', kib4, 64),
    peer: loop('etcd-range-4k-qd64', 'etcd', 'read', kib4, 64),
  },
  {
    rdl: loop('sdk-mixed-70r30w-4k-qd64', 'rdl', 'mixed', kib4, 64),
    peer: loop('etcd-mixed-70r30w-4k-qd64', 'etcd', 'mixed', kib4, 64),
  },
  {
    rdl: fio('nbd-randwrite-4k-qd1', 'rdl', randwrite4kQd1),
    peer: fio('nbdkit-randwrite-4k-qd1', 'nbdkit', randwrite4kQd1),
  },
  {
    rdl: fio('nbd-randwrite-4k-qd32', 'rdl', randwrite4kQd32),
    peer: fio('nbdkit-randwrite-4k-qd32', 'nbdkit', randwrite4kQd32),
  },
  {
    rdl: fio('nbd-seqwrite-1m-qd4', 'rdl', seqwrite1mQd4),
    peer: fio('nbdkit-seqwrite-1m-qd4', 'nbdkit', seqwrite1mQd4),
  },
  {
    rdl: fio('nbd-randread-4k-qd32', 'rdl', randread4kQd32),
    peer: fio('nbdkit-randread-4k-qd32', 'nbdkit', randread4kQd32),
  },
]);

/** Every workload name, rdl's and the peers'. */
export function workloadNames(): string[] {
  return rows.flatMap((row) => (row.peer === null ? [row.rdl.name] : [row.rdl.name, row.peer.name]));
}

/** Group selectors `--only` accepts besides workload names. */
export const groups = ['sdk', 'nbd', 'rdl', 'peers', 'etcd', 'nbdkit'] as const;

/** `selected` without the peers' workloads (`--no-peers`); BENCH_ARGS_INVALID if nothing is left. */
function withoutPeers(selected: Set<string>): Set<string> {
  for (const row of rows) if (row.peer !== null) selected.delete(row.peer.name);
  if (selected.size === 0) {
    throw new BenchError('BENCH_ARGS_INVALID', '--no-peers left no workload to run (--only selected peers only)');
  }
  return selected;
}

/**
 * Resolves `--only` selectors to the set of workload names to run. An rdl workload name or the
 * groups `sdk` and `nbd` select whole rows (rdl and its peer, to keep the comparison); `rdl`
 * selects only rdl's side; `peers`, `etcd`, `nbdkit` or a peer workload's name select only peers.
 * Null selects everything. With `isPeers` false (`--no-peers`) the peers' workloads are dropped
 * afterwards. Unknown selectors, and a selection `--no-peers` leaves empty, are BENCH_ARGS_INVALID.
 */
export function selectWorkloads(only: readonly string[] | null, isPeers = true): Set<string> {
  const selected = new Set<string>();
  if (only === null) {
    for (const name of workloadNames()) selected.add(name);
    return isPeers ? selected : withoutPeers(selected);
  }
  for (const selector of only) {
    let isKnown = false;
    for (const row of rows) {
      const isRowSelected =
        selector === row.rdl.name ||
        (selector === 'sdk' && row.rdl.kind === 'loop') ||
        (selector === 'nbd' && row.rdl.kind === 'fio');
      if (isRowSelected || selector === 'rdl') {
        selected.add(row.rdl.name);
        isKnown = true;
      }
      if (row.peer === null) continue;
      if (isRowSelected || selector === row.peer.name || selector === 'peers' || selector === row.peer.system) {
        selected.add(row.peer.name);
        isKnown = true;
      }
    }
    if (!isKnown && !(groups as readonly string[]).includes(selector)) {
      throw new BenchError(
        'BENCH_ARGS_INVALID',
        `--only: unknown workload "${selector}"; known: ${[...groups, ...workloadNames()].join(', ')}`,
      );
    }
  }
  return isPeers ? selected : withoutPeers(selected);
}

/** The selected workloads of one system, in row order. */
export function workloadsOf(system: SystemName, selected: ReadonlySet<string>): Workload[] {
  const out: Workload[] = [];
  for (const row of rows) {
    for (const workload of [row.rdl, row.peer]) {
      if (workload !== null && workload.system === system && selected.has(workload.name)) out.push(workload);
    }
  }
  return out;
}
