// Proves the small helpers of the SDK: parseSize accepts the documented units (binary single
// letters and IEC, decimal KB/MB/...) and refuses malformed or fractional-byte sizes with
// CLIENT_USAGE; formatSize picks the largest binary unit; Deque keeps FIFO order across growth,
// unshift (retried requests go first) and filter.
import test from 'ava';
import { formatSize, parseSize } from '../../src/size.js';
import { Deque } from '../../src/deque.js';
import type { RdlError } from '../../src/errors.js';

test('parseSize understands units', (t) => {
  t.is(parseSize('4096'), 4096);
  t.is(parseSize('64MiB'), 64 * 1024 * 1024);
  t.is(parseSize('64M'), 64 * 1024 * 1024);
  t.is(parseSize('1.5 GiB'), 1.5 * 1024 ** 3);
  t.is(parseSize('2kb'), 2000);
  t.is(parseSize('1TB'), 10 ** 12);
  t.is(parseSize(' 10 g '), 10 * 1024 ** 3);
  for (const bad of ['', 'MiB', '12XB', '-1', '1.5', '0.1KiB', '1e3']) {
    t.is(t.throws<RdlError>(() => parseSize(bad), undefined, bad)?.code, 'CLIENT_USAGE', bad);
  }
});

test('formatSize picks the largest binary unit', (t) => {
  t.is(formatSize(512), '512 B');
  t.is(formatSize(4096), '4 KiB');
  t.is(formatSize(64 * 1024 * 1024), '64 MiB');
  t.is(formatSize(20_000_768), '19.1 MiB');
});

test('Deque is a FIFO with unshift and filter across growth', (t) => {
  const deque = new Deque<number>();
  for (let i = 0; i < 40; i++) deque.push(i);
  t.is(deque.shift(), 0);
  deque.unshift(-1);
  deque.unshift(-2);
  t.is(deque.length, 41);
  t.is(deque.peek(), -2);
  deque.filter((n) => n % 2 === 0);
  const out: number[] = [];
  deque.forEach((n) => out.push(n));
  t.deepEqual(out, [-2, ...Array.from({ length: 19 }, (_, i) => (i + 1) * 2)]);
  while (deque.length > 0) deque.shift();
  t.is(deque.shift(), undefined);
  t.is(deque.peek(), undefined);
});
