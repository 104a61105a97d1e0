// Proves the linearizability checker accepts linearizable key-value histories and rejects
// non-linearizable ones (stale read, lost write, read of a never-written value, unknown-outcome
// writes that must or must not be assumed), with a minimal explanation window, by running it on
// small hand-built histories whose verdict is known.
import test from 'ava';
import { checkLinearizable } from '../../src/testing/lincheck.js';
import type { HistoryOperation } from '../../src/testing/lincheck.js';

function w(client: number, key: string, value: string, call: number, ret: number | null): HistoryOperation {
  return { client, op: 'write', key, value, call, return: ret };
}
function r(client: number, key: string, value: string | null, call: number, ret: number | null): HistoryOperation {
  return { client, op: 'read', key, value, call, return: ret };
}

test('an empty history is linearizable', (t) => {
  t.deepEqual(checkLinearizable([]), { ok: true });
});

test('sequential write then read of the same value is linearizable', (t) => {
  t.true(checkLinearizable([w(1, 'k', 'a', 0, 1), r(2, 'k', 'a', 2, 3)]).ok);
});

test('a read before any write returns null', (t) => {
  t.true(checkLinearizable([r(1, 'k', null, 0, 1), w(1, 'k', 'a', 2, 3)]).ok);
  const result = checkLinearizable([r(1, 'k', 'a', 0, 1), w(1, 'k', 'a', 2, 3)]);
  t.false(result.ok);
});

test('concurrent reads may see the old or the new value, in either order across clients', (t) => {
  const history = [w(1, 'k', 'a', 0, 1), w(1, 'k', 'b', 2, 10), r(2, 'k', 'b', 3, 4), r(3, 'k', 'b', 5, 6)];
  t.true(checkLinearizable(history).ok);
  // Once a read saw b, a later (non-overlapping) read must not see a again.
  const stale = [w(1, 'k', 'a', 0, 1), w(1, 'k', 'b', 2, 10), r(2, 'k', 'b', 3, 4), r(3, 'k', 'a', 5, 6)];
  t.false(checkLinearizable(stale).ok);
});

test('a stale read after an acknowledged write is not linearizable, and the window names it', (t) => {
  const history = [
    w(1, 'x', 'unrelated', 0, 1),
    w(1, 'k', 'a', 0, 1),
    r(3, 'k', 'a', 1.5, 1.8),
    w(1, 'k', 'b', 2, 3),
    r(2, 'k', 'a', 4, 5),
    w(1, 'k', 'c', 6, 7),
    r(2, 'k', 'c', 8, 9),
  ];
  const result = checkLinearizable(history);
  if (result.ok) return t.fail('expected a violation');
  t.is(result.kind, 'violation');
  t.is(result.key, 'k');
  // Smallest failing window: write b then the stale read of a.
  t.deepEqual(result.window, [history[3], history[4]]);
  t.regex(result.explanation, /write "b"/);
  t.regex(result.explanation, /read -> "a"/);
});

test('a lost write (acknowledged, then never visible) is not linearizable', (t) => {
  const history = [w(1, 'k', 'a', 0, 1), w(2, 'k', 'b', 2, 3), r(1, 'k', 'a', 4, 5), r(2, 'k', 'a', 6, 7)];
  const result = checkLinearizable(history);
  t.false(result.ok);
});

test('an unknown-outcome write may take effect late: a read long after may see it', (t) => {
  const history = [w(1, 'k', 'a', 0, 1), w(2, 'k', 'b', 2, null), r(3, 'k', 'a', 5, 6), r(3, 'k', 'b', 10, 11)];
  t.true(checkLinearizable(history).ok);
});

test('an unknown-outcome write may never take effect', (t) => {
  const history = [w(1, 'k', 'a', 0, 1), w(2, 'k', 'b', 2, null), r(3, 'k', 'a', 5, 6), r(3, 'k', 'a', 100, 101)];
  t.true(checkLinearizable(history).ok);
});

test('an unknown-outcome write cannot take effect before its call', (t) => {
  const history = [w(1, 'k', 'a', 0, 1), r(3, 'k', 'b', 2, 3), w(2, 'k', 'b', 5, null)];
  const result = checkLinearizable(history);
  t.false(result.ok);
});

test('an unknown-outcome write takes effect at most once: it cannot reappear after being overwritten', (t) => {
  const history = [
    w(2, 'k', 'b', 0, null),
    r(1, 'k', 'b', 1, 2),
    w(1, 'k', 'c', 3, 4),
    r(1, 'k', 'c', 5, 6),
    r(1, 'k', 'b', 7, 8),
  ];
  t.false(checkLinearizable(history).ok);
});

test('an unknown-outcome read constrains nothing', (t) => {
  t.true(checkLinearizable([w(1, 'k', 'a', 0, 1), r(2, 'k', 'zzz', 2, null)]).ok);
});

test('intervals that touch count as concurrent', (t) => {
  // The read returns at 5, the write is called at 5: they may be ordered either way.
  t.true(checkLinearizable([r(1, 'k', 'a', 0, 5), w(2, 'k', 'a', 5, 6)]).ok);
});

test('keys are independent: each key is checked on its own', (t) => {
  const history = [w(1, 'a', '1', 0, 1), w(1, 'b', '2', 2, 3), r(2, 'a', '1', 4, 5), r(2, 'b', '2', 4, 5)];
  t.true(checkLinearizable(history).ok);
  const result = checkLinearizable([...history, r(2, 'b', '1', 6, 7)]);
  if (result.ok) return t.fail('expected a violation');
  t.is(result.key, 'b');
});

test('a window is reported only if it fails whatever preceded it', (t) => {
  // The violation needs the first write: a read of null after an acknowledged write.
  const history = [w(1, 'k', 'a', 0, 1), r(2, 'k', 'a', 2, 3), r(2, 'k', null, 4, 5)];
  const result = checkLinearizable(history);
  if (result.ok) return t.fail('expected a violation');
  t.deepEqual(result.window, [history[1], history[2]]);
});

test('a large concurrent linearizable history is checked quickly thanks to memoization', (t) => {
  // 12 clients, each doing write/read pairs, all overlapping heavily but consistent: every read
  // returns the value of the write that it overlaps or the last one before it.
  const history: HistoryOperation[] = [];
  let time = 0;
  for (let round = 0; round < 60; round++) {
    const value = `v${round}`;
    history.push(w(round % 12, 'k', value, time, time + 10));
    for (let c = 0; c < 6; c++) history.push(r(100 + c, 'k', value, time + 10 + c, time + 11 + c));
    time += 20;
  }
  t.true(checkLinearizable(history).ok);
});

test('a search that exceeds its step budget is inconclusive, not a violation', (t) => {
  const history: HistoryOperation[] = [];
  for (let i = 0; i < 10; i++) history.push(w(i, 'k', `v${i}`, 0, 100));
  history.push(r(99, 'k', 'nope', 0, 100));
  const result = checkLinearizable(history, { stepsMax: 50 });
  if (result.ok) return t.fail('expected no verdict');
  t.is(result.kind, 'inconclusive');
  const full = checkLinearizable(history);
  if (full.ok) return t.fail('expected a violation');
  t.is(full.kind, 'violation');
});

test('the explanation of an impossible read among many concurrent writes is that read alone', (t) => {
  const history: HistoryOperation[] = [];
  for (let i = 0; i < 8; i++) history.push(w(i, 'k', `v${i}`, 0, 100));
  history.push(r(99, 'k', 'nope', 0, 100));
  const result = checkLinearizable(history);
  if (result.ok) return t.fail('expected a violation');
  t.deepEqual(result.window, [history[8]]);
});
