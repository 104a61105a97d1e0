/**
 * `@rdl/daemon`: the regional daemon `rdld` as a library (the `rdld` binary is src/main.ts). The
 * explicit export list is the public API: start a daemon in-process, load and validate its
 * configuration, and the gRPC peer transport.
 */
export { Daemon, realClock, realRandom, startupCode } from './daemon.js';
export type { DaemonOptions, DaemonPorts } from './daemon.js';
export {
  buildCommand,
  configOptions,
  loadConfig,
  parseAddress,
  parseArgs,
  parseBytes,
  parsePeerSpec,
} from './config.js';
export type { ConfigOption, ConfigSources, DaemonConfig, FlagValues, PeerConfig, RaftTuning } from './config.js';
export { DaemonError, DaemonErrorCode, codeOf, hasCode } from './errors.js';
export { RDLD_ENVIRONMENT, RDLD_NODE_FLAGS, missingNodeFlags } from './node-flags.js';
export { createRootLogger, logLevels, moduleLogger } from './logging.js';
export type { Logger, RootLoggerOptions } from './logging.js';
export { DaemonMetrics } from './metrics.js';
export type { RaftGaugeSource, TransportGaugeSource } from './metrics.js';
export { readinessOf, startHealthServer } from './health.js';
export type { HealthServer, HealthServerOptions, Readiness } from './health.js';
export { GrpcTransport } from './transport/grpc-transport.js';
export type { GrpcTransportOptions, TransportPeer } from './transport/grpc-transport.js';
export { PEER_SERVICE_NAME } from './transport/peer-protocol.js';
export { BlockApi, blockServerDefinition } from './api/block-service.js';
export type { ApiLimits, ApiMember, ApiRaftNode, BlockApiOptions } from './api/block-service.js';

/** The package name, for logs. */
export const packageName = '@rdl/daemon';
