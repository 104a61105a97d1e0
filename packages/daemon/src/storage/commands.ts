/**
 * The commands replicated through the Raft log and applied by the block state machine, their
 * msgpack encoding, and the plain-data results `apply` returns.
 *
 * A command is proposed by the leader's API service (`encodeCommand`), travels inside
 * `Entry.data`, and is decoded and validated on every replica (`decodeCommand`). Validation is
 * deterministic (it looks only at the bytes), so every replica reaches the same verdict, and a bad
 * command becomes an `ApplyFailure` result, never a thrown exception.
 *
 * Two encodings, told apart by the first byte (the format is persisted in the Raft log, so both
 * decode forever):
 * - msgpack maps (first byte 0x80-0x8f, 0xde or 0xdf): every command; the only format before the
 *   binary one, and still used for the volume and session commands and for data commands whose
 *   fields the binary layout cannot carry (wrong types, names over 255 UTF-8 bytes).
 * - `DATA_COMMAND_FORMAT_V1` (0x01): a fixed little-endian header then the names and payload, for
 *   write / writeZeroes / trim (the hot path: no map keys to write or parse). Layout in
 *   `encodeDataCommand`; docs/storage.md has the table.
 *
 * Binary payloads (`write.data`) are carried by reference in both: the decoder returns a view into
 * the entry's buffer (no copy), and the state machine hands aligned 4 KiB slices of it straight
 * to LevelDB.
 */
import { Packr } from 'msgpackr';

/** Size of a block: the unit of storage, thin provisioning and read-modify-write. */
export const BLOCK_SIZE_BYTES = 4096;

/** Largest volume (1 PiB): keeps every byte offset a safe integer with room to add lengths. */
export const VOLUME_SIZE_BYTES_MAX = 2 ** 50;

/** Longest volume name, in UTF-16 code units (names are ASCII, see `VOLUME_NAME_PATTERN`). */
export const VOLUME_NAME_LENGTH_MAX = 128;

/** What a volume name may contain: starts with a letter or digit, then letters, digits, `.`, `_`, `-`. */
export const VOLUME_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** Longest client session id. */
export const SESSION_ID_LENGTH_MAX = 128;

/** Creates a volume. Idempotent: the same name and size again succeeds; another size is `VOLUME_EXISTS`. */
export interface CreateVolumeCommand {
  readonly type: 'createVolume';
  readonly name: string;
  /** Positive multiple of `BLOCK_SIZE_BYTES`, at most `VOLUME_SIZE_BYTES_MAX`. */
  readonly sizeBytes: number;
  /** The proposing leader's wall clock; stored as the creation time and advances log time. */
  readonly createdAtMs: number;
}

/** Deletes a volume and (lazily, in bounded batches) its blocks. Unknown name: `VOLUME_NOT_FOUND`. */
export interface DeleteVolumeCommand {
  readonly type: 'deleteVolume';
  readonly name: string;
  readonly atMs?: number;
}

/** Grows a volume. The same size again is a no-op success; a smaller one is `INVALID_ARGUMENT`. */
export interface GrowVolumeCommand {
  readonly type: 'growVolume';
  readonly name: string;
  readonly sizeBytes: number;
  readonly atMs?: number;
}

/**
 * Exactly-once bookkeeping carried by the data commands (all three fields or none).
 *
 * `seq` increases per session and starts at 1; `ackedBelow` promises that every seq below it has
 * been answered to the client, so the state machine may forget them. A repeated (session, seq) is a
 * no-op success. A session the state machine does not know is created by its first command, unless
 * that command says (`ackedBelow > 1`) that earlier ones were answered: then the session expired and
 * the answer is `SESSION_EXPIRED`, because a retry could otherwise be applied twice.
 */
export interface SessionFields {
  /** Client session id (1..128 characters). */
  readonly session?: string;
  /** Sequence number of this command in the session (safe integer >= 0). */
  readonly seq?: number;
  /** Every seq below this has been answered (0 <= ackedBelow <= seq). */
  readonly ackedBelow?: number;
  /** The proposing leader's wall clock: the log time that session expiry is measured in. */
  readonly atMs?: number;
}

/** Writes `data` at any byte `offset` (partial blocks are read-modify-written during apply). */
export interface WriteCommand extends SessionFields {
  readonly type: 'write';
  readonly volume: string;
  readonly offset: number;
  readonly data: Uint8Array;
}

/** Makes `length` bytes at `offset` read as zeros (whole blocks are deleted: thin again). */
export interface WriteZeroesCommand extends SessionFields {
  readonly type: 'writeZeroes';
  readonly volume: string;
  readonly offset: number;
  readonly length: number;
}

/** Discards `length` bytes at `offset`; afterwards they read as zeros (same effect as writeZeroes). */
export interface TrimCommand extends SessionFields {
  readonly type: 'trim';
  readonly volume: string;
  readonly offset: number;
  readonly length: number;
}

/** Forgets a client session (a client that shuts down cleanly frees its dedup state). */
export interface CloseSessionCommand {
  readonly type: 'closeSession';
  readonly session: string;
  readonly atMs?: number;
}

/** Every command the block state machine applies. */
export type Command =
  | CreateVolumeCommand
  | DeleteVolumeCommand
  | GrowVolumeCommand
  | WriteCommand
  | WriteZeroesCommand
  | TrimCommand
  | CloseSessionCommand;

/** The commands that change block contents and take part in exactly-once sessions. */
export type DataCommand = WriteCommand | WriteZeroesCommand | TrimCommand;

/**
 * Codes of state-machine-level failures. They are results (the same on every replica), and they are
 * the block API's wire codes (`@rdl/client` `WireCode`), so the API service passes them through.
 */
export const ApplyErrorCode = {
  /** The command is malformed (bad field types, name, unaligned size, `ackedBelow > seq`) or shrinks a volume. */
  InvalidArgument: 'INVALID_ARGUMENT',
  VolumeNotFound: 'VOLUME_NOT_FOUND',
  /** A volume with this name exists with another size. */
  VolumeExists: 'VOLUME_EXISTS',
  /** The byte range is not inside the volume. */
  OutOfRange: 'OUT_OF_RANGE',
  /**
   * A state-machine limit is reached: the volume count, or a session's dedup window (`seq` is
   * `SESSION_WINDOW_SEQS` or more above what the client acknowledged).
   */
  ResourceExhausted: 'RESOURCE_EXHAUSTED',
  /** The session is unknown (expired or evicted) but `ackedBelow > 1` says it had answered writes. */
  SessionExpired: 'SESSION_EXPIRED',
} as const;
export type ApplyErrorCode = (typeof ApplyErrorCode)[keyof typeof ApplyErrorCode];

/** A volume as the state machine describes it. Plain data. */
export interface VolumeInfo {
  readonly name: string;
  readonly sizeBytes: number;
  readonly blockSizeBytes: number;
  readonly createdAtMs: number;
}

/** A successful apply. `volume` is set by the volume commands; `isDuplicate` by a deduplicated retry. */
export interface ApplySuccess {
  readonly ok: true;
  readonly volume?: VolumeInfo;
  /** True when this (session, seq) had already been applied: nothing was changed this time. */
  readonly isDuplicate?: boolean;
}

/** A deterministic failure: the command had no effect. */
export interface ApplyFailure {
  readonly ok: false;
  readonly code: ApplyErrorCode;
  readonly message: string;
}

/** What `BlockStateMachine.apply` returns for each Normal entry with a command (undefined for no-ops). */
export type ApplyResult = ApplySuccess | ApplyFailure;

/** Builds an `ApplyFailure`. */
export function applyFailure(code: ApplyErrorCode, message: string): ApplyFailure {
  return { ok: false, code, message };
}

// useRecords: false keeps the encoding stateless: a record extension would make one replica's
// bytes depend on what that process encoded before, and the log is decoded on other processes.
const packr = new Packr({ useRecords: false, moreTypes: false });

/**
 * Encodes a command for `RaftNode.propose`. Only the fields of the command's type are written (so
 * an object with extra properties encodes the same as a clean one). Does not validate: the state
 * machine validates on apply, the same way on every replica; callers validate earlier for fast
 * feedback with `validateCommand`.
 */
export function encodeCommand(command: Command): Uint8Array {
  switch (command.type) {
    case 'write':
    case 'writeZeroes':
    case 'trim': {
      const binary = encodeDataCommand(command);
      if (binary !== null) return binary;
      break;
    }
  }
  return encodeCommandMsgpack(command);
}

/**
 * The msgpack encoding of any command (the format of every command before
 * `DATA_COMMAND_FORMAT_V1`, still decoded and still used by `encodeCommand` for the rest).
 * Exported for tests of old log entries.
 */
export function encodeCommandMsgpack(command: Command): Uint8Array {
  switch (command.type) {
    case 'createVolume':
      return packr.pack({
        type: command.type,
        name: command.name,
        sizeBytes: command.sizeBytes,
        createdAtMs: command.createdAtMs,
      });
    case 'deleteVolume':
    case 'closeSession':
    case 'growVolume':
      return packr.pack(command);
    case 'write':
      return packr.pack({
        type: command.type,
        volume: command.volume,
        offset: command.offset,
        data: command.data,
        session: command.session,
        seq: command.seq,
        ackedBelow: command.ackedBelow,
        atMs: command.atMs,
      });
    case 'writeZeroes':
    case 'trim':
      return packr.pack({
        type: command.type,
        volume: command.volume,
        offset: command.offset,
        length: command.length,
        session: command.session,
        seq: command.seq,
        ackedBelow: command.ackedBelow,
        atMs: command.atMs,
      });
  }
}

/**
 * First byte of a data command in the binary format (version 1). A msgpack command is a map, whose
 * first byte is never 0x01 (that is the msgpack integer 1, which `decodeCommand` always refused as
 * "command must be a map"), so no entry written before this format decodes differently now.
 */
export const DATA_COMMAND_FORMAT_V1 = 0x01;

/** Bytes of the fixed part of a `DATA_COMMAND_FORMAT_V1` command. */
const DATA_HEADER_BYTES = 45;
const DATA_TYPE_CODES = { write: 1, writeZeroes: 2, trim: 3 } as const;
const DATA_TYPES = [undefined, 'write', 'writeZeroes', 'trim'] as const;
const FLAG_SESSION = 1;
const FLAG_AT_MS = 2;
/** Longest volume name or session id the binary layout carries (a length byte), in UTF-8 bytes. */
const DATA_NAME_BYTES_MAX = 255;

/**
 * Encodes a write / writeZeroes / trim as `DATA_COMMAND_FORMAT_V1`, or returns null when its fields
 * do not fit the layout (then msgpack carries it, and validation on apply judges it as before):
 *
 * | offset | size | field |
 * |---|---|---|
 * | 0 | 1 | 0x01 (format) |
 * | 1 | 1 | type: 1 write, 2 writeZeroes, 3 trim |
 * | 2 | 1 | flags: 1 session fields present, 2 atMs present |
 * | 3 | 1 | volume name length V (UTF-8 bytes) |
 * | 4 | 1 | session id length S (UTF-8 bytes, 0 without a session) |
 * | 5 | 8 | offset (float64 LE) |
 * | 13 | 8 | length (float64 LE; a write's is its data length) |
 * | 21 | 8 | seq (float64 LE; 0 without a session) |
 * | 29 | 8 | ackedBelow (float64 LE; 0 without a session) |
 * | 37 | 8 | atMs (float64 LE; 0 without one) |
 * | 45 | V | volume name |
 * | 45+V | S | session id |
 * | 45+V+S | length | write data (writes only; nothing may follow) |
 *
 * Numbers are float64 so any JS number round-trips exactly (a non-integer or negative one is then
 * refused on apply, like its msgpack form was).
 */
function encodeDataCommand(command: DataCommand): Uint8Array | null {
  const { volume, session, seq, ackedBelow, atMs, offset } = command;
  const data = command.type === 'write' ? command.data : null;
  const length = data !== null ? data.length : (command as WriteZeroesCommand | TrimCommand).length;
  if (typeof volume !== 'string' || typeof offset !== 'number' || typeof length !== 'number') return null;
  if (data !== null && !(data instanceof Uint8Array)) return null;
  const hasSession = session !== undefined;
  if (hasSession) {
    if (typeof session !== 'string' || typeof seq !== 'number' || typeof ackedBelow !== 'number') return null;
  } else if (seq !== undefined || ackedBelow !== undefined) {
    return null;
  }
  if (atMs !== undefined && typeof atMs !== 'number') return null;
  // ASCII (every valid name) has one byte per code unit; measure the rest.
  const volumeBytes = volume.length <= 128 && isAscii(volume) ? volume.length : Buffer.byteLength(volume);
  const sessionBytes = !hasSession
    ? 0
    : session.length <= 128 && isAscii(session)
      ? session.length
      : Buffer.byteLength(session);
  if (volumeBytes > DATA_NAME_BYTES_MAX || sessionBytes > DATA_NAME_BYTES_MAX) return null;
  const namesEnd = DATA_HEADER_BYTES + volumeBytes + sessionBytes;
  const bytes = Buffer.allocUnsafe(namesEnd + (data === null ? 0 : data.length));
  bytes[0] = DATA_COMMAND_FORMAT_V1;
  bytes[1] = DATA_TYPE_CODES[command.type];
  bytes[2] = (hasSession ? FLAG_SESSION : 0) | (atMs !== undefined ? FLAG_AT_MS : 0);
  bytes[3] = volumeBytes;
  bytes[4] = sessionBytes;
  bytes.writeDoubleLE(offset, 5);
  bytes.writeDoubleLE(length, 13);
  bytes.writeDoubleLE(hasSession ? seq! : 0, 21);
  bytes.writeDoubleLE(hasSession ? ackedBelow! : 0, 29);
  bytes.writeDoubleLE(atMs ?? 0, 37);
  bytes.write(volume, DATA_HEADER_BYTES, volumeBytes, 'utf8');
  if (hasSession) bytes.write(session, DATA_HEADER_BYTES + volumeBytes, sessionBytes, 'utf8');
  if (data !== null) bytes.set(data, namesEnd);
  return bytes;
}

function isAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return false;
  return true;
}

/** Decodes and validates a `DATA_COMMAND_FORMAT_V1` command, with the same checks as the msgpack form. */
function decodeDataCommand(bytes: Uint8Array): DecodeResult {
  if (bytes.length < DATA_HEADER_BYTES) return invalid('undecodable command: truncated binary data command');
  const view = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const type = DATA_TYPES[view[1]];
  if (type === undefined) return invalid(`unknown binary data command type ${view[1]}`);
  const flags = view[2];
  if ((flags & ~(FLAG_SESSION | FLAG_AT_MS)) !== 0) return invalid(`unknown binary data command flags ${flags}`);
  const hasSession = (flags & FLAG_SESSION) !== 0;
  const volumeBytes = view[3];
  const sessionBytes = view[4];
  if (!hasSession && sessionBytes !== 0) return invalid('undecodable command: a session id without session fields');
  const offset = view.readDoubleLE(5);
  const length = view.readDoubleLE(13);
  const namesEnd = DATA_HEADER_BYTES + volumeBytes + sessionBytes;
  if (namesEnd > view.length) return invalid('undecodable command: truncated binary data command');
  const volume = view.toString('utf8', DATA_HEADER_BYTES, DATA_HEADER_BYTES + volumeBytes);
  const failure =
    checkVolumeName(volume) ??
    (isSafeNonNegative(offset) ? null : invalid('offset must be a non-negative integer')) ??
    (isSafeNonNegative(length) ? null : invalid('length must be a non-negative integer'));
  if (failure) return failure;
  if (type === 'write' ? view.length - namesEnd !== length : view.length !== namesEnd) {
    return invalid('undecodable command: binary data command length does not match its bytes');
  }
  const atMs = (flags & FLAG_AT_MS) !== 0 ? view.readDoubleLE(37) : undefined;
  if (atMs !== undefined && !isSafeNonNegative(atMs)) return invalid('atMs must be a non-negative integer (ms)');
  let command: DataCommand;
  if (hasSession) {
    const session = view.toString('utf8', DATA_HEADER_BYTES + volumeBytes, namesEnd);
    const seq = view.readDoubleLE(21);
    const ackedBelow = view.readDoubleLE(29);
    const sessionFailure = checkSession({ session, seq, ackedBelow });
    if (sessionFailure) return sessionFailure;
    command =
      type === 'write'
        ? atMs === undefined
          ? { type, volume, offset, data: view.subarray(namesEnd), session, seq, ackedBelow }
          : { type, volume, offset, data: view.subarray(namesEnd), session, seq, ackedBelow, atMs }
        : atMs === undefined
          ? { type, volume, offset, length, session, seq, ackedBelow }
          : { type, volume, offset, length, session, seq, ackedBelow, atMs };
  } else {
    command =
      type === 'write'
        ? atMs === undefined
          ? { type, volume, offset, data: view.subarray(namesEnd) }
          : { type, volume, offset, data: view.subarray(namesEnd), atMs }
        : atMs === undefined
          ? { type, volume, offset, length }
          : { type, volume, offset, length, atMs };
  }
  return { ok: true, command };
}

/** `decodeCommand`'s answer: the validated command, or the failure to return as the apply result. */
export type DecodeResult = { readonly ok: true; readonly command: Command } | ApplyFailure;

/**
 * Decodes and validates `Entry.data`. Never throws: garbage becomes `INVALID_ARGUMENT`. A write's
 * `data` is a view into `bytes` (no copy), so `bytes` must not be reused while the command lives.
 */
export function decodeCommand(bytes: Uint8Array): DecodeResult {
  if (bytes.length > 0 && bytes[0] === DATA_COMMAND_FORMAT_V1) return decodeDataCommand(bytes);
  let value: unknown;
  try {
    value = packr.unpack(bytes);
  } catch (error) {
    return applyFailure(ApplyErrorCode.InvalidArgument, `undecodable command: ${(error as Error).message}`);
  }
  return validateCommand(value);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

function isSafeNonNegative(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function invalid(message: string): ApplyFailure {
  return applyFailure(ApplyErrorCode.InvalidArgument, message);
}

/** Checks a volume name; returns a failure or null. */
export function checkVolumeName(name: unknown): ApplyFailure | null {
  if (typeof name !== 'string' || name.length === 0 || name.length > VOLUME_NAME_LENGTH_MAX) {
    return invalid(`volume name must be a string of 1 to ${VOLUME_NAME_LENGTH_MAX} characters`);
  }
  if (!VOLUME_NAME_PATTERN.test(name)) {
    return invalid(`volume name ${JSON.stringify(name)} must match ${VOLUME_NAME_PATTERN.source}`);
  }
  return null;
}

/** Checks a volume size; returns a failure or null. */
export function checkVolumeSize(sizeBytes: unknown): ApplyFailure | null {
  if (!isSafeNonNegative(sizeBytes) || sizeBytes === 0 || sizeBytes > VOLUME_SIZE_BYTES_MAX) {
    return invalid(`sizeBytes must be an integer in [1, ${VOLUME_SIZE_BYTES_MAX}]`);
  }
  if (sizeBytes % BLOCK_SIZE_BYTES !== 0) {
    return invalid(`sizeBytes ${sizeBytes} must be a multiple of the block size ${BLOCK_SIZE_BYTES}`);
  }
  return null;
}

function checkOptionalTime(value: unknown, field: string): ApplyFailure | null {
  if (value === undefined || value === null) return null;
  return isSafeNonNegative(value) ? null : invalid(`${field} must be a non-negative integer (ms)`);
}

function checkSession(value: Record<string, unknown>): ApplyFailure | null {
  const { session, seq, ackedBelow } = value;
  const hasNone = session == null && seq == null && ackedBelow == null;
  if (hasNone) return null;
  if (typeof session !== 'string' || session.length === 0 || session.length > SESSION_ID_LENGTH_MAX) {
    return invalid(`session must be a string of 1 to ${SESSION_ID_LENGTH_MAX} characters`);
  }
  if (!isSafeNonNegative(seq)) return invalid('seq must be a non-negative integer');
  if (!isSafeNonNegative(ackedBelow)) return invalid('ackedBelow must be a non-negative integer');
  if (ackedBelow > seq) return invalid(`ackedBelow ${ackedBelow} must not exceed seq ${seq}`);
  return null;
}

function sessionPart(value: Record<string, unknown>): SessionFields {
  if (value.session == null) return value.atMs == null ? {} : { atMs: value.atMs as number };
  return {
    session: value.session as string,
    seq: value.seq as number,
    ackedBelow: value.ackedBelow as number,
    ...(value.atMs == null ? {} : { atMs: value.atMs as number }),
  };
}

/**
 * Validates a decoded (or caller-built) command: field types, names, sizes, session fields.
 * Range checks against a volume's size happen at apply time (they depend on state).
 */
export function validateCommand(value: unknown): DecodeResult {
  if (!isRecord(value)) return invalid('command must be a map');
  const atMsFailure = checkOptionalTime(value.atMs, 'atMs');
  if (atMsFailure) return atMsFailure;
  switch (value.type) {
    case 'createVolume': {
      const failure =
        checkVolumeName(value.name) ??
        checkVolumeSize(value.sizeBytes) ??
        (isSafeNonNegative(value.createdAtMs) ? null : invalid('createdAtMs must be a non-negative integer'));
      if (failure) return failure;
      return {
        ok: true,
        command: {
          type: 'createVolume',
          name: value.name as string,
          sizeBytes: value.sizeBytes as number,
          createdAtMs: value.createdAtMs as number,
        },
      };
    }
    case 'deleteVolume':
    case 'growVolume': {
      const failure =
        checkVolumeName(value.name) ?? (value.type === 'growVolume' ? checkVolumeSize(value.sizeBytes) : null);
      if (failure) return failure;
      const atMs = value.atMs == null ? {} : { atMs: value.atMs as number };
      return value.type === 'deleteVolume'
        ? { ok: true, command: { type: 'deleteVolume', name: value.name as string, ...atMs } }
        : {
            ok: true,
            command: { type: 'growVolume', name: value.name as string, sizeBytes: value.sizeBytes as number, ...atMs },
          };
    }
    case 'closeSession': {
      const { session } = value;
      if (typeof session !== 'string' || session.length === 0 || session.length > SESSION_ID_LENGTH_MAX) {
        return invalid(`session must be a string of 1 to ${SESSION_ID_LENGTH_MAX} characters`);
      }
      const atMs = value.atMs == null ? {} : { atMs: value.atMs as number };
      return { ok: true, command: { type: 'closeSession', session, ...atMs } };
    }
    case 'write': {
      const failure =
        checkVolumeName(value.volume) ??
        (isSafeNonNegative(value.offset) ? null : invalid('offset must be a non-negative integer')) ??
        (value.data instanceof Uint8Array ? null : invalid('data must be binary')) ??
        checkSession(value);
      if (failure) return failure;
      return {
        ok: true,
        command: {
          type: 'write',
          volume: value.volume as string,
          offset: value.offset as number,
          data: value.data as Uint8Array,
          ...sessionPart(value),
        },
      };
    }
    case 'writeZeroes':
    case 'trim': {
      const failure =
        checkVolumeName(value.volume) ??
        (isSafeNonNegative(value.offset) ? null : invalid('offset must be a non-negative integer')) ??
        (isSafeNonNegative(value.length) ? null : invalid('length must be a non-negative integer')) ??
        checkSession(value);
      if (failure) return failure;
      return {
        ok: true,
        command: {
          type: value.type,
          volume: value.volume as string,
          offset: value.offset as number,
          length: value.length as number,
          ...sessionPart(value),
        },
      };
    }
    default:
      return invalid(`unknown command type ${JSON.stringify(value.type)}`);
  }
}

/** Checks that [offset, offset + length) lies inside a volume of `sizeBytes`; returns a failure or null. */
export function checkRange(volume: VolumeInfo, offset: number, length: number): ApplyFailure | null {
  if (offset + length > volume.sizeBytes) {
    return applyFailure(
      ApplyErrorCode.OutOfRange,
      `range [${offset}, ${offset + length}) is outside volume ${JSON.stringify(volume.name)} of ${volume.sizeBytes} bytes`,
    );
  }
  return null;
}

/** One range of `BlockStore.readMany`. */
export interface BlockRead {
  readonly volume: string;
  readonly offset: number;
  readonly length: number;
}

/**
 * The read side of the block store, used by the API service. Reads see every entry applied so far
 * (callers wait for `appliedIndex() >= readIndex` first to make reads linearizable).
 */
export interface BlockStore {
  /** The volume named `name`, or null. Synchronous: volumes are kept in memory. */
  getVolume(name: string): VolumeInfo | null;
  /** Every volume, sorted by name. */
  listVolumes(): VolumeInfo[];
  /**
   * Reads `length` bytes at byte `offset` of `volume`. Blocks never written (or trimmed) read as
   * zeros. Rejects with an error whose `code` is the `ApplyErrorCode` an apply would have returned
   * (`VOLUME_NOT_FOUND`, `OUT_OF_RANGE`, `INVALID_ARGUMENT`). The result is a fresh buffer the
   * caller owns.
   */
  read(volume: string, offset: number, length: number): Promise<Uint8Array>;
  /**
   * Reads several ranges at once, with `read`'s contract for each: one result per read, in order,
   * either the bytes or the error `read` would have rejected with. Results are READ-ONLY: an
   * unwritten whole block may be one shared block of zeros (copy a result before changing it).
   * Rejects only when the store is unusable (failed or closed). Cheaper than `read` per range for
   * many single-block reads (one LevelDB round trip for all of them, no allocation for thin blocks).
   */
  readMany(reads: readonly BlockRead[]): Promise<(Uint8Array | Error)[]>;
  /** The index of the last applied entry. */
  appliedIndex(): Promise<number>;
}
