// Proves that ByteQueue returns exactly the bytes pushed, in order, however the stream is cut into
// chunks and whatever mix of contiguous()/skip()/take() reads it: a seeded random stream is split at
// random points, read back with random operation sizes, and compared byte for byte.
import test from 'ava';
import { ByteQueue } from '../../src/nbd/byte-queue.js';
import { randomBytes, seededRandom } from './helpers.js';

for (const seed of [1, 2, 3, 42, 1234]) {
  test(`random chunking and reads return the stream unchanged (seed ${seed})`, (t) => {
    const random = seededRandom(seed);
    const stream = randomBytes(random, 200_000);
    const queue = new ByteQueue();
    let pushed = 0;
    let read = 0;
    const out = Buffer.alloc(stream.length);
    while (read < stream.length) {
      // Push a random-sized chunk (sometimes tiny, so reads straddle many chunks).
      if (pushed < stream.length && (queue.length < 64 || random() < 0.5)) {
        const size = Math.min(stream.length - pushed, 1 + Math.floor(random() * (random() < 0.3 ? 8 : 5000)));
        queue.push(stream.subarray(pushed, pushed + size));
        pushed += size;
        continue;
      }
      const n = Math.min(queue.length, 1 + Math.floor(random() * 300));
      const op = random();
      if (op < 0.4) {
        const buffer = queue.contiguous(n);
        buffer.copy(out, read, queue.headOffset, queue.headOffset + n);
        queue.skip(n);
      } else {
        queue.take(n).copy(out, read);
      }
      read += n;
      t.is(queue.length, pushed - read);
    }
    t.true(out.equals(stream));
  });
}

test('take() of bytes inside one chunk is a view, not a copy', (t) => {
  const queue = new ByteQueue();
  const chunk = Buffer.from('0123456789');
  queue.push(chunk);
  queue.skip(2);
  const view = queue.take(4);
  t.is(view.toString(), '2345');
  t.is(view.buffer, chunk.buffer);
});

test('reading more than is queued throws a RangeError', (t) => {
  const queue = new ByteQueue();
  queue.push(Buffer.from('abc'));
  t.throws(() => queue.take(4), { instanceOf: RangeError });
  t.throws(() => queue.contiguous(4), { instanceOf: RangeError });
  t.throws(() => queue.skip(4), { instanceOf: RangeError });
});
