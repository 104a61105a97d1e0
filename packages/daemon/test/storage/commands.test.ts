// Proves the command codec: every command round-trips, in the current encoding and in the msgpack
// one of older log entries (which must decode forever); data commands use the binary format 1,
// whose bytes are pinned by a golden vector; write payloads are decoded as views into the entry (no
// copy); fields the binary layout cannot carry fall back to msgpack; and malformed input of either
// format becomes an INVALID_ARGUMENT result instead of an exception. Pure: no IO.
import test from 'ava';
import { Packr } from 'msgpackr';
import {
  DATA_COMMAND_FORMAT_V1,
  decodeCommand,
  encodeCommand,
  encodeCommandMsgpack,
  type Command,
} from '../../src/storage/commands.js';

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

test('older log entries (msgpack) still decode to the same commands', (t) => {
  for (const command of commands) {
    const bytes = encodeCommandMsgpack(command);
    t.not(bytes[0], DATA_COMMAND_FORMAT_V1, 'a msgpack map never starts with the binary format byte');
    const decoded = decodeCommand(bytes);
    if (!decoded.ok) return t.fail(decoded.message);
    const plain = { ...decoded.command } as Record<string, unknown>;
    if (plain.data instanceof Uint8Array) plain.data = new Uint8Array(plain.data);
    t.deepEqual(plain, { ...command }, command.type);
  }
  // Bytes as the msgpack encoder wrote them before the binary format, fixed here.
  const old = Buffer.from(
    '88a474797065a57772697465a6766f6c756d65a176a66f666673657400a464617461c40301020' +
      '3a773657373696f6ea27331a3736571' +
      '09aa61636b656442656c6f7704a461744d730b',
    'hex',
  );
  const decoded = decodeCommand(old);
  if (!decoded.ok) return t.fail(decoded.message);
  t.deepEqual(
    { ...decoded.command, data: new Uint8Array((decoded.command as { data: Uint8Array }).data) },
    {
      type: 'write',
      volume: 'v',
      offset: 0,
      data: new Uint8Array([1, 2, 3]),
      session: 's1',
      seq: 9,
      ackedBelow: 4,
      atMs: 11,
    },
  );
});

test('data commands use binary format 1, whose bytes are pinned', (t) => {
  const bytes = encodeCommand({
    type: 'write',
    volume: 'v',
    offset: 8192,
    data: new Uint8Array([1, 2, 3]),
    session: 's1',
    seq: 9,
    ackedBelow: 4,
    atMs: 11,
  });
  t.is(
    Buffer.from(bytes).toString('hex'),
    '01' + // format
      '01' + // write
      '03' + // session and atMs present
      '01' + // volume name bytes
      '02' + // session id bytes
      '000000000000c040' + // offset 8192 (float64 LE)
      '0000000000000840' + // length 3
      '0000000000002240' + // seq 9
      '0000000000001040' + // ackedBelow 4
      '0000000000002640' + // atMs 11
      '76' + // 'v'
      '7331' + // 's1'
      '010203',
  );
  for (const command of commands) {
    const encoded = encodeCommand(command);
    const isData = command.type === 'write' || command.type === 'writeZeroes' || command.type === 'trim';
    t.is(encoded[0] === DATA_COMMAND_FORMAT_V1, isData, command.type);
  }
});

test('fields the binary layout cannot carry fall back to msgpack and are judged on apply as before', (t) => {
  const odd = [
    { type: 'write', volume: 'v', offset: '0', data: new Uint8Array(1) },
    { type: 'write', volume: 'x'.repeat(300), offset: 0, data: new Uint8Array(1) },
    { type: 'trim', volume: 'v', offset: 0, length: 1, session: 's' },
    { type: 'writeZeroes', volume: 'v', offset: 0, length: 1, seq: 1 },
  ] as unknown as Command[];
  for (const command of odd) {
    const bytes = encodeCommand(command);
    t.not(bytes[0], DATA_COMMAND_FORMAT_V1);
    const decoded = decodeCommand(bytes);
    t.is(!decoded.ok && decoded.code, 'INVALID_ARGUMENT', JSON.stringify(command).slice(0, 80));
  }
});

test('malformed binary data commands are INVALID_ARGUMENT results', (t) => {
  const good = Buffer.from(
    encodeCommand({
      type: 'write',
      volume: 'v',
      offset: 0,
      data: new Uint8Array(8),
      session: 's',
      seq: 2,
      ackedBelow: 1,
    }),
  );
  t.true(decodeCommand(good).ok);
  const variants: [string, (bytes: Buffer) => Uint8Array][] = [
    ['truncated header', (b) => b.subarray(0, 20)],
    ['truncated names', (b) => b.subarray(0, 46)],
    ['unknown type', (b) => (b.writeUInt8(9, 1), b)],
    ['unknown flags', (b) => (b.writeUInt8(0x80, 2), b)],
    ['session bytes without the session flag', (b) => (b.writeUInt8(0, 2), b)],
    ['data shorter than its length', (b) => b.subarray(0, b.length - 1)],
    ['data longer than its length', (b) => Buffer.concat([b, Buffer.from([0])])],
    ['negative offset', (b) => (b.writeDoubleLE(-4096, 5), b)],
    ['fractional offset', (b) => (b.writeDoubleLE(0.5, 5), b)],
    ['unsafe length', (b) => (b.writeDoubleLE(2 ** 60, 13), b)],
    ['ackedBelow above seq', (b) => (b.writeDoubleLE(5, 29), b)],
    ['bad volume name', (b) => (b.write('/', 45), b)],
    ['bad atMs', (b) => (b.writeUInt8(3, 2), b.writeDoubleLE(-1, 37), b)],
  ];
  for (const [what, corrupt] of variants) {
    const decoded = decodeCommand(corrupt(Buffer.from(good)));
    t.is(!decoded.ok && decoded.code, 'INVALID_ARGUMENT', what);
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
