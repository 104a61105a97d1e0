/**
 * `@rdl/client`: the SDK of the rdl block store. `RdlClient` talks to the daemons' block API;
 * errors are `RdlError` with a stable `code`. The wire protocol is the `@rdl/client/wire` subpath.
 */
export { RdlClient } from './client.js';
export type { CallOptions, RdlClientOptions } from './client.js';
export { ClientCode, ERROR_CODES, RdlError, hasCode } from './errors.js';
export type { RdlErrorOptions } from './errors.js';
export { formatSize, parseSize } from './size.js';
export { WireCode } from './wire/errors.js';
export { BLOCK_SIZE_BYTES, IO_REQUEST_BYTES_MAX } from './wire/limits.js';
export type {
  CreateVolumeResponse,
  LeaderInfo,
  MemberRole,
  MemberStatus,
  StatusResponse,
  TransferLeaderResponse,
  VolumeInfo,
} from './wire/types.js';
