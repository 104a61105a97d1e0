/**
 * What the leader knows about each follower's log, and the flow control of the append pipeline:
 * a follower is probed with one append at a time until its match is known, then replicated with up
 * to `inflightMessagesMax` appends and `inflightBytesMax` bytes in flight.
 */

/** The replication state of one follower as seen by the leader. */
export const ProgressState = {
  /** Match unknown: one append at a time, waiting for the reply (or a heartbeat reply) before the next. */
  Probe: 'probe',
  /** Match known: appends are pipelined within the inflight window. */
  Replicate: 'replicate',
  /** The follower needs a snapshot (issue 3); no appends until it is installed. */
  Snapshot: 'snapshot',
} as const;
export type ProgressState = (typeof ProgressState)[keyof typeof ProgressState];

/**
 * A ring of the appends in flight to one follower: each slot is the last index an append carried
 * and its byte size. Freed when the follower acknowledges an index at or above it.
 */
export class Inflights {
  private readonly lastIndexes: number[];
  private readonly sizes: number[];
  private start = 0;
  /** Appends in flight. */
  count = 0;
  /** Bytes in flight. */
  bytes = 0;

  constructor(
    private readonly countMax: number,
    private readonly bytesMax: number,
  ) {
    this.lastIndexes = new Array<number>(countMax).fill(0);
    this.sizes = new Array<number>(countMax).fill(0);
  }

  isFull(): boolean {
    return this.count >= this.countMax || this.bytes >= this.bytesMax;
  }

  add(lastIndex: number, bytes: number): void {
    const slot = (this.start + this.count) % this.countMax;
    this.lastIndexes[slot] = lastIndex;
    this.sizes[slot] = bytes;
    this.count++;
    this.bytes += bytes;
  }

  /** Frees every append whose last index is at or below `index`. */
  freeLE(index: number): void {
    while (this.count > 0 && this.lastIndexes[this.start] <= index) {
      this.bytes -= this.sizes[this.start];
      this.start = (this.start + 1) % this.countMax;
      this.count--;
    }
  }

  /**
   * Frees the oldest append. Used when a heartbeat reply shows the follower alive while the window
   * is full: an append was probably lost, and without a free slot nothing would ever be sent again
   * to reveal the gap (the follower's rejection of the next append moves it back to Probe).
   */
  freeFirstOne(): void {
    if (this.count === 0) return;
    this.bytes -= this.sizes[this.start];
    this.start = (this.start + 1) % this.countMax;
    this.count--;
  }

  reset(): void {
    this.start = 0;
    this.count = 0;
    this.bytes = 0;
  }
}

export class Progress {
  /** Highest index known to match the leader's log (durable on the follower). */
  match = 0;
  /** Next index to send. */
  next = 1;
  state: ProgressState = ProgressState.Probe;
  /** In Probe: an append was sent and no reply (or heartbeat reply) has come since. */
  isProbeSent = false;
  /** Heard from since the last check-quorum round. */
  isRecentActive = false;
  /** Highest heartbeat round this follower acknowledged in the current term. */
  ackedRound = 0;
  /** In Snapshot: the index of the snapshot being sent. */
  pendingSnapshot = 0;
  readonly inflights: Inflights;

  constructor(
    inflightMessagesMax: number,
    inflightBytesMax: number,
    readonly isLearner: boolean,
  ) {
    this.inflights = new Inflights(inflightMessagesMax, inflightBytesMax);
  }

  /** Forgets everything: used when a node becomes leader. */
  reset(next: number, match: number): void {
    this.match = match;
    this.next = next;
    this.state = ProgressState.Probe;
    this.isProbeSent = false;
    this.isRecentActive = false;
    this.ackedRound = 0;
    this.pendingSnapshot = 0;
    this.inflights.reset();
  }

  becomeProbe(): void {
    // After a snapshot, probing resumes past it: the follower has everything up to it (or will ask again).
    this.next = this.state === ProgressState.Snapshot ? Math.max(this.match, this.pendingSnapshot) + 1 : this.match + 1;
    this.state = ProgressState.Probe;
    this.pendingSnapshot = 0;
    this.isProbeSent = false;
    this.inflights.reset();
  }

  becomeSnapshot(index: number): void {
    this.state = ProgressState.Snapshot;
    this.pendingSnapshot = index;
    this.isProbeSent = false;
    this.inflights.reset();
  }

  becomeReplicate(): void {
    this.state = ProgressState.Replicate;
    this.next = this.match + 1;
    this.isProbeSent = false;
    this.inflights.reset();
  }

  /** Records an acknowledgement of `index`; returns whether match advanced. */
  maybeUpdate(index: number): boolean {
    let isUpdated = false;
    if (this.match < index) {
      this.match = index;
      isUpdated = true;
      this.isProbeSent = false;
    }
    if (this.next < index + 1) this.next = index + 1;
    return isUpdated;
  }

  /**
   * Handles a rejection of the append whose previous index was `rejected`, with the follower's hint
   * `matchHint`. Returns false when the rejection is stale (already superseded).
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === ProgressState.Replicate) {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.isProbeSent = false;
    return true;
  }

  /** Whether no append may be sent now. */
  isPaused(): boolean {
    switch (this.state) {
      case ProgressState.Probe:
        return this.isProbeSent;
      case ProgressState.Replicate:
        return this.inflights.isFull();
      default:
        return true;
    }
  }
}
