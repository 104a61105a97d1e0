// Proves the WAL writes a record's parts as they are: an entries record's parts hold the entries'
// own data buffers (no copy) and decode back to the entries, empty ones included; a record's CRC
// over parts equals its CRC over the same bytes in one buffer; and writeChunks writes every byte
// in order however short the underlying writes are, never passing more than 1024 buffers per call.
import test from 'ava';
import { RecordType, decodeEntries, encodeEntriesParts, recordPrefix } from '../../src/storage/wal-format.js';
import { writeChunks } from '../../src/storage/wal-io.js';
import type { Entry } from '../../src/storage/raft-api.js';
import { seededRandom } from './helpers.js';

function entriesOf(sizes: readonly number[]): Entry[] {
  return sizes.map((size, i) => ({
    index: 100 + i,
    term: 7 + (i % 2),
    type: (size === 0 ? 1 : 0) as Entry['type'],
    data: Buffer.alloc(size, i + 1),
  }));
}

test('an entries record is the entries own buffers between headers, and decodes back (empty entries too)', (t) => {
  const entries = entriesOf([4096, 0, 0, 17, 4096, 0]);
  const { parts, bytes } = encodeEntriesParts(entries);
  const payload = Buffer.concat(parts);
  t.is(payload.length, bytes);
  for (const entry of entries) {
    if (entry.data.length > 0)
      t.true(parts.includes(entry.data), `entry ${entry.index} is written from its own buffer`);
  }
  const { first, entries: decoded } = decodeEntries(payload);
  t.is(first, 100);
  t.deepEqual(
    decoded.map((e) => ({ index: e.index, term: e.term, type: e.type, data: Buffer.from(e.data).toString('hex') })),
    entries.map((e) => ({ index: e.index, term: e.term, type: e.type, data: Buffer.from(e.data).toString('hex') })),
  );
});

test("a record's CRC over its parts equals the CRC over the same bytes in one buffer", (t) => {
  const { parts, bytes } = encodeEntriesParts(entriesOf([5, 0, 300, 1]));
  const split = recordPrefix(RecordType.Entries, parts, bytes, 12345);
  const whole = recordPrefix(RecordType.Entries, [Buffer.concat(parts)], bytes, 12345);
  t.is(split.crc, whole.crc);
  t.deepEqual(split.prefix, whole.prefix);
});

test('writeChunks writes every byte in order through short writes, at most 1024 buffers per call', async (t) => {
  const random = seededRandom(6);
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < 3000; i++) {
    const chunk = Buffer.alloc(random(9)); // 0-8 bytes, empty ones included
    for (let j = 0; j < chunk.length; j++) chunk[j] = random(256);
    chunks.push(chunk);
  }
  const expected = Buffer.concat(chunks);
  const file = Buffer.alloc(expected.length + 10);
  let calls = 0;
  await writeChunks(
    async (buffers, position) => {
      calls++;
      t.true(buffers.length <= 1024);
      // A short write: at most 1-40 bytes of what was asked.
      const data = Buffer.concat(buffers);
      const length = Math.min(data.length, 1 + random(40));
      data.copy(file, position, 0, length);
      return { bytesWritten: length };
    },
    chunks,
    10,
  );
  t.deepEqual(file.subarray(10), expected);
  t.true(calls > 100);
});

test('writeChunks fails rather than loop when a write makes no progress', async (t) => {
  await t.throwsAsync(
    writeChunks(async () => ({ bytesWritten: 0 }), [Buffer.from('abc')], 0),
    { message: /wrote nothing/ },
  );
});
