import { createHash } from 'node:crypto';
import { BLOCK_SIZE_BYTES, VOLUME_NAME_PATTERN, VOLUME_SIZE_BYTES_MAX } from '@rdl/client/wire';
import { CsiErrorCode, csiError } from './errors.js';
import type { CsiErrorCode as CsiErrorCodeType } from './errors.js';
import type { AccessModeName, CapacityRange, Int64, VolumeCapability } from './types.js';

/** Volume sizes are whole rdl blocks. */
export const volumeBlockSizeBytes = BLOCK_SIZE_BYTES;

/** The largest volume rdl stores. */
export const volumeSizeBytesMax = VOLUME_SIZE_BYTES_MAX;

/**
 * Access modes rdl volumes support: one node writes (an NBD device attached on one node). The
 * SINGLE_NODE_*_WRITER pair refines SINGLE_NODE_WRITER; the spec requires accepting the old mode
 * whenever the new ones are supported.
 */
export const supportedAccessModes: ReadonlySet<AccessModeName> = new Set<AccessModeName>([
  'SINGLE_NODE_WRITER',
  'SINGLE_NODE_SINGLE_WRITER',
  'SINGLE_NODE_MULTI_WRITER',
]);

/** Filesystems NodeStageVolume can create and grow; '' means the default, ext4. */
export const supportedFsTypes: ReadonlySet<string> = new Set(['', 'ext4', 'xfs']);

/** The filesystem used when MountVolume.fs_type is empty. */
export const defaultFsType = 'ext4';

/** Total bytes of MountVolume.mount_flags the spec allows. */
const mountFlagsBytesMax = 4096;

/** Fails with ARGUMENT_MISSING when a REQUIRED string field is empty. */
export function requireString(value: string | undefined | null, field: string): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw csiError(CsiErrorCode.ArgumentMissing, `${field} is required`);
  }
  return value;
}

/** Fails with ARGUMENT_MISSING when a REQUIRED message field is absent. */
export function requirePresent<T>(value: T | null | undefined, field: string): T {
  if (value === null || value === undefined) throw csiError(CsiErrorCode.ArgumentMissing, `${field} is required`);
  return value;
}

/** Fails with ARGUMENT_INVALID unless `path` is absolute (the spec requires absolute paths). */
export function requireAbsolutePath(value: string | undefined | null, field: string): string {
  const path = requireString(value, field);
  if (!path.startsWith('/') || path.includes('\0')) {
    throw csiError(CsiErrorCode.ArgumentInvalid, `${field} must be an absolute path, got ${JSON.stringify(path)}`);
  }
  return path;
}

/**
 * Parses a decoded int64 into a safe integer. Negative values are ARGUMENT_INVALID (the spec says
 * the byte fields MUST NOT be negative); values beyond 2^53 are CAPACITY_OUT_OF_RANGE.
 */
export function int64ToSafeInteger(value: Int64 | undefined | null, field: string): number {
  if (value === undefined || value === null || value === '') return 0;
  let big: bigint;
  try {
    big = BigInt(value);
  } catch (cause) {
    throw csiError(CsiErrorCode.ArgumentInvalid, `${field} is not an integer: ${String(value)}`, cause);
  }
  if (big < 0n) throw csiError(CsiErrorCode.ArgumentInvalid, `${field} must not be negative, got ${big}`);
  if (big > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw csiError(CsiErrorCode.CapacityOutOfRange, `${field} ${big} is beyond what rdl can store`);
  }
  return Number(big);
}

/** Limits that shape the size CreateVolume and ControllerExpandVolume choose. */
export interface SizeLimits {
  /** Size used when the capacity range sets neither bound. */
  defaultVolumeSizeBytes: number;
  /** Largest volume the driver creates (at most `volumeSizeBytesMax`). */
  maxVolumeSizeBytes: number;
}

/**
 * The size to provision for a capacity range: `required_bytes` rounded up to whole 4 KiB blocks,
 * or the default size when nothing is required, capped to `limit_bytes` rounded down. Fails with
 * CAPACITY_OUT_OF_RANGE when no block multiple lies in [required, limit] or the size exceeds the
 * maximum, and ARGUMENT_INVALID on negative bounds.
 */
export function chooseVolumeSize(range: CapacityRange | null, limits: SizeLimits): number {
  const requiredBytes = int64ToSafeInteger(range?.required_bytes, 'capacity_range.required_bytes');
  const limitBytes = int64ToSafeInteger(range?.limit_bytes, 'capacity_range.limit_bytes');
  if (limitBytes > 0 && requiredBytes > limitBytes) {
    throw csiError(
      CsiErrorCode.CapacityOutOfRange,
      `capacity_range.required_bytes ${requiredBytes} exceeds limit_bytes ${limitBytes}`,
    );
  }
  let sizeBytes = requiredBytes > 0 ? roundUpToBlock(requiredBytes) : limits.defaultVolumeSizeBytes;
  if (limitBytes > 0 && sizeBytes > limitBytes) sizeBytes = roundDownToBlock(limitBytes);
  if (sizeBytes < requiredBytes || sizeBytes === 0) {
    throw csiError(
      CsiErrorCode.CapacityOutOfRange,
      `no multiple of ${volumeBlockSizeBytes} bytes lies within capacity_range [${requiredBytes}, ${limitBytes}]`,
    );
  }
  if (sizeBytes > limits.maxVolumeSizeBytes) {
    throw csiError(
      CsiErrorCode.CapacityOutOfRange,
      `${sizeBytes} bytes exceeds the largest volume this driver creates (${limits.maxVolumeSizeBytes} bytes)`,
    );
  }
  return sizeBytes;
}

/** True when an existing volume of `sizeBytes` satisfies `range` (CreateVolume idempotency). */
export function sizeSatisfiesRange(sizeBytes: number, range: CapacityRange | null): boolean {
  const requiredBytes = int64ToSafeInteger(range?.required_bytes, 'capacity_range.required_bytes');
  const limitBytes = int64ToSafeInteger(range?.limit_bytes, 'capacity_range.limit_bytes');
  return sizeBytes >= requiredBytes && (limitBytes === 0 || sizeBytes <= limitBytes);
}

/** Rounds up to a whole number of rdl blocks. */
export function roundUpToBlock(bytes: number): number {
  return Math.ceil(bytes / volumeBlockSizeBytes) * volumeBlockSizeBytes;
}

/** Rounds down to a whole number of rdl blocks. */
export function roundDownToBlock(bytes: number): number {
  return Math.floor(bytes / volumeBlockSizeBytes) * volumeBlockSizeBytes;
}

/** Characters the spec bans from CreateVolume names (control characters but common whitespace). */
// eslint-disable-next-line no-control-regex
const bannedNameCharacters = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]/;

/**
 * The rdl volume name (and CSI volume_id, and NBD export name) for a CreateVolume name. Names rdl
 * accepts as they are (Kubernetes sends `pvc-<uuid>`) are used unchanged; any other name maps to
 * `csi-` and 40 hex digits of its SHA-256, so the mapping is deterministic and a retried
 * CreateVolume finds the volume it created without any state in the controller.
 */
export function volumeIdForName(name: string): string {
  if (bannedNameCharacters.test(name)) {
    throw csiError(CsiErrorCode.ArgumentInvalid, 'name contains control characters the CSI spec bans');
  }
  if (VOLUME_NAME_PATTERN.test(name)) return name;
  return `csi-${createHash('sha256').update(name, 'utf8').digest('hex').slice(0, 40)}`;
}

/** True when `volumeId` is a name rdl could hold (anything else cannot exist). */
export function isPlausibleVolumeId(volumeId: string): boolean {
  return VOLUME_NAME_PATTERN.test(volumeId);
}

/**
 * Why rdl cannot serve a capability, or undefined when it can. Checks that an access type and an
 * access mode are set, that the mode is a single-node writer mode, and for mounts that the
 * filesystem is ext4/xfs and the mount flags fit the spec's 4 KiB and contain no separator that
 * could smuggle another option.
 */
export function capabilityProblem(capability: VolumeCapability): string | undefined {
  const accessType = accessTypeOf(capability);
  if (accessType === undefined) return 'volume_capability.access_type (block or mount) is required';
  const mode = capability.access_mode?.mode ?? 'UNKNOWN';
  if (mode === 'UNKNOWN') return 'volume_capability.access_mode is required';
  if (!supportedAccessModes.has(mode)) {
    return `access mode ${mode} is not supported: rdl volumes attach to one node (supported: ${[...supportedAccessModes].join(', ')})`;
  }
  if (accessType === 'mount') {
    const mount = capability.mount as NonNullable<VolumeCapability['mount']>;
    if (!supportedFsTypes.has(mount.fs_type)) {
      return `fs_type ${JSON.stringify(mount.fs_type)} is not supported (supported: ext4, xfs)`;
    }
    const flags = mount.mount_flags ?? [];
    if (flags.reduce((sum, flag) => sum + Buffer.byteLength(flag), 0) > mountFlagsBytesMax) {
      return `mount_flags exceed ${mountFlagsBytesMax} bytes`;
    }
    if (flags.some((flag) => flag.length === 0 || flag.includes(',') || flag.includes('\0'))) {
      return 'mount_flags must be non-empty single options (no commas)';
    }
  }
  return undefined;
}

/** Throws `code` (CAPABILITY_UNSUPPORTED or CAPABILITY_EXCEEDED, by call site) when unsupported. */
export function assertCapabilitySupported(capability: VolumeCapability, code: CsiErrorCodeType): void {
  const problem = capabilityProblem(capability);
  if (problem === undefined) return;
  throw csiError(problem.endsWith('is required') ? CsiErrorCode.ArgumentMissing : code, problem);
}

/** 'block' or 'mount', or undefined when the oneof is unset. */
export function accessTypeOf(capability: VolumeCapability): 'block' | 'mount' | undefined {
  if (capability.access_type === 'block' || (capability.block !== null && capability.block !== undefined)) {
    return 'block';
  }
  if (capability.access_type === 'mount' || (capability.mount !== null && capability.mount !== undefined)) {
    return 'mount';
  }
  return undefined;
}

/** A canonical string of a capability, to compare the arguments of repeated Stage/Publish calls. */
export function capabilityKey(capability: VolumeCapability): string {
  const accessType = accessTypeOf(capability);
  const mode = capability.access_mode?.mode ?? 'UNKNOWN';
  if (accessType === 'mount') {
    const mount = capability.mount as NonNullable<VolumeCapability['mount']>;
    return JSON.stringify(['mount', mode, mount.fs_type || defaultFsType, mount.mount_flags ?? []]);
  }
  return JSON.stringify([accessType ?? 'none', mode]);
}

const tokenPrefix = 'rdl1:';

/** The ListVolumes token that resumes after `volumeId` (opaque to the CO). */
export function encodeListToken(volumeId: string): string {
  return tokenPrefix + Buffer.from(volumeId, 'utf8').toString('base64url');
}

/** The volume id a token resumes after; TOKEN_INVALID (gRPC ABORTED) for a token not issued here. */
export function decodeListToken(token: string): string {
  const encoded = token.startsWith(tokenPrefix) ? token.slice(tokenPrefix.length) : undefined;
  if (encoded !== undefined && /^[A-Za-z0-9_-]+$/.test(encoded)) {
    const volumeId = Buffer.from(encoded, 'base64url').toString('utf8');
    if (encodeListToken(volumeId) === token && isPlausibleVolumeId(volumeId)) return volumeId;
  }
  throw csiError(CsiErrorCode.TokenInvalid, `starting_token ${JSON.stringify(token)} was not issued by this plugin`);
}
