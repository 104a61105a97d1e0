/**
 * The in-memory Raft log of the core. The core keeps the whole uncompacted log in memory (Storage
 * is written through `Ready` and read only at boot), so every read here is an array access.
 *
 * Three cursors split the log: `stableIndex` (durable, as reported by the driver),
 * `handedIndex` (handed to the driver for persistence in a `Ready`) and `lastIndex()`; and two
 * split the committed prefix: `applyHandedIndex` (handed out to apply) and `applied`.
 */
import type { Entry } from '../api.js';
import { assert } from './assert.js';

/** Bytes counted per entry on top of its payload, so that empty entries still weigh something. */
export const ENTRY_OVERHEAD_BYTES = 16;

/** The size an entry counts for in flow control and limits. */
export function entryBytes(entry: Entry): number {
  return entry.data.byteLength + ENTRY_OVERHEAD_BYTES;
}

const NO_ENTRIES: readonly Entry[] = Object.freeze([]);

export class RaftLog {
  /** entries[i] has index `offset + 1 + i`. */
  private entries: Entry[] = [];
  /** The index of the last compacted entry (the snapshot's index), 0 when nothing is compacted. */
  private offset = 0;
  private offsetTerm = 0;
  /** Highest index known durable in Storage. */
  stableIndex = 0;
  /** Highest index handed to the driver for persistence. */
  handedIndex = 0;
  /** Highest index known committed. */
  committed = 0;
  /** Highest committed index handed to the driver to apply. */
  applyHandedIndex = 0;
  /** Highest index the driver reported applied. */
  applied = 0;
  /** Bytes (as counted by {@link entryBytes}) of the entries the last `slice` returned. */
  lastSliceBytes = 0;

  /** Restores the log as loaded from Storage: everything given is durable. */
  constructor(snapshotIndex: number, snapshotTerm: number, entries: readonly Entry[], commit: number, applied: number) {
    this.offset = snapshotIndex;
    this.offsetTerm = snapshotTerm;
    for (let i = 0; i < entries.length; i++) {
      assert(entries[i].index === snapshotIndex + 1 + i, 'stored entries are contiguous after the snapshot');
      this.entries.push(entries[i]);
    }
    const last = this.lastIndex();
    this.stableIndex = last;
    this.handedIndex = last;
    // Applied entries were committed; the persisted commit may lag behind them.
    this.committed = Math.max(commit, applied, snapshotIndex);
    assert(this.committed <= last, `commit ${this.committed} beyond the stored log ${last}`);
    this.applied = Math.max(applied, snapshotIndex);
    this.applyHandedIndex = this.applied;
  }

  firstIndex(): number {
    return this.offset + 1;
  }

  lastIndex(): number {
    return this.offset + this.entries.length;
  }

  lastTerm(): number {
    return this.entries.length === 0 ? this.offsetTerm : this.entries[this.entries.length - 1].term;
  }

  /** The term of the entry at `index`, or -1 when it is compacted or beyond the end. */
  term(index: number): number {
    if (index === this.offset) return this.offsetTerm;
    if (index < this.offset || index > this.offset + this.entries.length) return -1;
    return this.entries[index - this.offset - 1].term;
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  /** The entry at `index` (which must be present). */
  entry(index: number): Entry {
    return this.entries[index - this.offset - 1];
  }

  /** Raft §5.4.1: is a log ending at (`lastIndex`, `term`) at least as up-to-date as ours? */
  isUpToDate(lastIndex: number, term: number): boolean {
    const ourTerm = this.lastTerm();
    return term > ourTerm || (term === ourTerm && lastIndex >= this.lastIndex());
  }

  /** The first index of `entries` that is missing or conflicts with our log, or 0. */
  findConflict(entries: readonly Entry[]): number {
    // The common case is a pure append past our end: nothing to compare.
    if (entries.length === 0) return 0;
    if (entries[0].index > this.lastIndex()) return entries[0].index;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i];
      if (this.term(e.index) !== e.term) return e.index;
    }
    return 0;
  }

  /**
   * The largest index at or below `index` whose term is at or below `term`, and that term. Used by
   * the fast back-off: every entry between the result and `index` can be skipped in one step.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    let i = Math.min(index, this.lastIndex());
    for (; i > this.offset; i--) {
      if (this.entries[i - this.offset - 1].term <= term) break;
    }
    return { index: i, term: this.term(i) };
  }

  /**
   * A follower's append: if our entry at `prevIndex` has `prevTerm`, appends `entries` (truncating
   * a conflicting suffix), advances the commit index to min(commit, last new index) and returns the
   * last new index; otherwise returns -1.
   */
  maybeAppend(prevIndex: number, prevTerm: number, commit: number, entries: readonly Entry[]): number {
    if (!this.matchTerm(prevIndex, prevTerm)) return -1;
    const lastNew = prevIndex + entries.length;
    const conflict = this.findConflict(entries);
    if (conflict !== 0) {
      assert(conflict > this.committed, `conflict at ${conflict} within the committed prefix ${this.committed}`);
      this.append(entries, conflict - (prevIndex + 1));
    }
    this.commitTo(Math.min(commit, lastNew));
    return lastNew;
  }

  /** Appends `entries[from..]`, truncating our suffix from its first index if needed. */
  append(entries: readonly Entry[], from = 0): void {
    if (from >= entries.length) return;
    const first = entries[from].index;
    assert(first > this.offset && first <= this.lastIndex() + 1, `append at ${first} leaves a gap`);
    if (first <= this.lastIndex()) {
      assert(first > this.committed, 'never truncate committed entries');
      this.entries.length = first - this.offset - 1;
      if (this.stableIndex >= first) this.stableIndex = first - 1;
      if (this.handedIndex >= first) this.handedIndex = first - 1;
    }
    for (let i = from; i < entries.length; i++) this.entries.push(entries[i]);
  }

  /** Appends one entry built by the leader (its index must be lastIndex + 1). */
  push(entry: Entry): void {
    this.entries.push(entry);
  }

  /**
   * Entries in [lo, hi] (inclusive), stopping before the total exceeds `bytesMax` but always
   * returning at least one entry when the range is non-empty. Shares the entry objects.
   */
  slice(lo: number, hi: number, bytesMax: number): readonly Entry[] {
    if (lo > hi) return NO_ENTRIES;
    assert(lo > this.offset, `entry ${lo} is compacted`);
    const start = lo - this.offset - 1;
    let end = hi - this.offset; // exclusive
    let bytes = 0;
    for (let i = start; i < end; i++) {
      const size = this.entries[i].data.byteLength + ENTRY_OVERHEAD_BYTES;
      if (bytes + size > bytesMax && i > start) {
        end = i;
        break;
      }
      bytes += size;
    }
    this.lastSliceBytes = bytes;
    return this.entries.slice(start, end);
  }

  commitTo(index: number): void {
    if (index > this.committed) {
      assert(index <= this.lastIndex(), `commit ${index} beyond last index ${this.lastIndex()}`);
      this.committed = index;
    }
  }

  /** Marks entries up to `index` durable, if the entry there still has `term` (it may have been truncated meanwhile). */
  stableTo(index: number, term: number): void {
    if (index > this.stableIndex && this.matchTerm(index, term)) this.stableIndex = index;
  }

  /** Entries committed, durable locally and not yet handed out to apply; advances the cursor. */
  takeCommitted(bytesMax: number): readonly Entry[] {
    const hi = Math.min(this.committed, this.stableIndex);
    if (hi <= this.applyHandedIndex) return NO_ENTRIES;
    const entries = this.slice(this.applyHandedIndex + 1, hi, bytesMax);
    this.applyHandedIndex = entries[entries.length - 1].index;
    return entries;
  }

  hasCommittedToHand(): boolean {
    return Math.min(this.committed, this.stableIndex) > this.applyHandedIndex;
  }

  /** Unstable entries not yet handed out for persistence; advances the cursor. */
  takeUnstable(): readonly Entry[] {
    const last = this.lastIndex();
    if (last <= this.handedIndex) return NO_ENTRIES;
    const entries = this.entries.slice(this.handedIndex - this.offset, last - this.offset);
    this.handedIndex = last;
    return entries;
  }

  appliedTo(index: number): void {
    assert(index <= this.committed, `applied ${index} beyond commit ${this.committed}`);
    if (index > this.applied) this.applied = index;
  }

  /**
   * Drops entries at or below `index` from memory. Only applied and durable entries may go: the
   * caller keeps them elsewhere (a snapshot) if a lagging follower may still need them.
   */
  compact(index: number): void {
    if (index <= this.offset) return;
    assert(index <= this.applied && index <= this.stableIndex, `compact ${index} beyond applied/stable`);
    const term = this.term(index);
    // copyWithin + length rather than splice: splice would allocate an array of the dropped entries.
    const dropped = index - this.offset;
    const kept = this.entries.length - dropped;
    if (kept > 0) this.entries.copyWithin(0, dropped);
    this.entries.length = kept;
    this.offset = index;
    this.offsetTerm = term;
  }

  /**
   * Replaces the log's start with a snapshot at (`index`, `term`) whose state the state machine now
   * holds: entries after it are kept when `isKeepingEntries` (our entry at `index` had `term`),
   * else the whole log is dropped. Everything up to `index` counts as committed and applied.
   */
  restore(index: number, term: number, isKeepingEntries: boolean): void {
    if (isKeepingEntries && this.matchTerm(index, term)) {
      this.entries.splice(0, index - this.offset);
    } else {
      this.entries = [];
      if (this.stableIndex > index) this.stableIndex = index;
      if (this.handedIndex > index) this.handedIndex = index;
    }
    this.offset = index;
    this.offsetTerm = term;
    if (this.stableIndex < index) this.stableIndex = index;
    if (this.handedIndex < index) this.handedIndex = index;
    if (this.committed < index) this.committed = index;
    this.applied = index;
    if (this.applyHandedIndex < index) this.applyHandedIndex = index;
  }

  /** Payload bytes of entries in (lo, hi]. */
  bytesBetween(lo: number, hi: number): number {
    let bytes = 0;
    for (let i = Math.max(lo, this.offset) + 1; i <= hi; i++) bytes += entryBytes(this.entries[i - this.offset - 1]);
    return bytes;
  }
}
