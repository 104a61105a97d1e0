/**
 * The storage seen by the NBD server: a `VolumeProvider` opens named volumes and hands out
 * `VolumeHandle`s, one per NBD connection. The server validates every request (range, flags,
 * read-only) before it calls a handle, and handles validate again (public methods validate, then
 * call the implementation), so a handle is safe to use on its own.
 *
 * Errors: handles throw `AgentError` (or any error with a `code`); the server maps the codes to
 * NBD errors with `nbdErrorFor()` in protocol.ts: `AGENT_VOLUME_READ_ONLY` → EPERM,
 * `AGENT_VOLUME_OUT_OF_RANGE` → EINVAL (ENOSPC for writes), anything else → EIO.
 */

/** One volume as `VolumeProvider.list()` reports it (the NBD export list). */
export interface VolumeInfo {
  /** Volume name; also the NBD export name. */
  readonly name: string;
  /** Size in bytes. */
  readonly sizeBytes: number;
}

/** Options of a write. */
export interface WriteOptions {
  /** NBD_CMD_FLAG_FUA: resolve only once the data is on non-volatile storage. */
  readonly isFua: boolean;
}

/** Options of a write-zeroes. */
export interface WriteZeroesOptions extends WriteOptions {
  /** False when the client sent NBD_CMD_FLAG_NO_HOLE: the range must stay fully provisioned
   *  (written zeroes, not a hole). True lets the backend deallocate, as long as it reads back zero. */
  readonly mayTrim: boolean;
}

/** Options of `VolumeProvider.open()`. */
export interface OpenOptions {
  /** Open for reads only: every write, trim or write-zeroes fails with `AGENT_VOLUME_READ_ONLY`. */
  readonly isReadOnly: boolean;
}

/**
 * An open volume. Methods may be called concurrently (many NBD requests are in flight at once);
 * the handle gives no ordering between overlapping concurrent requests, exactly as a disk does not.
 */
export interface VolumeHandle {
  /** Volume name. */
  readonly name: string;
  /** Size in bytes; requests must satisfy `offset + length <= sizeBytes`. */
  readonly sizeBytes: number;
  /** Preferred IO size (a power of two ≥ 512): aligned requests of this size avoid read-modify-write. */
  readonly blockSizeBytes: number;
  /** True when writes are refused (volume or handle read-only). */
  readonly isReadOnly: boolean;
  /**
   * True when a write is acknowledged only once it is durable for every handle of this volume, so
   * that a flush on one connection covers writes acknowledged on all of them. Only then does the
   * NBD server advertise NBD_FLAG_CAN_MULTI_CONN.
   */
  readonly isFlushShared: boolean;
  /**
   * Reads `length` bytes at `offset`; resolves with exactly `length` bytes. The server sends the
   * returned buffer as it is (no copy), so the handle must not modify it afterwards.
   */
  read(offset: number, length: number): Promise<Buffer>;
  /** Writes `data` at `offset`. The caller must not modify `data` until the promise settles. */
  write(offset: number, data: Buffer, options: WriteOptions): Promise<void>;
  /** Makes `length` bytes at `offset` read back as zero. */
  writeZeroes(offset: number, length: number, options: WriteZeroesOptions): Promise<void>;
  /** Hints that the range is no longer needed; its content is then undefined until rewritten. */
  trim(offset: number, length: number, options: WriteOptions): Promise<void>;
  /** Resolves once every write acknowledged before the call is on non-volatile storage. */
  flush(): Promise<void>;
  /**
   * Optional synchronous flush, for handles whose acknowledged writes are already durable (a
   * flush needs no IO, only the handle's own checks). When present the server calls it instead of
   * `flush()` and answers NBD_CMD_FLUSH in the same turn, without a promise per flush. It returns
   * when `flush()` would resolve and throws what `flush()` would reject with.
   */
  flushNow?(): void;
  /** Releases the handle; further calls fail with `AGENT_VOLUME_CLOSED`. Idempotent. */
  close(): Promise<void>;
}

/** Where volumes come from: the in-memory provider for tests, or the rdl cluster via the SDK. */
export interface VolumeProvider {
  /** Opens a volume by name; rejects with `AGENT_VOLUME_NOT_FOUND` when there is none. */
  open(name: string, options: OpenOptions): Promise<VolumeHandle>;
  /** Lists the volumes an NBD client may open (the reply to NBD_OPT_LIST). */
  list(): Promise<VolumeInfo[]>;
}
