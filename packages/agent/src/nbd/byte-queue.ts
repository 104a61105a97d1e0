/**
 * A FIFO of received socket chunks that parses without copying when it can: a header that lies
 * inside one chunk is read in place, and a payload inside one chunk is returned as a view
 * (`subarray`) of it. Bytes are copied only when a header or payload straddles chunk boundaries.
 *
 * Node hands every `data` event a fresh Buffer, so views stay valid after the queue moves on.
 */
export class ByteQueue {
  readonly #chunks: Buffer[] = [];
  /** Read position inside `#chunks[0]`. */
  #offset = 0;
  /** Bytes queued and not yet consumed. */
  length = 0;

  /** Appends a received chunk. */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.length += chunk.length;
  }

  /**
   * Makes the next `n` bytes (n ≤ length) contiguous and returns the buffer holding them; they
   * start at `headOffset`. Copies only when they straddle chunks.
   */
  contiguous(n: number): Buffer {
    if (n > this.length) throw new RangeError(`contiguous(${n}) with only ${this.length} bytes queued`);
    const first = this.#chunks[0];
    if (first.length - this.#offset >= n) return first;
    const merged = this.#copyOut(n);
    // The read position belongs to the chunk at the front; fold it into a view before the merged
    // buffer takes the front, or the partly read chunk would be read again from its start.
    if (this.#offset > 0) this.#chunks[0] = this.#chunks[0].subarray(this.#offset);
    this.#chunks.unshift(merged);
    this.#offset = 0;
    this.length += n;
    return merged;
  }

  /** Offset of the next unread byte inside the buffer `contiguous()` returned. */
  get headOffset(): number {
    return this.#offset;
  }

  /** Discards `n` bytes (n ≤ length). */
  skip(n: number): void {
    if (n > this.length) throw new RangeError(`skip(${n}) with only ${this.length} bytes queued`);
    this.length -= n;
    while (n > 0) {
      const first = this.#chunks[0];
      const available = first.length - this.#offset;
      if (n < available) {
        this.#offset += n;
        return;
      }
      n -= available;
      this.#chunks.shift();
      this.#offset = 0;
    }
  }

  /** Removes and returns the next `n` bytes (n ≤ length): a view when they lie in one chunk. */
  take(n: number): Buffer {
    if (n > this.length) throw new RangeError(`take(${n}) with only ${this.length} bytes queued`);
    if (n === 0) return Buffer.alloc(0);
    const first = this.#chunks[0];
    if (first.length - this.#offset >= n) {
      const view = first.subarray(this.#offset, this.#offset + n);
      this.skip(n);
      return view;
    }
    return this.#copyOut(n);
  }

  /** Copies the next `n` bytes into a new buffer and consumes them. */
  #copyOut(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let copied = 0;
    while (copied < n) {
      const first = this.#chunks[0];
      const available = first.length - this.#offset;
      const count = Math.min(available, n - copied);
      first.copy(out, copied, this.#offset, this.#offset + count);
      copied += count;
      if (count === available) {
        this.#chunks.shift();
        this.#offset = 0;
      } else {
        this.#offset += count;
      }
    }
    this.length -= n;
    return out;
  }
}
