/**
 * Wake-ups at sub-millisecond precision without spinning the event loop, for the delay line that
 * emulates inter-region latency (`rdld --peer-delay-ms`, `npm run bench -- --rtt`).
 *
 * Why: Node's timers have 1 ms granularity, and the realistic one-way delays between regions are
 * 0.18-1.25 ms. Waiting them out by re-arming `setImmediate` until a message is due keeps the event
 * loop spinning: three daemons doing that on two cores slowed each other (and the benchmark client)
 * by more than the delays they emulated (docs/benchmarks.md, "Region latency emulation"). Here one
 * worker thread per process sleeps in `Atomics.wait`, whose timeout takes fractional milliseconds,
 * until the earliest due time, then posts a message; the main thread stays idle in its poll until
 * that message arrives and runs the callbacks whose time has come.
 */
import { Worker } from 'node:worker_threads';

/**
 * The worker's loop (CommonJS, evaluated). The main thread publishes the earliest wanted wake-up
 * (epoch ms, `Infinity` for none) in `due[0]` and bumps `control[0]` to wake the worker. After
 * firing, the worker clears `due[0]`; a wake-up the main thread published meanwhile is not lost,
 * because the main thread re-publishes its earliest pending wake-up after every firing.
 */
const WORKER_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads');
const control = new Int32Array(workerData.control);
const due = new Float64Array(workerData.due);
for (;;) {
  const generation = Atomics.load(control, 0);
  const at = due[0];
  const now = performance.timeOrigin + performance.now();
  if (!(at < Infinity)) { Atomics.wait(control, 0, generation); continue; }
  if (now < at) { Atomics.wait(control, 0, generation, at - now); continue; }
  due[0] = Infinity;
  parentPort.postMessage(0);
}
`;

interface Wakeup {
  /** `performance.now()` of this thread at which `callback` may run. */
  readonly dueMs: number;
  readonly callback: () => void;
}

/** Sub-millisecond one-shot wake-ups; see the module comment. Create with `new`, or use `preciseAlarm`. */
export class PreciseAlarm {
  #worker: Worker | null = null;
  readonly #control = new Int32Array(new SharedArrayBuffer(4));
  readonly #due = new Float64Array(new SharedArrayBuffer(8));
  /** Few entries: one per delayed lane (two per peer), so a linear scan is the cheapest. */
  readonly #pending = new Set<Wakeup>();

  /**
   * Runs `callback` once, on this thread, no earlier than `dueMs` (`performance.now()` time).
   * Returns a function that cancels it if it has not run yet.
   */
  schedule(dueMs: number, callback: () => void): () => void {
    const wakeup: Wakeup = { dueMs, callback };
    this.#pending.add(wakeup);
    this.#publish();
    return () => {
      if (this.#pending.delete(wakeup)) this.#publish();
    };
  }

  /** Wake-ups scheduled and not yet run or cancelled (for tests). */
  get pendingCount(): number {
    return this.#pending.size;
  }

  #publish(): void {
    let earliest = Infinity;
    for (const wakeup of this.#pending) if (wakeup.dueMs < earliest) earliest = wakeup.dueMs;
    if (earliest === Infinity && this.#worker === null) return;
    this.#ensureWorker();
    // Like a timer, a pending wake-up keeps the process alive; an idle alarm does not.
    if (earliest === Infinity) this.#worker!.unref();
    else this.#worker!.ref();
    this.#due[0] = earliest === Infinity ? Infinity : performance.timeOrigin + earliest;
    Atomics.add(this.#control, 0, 1);
    Atomics.notify(this.#control, 0);
  }

  #ensureWorker(): void {
    if (this.#worker !== null) return;
    this.#due[0] = Infinity;
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { control: this.#control.buffer, due: this.#due.buffer },
    });
    worker.on('message', () => this.#fire());
    this.#worker = worker;
  }

  #fire(): void {
    const now = performance.now();
    const due: Wakeup[] = [];
    for (const wakeup of this.#pending) if (wakeup.dueMs <= now) due.push(wakeup);
    // In due order, whatever the order they were scheduled in.
    due.sort((a, b) => a.dueMs - b.dueMs);
    for (const wakeup of due) {
      this.#pending.delete(wakeup);
      wakeup.callback();
    }
    this.#publish();
  }
}

/** The process-wide alarm the transport's delay lines share (one worker thread at most). */
export const preciseAlarm = new PreciseAlarm();
