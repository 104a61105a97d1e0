/**
 * A FIFO with O(1) push, shift and unshift (a growable ring buffer), so the IO wait queue does not
 * pay `Array.prototype.shift`'s O(n) copy at every dequeue.
 */
export class Deque<T> {
  private items: (T | undefined)[] = new Array<T | undefined>(16);
  private head = 0;
  private count = 0;

  /** Number of items. */
  get length(): number {
    return this.count;
  }

  /** Appends at the back. */
  push(item: T): void {
    if (this.count === this.items.length) this.grow();
    this.items[(this.head + this.count) % this.items.length] = item;
    this.count++;
  }

  /** Inserts at the front (used to put retried requests ahead of new ones). */
  unshift(item: T): void {
    if (this.count === this.items.length) this.grow();
    this.head = (this.head - 1 + this.items.length) % this.items.length;
    this.items[this.head] = item;
    this.count++;
  }

  /** The front item, or undefined when empty. */
  peek(): T | undefined {
    return this.count === 0 ? undefined : this.items[this.head];
  }

  /** Removes and returns the front item, or undefined when empty. */
  shift(): T | undefined {
    if (this.count === 0) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined;
    this.head = (this.head + 1) % this.items.length;
    this.count--;
    return item;
  }

  /** Keeps only the items for which `keep` is true, in order. */
  filter(keep: (item: T) => boolean): void {
    const kept: T[] = [];
    for (let i = 0; i < this.count; i++) {
      const item = this.items[(this.head + i) % this.items.length] as T;
      if (keep(item)) kept.push(item);
    }
    this.items = new Array<T | undefined>(Math.max(16, this.items.length));
    this.head = 0;
    this.count = 0;
    for (const item of kept) this.push(item);
  }

  /** Calls `visit` on every item, front to back. */
  forEach(visit: (item: T) => void): void {
    for (let i = 0; i < this.count; i++) visit(this.items[(this.head + i) % this.items.length] as T);
  }

  private grow(): void {
    const next = new Array<T | undefined>(this.items.length * 2);
    for (let i = 0; i < this.count; i++) next[i] = this.items[(this.head + i) % this.items.length];
    this.items = next;
    this.head = 0;
  }
}
