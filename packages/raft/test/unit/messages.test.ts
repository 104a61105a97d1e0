// Proves that isWellFormedMessage, which the driver applies to everything arriving from the
// network, accepts the messages the core produces and rejects malformed ones (wrong types,
// negative or fractional counts, gaps or decreasing terms in appended entries, misaddressed
// messages, malformed snapshot chunks) instead of letting them trip the core's assertions.
import test from 'ava';
import type { Entry } from '../../src/api.js';
import type { Message } from '../../src/core/index.js';
import { MessageType, isWellFormedMessage } from '../../src/core/index.js';
import { Network } from './harness.js';

const entry = (index: number, term: number): Entry => ({ index, term, type: 0, data: new Uint8Array(1) });
const app: Message = {
  type: MessageType.App,
  from: 'a',
  to: 'b',
  term: 3,
  logTerm: 1,
  index: 4,
  entries: [entry(5, 2), entry(6, 3)],
  commit: 4,
  reject: false,
  rejectHint: 0,
  context: 0,
};

test('every message a real cluster exchanges is well formed', (t) => {
  const net = new Network(['a', 'b', 'c'], { isPreVoteEnabled: true, isCheckQuorumEnabled: true });
  net.tick(30);
  net.propose(net.leaders()[0], 'x', 'y');
  net.tick(3);
  t.true(net.sent.length > 10);
  for (const m of net.sent) t.true(isWellFormedMessage(m, m.to), JSON.stringify(m));
});

test('malformed messages are rejected', (t) => {
  t.true(isWellFormedMessage(app, 'b'));
  t.false(isWellFormedMessage(app, 'c'), 'addressed to another node');
  t.false(isWellFormedMessage({ ...app, from: 'b' }, 'b'), 'from itself');
  t.false(isWellFormedMessage({ ...app, type: 99 }, 'b'));
  t.false(isWellFormedMessage({ ...app, term: -1 }, 'b'));
  t.false(isWellFormedMessage({ ...app, commit: 1.5 }, 'b'));
  t.false(isWellFormedMessage({ ...app, entries: [entry(6, 2)] }, 'b'), 'gap after index');
  t.false(isWellFormedMessage({ ...app, entries: [entry(5, 3), entry(6, 2)] }, 'b'), 'decreasing terms');
  t.false(isWellFormedMessage({ ...app, entries: [entry(5, 4)] }, 'b'), 'term above the sender');
  t.false(isWellFormedMessage({ ...app, entries: [{ index: 5, term: 2, type: 0, data: 'x' }] }, 'b'));
  t.false(isWellFormedMessage({ ...app, type: MessageType.Heartbeat }, 'b'), 'entries on a heartbeat');
  t.false(isWellFormedMessage({ ...app, type: MessageType.Snap, entries: [] }, 'b'), 'snapshot without a chunk');
  t.false(isWellFormedMessage(null, 'b'));
});
