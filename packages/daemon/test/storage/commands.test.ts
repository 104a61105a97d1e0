// Proves the command codec: every command round-trips through msgpack, write payloads are decoded
// as views into the entry (no copy), and malformed input becomes an INVALID_ARGUMENT result
// instead of an exception. Pure: no IO.
import test from 'ava';
import { Packr } from 'msgpackr';
import { decodeCommand, encodeCommand, type Command } from '../../src/storage/commands.js';

const commands: Command[] = [
  { type: 'createVolume', name: 'vol-1', sizeBytes: 64 * 1024 * 1024, createdAtMs: 1_700_000_000_000 },
  { type: 'deleteVolume', name: 'vol-1', atMs: 5 },
  { type: 'growVolume', name: 'vol.2', sizeBytes: 8192 },
  { type: 'write', volume: 'v', offset: 2 ** 40 + 3, data: new Uint8Array([1, 2, 3]) },
  { type: 'write', volume: 'v', offset: 7, data: new Uint8Array(0), session: 's1', seq: 9, ackedBelow: 4, atMs: 11 },
  { type: 'writeZeroes', volume: 'v', offset: 0, length: 4096, session: 's', seq: 0, ackedBelow: 0 },
  { type: 'trim', volume: 'v', offset: 1, length: 2 },
  { type: 'closeSession', session: 's1' },
];

test('every command round-trips', (t) => {
  for (const command of commands) {
    const decoded = decodeCommand(encodeCommand(command));
    if (!decoded.ok) return t.fail(decoded.message);
    const plain = { ...decoded.command } as Record<string, unknown>;
    if (plain.data instanceof Uint8Array) plain.data = new Uint8Array(plain.data);
    t.deepEqual(plain, { ...command }, command.type);
  }
});

test('write data is a view into the entry bytes, not a copy', (t) => {
  const bytes = encodeCommand({ type: 'write', volume: 'v', offset: 0, data: new Uint8Array(4096).fill(7) });
  const decoded = decodeCommand(bytes);
  if (!decoded.ok || decoded.command.type !== 'write') return t.fail('not a write');
  t.is(decoded.command.data.buffer, bytes.buffer);
  t.is(decoded.command.data.length, 4096);
});

test('malformed commands are INVALID_ARGUMENT results', (t) => {
  const packr = new Packr({ useRecords: false });
  const bad: unknown[] = [
    42,
    null,
    [1, 2],
    { type: 'nope' },
    { type: 'createVolume', name: '', sizeBytes: 4096, createdAtMs: 0 },
    { type: 'createVolume', name: 'a/b', sizeBytes: 4096, createdAtMs: 0 },
    { type: 'createVolume', name: 'a', sizeBytes: 4095, createdAtMs: 0 },
    { type: 'createVolume', name: 'a', sizeBytes: 2 ** 51, createdAtMs: 0 },
    { type: 'createVolume', name: 'a', sizeBytes: 4096 },
    { type: 'write', volume: 'a', offset: -1, data: new Uint8Array(1) },
    { type: 'write', volume: 'a', offset: 0.5, data: new Uint8Array(1) },
    { type: 'write', volume: 'a', offset: 0, data: 'text' },
    { type: 'write', volume: 'a', offset: 0, data: new Uint8Array(1), session: 's' },
    { type: 'write', volume: 'a', offset: 0, data: new Uint8Array(1), session: 's', seq: 1, ackedBelow: 2 },
    { type: 'trim', volume: 'a', offset: 0, length: -4 },
    { type: 'closeSession', session: 'x'.repeat(129) },
    { type: 'growVolume', name: 'a', sizeBytes: 4096, atMs: -1 },
  ];
  for (const value of bad) {
    const decoded = decodeCommand(packr.pack(value));
    t.false(decoded.ok, JSON.stringify(value));
    t.is(!decoded.ok && decoded.code, 'INVALID_ARGUMENT');
  }
  const garbage = decodeCommand(new Uint8Array([0xc1, 0xff, 0x00]));
  t.is(!garbage.ok && garbage.code, 'INVALID_ARGUMENT');
  const truncated = decodeCommand(encodeCommand(commands[3]!).subarray(0, 10));
  t.is(!truncated.ok && truncated.code, 'INVALID_ARGUMENT');
});
