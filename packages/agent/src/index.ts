/**
 * `@rdl/agent`: the node agent. Explicit export list; nothing else is public.
 */
export { AgentError, AgentErrorCode, codeOf } from './errors.js';
export { AGENT_NODE_FLAGS } from './node-flags.js';
export type {
  OpenOptions,
  VolumeHandle,
  VolumeInfo,
  VolumeProvider,
  WriteOptions,
  WriteZeroesOptions,
} from './nbd/volume.js';
export { MemoryVolumeProvider, checkRange } from './nbd/memory-volume.js';
export type {
  MemoryVolumeInterceptor,
  MemoryVolumeOp,
  MemoryVolumeProviderOptions,
  MemoryVolumeStats,
} from './nbd/memory-volume.js';
export { NbdServer } from './nbd/server.js';
export type { NbdCounters, NbdListenAddress, NbdServerOptions } from './nbd/server.js';
export { RdlVolumeProvider } from './nbd/rdl-volume.js';
export type { RdlVolumeClient, RdlVolumeProviderOptions } from './nbd/rdl-volume.js';
