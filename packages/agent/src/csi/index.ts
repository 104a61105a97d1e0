/**
 * The CSI driver of rdl-agent: Identity, Controller and Node services over a unix socket.
 * Explicit export list; everything else in src/csi is internal.
 */
export { registerCsiCommand, runCsiDriver } from './command.js';
export type { CsiDriver } from './command.js';
export { csiFlagDefaults, parseCsiFlags } from './config.js';
export type { CsiConfig, CsiFlags } from './config.js';
export { ExecCommandRunner, runChecked } from './command-runner.js';
export type { CommandOptions, CommandResult, CommandRunner } from './command-runner.js';
export { controllerCapabilities } from './controller.js';
export type { ControllerOptions } from './controller.js';
export { CsiErrorCode, grpcStatusOfCsiCode } from './errors.js';
export { csiDriverName, csiDriverVersion } from './identity.js';
export { nodeCapabilities } from './node.js';
export type { NodeServiceOptions } from './node.js';
export { NodeStateStore, emptyNodeState } from './node-state.js';
export type { NodeState, PublishedVolume, StagedVolume } from './node-state.js';
export { csiLoaderOptions, csiProtoPath, loadCsiPackageDefinition, loadCsiServices } from './proto.js';
export type { CsiServices } from './proto.js';
export { RdlVolumeAdmin } from './rdl-volume-admin.js';
export type { RdlVolumeAdminClient } from './rdl-volume-admin.js';
export { socketPathOfEndpoint, startCsiServer } from './server.js';
export type { CsiMode, CsiServer, CsiServerOptions } from './server.js';
export { MemoryVolumeAdmin, volumeExistsCode, volumeNotFoundCode } from './volume-admin.js';
export type { AdminVolume, MemoryVolumeAdminOptions, VolumeAdmin } from './volume-admin.js';
