/**
 * Lowers the CPU priority (raises the nice value) of LevelDB's background thread, the one that
 * flushes memtables and runs every compaction of the process.
 *
 * Why: blocks are random keys, so LevelDB rewrites each 4 KiB block about 15 times on its way down
 * the levels (docs/benchmarks.md measured ~165 MB/s of disk writes per daemon while the cluster
 * took 12 MB/s of 4 KiB writes). That work is deferred: after a burst of writes the three daemons'
 * compaction threads kept about 0.3 of a core each busy for ~12 s on a 2-core machine, and the
 * reads and writes clients were waiting for ran in what was left. Compaction is background work;
 * foreground IO should win the CPU when both want it. LevelDB throttles writers itself when
 * compaction falls behind (a 1 ms delay per write batch from 8 level-0 files, a stop at 12), so
 * a starved compaction thread cannot let the tree grow without bound. Those stops are stalls of a
 * second or more, though, so `CompactionPriorityGovernor` does not wait for them: it watches
 * level 0 and gives the thread the process's own priority back while level 0 holds
 * `boostAtFiles` or more files, until compaction has drained it. RocksDB offers the low priority
 * as `LowerThreadPoolCPUPriority`.
 *
 * How: LevelDB 1.20 (bundled by classic-level) starts that one thread the first time it has work
 * to schedule. Node gives its threads no names, so the thread is found by difference: the
 * process's threads before the database is opened, and after the database has been made to
 * schedule work (a compaction of an empty key range, which also starts the thread on a fresh
 * database). Exactly one new thread is expected; anything else (another platform, no procfs, the
 * thread already running because this process opened a database before) changes nothing and is
 * reported. On Linux, setpriority(2) with a thread id changes that thread alone.
 *
 * Raising a priority back (a lower nice value) is a privilege: an unprivileged process may do it
 * only down to `20 - RLIMIT_NICE` (RLIMIT_NICE is 0 by default: never), or with CAP_SYS_NICE. A
 * thread lowered for good would leave LevelDB's write stops to throttle compaction, so the thread
 * is only lowered when the governor will be able to raise it back: the systemd unit sets
 * `LimitNICE=+0` for that.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import type { Database } from './database.js';

/** Highest nice value (lowest priority) on Linux. */
export const COMPACTION_NICE_MAX = 19;

/** What `lowerCompactionPriority` did. */
export type CompactionPriority =
  | { readonly status: 'lowered'; readonly threadId: number; readonly nice: number }
  | { readonly status: 'unchanged'; readonly reason: string };

/** The ids of this process's threads, or null where /proc/self/task cannot be read. */
export function threadIds(): Set<number> | null {
  try {
    return new Set(readdirSync('/proc/self/task').map(Number));
  } catch {
    return null;
  }
}

/** Bit of CAP_SYS_NICE in the capability sets of /proc/<pid>/status. */
const CAP_SYS_NICE = 23n;

/**
 * Whether this process may set one of its threads back to nice value `target` after raising it:
 * with CAP_SYS_NICE in `status`'s `CapEff`, or with a soft RLIMIT_NICE (`limits`' "Max nice
 * priority") of at least `20 - target`. `status` and `limits` are the texts of /proc/self/status
 * and /proc/self/limits; unreadable or unparsable ones mean no.
 */
export function canRaiseBackTo(target: number, status: string | null, limits: string | null): boolean {
  const capabilities = status?.match(/^CapEff:\s*([0-9a-f]+)$/m)?.[1];
  if (capabilities !== undefined && ((BigInt(`0x${capabilities}`) >> CAP_SYS_NICE) & 1n) === 1n) return true;
  const soft = limits?.match(/^Max nice priority\s+(\d+|unlimited)\s/m)?.[1];
  if (soft === undefined) return false;
  return soft === 'unlimited' || Number(soft) >= 20 - target;
}

function readOrNull(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/**
 * Gives LevelDB's background thread nice value `nice` (1..19). `before` is `threadIds()` taken
 * before `db` was opened, once libuv's thread pool was running (any awaited file operation starts
 * it): the one thread that appears after the database has scheduled work is LevelDB's.
 */
export async function lowerCompactionPriority(
  db: Database,
  before: Set<number> | null,
  nice: number,
): Promise<CompactionPriority> {
  if (!Number.isInteger(nice) || nice < 1 || nice > COMPACTION_NICE_MAX) {
    throw new RangeError(`nice must be an integer in [1, ${COMPACTION_NICE_MAX}], got ${nice}`);
  }
  if (before === null || process.platform !== 'linux') {
    return { status: 'unchanged', reason: 'threads cannot be listed here (Linux /proc/self/task)' };
  }
  const processNice = getPriority();
  if (nice <= processNice) {
    return { status: 'unchanged', reason: `the daemon itself already runs at nice ${processNice}` };
  }
  if (!canRaiseBackTo(processNice, readOrNull('/proc/self/status'), readOrNull('/proc/self/limits'))) {
    return {
      status: 'unchanged',
      reason:
        `the thread could not be given nice ${processNice} back when compaction falls behind: ` +
        `that needs RLIMIT_NICE >= ${20 - processNice} (systemd: LimitNICE=+${processNice}) or CAP_SYS_NICE`,
    };
  }
  // No key sorts below [0x00] .. [0x00, 0x00]: the range is empty, so this only makes LevelDB
  // switch to a fresh (empty) memtable and schedule its flush, which starts the thread.
  await db.compactRange(Buffer.from([0x00]), Buffer.from([0x00, 0x00]));
  const after = threadIds() ?? new Set<number>();
  const created = [...after].filter((id) => !before.has(id));
  if (created.length !== 1) {
    return {
      status: 'unchanged',
      reason: `expected one new thread after opening the database, found ${created.length}`,
    };
  }
  const [threadId] = created;
  try {
    setPriority(threadId, nice);
  } catch (error) {
    return { status: 'unchanged', reason: `setpriority(${threadId}, ${nice}) failed: ${(error as Error).message}` };
  }
  return { status: 'lowered', threadId, nice };
}

/** Options of `CompactionPriorityGovernor`. */
export interface CompactionPriorityGovernorOptions {
  /** The thread `lowerCompactionPriority` found (already at `lowNice`). */
  readonly threadId: number;
  /** Its nice value while compaction keeps up. */
  readonly lowNice: number;
  /**
   * Level-0 files from which the thread runs at the process's priority (default 4, LevelDB's own
   * trigger for compacting level 0; it delays writers from 8 files and stops them at 12). With 6,
   * the bench's 1 MiB writes hit those stops a dozen times per run: compacting six 16 MiB files
   * takes seconds here.
   */
  readonly boostAtFiles?: number;
  /** Level-0 files at or below which it goes back to `lowNice` (default 2). */
  readonly relaxAtFiles?: number;
  /** How often level 0 is looked at (default 100 ms; a 16 MiB memtable fills in ~0.6 s at 25 MB/s). */
  readonly intervalMs?: number;
  /** Number of level-0 files now (default: LevelDB's `leveldb.num-files-at-level0`). */
  readonly level0Files: () => number;
  /** Sets a thread's nice value (default `os.setPriority`; tests substitute one). */
  readonly setNice?: (threadId: number, nice: number) => void;
  /** The nice value of the process, given back while boosted (default `os.getPriority()`). */
  readonly normalNice?: number;
  /** Told when a change of priority failed (the governor then stops). */
  readonly onError?: (error: Error) => void;
}

/**
 * Keeps LevelDB's compaction thread at a low priority while it keeps up, and at the process's
 * priority while level 0 backs up (see the top of this file). `poll()` is what the timer runs.
 */
export class CompactionPriorityGovernor {
  private readonly options: Required<Omit<CompactionPriorityGovernorOptions, 'onError'>> &
    Pick<CompactionPriorityGovernorOptions, 'onError'>;
  private timer: NodeJS.Timeout | null = null;
  private currentNice: number;
  private boostCount = 0;
  private lastLevel0Files = 0;
  private isFailed = false;

  constructor(options: CompactionPriorityGovernorOptions) {
    this.options = {
      boostAtFiles: 4,
      relaxAtFiles: 2,
      intervalMs: 100,
      setNice: setPriority,
      normalNice: getPriority(),
      ...options,
    };
    if (!(this.options.relaxAtFiles < this.options.boostAtFiles)) {
      throw new RangeError('relaxAtFiles must be below boostAtFiles');
    }
    this.currentNice = options.lowNice;
  }

  /** The thread's nice value now. */
  get nice(): number {
    return this.currentNice;
  }

  /** Times the thread was given the process's priority back. */
  get boosts(): number {
    return this.boostCount;
  }

  /** Level-0 files at the last look. */
  get level0Files(): number {
    return this.lastLevel0Files;
  }

  /** Looks at level 0 every `intervalMs` (the timer does not keep the process alive). */
  start(): void {
    if (this.timer !== null || this.isFailed) return;
    this.timer = setInterval(() => this.poll(), this.options.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** One look at level 0, and a change of priority if it crossed a threshold. */
  poll(): void {
    if (this.isFailed) return;
    let files: number;
    try {
      files = this.options.level0Files();
    } catch (error) {
      // A closed database: nothing left to govern.
      this.fail(error as Error);
      return;
    }
    this.lastLevel0Files = files;
    const { lowNice, normalNice, boostAtFiles, relaxAtFiles } = this.options;
    if (this.currentNice === lowNice && files >= boostAtFiles) this.change(normalNice, true);
    else if (this.currentNice !== lowNice && files <= relaxAtFiles) this.change(lowNice, false);
  }

  private change(nice: number, isBoost: boolean): void {
    try {
      this.options.setNice(this.options.threadId, nice);
    } catch (error) {
      this.fail(error as Error);
      return;
    }
    this.currentNice = nice;
    if (isBoost) this.boostCount++;
  }

  private fail(error: Error): void {
    this.isFailed = true;
    this.stop();
    this.options.onError?.(error);
  }
}
