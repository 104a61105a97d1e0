import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { CsiErrorCode, csiError } from './errors.js';

/** A volume staged on this node. */
export interface StagedVolume {
  /** The NBD device it is attached on, e.g. /dev/nbd3. */
  devicePath: string;
  stagingTargetPath: string;
  accessType: 'block' | 'mount';
  /** Filesystem on the device (mount volumes), e.g. ext4. */
  fsType?: string;
  /** `capabilityKey` of the capability it was staged with (idempotency check). */
  capabilityKey: string;
}

/** A volume published at a target path. */
export interface PublishedVolume {
  volumeId: string;
  readonly: boolean;
  capabilityKey: string;
  accessMode: string;
}

/**
 * What the node service must remember across calls and restarts for idempotency: which device
 * each staged volume is on, and what is published where. The kernel knows what is mounted, but
 * not which rdl volume an /dev/nbdX serves nor with which capability it was staged.
 */
export interface NodeState {
  version: 1;
  /** By volume id. */
  staged: Record<string, StagedVolume>;
  /** By target path. */
  published: Record<string, PublishedVolume>;
}

/** A fresh state. */
export function emptyNodeState(): NodeState {
  return { version: 1, staged: {}, published: {} };
}

/**
 * The node state as a small JSON file in `stateDir`, replaced atomically: written to a temporary
 * file, fsynced, renamed over the old one and the directory fsynced, so a crash leaves either the
 * old state or the new one, never a torn file. Saves are serialized.
 */
export class NodeStateStore {
  readonly #dir: string;
  readonly #path: string;
  #saving: Promise<void> = Promise.resolve();

  constructor(stateDir: string) {
    this.#dir = stateDir;
    this.#path = join(stateDir, 'node-state.json');
  }

  /** Path of the state file. */
  get path(): string {
    return this.#path;
  }

  /** Reads the state; an absent file is an empty state, an unparsable one STATE_CORRUPT. */
  async load(): Promise<NodeState> {
    let text: string;
    try {
      text = await readFile(this.#path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyNodeState();
      throw csiError(CsiErrorCode.StateCorrupt, `cannot read ${this.#path}: ${(err as Error).message}`, err);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw csiError(CsiErrorCode.StateCorrupt, `${this.#path} is not valid JSON`, err);
    }
    const state = parsed as Partial<NodeState> | null;
    if (
      state === null ||
      typeof state !== 'object' ||
      state.version !== 1 ||
      typeof state.staged !== 'object' ||
      state.staged === null ||
      typeof state.published !== 'object' ||
      state.published === null
    ) {
      throw csiError(CsiErrorCode.StateCorrupt, `${this.#path} is not a version 1 node state`);
    }
    return { version: 1, staged: state.staged, published: state.published };
  }

  /** Durably replaces the state file with `state`. */
  save(state: NodeState): Promise<void> {
    const text = `${JSON.stringify(state, null, 2)}\n`;
    const next = this.#saving.then(() => this.#write(text));
    // The chain must survive a failed save; the caller still sees the failure.
    this.#saving = next.catch(() => undefined);
    return next;
  }

  async #write(text: string): Promise<void> {
    await mkdir(this.#dir, { recursive: true });
    const temporaryPath = `${this.#path}.tmp`;
    const file = await open(temporaryPath, 'w', 0o600);
    try {
      await file.writeFile(text, 'utf8');
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temporaryPath, this.#path);
    const dir = await open(this.#dir, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }
}
