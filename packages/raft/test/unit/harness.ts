/**
 * A tiny synchronous network of RaftCores for unit tests: messages are queued and delivered in
 * order, links can be cut, and each node's durable log is a plain array. Persistence can be held
 * back per node to test what may happen before an fsync completes.
 */
import type { Entry, HardState, NodeId } from '../../src/api.js';
import type { CoreConfig, ForwardResult, Message, ReadState, Ready } from '../../src/core/index.js';
import { RaftCore } from '../../src/core/index.js';

/** A seeded xorshift source, so every test replays exactly. */
export function seededRandom(seed: number): { nextInt(bound: number): number } {
  let s = seed >>> 0 || 1;
  return {
    nextInt(bound: number): number {
      s ^= s << 13;
      s >>>= 0;
      s ^= s >>> 17;
      s ^= s << 5;
      s >>>= 0;
      return s % bound;
    },
  };
}

export function coreConfig(id: NodeId, overrides: Partial<CoreConfig> = {}): CoreConfig {
  return {
    id,
    electionTimeoutTicks: 10,
    heartbeatTicks: 1,
    isPreVoteEnabled: false,
    isCheckQuorumEnabled: false,
    isProposalForwardingEnabled: false,
    inflightMessagesMax: 256,
    inflightBytesMax: 1 << 30,
    entryBytesMax: 1 << 20,
    appendBatchBytesMax: 1 << 20,
    uncommittedBytesMax: 1 << 30,
    leaseTicks: 0,
    applyBatchBytesMax: 1 << 30,
    isCommitPiggybackEnabled: false,
    random: seededRandom(id.charCodeAt(0) * 7919 + id.length),
    ...overrides,
  };
}

export interface SimNode {
  core: RaftCore;
  /** Durable log (what Storage would hold). */
  stored: Entry[];
  hardState: HardState;
  applied: Entry[];
  /** Readies whose write has not completed (when `isHoldingWrites`). */
  held: Ready[];
  isHoldingWrites: boolean;
  /** Read states, dropped reads and forward results the node's Readies carried. */
  readStates: ReadState[];
  droppedReads: number[];
  forwardResults: ForwardResult[];
}

export class Network {
  readonly nodes = new Map<NodeId, SimNode>();
  readonly queue: Message[] = [];
  /** Every message delivered or dropped, for assertions. */
  readonly sent: Message[] = [];
  private readonly cut = new Set<string>();

  constructor(ids: readonly NodeId[], overrides: Partial<CoreConfig> = {}, voters: readonly NodeId[] = ids) {
    for (const id of ids) {
      const core = new RaftCore(coreConfig(id, overrides), {
        hardState: { term: 0, vote: null, commit: 0 },
        snapshot: null,
        entries: [],
        appliedIndex: 0,
        conf: { voters: [...voters], learners: [], votersOutgoing: [], learnersNext: [] },
      });
      this.nodes.set(id, {
        core,
        stored: [],
        hardState: { term: 0, vote: null, commit: 0 },
        applied: [],
        held: [],
        isHoldingWrites: false,
        readStates: [],
        droppedReads: [],
        forwardResults: [],
      });
    }
  }

  core(id: NodeId): RaftCore {
    return this.nodes.get(id)!.core;
  }

  /** Cuts both directions between `a` and `b` (or `a` from everyone when `b` is omitted). */
  isolate(a: NodeId, b?: NodeId): void {
    for (const other of this.nodes.keys()) {
      if (other === a || (b !== undefined && other !== b)) continue;
      this.cut.add(`${a}>${other}`);
      this.cut.add(`${other}>${a}`);
    }
  }

  /** Cuts one direction only. */
  cutOneWay(from: NodeId, to: NodeId): void {
    this.cut.add(`${from}>${to}`);
  }

  heal(): void {
    this.cut.clear();
  }

  /** Processes one node's Ready: persist (unless held), send, apply. */
  process(id: NodeId): void {
    const n = this.nodes.get(id)!;
    while (n.core.hasReady()) {
      const rd = n.core.ready();
      n.readStates.push(...rd.readStates);
      n.droppedReads.push(...rd.droppedReads);
      n.forwardResults.push(...rd.forwardResults);
      for (const m of rd.messages) this.enqueue(m);
      if (n.isHoldingWrites) {
        n.held.push(rd);
      } else {
        this.write(n, rd);
      }
      for (const e of rd.committedEntries) n.applied.push(e);
      if (rd.committedEntries.length > 0) n.core.appliedTo(rd.committedEntries[rd.committedEntries.length - 1].index);
    }
  }

  /** Completes the held writes of `id`, in order. */
  releaseWrites(id: NodeId): void {
    const n = this.nodes.get(id)!;
    n.isHoldingWrites = false;
    const held = n.held;
    n.held = [];
    for (const rd of held) this.write(n, rd);
  }

  private write(n: SimNode, rd: Ready): void {
    if (rd.entries.length > 0) {
      const first = rd.entries[0].index;
      n.stored.length = Math.min(n.stored.length, first - 1);
      for (const e of rd.entries) n.stored.push(e);
    }
    if (rd.hardState !== null) n.hardState = rd.hardState;
    n.core.persisted(rd);
    for (const m of rd.messagesAfterPersist) this.enqueue(m);
  }

  private enqueue(m: Message): void {
    this.sent.push(m);
    if (!this.cut.has(`${m.from}>${m.to}`)) this.queue.push(m);
  }

  /** Delivers messages and processes Readies until quiet (bounded). */
  stabilize(stepsMax = 100000): void {
    for (let step = 0; step < stepsMax; step++) {
      for (const id of this.nodes.keys()) this.process(id);
      const m = this.queue.shift();
      if (m === undefined) return;
      const target = this.nodes.get(m.to);
      if (target !== undefined) target.core.step(m);
    }
    throw new Error('network did not stabilize');
  }

  /** Ticks every node `count` times, stabilizing after each tick. */
  tick(count: number, only?: readonly NodeId[]): void {
    for (let i = 0; i < count; i++) {
      for (const [id, n] of this.nodes) if (only === undefined || only.includes(id)) n.core.tick();
      this.stabilize();
    }
  }

  /** Makes `id` campaign and runs the election to completion. */
  elect(id: NodeId): void {
    this.core(id).campaign();
    this.stabilize();
  }

  leaders(): NodeId[] {
    return [...this.nodes].filter(([, n]) => n.core.role === 'leader').map(([id]) => id);
  }

  propose(id: NodeId, ...payloads: string[]): ReturnType<RaftCore['propose']> {
    const r = this.core(id).propose(payloads.map((p) => new TextEncoder().encode(p)));
    this.stabilize();
    return r;
  }
}

export function text(e: Entry): string {
  return new TextDecoder().decode(e.data);
}
