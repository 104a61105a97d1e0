/**
 * Fakes for driving RaftNode in unit tests: a manual clock, an in-memory hub transport (with a
 * per-message filter to drop or observe traffic), an in-memory storage that can stall writes, and
 * an echo state machine with in-memory snapshots read and written in small chunks.
 */
import type {
  Clock,
  Entry,
  HardState,
  PersistedState,
  RaftMessage,
  SnapshotMeta,
  SnapshotReader,
  SnapshotWriter,
  StateMachine,
  Storage,
  Transport,
} from '../../src/api.js';

export class ManualClock implements Clock {
  private nowMs = 0;
  private timers: { at: number; every: number; fn: () => void; isLive: boolean }[] = [];
  now(): number {
    return this.nowMs;
  }
  setInterval(fn: () => void, intervalMs: number): () => void {
    const t = { at: this.nowMs + intervalMs, every: intervalMs, fn, isLive: true };
    this.timers.push(t);
    return () => {
      t.isLive = false;
    };
  }
  setTimeout(fn: () => void, delayMs: number): () => void {
    const t = { at: this.nowMs + delayMs, every: 0, fn, isLive: true };
    this.timers.push(t);
    return () => {
      t.isLive = false;
    };
  }
  /**
   * Moves time forward by `ms` without firing anything, then fires each overdue timer once: what a
   * starved event loop does (Node drops the interval firings it missed).
   */
  stall(ms: number): void {
    this.nowMs += ms;
    for (const t of this.timers) if (t.isLive && t.at < this.nowMs) t.at = this.nowMs;
    this.advance(0);
  }
  /** Advances time by `ms`, firing due timers in time order. */
  advance(ms: number): void {
    const end = this.nowMs + ms;
    for (;;) {
      const due = this.timers.filter((t) => t.isLive && t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (due === undefined) break;
      this.nowMs = due.at;
      if (due.every > 0) due.at += due.every;
      else due.isLive = false;
      due.fn();
    }
    this.nowMs = end;
  }
}

export class Hub {
  readonly handlers = new Map<string, (m: RaftMessage) => void>();
  readonly down = new Set<string>();
  /** Return false to drop a message. */
  filter: (m: RaftMessage) => boolean = () => true;
  transport(id: string): Transport {
    return {
      send: (messages) => {
        for (const m of messages) {
          if (this.down.has(m.from) || this.down.has(m.to) || !this.filter(m)) continue;
          queueMicrotask(() => this.handlers.get(m.to)?.(m));
        }
      },
      onMessage: (handler) => {
        this.handlers.set(id, handler);
      },
    };
  }
}

export class MemoryStorage implements Storage {
  entries: Entry[] = [];
  snapshot: SnapshotMeta | null = null;
  hardState: HardState = { term: 0, vote: null, commit: 0 };
  appendCalls: number[] = [];
  stall: Promise<void> | null = null;
  load(): Promise<PersistedState> {
    return Promise.resolve({ hardState: this.hardState, snapshot: this.snapshot, entries: [...this.entries] });
  }
  async append(entries: readonly Entry[], hardState: HardState | null): Promise<void> {
    this.appendCalls.push(entries.length);
    if (this.stall !== null) await this.stall;
    if (entries.length > 0) {
      const offset = this.snapshot?.index ?? 0;
      this.entries.length = Math.max(0, Math.min(this.entries.length, entries[0].index - 1 - offset));
      this.entries.push(...entries);
    }
    if (hardState !== null) this.hardState = hardState;
  }
  applySnapshot(meta: SnapshotMeta, keepEntriesAfter: boolean): Promise<void> {
    this.snapshot = meta;
    this.entries = keepEntriesAfter ? this.entries.filter((e) => e.index > meta.index) : [];
    return Promise.resolve();
  }
  compact(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

export class EchoMachine implements StateMachine {
  applied = 0;
  log: string[] = [];
  appliedIndex(): Promise<number> {
    return Promise.resolve(this.applied);
  }
  apply(entries: readonly Entry[]): Promise<unknown[]> {
    const out: unknown[] = [];
    for (const e of entries) {
      const s = new TextDecoder().decode(e.data);
      if (s.length > 0) this.log.push(s);
      out.push(s.length === 0 ? undefined : `applied:${s}@${e.index}`);
      this.applied = e.index;
    }
    return Promise.resolve(out);
  }
  openSnapshot(meta: SnapshotMeta): Promise<SnapshotReader> {
    if (meta.index !== this.applied) throw new Error(`snapshot at ${meta.index} but applied ${this.applied}`);
    const bytes = new TextEncoder().encode(JSON.stringify(this.log));
    return Promise.resolve({
      meta,
      read: (position: Uint8Array | null, bytesMax: number) => {
        const start = position === null ? 0 : new DataView(position.buffer).getUint32(0);
        const end = Math.min(bytes.length, start + bytesMax);
        const next = new Uint8Array(4);
        new DataView(next.buffer).setUint32(0, end);
        return Promise.resolve({ data: bytes.subarray(start, end), next: end >= bytes.length ? null : next });
      },
      close: () => Promise.resolve(),
    });
  }
  beginRestore(meta: SnapshotMeta): Promise<SnapshotWriter> {
    const chunks: Uint8Array[] = [];
    this.restoresBegun++;
    return Promise.resolve({
      write: (data: Uint8Array) => {
        chunks.push(data);
        return Promise.resolve();
      },
      commit: () => {
        const all = Buffer.concat(chunks);
        this.log = JSON.parse(new TextDecoder().decode(all)) as string[];
        this.applied = meta.index;
        this.restoresCommitted++;
        return Promise.resolve();
      },
      abort: () => Promise.resolve(),
    });
  }
  restoresBegun = 0;
  restoresCommitted = 0;
}
