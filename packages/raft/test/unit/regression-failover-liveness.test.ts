// Proves design promise 3 on the pure core with the daemon's settings (pre-vote, check-quorum,
// election timeout 10 ticks, heartbeat 1): after the leader of three dies mid-stream, the two
// survivors elect a new leader (one that can commit) within a bounded number of ticks, also when
// their clocks run unevenly (a loaded machine: a node skips ticks), messages are delayed and
// reordered, fsyncs are slow, and the killed node restarts from its durable state before, during or
// after the election. Seeded: each case replays exactly; a failure names its seed and the trace.
// The last test drives real RaftNodes on a clock whose interval timer fires late and drops the
// missed firings, as Node's setInterval does in a starved event loop: the election timeout is
// promised in real time (tickIntervalMs × ticks), so the survivors must still elect within a few
// seconds of clock time.
import test from 'ava';
import type { Clock, Entry, HardState, NodeId } from '../../src/api.js';
import type { Message, Ready } from '../../src/core/index.js';
import { RaftCore } from '../../src/core/index.js';
import { RaftNode } from '../../src/index.js';
import { coreConfig, seededRandom } from './harness.js';
import { EchoMachine, Hub, MemoryStorage } from './node-fakes.js';

const ids: NodeId[] = ['geneva', 'gland', 'lucerne'];
const ELECTION_TICKS = 10;

interface SimNode {
  core: RaftCore;
  /** Durable log and hard state (what LevelDB holds after a SIGKILL). */
  stored: Entry[];
  hardState: HardState;
  /** Writes under way, completed in order when due. */
  writes: { rd: Ready; dueAt: number }[];
  isAlive: boolean;
  /** Probability that this node's timer fires on a given tick (a starved event loop skips ticks). */
  tickChance: number;
}

interface InFlight {
  m: Message;
  dueAt: number;
  /** Incarnation of the sender when sent: messages of a killed process die with it unless on the wire. */
  from: string;
}

class Cluster {
  readonly nodes = new Map<NodeId, SimNode>();
  private flying: InFlight[] = [];
  now = 0;
  readonly trace: string[] = [];
  private readonly rnd: { nextInt(bound: number): number };

  constructor(
    private readonly seed: number,
    private readonly latencyTicksMax: number,
    private readonly fsyncTicksMax: number,
  ) {
    this.rnd = seededRandom(seed * 7919 + 17);
    for (const id of ids) this.boot(id, [], { term: 0, vote: null, commit: 0 });
  }

  chance(p: number): boolean {
    return this.rnd.nextInt(1_000_000) < p * 1_000_000;
  }

  int(bound: number): number {
    return this.rnd.nextInt(bound);
  }

  boot(id: NodeId, stored: Entry[], hardState: HardState): void {
    const core = new RaftCore(
      coreConfig(id, {
        isPreVoteEnabled: true,
        isCheckQuorumEnabled: true,
        electionTimeoutTicks: ELECTION_TICKS,
        heartbeatTicks: 1,
        random: seededRandom(this.seed * 31 + id.length * 1000 + this.now + 1),
      }),
      {
        hardState,
        snapshot: null,
        entries: stored,
        appliedIndex: 0,
        conf: { voters: ids, learners: [], votersOutgoing: [], learnersNext: [] },
      },
    );
    const previous = this.nodes.get(id);
    this.nodes.set(id, {
      core,
      stored: [...stored],
      hardState,
      writes: [],
      isAlive: true,
      tickChance: previous?.tickChance ?? 1,
    });
    this.trace.push(`${this.now}: boot ${id} term=${hardState.term} last=${stored.length}`);
  }

  kill(id: NodeId): void {
    const n = this.nodes.get(id)!;
    n.isAlive = false;
    n.writes = []; // unsynced writes are lost
    this.trace.push(`${this.now}: SIGKILL ${id} (role=${n.core.role} term=${n.core.term})`);
  }

  restart(id: NodeId): void {
    const n = this.nodes.get(id)!;
    this.boot(id, n.stored, n.hardState);
  }

  private send(m: Message): void {
    // Reordering comes from independent random latencies.
    this.flying.push({ m, dueAt: this.now + this.int(this.latencyTicksMax + 1), from: m.from });
  }

  private process(id: NodeId): void {
    const n = this.nodes.get(id)!;
    if (!n.isAlive) return;
    for (let round = 0; round < 64 && n.core.hasReady(); round++) {
      const rd = n.core.ready();
      for (const m of rd.messages) this.send(m);
      const last = n.writes.length > 0 ? n.writes[n.writes.length - 1].dueAt : this.now;
      n.writes.push({ rd, dueAt: Math.max(last, this.now + this.int(this.fsyncTicksMax + 1)) });
    }
    while (n.writes.length > 0 && n.writes[0].dueAt <= this.now) {
      const { rd } = n.writes.shift()!;
      if (rd.entries.length > 0) {
        n.stored.length = Math.min(n.stored.length, rd.entries[0].index - 1);
        for (const e of rd.entries) n.stored.push(e);
      }
      if (rd.hardState !== null) n.hardState = rd.hardState;
      n.core.persisted(rd);
      for (const m of rd.messagesAfterPersist) this.send(m);
      if (rd.committedEntries.length > 0) n.core.appliedTo(rd.committedEntries[rd.committedEntries.length - 1].index);
    }
  }

  /** One tick of virtual time: timers (each with its node's chance), deliveries, Readies, a proposal. */
  step(): void {
    this.now++;
    for (const [, n] of this.nodes) if (n.isAlive && this.chance(n.tickChance)) n.core.tick();
    const due = this.flying.filter((f) => f.dueAt <= this.now);
    this.flying = this.flying.filter((f) => f.dueAt > this.now);
    for (const f of due) {
      const target = this.nodes.get(f.m.to);
      if (target === undefined || !target.isAlive) continue;
      target.core.step(f.m);
    }
    for (const id of ids) this.process(id);
    // The writer keeps proposing to whoever leads (qemu-img's stream of writes).
    for (const [, n] of this.nodes) {
      if (n.isAlive && n.core.role === 'leader') n.core.propose([new Uint8Array(64).fill(this.now & 255)]);
    }
    for (const id of ids) this.process(id);
  }

  /** Drops what a killed node had queued but not yet put on the wire (a fraction of its in-flight messages). */
  dropQueuedFrom(id: NodeId): void {
    this.flying = this.flying.filter((f) => f.from !== id || this.chance(0.5));
  }

  leader(): NodeId | null {
    for (const [id, n] of this.nodes) if (n.isAlive && n.core.role === 'leader') return id;
    return null;
  }

  committed(id: NodeId): number {
    return this.nodes.get(id)!.core.log.committed;
  }

  describe(): string {
    return [...this.nodes]
      .map(
        ([id, n]) =>
          `${id}${n.isAlive ? '' : '(dead)'} role=${n.core.role} term=${n.core.term} lead=${n.core.lead} vote=${n.core.vote} last=${n.core.log.lastIndex()}/${n.core.log.lastTerm()} commit=${n.core.log.committed}`,
      )
      .join('; ');
  }
}

interface Scenario {
  latencyTicksMax: number;
  fsyncTicksMax: number;
  /** Tick chance of each survivor (a loaded machine). */
  tickChances: [number, number];
  /** Ticks after the kill at which the killed node restarts; null: it stays dead. */
  restartAfterTicks: number | null;
}

/** Runs one seeded failover; returns the ticks from the kill until a survivor led and committed, or a failure text. */
function failover(seed: number, s: Scenario): { ticks: number } | { failure: string } {
  const c = new Cluster(seed, s.latencyTicksMax, s.fsyncTicksMax);
  for (let i = 0; i < 2000 && c.leader() === null; i++) c.step();
  const first = c.leader();
  if (first === null) return { failure: `seed ${seed}: no first leader: ${c.describe()}` };
  const warm = 5 + c.int(60);
  for (let i = 0; i < warm; i++) c.step();
  const victim = c.leader();
  if (victim === null) return { failure: `seed ${seed}: leader lost before the kill` };
  const survivors = ids.filter((id) => id !== victim);
  c.nodes.get(survivors[0])!.tickChance = s.tickChances[0];
  c.nodes.get(survivors[1])!.tickChance = s.tickChances[1];
  c.kill(victim);
  c.dropQueuedFrom(victim);
  const killedAt = c.now;
  const commitAtKill = Math.max(...survivors.map((id) => c.committed(id)));
  // Bound: 40 election timeouts of virtual time, i.e. 8 s at 20 ms ticks even for a node that
  // ticks only a third of the time; a live election takes two or three timeouts.
  const limit = 40 * ELECTION_TICKS;
  for (let i = 0; i < limit; i++) {
    if (s.restartAfterTicks !== null && c.now - killedAt === s.restartAfterTicks) c.restart(victim);
    c.step();
    const leader = c.leader();
    if (leader !== null && leader !== victim && c.committed(leader) > commitAtKill) return { ticks: c.now - killedAt };
    if (leader === victim && c.committed(victim) > commitAtKill) return { ticks: c.now - killedAt };
  }
  return { failure: `seed ${seed}: no leader ${limit} ticks after killing ${victim}: ${c.describe()}` };
}

function runMany(t: import('ava').ExecutionContext, seeds: number, s: (seed: number) => Scenario): void {
  let worst = 0;
  const failures: string[] = [];
  for (let seed = 1; seed <= seeds; seed++) {
    const r = failover(seed, s(seed));
    if ('failure' in r) failures.push(r.failure);
    else worst = Math.max(worst, r.ticks);
  }
  t.deepEqual(failures.slice(0, 5), [], `${failures.length} of ${seeds} seeds had no leader in time`);
  t.log(`worst failover: ${worst} ticks`);
}

test('two survivors elect a leader that commits after the leader is killed (even clocks, prompt network)', (t) => {
  runMany(t, 120, () => ({ latencyTicksMax: 0, fsyncTicksMax: 0, tickChances: [1, 1], restartAfterTicks: null }));
});

test('… with delayed, reordered messages and slow fsyncs', (t) => {
  runMany(t, 120, () => ({ latencyTicksMax: 3, fsyncTicksMax: 4, tickChances: [1, 1], restartAfterTicks: null }));
});

test('… with starved, uneven timers (one survivor ticks a third as often as the other)', (t) => {
  runMany(t, 120, (seed) => ({
    latencyTicksMax: 2,
    fsyncTicksMax: 3,
    tickChances: seed % 2 === 0 ? [1, 0.33] : [0.33, 0.6],
    restartAfterTicks: null,
  }));
});

test('… with the killed leader restarting from its durable state before, during or after the election', (t) => {
  runMany(t, 120, (seed) => ({
    latencyTicksMax: 2,
    fsyncTicksMax: 3,
    tickChances: seed % 3 === 0 ? [0.5, 1] : [1, 1],
    restartAfterTicks: [1, 3, 8, 15, 25, 40][seed % 6],
  }));
});

/**
 * A clock whose interval timers fire `lateFactor` times later than asked, once, dropping the
 * firings they missed: what Node's setInterval does when the event loop is starved of CPU (a loaded
 * machine) or busy, while `now()` keeps real time.
 */
class StarvedClock implements Clock {
  private nowMs = 0;
  lateFactor = 1;
  private timers: { at: number; every: number; fn: () => void; isLive: boolean }[] = [];
  now(): number {
    return this.nowMs;
  }
  setInterval(fn: () => void, intervalMs: number): () => void {
    const t = { at: this.nowMs + intervalMs, every: intervalMs, fn, isLive: true };
    this.timers.push(t);
    return () => {
      t.isLive = false;
    };
  }
  setTimeout(fn: () => void, delayMs: number): () => void {
    const t = { at: this.nowMs + delayMs, every: 0, fn, isLive: true };
    this.timers.push(t);
    return () => {
      t.isLive = false;
    };
  }
  advance(ms: number): void {
    const end = this.nowMs + ms;
    for (;;) {
      const due = this.timers.filter((t) => t.isLive && t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (due === undefined) break;
      this.nowMs = due.at;
      if (due.every > 0) due.at = this.nowMs + due.every * this.lateFactor;
      else due.isLive = false;
      due.fn();
    }
    this.nowMs = end;
  }
}

async function yieldTurns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** Kills the leader of three RaftNodes once timers fire `lateFactor`x late; returns the clock ms until a survivor leads. */
async function starvedFailover(seed: number, lateFactor: number): Promise<{ tookMs: number; detail: string }> {
  const tickIntervalMs = 50;
  const clock = new StarvedClock();
  const hub = new Hub();
  const nodes = new Map<NodeId, RaftNode>();
  for (const [i, id] of ids.entries()) {
    const node = await RaftNode.create({
      id,
      peers: ids,
      storage: new MemoryStorage(),
      transport: hub.transport(id),
      stateMachine: new EchoMachine(),
      clock,
      random: seededRandom(seed * 10 + i + 1),
      config: { tickIntervalMs, electionTimeoutTicks: 10, heartbeatTicks: 1 },
    });
    nodes.set(id, node);
  }
  for (const node of nodes.values()) node.start();
  const leaderOf = (among: readonly NodeId[]): NodeId | undefined =>
    among.find((id) => nodes.get(id)!.status().role === 'leader');
  const runUntil = async (cond: () => boolean, msMax: number): Promise<number> => {
    const start = clock.now();
    while (!cond() && clock.now() - start < msMax) {
      clock.advance(10);
      await yieldTurns(3);
    }
    return clock.now() - start;
  };
  await runUntil(() => leaderOf(ids) !== undefined, 10_000);
  const victim = leaderOf(ids);
  if (victim === undefined) throw new Error(`seed ${seed}: no first leader`);
  const survivors = ids.filter((id) => id !== victim);
  // SIGKILL of the leader on a machine so loaded that timers fire late.
  hub.down.add(victim);
  await nodes.get(victim)!.stop();
  clock.lateFactor = lateFactor;
  const tookMs = await runUntil(() => leaderOf(survivors) !== undefined, 60_000);
  const detail = survivors.map((id) => `${id}: ${nodes.get(id)!.status().role} lead=${nodes.get(id)!.status().leader}`);
  for (const id of survivors) await nodes.get(id)!.stop();
  return { tookMs, detail: `seed ${seed}: ${tookMs} ms (${detail.join(', ')})` };
}

test('RaftNode: with a starved event loop (interval timer firing 10x late), the survivors still elect within a few seconds of real time', async (t) => {
  // Design promise 3: a few seconds. With 50 ms ticks the nominal worst case (two timeouts of 19
  // ticks, a pre-vote lost to a survivor still in lease) is about 2 s; allow twice that. Counting
  // timer firings instead of elapsed clock time makes it 10x longer (5-15 s here).
  const boundMs = 4000;
  const results = [];
  for (let seed = 1; seed <= 6; seed++) results.push(await starvedFailover(seed, 10));
  t.log(results.map((r) => r.detail).join('\n'));
  const slow = results.filter((r) => r.tookMs > boundMs).map((r) => r.detail);
  t.deepEqual(slow, [], `no leader within ${boundMs} ms of clock time after the kill`);
});
