import { CsiErrorCode, csiError } from './errors.js';

/**
 * One operation at a time per volume. The CO is supposed to keep one call in flight per volume,
 * but after a CO restart it may not; the spec lets the plugin reject the second call with ABORTED
 * (the CO retries with back-off), which is simpler and safer than queueing host commands.
 * The number of keys held is bounded by `keysMax` (excess calls are ABORTED as well).
 */
export class OperationLocks {
  readonly #held = new Set<string>();
  readonly #keysMax: number;

  constructor(keysMax = 256) {
    this.#keysMax = keysMax;
  }

  /** Runs `fn` holding `key`; fails with OPERATION_PENDING when `key` is already held. */
  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    if (this.#held.has(key)) {
      throw csiError(CsiErrorCode.OperationPending, `an operation on volume ${key} is already in progress`);
    }
    if (this.#held.size >= this.#keysMax) {
      throw csiError(CsiErrorCode.OperationPending, `${this.#keysMax} volume operations already in progress`);
    }
    this.#held.add(key);
    try {
      return await fn();
    } finally {
      this.#held.delete(key);
    }
  }
}
