import {
  BLOCK_SIZE_BYTES,
  IO_BATCH_REQUESTS_MAX,
  IO_REQUEST_BYTES_MAX,
  SESSION_ID_PATTERN,
  VOLUME_NAME_PATTERN,
  VOLUME_SIZE_BYTES_MAX,
} from './limits.js';
import { WireCode } from './errors.js';
import type { IoRequest, IoRequestBatch, WireError } from './types.js';

/**
 * Shared input checks, so the daemon refuses exactly what the SDK refuses before sending. Each
 * returns `undefined` when the value is acceptable, else the `WireError` to answer with. They check
 * shape and limits only; whether a volume exists or a range fits it is the state machine's call.
 */

function invalid(message: string): WireError {
  return { code: WireCode.INVALID_ARGUMENT, message };
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** Checks a volume name against `VOLUME_NAME_PATTERN`. */
export function checkVolumeName(name: unknown): WireError | undefined {
  if (typeof name !== 'string' || !VOLUME_NAME_PATTERN.test(name)) {
    return invalid(`volume name must match ${VOLUME_NAME_PATTERN.source}, got ${JSON.stringify(name)}`);
  }
  return undefined;
}

/** Checks a volume size: a positive multiple of `BLOCK_SIZE_BYTES`, at most `VOLUME_SIZE_BYTES_MAX`. */
export function checkVolumeSize(sizeBytes: unknown): WireError | undefined {
  if (!isCount(sizeBytes) || sizeBytes === 0 || sizeBytes % BLOCK_SIZE_BYTES !== 0) {
    return invalid(`volume size must be a positive multiple of ${BLOCK_SIZE_BYTES} bytes, got ${String(sizeBytes)}`);
  }
  if (sizeBytes > VOLUME_SIZE_BYTES_MAX) {
    return invalid(`volume size ${sizeBytes} is above the maximum ${VOLUME_SIZE_BYTES_MAX}`);
  }
  return undefined;
}

const ioOps: ReadonlySet<unknown> = new Set(['read', 'write', 'writeZeroes', 'trim', 'flush']);
const mutatingOps: ReadonlySet<unknown> = new Set(['write', 'writeZeroes', 'trim']);

/** True for the ops that change data and therefore carry a (session, seq) pair. */
export function isMutatingOp(op: string): boolean {
  return mutatingOps.has(op);
}

/**
 * Checks the shape of a decoded `IoRequest` (anything a peer might send): field types, op, name,
 * safe non-negative integers, `data` only on writes and matching `length`, `length` at most
 * `IO_REQUEST_BYTES_MAX` (`TOO_LARGE`), and a session plus `seq >= 1` and `ackedBelow <= seq` on
 * mutating ops (`seq` and `ackedBelow` may be absent on the others, else safe non-negative
 * integers). The request `id` must be checked first by the caller, since the answer needs it.
 */
export function checkIoRequest(request: IoRequest): WireError | undefined {
  if (typeof request !== 'object' || request === null) return invalid('IO request must be a map');
  const { op, offset, length, data, seq, ackedBelow } = request;
  if (!ioOps.has(op)) return invalid(`unknown IO op ${JSON.stringify(op)}`);
  const nameError = checkVolumeName(request.volume);
  if (nameError !== undefined) return nameError;
  if (!isCount(offset) || !isCount(length)) return invalid('offset and length must be safe non-negative integers');
  if (length > IO_REQUEST_BYTES_MAX) {
    return { code: WireCode.TOO_LARGE, message: `IO length ${length} is above the maximum ${IO_REQUEST_BYTES_MAX}` };
  }
  if (op === 'write') {
    if (!(data instanceof Uint8Array)) return invalid('write needs binary data');
    if (data.length !== length) return invalid(`write data is ${data.length} bytes but length says ${length}`);
  } else if (data !== undefined && data !== null) {
    return invalid(`${op} carries no data`);
  }
  if (op === 'flush' && (offset !== 0 || length !== 0)) return invalid('flush has no range (offset and length 0)');
  if (mutatingOps.has(op)) {
    if (!isCount(seq) || !isCount(ackedBelow)) return invalid('seq and ackedBelow must be safe non-negative integers');
    if (typeof request.session !== 'string' || !SESSION_ID_PATTERN.test(request.session)) {
      return invalid(`session must match ${SESSION_ID_PATTERN.source}`);
    }
    if (seq < 1) return invalid(`${op} needs seq >= 1`);
    if (ackedBelow > seq) return invalid(`ackedBelow ${ackedBelow} is above seq ${seq}`);
  } else if ((seq !== undefined && !isCount(seq)) || (ackedBelow !== undefined && !isCount(ackedBelow))) {
    return invalid('seq and ackedBelow must be safe non-negative integers when present');
  }
  return undefined;
}

/** True for an `id` an IO request can be answered under: a safe integer >= 0. */
export function isIoRequestId(id: unknown): id is number {
  return isCount(id);
}

/**
 * Checks the envelope of a decoded `Io` stream message (`IoRequestBatch`): a map whose `requests`
 * is an array of 1 to `IO_BATCH_REQUESTS_MAX` entries (`TOO_LARGE` above). Returns `undefined`
 * when acceptable, else the error to fail the stream with (such a batch has no request one could
 * answer on its own). The requests themselves are checked one by one with `checkIoRequest`.
 */
export function checkIoBatch(message: unknown): WireError | undefined {
  if (typeof message !== 'object' || message === null || Array.isArray(message) || message instanceof Uint8Array) {
    return invalid('an Io message must be a map { requests: [...] }');
  }
  const requests = (message as Partial<IoRequestBatch>).requests;
  if (!Array.isArray(requests)) {
    return invalid(
      'an Io message must carry a `requests` array (a batch); a bare request is the pre-batch protocol, no longer served',
    );
  }
  if (requests.length === 0) return invalid('an Io message must carry at least one request');
  if (requests.length > IO_BATCH_REQUESTS_MAX) {
    return {
      code: WireCode.TOO_LARGE,
      message: `an Io message carries ${requests.length} requests, above the maximum ${IO_BATCH_REQUESTS_MAX}`,
    };
  }
  return undefined;
}
