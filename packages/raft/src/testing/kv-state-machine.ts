/**
 * An in-memory key-value {@link StateMachine} for the simulator and tests. Its state stands for a
 * durable store: it survives a simulated crash (apply is atomic with the applied index, as the
 * contract requires), so a restarted node resumes from `appliedIndex()`.
 */
import type { Entry, SnapshotMeta, SnapshotReader, SnapshotWriter, StateMachine } from '../api.js';
import { EntryType } from '../api.js';

/** A command of the KV workload. `id` lets a client match its result. */
export type KvCommand =
  | { readonly op: 'write'; readonly key: string; readonly value: string; readonly id: number }
  | { readonly op: 'read'; readonly key: string; readonly id: number };

/** What applying a command returns: for a read, the value (null = absent); for a write, the value written. */
export interface KvResult {
  readonly id: number;
  readonly value: string | null;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Encodes a command as an entry payload. */
export function encodeKvCommand(command: KvCommand): Uint8Array {
  return encoder.encode(JSON.stringify(command));
}

/**
 * Decoded payloads, by identity: in the simulator every node applies the very same `Uint8Array`
 * (messages share entries by reference), so each command is parsed once.
 */
const decoded = new WeakMap<Uint8Array, KvCommand>();

/** Decodes an entry payload; throws on a payload that is not a KV command (a programmer error). */
export function decodeKvCommand(data: Uint8Array): KvCommand {
  const cached = decoded.get(data);
  if (cached !== undefined) return cached;
  const command = JSON.parse(decoder.decode(data)) as KvCommand;
  if (command === null || (command.op !== 'write' && command.op !== 'read')) throw new Error('not a KV command');
  decoded.set(data, command);
  return command;
}

/** FNV-1a over `key NUL value`. */
function pairHash(key: string, value: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  h = Math.imul(h, 0x01000193);
  for (let i = 0; i < value.length; i++) h = Math.imul(h ^ value.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** The synchronous KV store; {@link KvStateMachine} wraps it in the async interface. */
export class KvStore {
  readonly values = new Map<string, string>();
  appliedIndex = 0;
  /**
   * An order-independent digest of the whole state (xor of a hash per key/value pair), kept up to
   * date in O(1) per write, so the simulator can compare replicas' states after every apply.
   */
  digest = 0;

  /** Applies one committed entry (in order, exactly once). Returns the result, undefined for no-ops. */
  apply(entry: Entry): KvResult | undefined {
    if (entry.index !== this.appliedIndex + 1) {
      throw new Error(`KvStore: applying index ${entry.index} after ${this.appliedIndex} (not in order)`);
    }
    this.appliedIndex = entry.index;
    if (entry.type !== EntryType.Normal || entry.data.length === 0) return undefined;
    const command = decodeKvCommand(entry.data);
    if (command.op === 'write') {
      const old = this.values.get(command.key);
      if (old !== undefined) this.digest ^= pairHash(command.key, old);
      this.digest ^= pairHash(command.key, command.value);
      this.values.set(command.key, command.value);
      return { id: command.id, value: command.value };
    }
    return { id: command.id, value: this.values.get(command.key) ?? null };
  }

  /** The whole state as bytes (the snapshot format). */
  serialize(): Uint8Array {
    return encoder.encode(JSON.stringify({ appliedIndex: this.appliedIndex, values: [...this.values] }));
  }

  /** Replaces the whole state with a serialized one. */
  restore(bytes: Uint8Array, meta: SnapshotMeta): void {
    const parsed = JSON.parse(decoder.decode(bytes)) as { values: [string, string][] };
    this.values.clear();
    this.digest = 0;
    for (const [key, value] of parsed.values) {
      this.values.set(key, value);
      this.digest ^= pairHash(key, value);
    }
    this.appliedIndex = meta.index;
  }
}

/** {@link StateMachine} over a {@link KvStore}. */
export class KvStateMachine implements StateMachine {
  constructor(readonly store: KvStore = new KvStore()) {}

  async appliedIndex(): Promise<number> {
    return this.store.appliedIndex;
  }

  async apply(entries: readonly Entry[]): Promise<unknown[]> {
    return entries.map((entry) => this.store.apply(entry));
  }

  async openSnapshot(meta: SnapshotMeta): Promise<SnapshotReader> {
    const bytes = this.store.serialize();
    return {
      meta,
      async read(position, bytesMax) {
        const start = position === null ? 0 : new DataView(position.buffer, position.byteOffset).getUint32(0);
        const end = Math.min(bytes.length, start + Math.max(1, bytesMax));
        let next: Uint8Array | null = null;
        if (end < bytes.length) {
          next = new Uint8Array(4);
          new DataView(next.buffer).setUint32(0, end);
        }
        return { data: bytes.subarray(start, end), next };
      },
      async close() {},
    };
  }

  async beginRestore(meta: SnapshotMeta): Promise<SnapshotWriter> {
    const chunks: Uint8Array[] = [];
    let isDone = false;
    const store = this.store;
    return {
      async write(data) {
        if (isDone) throw new Error('snapshot writer used after commit or abort');
        chunks.push(data.slice());
      },
      async commit() {
        if (isDone) throw new Error('snapshot writer used after commit or abort');
        isDone = true;
        store.restore(Buffer.concat(chunks), meta);
      },
      async abort() {
        isDone = true;
      },
    };
  }
}
