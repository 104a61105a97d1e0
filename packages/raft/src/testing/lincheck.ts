/**
 * A linearizability checker for histories of a key-value register (`write k v`, `read k -> v | null`),
 * in the style of Wing & Gong with Lowe's memoization, as Porcupine does it:
 *
 * - the history is partitioned per key (a register per key is independent, so a history is
 *   linearizable iff every key's sub-history is);
 * - each key's operations become call/return events sorted by time; the search tries to linearize
 *   a pending call, backtracks at a return it could not reach, and never revisits a
 *   (set of linearized operations, register value) pair it has already explored;
 * - an operation whose outcome is unknown (`return: null`) may have taken effect at any time after
 *   its call, or never: it gets an infinite return time, and linearizing a write last is the same
 *   as it never taking effect. A read whose outcome is unknown constrains nothing and is dropped.
 *
 * Ties: an operation that returns at the same time another is called counts as concurrent with it,
 * so a coarse clock never produces a false "not linearizable".
 *
 * The search is bounded by a step budget; running out is reported as `inconclusive`, distinct
 * from a violation.
 */

/** One client operation, as recorded by a simulated or real client. */
export interface HistoryOperation {
  /** Who issued it; operations of one client should not overlap, but the checker does not rely on it. */
  readonly client: number | string;
  readonly op: 'write' | 'read';
  readonly key: string;
  /** For a write: the value written. For a read: the value it returned (null = key absent). */
  readonly value: string | null;
  /** When the operation was invoked (any monotonic unit). */
  readonly call: number;
  /** When it completed, or null if its outcome is unknown (timed out, connection lost, crashed). */
  readonly return: number | null;
}

/** The verdict on a history. */
export type LincheckResult =
  | { readonly ok: true }
  | {
      readonly ok: false;
      /** `violation`: proven not linearizable. `inconclusive`: the step budget ran out first. */
      readonly kind: 'violation' | 'inconclusive';
      readonly key: string;
      /** Human-readable: the smallest window of operations on `key` that cannot be linearized. */
      readonly explanation: string;
      /** The operations of that window, in call order (the whole key history if inconclusive). */
      readonly window: readonly HistoryOperation[];
    };

/** Options of {@link checkLinearizable}. */
export interface LincheckOptions {
  /** Search steps allowed per key before the verdict is `inconclusive`. Default 2,000,000. */
  readonly stepsMax?: number;
  /** Largest key history for which the explanation window is searched exhaustively. Default 64. */
  readonly explainOperationsMax?: number;
}

type Value = string | null;

interface Op {
  readonly id: number;
  readonly isWrite: boolean;
  readonly value: Value;
  readonly call: number;
  /** Infinity when the outcome is unknown. */
  readonly ret: number;
}

/** A node of the doubly linked list of call/return events the search lifts entries out of. */
interface Event {
  readonly op: Op;
  readonly isCall: boolean;
  readonly time: number;
  /** For a call, its return event. */
  match: Event | null;
  prev: Event | null;
  next: Event | null;
}

type SearchOutcome = 'ok' | 'violation' | 'inconclusive';

class StepBudget {
  constructor(public stepsLeft: number) {}
}

/**
 * Decides whether the operations of one key, starting from any of `initialValues`, can be
 * linearized. Every operation must be linearized (unknown-outcome writes may go last).
 */
function searchKey(ops: readonly Op[], initialValues: readonly Value[], budget: StepBudget): SearchOutcome {
  if (ops.length === 0) return 'ok';
  let sawInconclusive = false;
  for (const initial of initialValues) {
    const outcome = searchFrom(ops, initial, budget);
    if (outcome === 'ok') return 'ok';
    if (outcome === 'inconclusive') sawInconclusive = true;
  }
  return sawInconclusive ? 'inconclusive' : 'violation';
}

function buildEvents(ops: readonly Op[]): Event {
  const events: Event[] = [];
  for (const op of ops) {
    const call: Event = { op, isCall: true, time: op.call, match: null, prev: null, next: null };
    const ret: Event = { op, isCall: false, time: op.ret, match: null, prev: null, next: null };
    call.match = ret;
    events.push(call, ret);
  }
  // Calls before returns at equal times: touching intervals are concurrent.
  events.sort((a, b) => a.time - b.time || (a.isCall === b.isCall ? a.op.id - b.op.id : a.isCall ? -1 : 1));
  const head: Event = {
    op: { id: -1, isWrite: false, value: null, call: -Infinity, ret: -Infinity },
    isCall: false,
    time: -Infinity,
    match: null,
    prev: null,
    next: null,
  };
  let prev = head;
  for (const event of events) {
    prev.next = event;
    event.prev = prev;
    prev = event;
  }
  return head;
}

function lift(call: Event): void {
  call.prev!.next = call.next;
  if (call.next) call.next.prev = call.prev;
  const ret = call.match!;
  ret.prev!.next = ret.next;
  if (ret.next) ret.next.prev = ret.prev;
}

function unlift(call: Event): void {
  const ret = call.match!;
  ret.prev!.next = ret;
  if (ret.next) ret.next.prev = ret;
  call.prev!.next = call;
  if (call.next) call.next.prev = call;
}

/**
 * The memo of explored configurations: (set of linearized operations, register value). Keyed by a
 * Zobrist hash of the set (xor of one random word per operation) mixed with the value's number,
 * with exact comparison within a bucket.
 */
class Memo {
  private readonly buckets = new Map<number, { bits: Uint32Array; valueId: number }[]>();
  /** Adds the configuration; false if it was already there. */
  add(hash: number, bits: Uint32Array, valueId: number): boolean {
    const key = (hash ^ Math.imul(valueId + 1, 0x9e3779b1)) >>> 0;
    let bucket = this.buckets.get(key);
    if (bucket === undefined) this.buckets.set(key, (bucket = []));
    for (const known of bucket) {
      if (known.valueId === valueId && equalBits(known.bits, bits)) return false;
    }
    bucket.push({ bits: bits.slice(), valueId });
    return true;
  }
}

function equalBits(a: Uint32Array, b: Uint32Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Deterministic per-operation hash words (mulberry32 from a fixed seed), so runs are reproducible. */
function zobristWords(count: number): Uint32Array {
  const words = new Uint32Array(count);
  let seed = 0x2545f491;
  for (let i = 0; i < count; i++) {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    words[i] = (t ^ (t >>> 14)) >>> 0;
  }
  return words;
}

function searchFrom(ops: readonly Op[], initial: Value, budget: StepBudget): SearchOutcome {
  // Ids are re-numbered 0..n-1 by the caller, so a bitset indexes them directly.
  const linearized = new Uint32Array(Math.ceil(ops.length / 32));
  const zobrist = zobristWords(ops.length);
  const valueIds = new Map<Value, number>();
  const valueId = (value: Value): number => {
    let id = valueIds.get(value);
    if (id === undefined) valueIds.set(value, (id = valueIds.size));
    return id;
  };
  const memo = new Memo();
  const stack: { call: Event; state: Value }[] = [];
  const head = buildEvents(ops);
  let hash = 0;
  let state = initial;
  let entry = head.next;
  while (head.next !== null) {
    if (--budget.stepsLeft < 0) return 'inconclusive';
    if (entry === null) throw new Error('lincheck: ran off the event list (internal error)');
    if (entry.isCall) {
      const op = entry.op;
      const isLegal = op.isWrite || op.value === state;
      if (isLegal) {
        const nextState = op.isWrite ? op.value : state;
        linearized[op.id >>> 5] |= 1 << (op.id & 31);
        const nextHash = (hash ^ zobrist[op.id]) >>> 0;
        if (memo.add(nextHash, linearized, valueId(nextState))) {
          stack.push({ call: entry, state });
          state = nextState;
          hash = nextHash;
          lift(entry);
          entry = head.next;
          continue;
        }
        linearized[op.id >>> 5] &= ~(1 << (op.id & 31));
      }
      entry = entry.next;
    } else {
      // A return whose call is still pending: something before it had to be linearized first.
      const top = stack.pop();
      if (top === undefined) return 'violation';
      state = top.state;
      const op = top.call.op;
      linearized[op.id >>> 5] &= ~(1 << (op.id & 31));
      hash = (hash ^ zobrist[op.id]) >>> 0;
      unlift(top.call);
      entry = top.call.next;
    }
  }
  return 'ok';
}

function toOps(history: readonly HistoryOperation[]): Op[] {
  const ops: Op[] = [];
  for (const h of history) {
    if (h.op === 'read' && h.return === null) continue; // an unknown read constrains nothing
    ops.push({
      id: ops.length,
      isWrite: h.op === 'write',
      value: h.value,
      call: h.call,
      ret: h.return === null ? Infinity : h.return,
    });
  }
  return ops;
}

function renumber(ops: readonly Op[]): Op[] {
  return ops.map((op, id) => ({ ...op, id }));
}

/**
 * What surrounds the window ops[i..j] (call order): the writes outside it that may take effect in
 * its middle, and the values the register may hold when it starts.
 */
function windowContext(ops: readonly Op[], i: number, j: number): { overlapping: number[]; initialValues: Value[] } {
  const windowReturnMax = Math.max(...ops.slice(i, j + 1).map((op) => op.ret));
  const callStart = ops[i].call;
  const overlapping: number[] = [];
  const initialValues = new Set<Value>([null]);
  for (let k = 0; k < ops.length; k++) {
    if (k >= i && k <= j) continue;
    const op = ops[k];
    if (!op.isWrite) continue;
    // A write still running when the window starts, or starting before the window ends, may take
    // effect in the middle of it.
    const isOverlapping = k < i ? op.ret >= callStart : op.call <= windowReturnMax;
    if (isOverlapping) overlapping.push(k);
    // Whatever a write before the window (or overlapping it) left is a possible starting value.
    if (k < i || isOverlapping) initialValues.add(op.value);
  }
  return { overlapping, initialValues: [...initialValues] };
}

/**
 * Checks the window ops[i..j] soundly: if it fails, the whole history fails. Overlapping writes are
 * included as operations that may also never take effect (their effect before the window is
 * covered by the possible initial values).
 */
function checkWindow(ops: readonly Op[], i: number, j: number, budget: StepBudget): SearchOutcome {
  const { overlapping, initialValues } = windowContext(ops, i, j);
  const extra = overlapping.map((k) => ({ ...ops[k], ret: Infinity }));
  return searchKey(renumber([...ops.slice(i, j + 1), ...extra]), initialValues, budget);
}

function describe(h: HistoryOperation): string {
  const value = h.value === null ? 'null' : JSON.stringify(h.value);
  const what = h.op === 'write' ? `write ${value}` : `read -> ${value}`;
  const ret = h.return === null ? 'unknown' : String(h.return);
  return `client ${String(h.client)} ${what} [call ${h.call}, return ${ret}]`;
}

function explain(
  key: string,
  window: readonly HistoryOperation[],
  overlapping: readonly HistoryOperation[],
  isWholeHistory: boolean,
): string {
  const lines = [
    isWholeHistory
      ? `key ${JSON.stringify(key)}: these ${window.length} operations (the key's whole history, from an empty register) cannot be linearized:`
      : `key ${JSON.stringify(key)}: these ${window.length} operations cannot be linearized, whatever the register held before them:`,
    ...window.map((h) => `  ${describe(h)}`),
  ];
  if (overlapping.length > 0) {
    lines.push('even allowing any of these overlapping writes to take effect at any point (or not at all):');
    lines.push(...overlapping.map((h) => `  ${describe(h)}`));
  }
  return lines.join('\n');
}

/** Finds the smallest window (contiguous in call order) of a failing key history that still fails. */
function smallestWindow(ops: readonly Op[], explainOperationsMax: number, stepsMax: number): [number, number] {
  const n = ops.length;
  let lo = 0;
  let hi = n - 1;
  // One budget for the whole explanation search: when it runs out, the smallest window found so
  // far is reported (still a sound witness, maybe not the smallest).
  const budget = new StepBudget(stepsMax * 4);
  const fails = (i: number, j: number): boolean => {
    if (budget.stepsLeft <= 0) return false;
    const window = new StepBudget(Math.min(stepsMax, budget.stepsLeft));
    const outcome = checkWindow(ops, i, j, window);
    budget.stepsLeft -= Math.min(stepsMax, budget.stepsLeft) - Math.max(0, window.stepsLeft);
    return outcome === 'violation';
  };
  // A long history is first shrunk greedily: the shortest failing prefix, then the latest start
  // that still fails. Short windows are cheap to check, so a short range is searched exhaustively.
  if (n > explainOperationsMax) {
    while (hi > lo && fails(lo, hi - 1)) hi--;
    while (lo < hi && fails(lo + 1, hi)) lo++;
    if (hi - lo + 1 > explainOperationsMax) return [lo, hi];
  }
  // Then exhaustively, by increasing length, within that range.
  for (let length = 1; length <= hi - lo; length++) {
    for (let i = lo; i + length - 1 <= hi; i++) {
      if (fails(i, i + length - 1)) return [i, i + length - 1];
    }
  }
  return [lo, hi];
}

/**
 * Checks a history of key-value register operations for linearizability. Each key starts absent
 * (null). Returns `{ ok: true }`, or the first failing key (in sorted key order) with the smallest
 * window of its operations that cannot be linearized. The input is not modified.
 */
export function checkLinearizable(history: readonly HistoryOperation[], options: LincheckOptions = {}): LincheckResult {
  const stepsMax = options.stepsMax ?? 2_000_000;
  const explainOperationsMax = options.explainOperationsMax ?? 64;
  const byKey = new Map<string, HistoryOperation[]>();
  for (const h of history) {
    if (h.op === 'read' && h.return === null) continue;
    let list = byKey.get(h.key);
    if (!list) byKey.set(h.key, (list = []));
    list.push(h);
  }
  let inconclusive: LincheckResult | null = null;
  for (const key of [...byKey.keys()].sort()) {
    const keyHistory = byKey
      .get(key)!
      .slice()
      .sort((a, b) => a.call - b.call);
    const ops = toOps(keyHistory);
    const outcome = searchKey(ops, [null], new StepBudget(stepsMax));
    if (outcome === 'ok') continue;
    if (outcome === 'inconclusive') {
      inconclusive ??= {
        ok: false,
        kind: 'inconclusive',
        key,
        explanation: `key ${JSON.stringify(key)}: search gave up after ${stepsMax} steps over ${ops.length} operations (neither proven linearizable nor not)`,
        window: keyHistory,
      };
      continue;
    }
    const [i, j] = smallestWindow(ops, explainOperationsMax, stepsMax);
    const window = keyHistory.slice(i, j + 1);
    const overlapping = windowContext(ops, i, j).overlapping.map((k) => keyHistory[k]);
    const isWholeHistory = i === 0 && j === ops.length - 1;
    return {
      ok: false,
      kind: 'violation',
      key,
      explanation: explain(key, window, overlapping, isWholeHistory),
      window,
    };
  }
  return inconclusive ?? { ok: true };
}
