/**
 * Interaction scripts for the Raft core, in the manner of etcd-raft's `interaction` tests: a small
 * text language drives a cluster of pure cores step by step (which messages are delivered, when
 * disks sync, who crashes), and the run prints a transcript that tests compare with a golden file.
 *
 * Commands (one per line; `#` starts a comment; node arguments are numbers 1..n, ids `n1`..`nN`):
 *
 *   cluster 3 [pre-vote] [check-quorum] [commit-piggyback] [voters=K]
 *                                         create the cluster (must come first); only n1..nK vote
 *   conf N add-voter|add-learner|remove M [...]
 *                                         leader N proposes a membership change (several
 *                                         changes: joint consensus; none: leave the joint config)
 *   campaign N                            N starts an election now
 *   tick N|all [COUNT]                    advance logical time (default 1 tick)
 *   propose N VALUE                       propose `write k=VALUE` on N
 *   read N                                ReadIndex on N (the result prints when served)
 *   transfer N M                          leader N hands leadership to M
 *   deliver [ROUNDS] [except=N]           deliver the messages in flight (default: until none are left);
 *                                         with except=N, messages to N stay in flight, in order
 *   drop                                  drop every message in flight
 *   partition 1 | 2 3                     cut every link between the groups
 *   heal                                  remove every partition
 *   stall N                               N's disk stops syncing (writes stay unsynced)
 *   sync N                                N's disk syncs again (pending writes become durable)
 *   crash N lose-unsynced                 N dies; unsynced writes are lost
 *   restart N                             N starts again from its disk
 *   append N TERM [TERM...]               test setup: write entries of these terms to N's disk
 *                                         (only before the first tick/campaign)
 *   term N T                              test setup: set N's durable term to T
 *   compact N INDEX                       N compacts its log up to INDEX (applied and durable), recording
 *                                         the snapshot metadata on its disk first
 *   status                                role, term, leader, commit, applied and log terms of each node
 *                                         (`snap=I@T` when the log starts after a snapshot)
 *
 * Snapshots are driven as a real driver would, with a synchronous disk: a leader's
 * `snapshotsToSend` becomes one MsgSnap chunk holding its whole state machine at its applied
 * index (it travels like any message: `deliver`, `drop` and partitions apply); a follower writes a
 * received chunk, records the snapshot, restores its state machine, calls `installSnapshot` and
 * answers MsgSnapResp. A follower whose disk is stalled with writes pending skips the chunk (the
 * install must be ordered after them), and says so.
 *
 * Everything is deterministic (a fixed seed for election timeouts), so transcripts are stable.
 */
import type { ConfState, Entry, HardState, NodeId, SnapshotMeta } from '../api.js';
import { EntryType } from '../api.js';
import { MessageType, RaftCore, messageTypeName } from '../core/index.js';
import type { ConfChangeItem, Message, Ready } from '../core/index.js';
import { KvStore, encodeKvCommand } from './kv-state-machine.js';
import { SeededRandom } from './random.js';
import { describeEntry } from './simulator.js';

interface Node {
  readonly id: NodeId;
  readonly index: number;
  core: RaftCore | null;
  /** What survives a crash: `entries[i]` has index `(snapshot?.index ?? 0) + 1 + i`. */
  durable: { hardState: HardState; snapshot: SnapshotMeta | null; entries: Entry[] };
  readonly kv: KvStore;
  isStalled: boolean;
  /** Readies whose writes wait for the disk (stalled), in order. */
  unsynced: Ready[];
  reads: Map<number, number>;
  incarnation: number;
  /** Role and term last printed, so a change is printed once. */
  roleSeen: string;
}

/** Thrown for a malformed script line; the message names the line. */
export class InteractionScriptError extends Error {
  override readonly name = 'InteractionScriptError';
}

/** Runs a script and returns its transcript (each command echoed, then what it caused). */
export function runInteraction(script: string): string {
  return new InteractionEnv().run(script);
}

class InteractionEnv {
  private nodes: Node[] = [];
  private inFlight: Message[] = [];
  private readonly cut = new Set<string>();
  private out: string[] = [];
  private isPreVoteEnabled = false;
  private isCommitPiggybackEnabled = false;
  private isCheckQuorumEnabled = false;
  private requestIds = 0;
  private isStarted = false;
  private conf: ConfState = { voters: [], learners: [], votersOutgoing: [], learnersNext: [] };

  run(script: string): string {
    const lines = script.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i].replace(/#.*/, '').trim();
      if (line === '') continue;
      this.out.push(`> ${line}`);
      try {
        this.execute(line.split(/\s+/));
      } catch (err) {
        if (err instanceof InteractionScriptError) throw new InteractionScriptError(`line ${i + 1}: ${err.message}`);
        throw err;
      }
    }
    return this.out.join('\n') + '\n';
  }

  private print(line: string): void {
    this.out.push(`  ${line}`);
  }

  private node(arg: string | undefined): Node {
    const n = Number(arg);
    if (!Number.isInteger(n) || n < 1 || n > this.nodes.length) throw new InteractionScriptError(`no node ${arg}`);
    return this.nodes[n - 1];
  }

  private live(arg: string | undefined): Node & { core: RaftCore } {
    const node = this.node(arg);
    if (node.core === null) throw new InteractionScriptError(`node ${arg} is down`);
    return node as Node & { core: RaftCore };
  }

  private execute(words: string[]): void {
    const [command, ...args] = words;
    if (command !== 'cluster' && this.nodes.length === 0) throw new InteractionScriptError('start with `cluster N`');
    switch (command) {
      case 'cluster': {
        const count = Number(args[0]);
        if (!Number.isInteger(count) || count < 1 || count > 7) throw new InteractionScriptError('cluster size 1..7');
        const votersArg = args.find((a) => a.startsWith('voters='));
        const voterCount = votersArg === undefined ? count : Number(votersArg.slice('voters='.length));
        if (!Number.isInteger(voterCount) || voterCount < 1 || voterCount > count) {
          throw new InteractionScriptError(`voters=K needs 1 <= K <= ${count}`);
        }
        this.isPreVoteEnabled = args.includes('pre-vote');
        this.isCheckQuorumEnabled = args.includes('check-quorum');
        this.isCommitPiggybackEnabled = args.includes('commit-piggyback');
        for (let i = 0; i < count; i++) {
          this.nodes.push({
            id: `n${i + 1}`,
            index: i,
            core: null,
            durable: { hardState: { term: 0, vote: null, commit: 0 }, snapshot: null, entries: [] },
            kv: new KvStore(),
            isStalled: false,
            unsynced: [],
            reads: new Map(),
            incarnation: 0,
            roleSeen: '',
          });
        }
        this.conf = {
          voters: this.nodes.slice(0, voterCount).map((n) => n.id),
          learners: [],
          votersOutgoing: [],
          learnersNext: [],
        };
        for (const node of this.nodes) this.start(node);
        return;
      }
      case 'append': {
        if (this.isStarted) throw new InteractionScriptError('append is setup: use it before any tick or campaign');
        const node = this.node(args[0]);
        const terms = args.slice(1).map(Number);
        for (const term of terms) {
          const index = node.durable.entries.length + 1;
          const data = encodeKvCommand({ op: 'write', key: 'k', value: `setup-${node.id}-${index}`, id: 0 });
          node.durable.entries.push({ index, term, type: EntryType.Normal, data });
        }
        const lastTerm = Math.max(node.durable.hardState.term, ...terms);
        node.durable.hardState = { ...node.durable.hardState, term: lastTerm };
        this.start(node);
        this.print(`${node.id} log: ${this.logTerms(node)}`);
        return;
      }
      case 'term': {
        if (this.isStarted) throw new InteractionScriptError('term is setup: use it before any tick or campaign');
        const node = this.node(args[0]);
        node.durable.hardState = { ...node.durable.hardState, term: Number(args[1]) };
        this.start(node);
        return;
      }
      case 'campaign': {
        const node = this.live(args[0]);
        this.isStarted = true;
        node.core.campaign();
        this.process(node);
        return;
      }
      case 'tick': {
        this.isStarted = true;
        const count = args[1] === undefined ? 1 : Number(args[1]);
        const targets = args[0] === 'all' ? this.nodes.filter((n) => n.core !== null) : [this.live(args[0])];
        for (let i = 0; i < count; i++) {
          for (const node of targets) {
            if (node.core === null) continue;
            node.core.tick();
            this.process(node);
          }
        }
        return;
      }
      case 'propose': {
        const node = this.live(args[0]);
        const value = args[1] ?? 'v';
        const result = node.core.propose([encodeKvCommand({ op: 'write', key: 'k', value, id: 0 })]);
        this.print(
          result.code === null
            ? `${node.id} proposed k=${value} at ${result.index}@${result.term}`
            : `${node.id} refused: ${result.code} (leader hint ${result.leaderHint ?? 'none'})`,
        );
        this.process(node);
        return;
      }
      case 'read': {
        const node = this.live(args[0]);
        const requestId = ++this.requestIds;
        const result = node.core.readIndex(requestId);
        if (result.code !== null) this.print(`${node.id} read ${requestId} refused: ${result.code}`);
        else node.reads.set(requestId, -1);
        this.process(node);
        return;
      }
      case 'conf': {
        const node = this.live(args[0]);
        const changes: ConfChangeItem[] = [];
        for (let i = 1; i < args.length; i += 2) {
          const type = args[i];
          if (type !== 'add-voter' && type !== 'add-learner' && type !== 'remove') {
            throw new InteractionScriptError(`conf change type ${type}: add-voter, add-learner or remove`);
          }
          changes.push({ type, id: this.node(args[i + 1]).id });
        }
        const result = node.core.proposeConfChange({ changes });
        const what = changes.length === 0 ? 'leave joint' : changes.map((c) => `${c.type} ${c.id}`).join(', ');
        this.print(
          result.code === null
            ? `${node.id} proposed conf change (${what}) at ${result.index}@${result.term}`
            : `${node.id} conf change (${what}) refused: ${result.code}`,
        );
        this.process(node);
        return;
      }
      case 'transfer': {
        const node = this.live(args[0]);
        const to = this.node(args[1]);
        const result = node.core.transferLeadership(to.id);
        this.print(`${node.id} transfer to ${to.id}: ${result.code ?? 'accepted'}`);
        this.process(node);
        return;
      }
      case 'deliver': {
        const exceptArg = args.find((a) => a.startsWith('except='));
        const held = exceptArg === undefined ? null : this.node(exceptArg.slice('except='.length)).id;
        const roundsArg = args.find((a) => !a.startsWith('except='));
        const roundsMax = roundsArg === undefined ? 1000 : Number(roundsArg);
        if (!Number.isInteger(roundsMax) || roundsMax < 1)
          throw new InteractionScriptError(`deliver ${roundsArg}: ROUNDS >= 1`);
        const kept: Message[] = [];
        for (let round = 0; round < roundsMax && this.inFlight.length > 0; round++) {
          const batch = this.inFlight;
          this.inFlight = [];
          for (const m of batch) {
            if (m.to === held) kept.push(m);
            else this.deliver(m);
          }
        }
        this.inFlight = [...kept, ...this.inFlight];
        if (kept.length > 0) this.print(`held ${kept.length} message(s) to ${held}`);
        return;
      }
      case 'drop': {
        this.print(`dropped ${this.inFlight.length} message(s)`);
        this.inFlight = [];
        return;
      }
      case 'partition': {
        const bar = args.indexOf('|');
        if (bar < 0) throw new InteractionScriptError('partition needs `|` between the groups');
        const left = args.slice(0, bar).map((a) => this.node(a).id);
        const right = args.slice(bar + 1).map((a) => this.node(a).id);
        for (const a of left) for (const b of right) this.cut.add(`${a}>${b}`).add(`${b}>${a}`);
        return;
      }
      case 'heal':
        this.cut.clear();
        return;
      case 'stall':
        this.node(args[0]).isStalled = true;
        return;
      case 'sync': {
        const node = this.node(args[0]);
        node.isStalled = false;
        if (node.core !== null) this.syncPending(node);
        return;
      }
      case 'crash': {
        const node: Node = this.live(args[0]);
        if (args[1] !== 'lose-unsynced') throw new InteractionScriptError('crash N lose-unsynced');
        const lost = node.unsynced.filter((rd) => rd.entries.length > 0 || rd.hardState !== null).length;
        this.print(`${node.id} crashed, ${lost} unsynced write(s) lost`);
        node.core = null;
        node.unsynced = [];
        node.reads.clear();
        node.incarnation++;
        // The stall was the process's pending fsync: a new process starts with a working disk.
        node.isStalled = false;
        return;
      }
      case 'restart': {
        const node = this.node(args[0]);
        if (node.core !== null) throw new InteractionScriptError(`node ${args[0]} is up`);
        this.start(node);
        const hs = node.durable.hardState;
        this.print(`${node.id} restarted: term=${hs.term} vote=${hs.vote ?? '-'} log=${this.logTerms(node)}`);
        return;
      }
      case 'compact': {
        const node = this.live(args[0]);
        const index = Number(args[1]);
        const core = node.core;
        const upTo = Math.min(node.kv.appliedIndex, core.log.stableIndex);
        if (!Number.isInteger(index) || index < core.log.firstIndex() || index > upTo) {
          throw new InteractionScriptError(
            `compact ${args[0]} ${args[1]}: INDEX must be in ${core.log.firstIndex()}..${upTo} (in the log, applied and durable)`,
          );
        }
        const meta = core.compact(index);
        // Durable first in a real driver (Storage.applySnapshot(meta, true)); here the disk is synchronous.
        node.durable.entries = node.durable.entries.filter((e) => e.index > index);
        node.durable.snapshot = meta;
        this.print(`${node.id} compacted to ${meta.index}@${meta.term}, log starts at ${core.log.firstIndex()}`);
        this.process(node);
        return;
      }
      case 'status':
        for (const node of this.nodes) this.print(this.status(node));
        return;
      default:
        throw new InteractionScriptError(`unknown command ${command}`);
    }
  }

  private start(node: Node): void {
    node.core = new RaftCore(
      {
        id: node.id,
        electionTimeoutTicks: 10,
        heartbeatTicks: 1,
        isPreVoteEnabled: this.isPreVoteEnabled,
        isCheckQuorumEnabled: this.isCheckQuorumEnabled,
        isProposalForwardingEnabled: false,
        inflightMessagesMax: 256,
        inflightBytesMax: 1 << 20,
        entryBytesMax: 4096,
        appendBatchBytesMax: 64 * 1024,
        uncommittedBytesMax: 1 << 20,
        leaseTicks: 0,
        applyBatchBytesMax: 64 * 1024,
        isCommitPiggybackEnabled: this.isCommitPiggybackEnabled,
        random: new SeededRandom(1, node.index * 31 + node.incarnation),
      },
      {
        hardState: node.durable.hardState,
        snapshot: node.durable.snapshot,
        entries: node.durable.entries.slice(),
        appliedIndex: node.kv.appliedIndex,
        conf: node.durable.snapshot?.conf ?? this.conf,
      },
    );
    node.roleSeen = `${node.core.role}@${node.core.term}`;
  }

  private deliver(m: Message): void {
    const isCut = this.cut.has(`${m.from}>${m.to}`);
    const to = this.nodes.find((n) => n.id === m.to);
    if (isCut || to === undefined || to.core === null) {
      this.print(`${m.from}->${m.to} ${describe(m)} (dropped: ${isCut ? 'partitioned' : 'down'})`);
      return;
    }
    this.print(`${m.from}->${m.to} ${describe(m)}`);
    to.core.step(m);
    this.process(to);
  }

  /** Drains Readies: the same contract as the simulator's driver, with synchronous disks. */
  private process(node: Node): void {
    const core = node.core;
    if (core === null) return;
    while (core.hasReady()) {
      const rd = core.ready();
      for (const m of rd.messages) this.inFlight.push(m);
      // Committed entries handed out are already durable locally: apply them first, so that a
      // nested Ready (after the sync below) cannot apply later entries before these.
      this.applyCommitted(node, rd);
      this.handleSnapshots(node, rd);
      node.unsynced.push(rd);
      if (!node.isStalled) this.syncPending(node);
      else if (rd.entries.length > 0 || rd.hardState !== null) {
        this.print(`${node.id} unsynced: ${describeWrite(rd)}`);
      }
    }
    const role = `${core.role}@${core.term}`;
    if (role !== node.roleSeen) {
      node.roleSeen = role;
      this.print(`${node.id} became ${core.role} at term ${core.term}`);
    }
  }

  private syncPending(node: Node): void {
    const core = node.core!;
    const pending = node.unsynced;
    node.unsynced = [];
    for (const rd of pending) {
      const hs = rd.hardState;
      if (rd.entries.length > 0) {
        node.durable.entries.length = rd.entries[0].index - 1 - (node.durable.snapshot?.index ?? 0);
        node.durable.entries.push(...rd.entries);
      }
      if (hs !== null) node.durable.hardState = hs;
      core.persisted(rd);
      for (const m of rd.messagesAfterPersist) this.inFlight.push(m);
    }
    if (core.hasReady()) this.process(node);
  }

  /** The driver's part of snapshots (see the file comment): send, and receive and install. */
  private handleSnapshots(node: Node, rd: Ready): void {
    const core = node.core!;
    for (const to of rd.snapshotsToSend) {
      const meta = core.snapshotMetaAt(node.kv.appliedIndex);
      this.print(`${node.id} sends ${to} a snapshot at ${meta.index}@${meta.term}`);
      this.inFlight.push({
        type: MessageType.Snap,
        from: node.id,
        to,
        term: core.term,
        logTerm: meta.term,
        index: meta.index,
        entries: [],
        commit: 0,
        reject: false,
        rejectHint: 0,
        context: 0,
        snapshot: { meta, seq: 0, data: node.kv.serialize(), isLast: true },
      });
    }
    for (const m of rd.snapshotChunks) {
      const meta = m.snapshot!.meta;
      if (node.unsynced.length > 0) {
        this.print(`${node.id} skips the snapshot at ${meta.index}@${meta.term}: writes pending on a stalled disk`);
        continue;
      }
      if (!core.isSnapshotUseful(meta)) {
        this.print(`${node.id} skips the snapshot at ${meta.index}@${meta.term}: already applied`);
        continue;
      }
      const isKeepingEntries = core.log.matchTerm(meta.index, meta.term);
      node.durable.entries = isKeepingEntries ? node.durable.entries.filter((e) => e.index > meta.index) : [];
      node.durable.snapshot = meta;
      node.kv.restore(m.snapshot!.data, meta);
      core.installSnapshot(meta, isKeepingEntries, m.from);
      this.print(
        `${node.id} installed the snapshot at ${meta.index}@${meta.term} from ${m.from}` +
          ` (k=${node.kv.values.get('k') ?? 'null'}, ${isKeepingEntries ? 'kept' : 'dropped'} its log suffix)`,
      );
      this.inFlight.push({
        type: MessageType.SnapResp,
        from: node.id,
        to: m.from,
        term: core.term,
        logTerm: 0,
        index: meta.index,
        entries: [],
        commit: 0,
        reject: false,
        rejectHint: 0,
        context: m.snapshot!.seq,
      });
    }
  }

  private applyCommitted(node: Node, rd: Ready): void {
    for (const entry of rd.committedEntries) {
      node.kv.apply(entry);
      if (entry.data.length > 0) this.print(`${node.id} applied ${describeEntry(entry)}`);
    }
    if (rd.committedEntries.length > 0) node.core!.appliedTo(rd.committedEntries[rd.committedEntries.length - 1].index);
    for (const state of rd.readStates) node.reads.set(state.requestId, state.index);
    for (const id of rd.droppedReads) {
      node.reads.delete(id);
      this.print(`${node.id} read ${id} dropped`);
    }
    for (const [id, index] of node.reads) {
      if (index >= 0 && node.kv.appliedIndex >= index) {
        node.reads.delete(id);
        this.print(`${node.id} read ${id} at index ${index}: k=${node.kv.values.get('k') ?? 'null'}`);
      }
    }
  }

  private logTerms(node: Node): string {
    const entries = node.core !== null ? this.coreEntries(node.core) : node.durable.entries.map((e) => e.term);
    return entries.length === 0 ? '(empty)' : entries.join(' ');
  }

  private coreEntries(core: RaftCore): number[] {
    const terms: number[] = [];
    for (let i = core.log.firstIndex(); i <= core.log.lastIndex(); i++) terms.push(core.log.term(i));
    return terms;
  }

  private status(node: Node): string {
    const core = node.core;
    if (core === null) return `${node.id} down, durable log ${this.logTerms(node)}`;
    return (
      `${node.id} ${core.role} term=${core.term} vote=${core.vote ?? '-'} lead=${core.lead ?? '-'} ` +
      `commit=${core.log.committed} applied=${node.kv.appliedIndex} ` +
      (core.snapshotMeta === null ? '' : `snap=${core.snapshotMeta.index}@${core.snapshotMeta.term} `) +
      `log=${this.logTerms(node)} ` +
      describeConf(core.conf()) +
      (node.isStalled ? ' (disk stalled)' : '')
    );
  }
}

function describeConf(conf: ConfState): string {
  let text = `voters=${conf.voters.join(',')}`;
  if (conf.votersOutgoing.length > 0) text += ` outgoing=${conf.votersOutgoing.join(',')}`;
  if (conf.learners.length > 0) text += ` learners=${conf.learners.join(',')}`;
  return text;
}

function describeWrite(rd: Ready): string {
  const parts: string[] = [];
  if (rd.entries.length > 0) parts.push(`entries ${rd.entries.map((e) => `${e.index}@${e.term}`).join(' ')}`);
  if (rd.hardState !== null) parts.push(`hard state term=${rd.hardState.term} vote=${rd.hardState.vote ?? '-'}`);
  if (rd.messagesAfterPersist.length > 0) parts.push(`${rd.messagesAfterPersist.length} message(s) held until synced`);
  return parts.join(', ');
}

function describe(m: Message): string {
  const name = messageTypeName(m.type);
  switch (m.type) {
    case MessageType.App:
      return `${name} t${m.term} prev=${m.index}@${m.logTerm} entries=[${m.entries.map((e) => `${e.index}@${e.term}`).join(' ')}] commit=${m.commit}`;
    case MessageType.AppResp:
      return m.reject
        ? `${name} t${m.term} reject index=${m.index} hint=${m.rejectHint}@${m.logTerm}`
        : `${name} t${m.term} index=${m.index}`;
    case MessageType.Vote:
    case MessageType.PreVote:
      return `${name} t${m.term} last=${m.index}@${m.logTerm}${m.context === 1 ? ' (transfer)' : ''}`;
    case MessageType.VoteResp:
    case MessageType.PreVoteResp:
      return `${name} t${m.term} ${m.reject ? 'reject' : 'grant'}`;
    case MessageType.Heartbeat:
      return `${name} t${m.term} commit=${m.commit}`;
    case MessageType.Snap:
      return `${name} t${m.term} snapshot=${m.index}@${m.logTerm} seq=${m.snapshot!.seq}${m.snapshot!.isLast ? ' last' : ''}`;
    case MessageType.SnapResp:
      return `${name} t${m.term} index=${m.index}${m.reject ? ' reject' : ''}`;
    default:
      return `${name} t${m.term}`;
  }
}
