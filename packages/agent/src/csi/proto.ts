import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/**
 * Absolute path of `csi.proto`. tsc does not copy .proto files to dist/, so the compiled module
 * (dist/src/csi/proto.js) reaches back to the source tree, which ships with the package.
 */
export const csiProtoPath = fileURLToPath(new URL('../../../src/csi/proto/csi.proto', import.meta.url));

/**
 * proto-loader options shared by the server and the test clients: snake_case names as in the
 * specification, int64 as decimal strings (range-checked by the driver, never silently rounded),
 * enums as names, proto3 defaults filled in, and a virtual field per oneof naming the member set.
 */
export const csiLoaderOptions: protoLoader.Options = Object.freeze({
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});

let cachedDefinition: protoLoader.PackageDefinition | undefined;

/** Loads (once) the `csi.v1` package definition. */
export function loadCsiPackageDefinition(): protoLoader.PackageDefinition {
  cachedDefinition ??= protoLoader.loadSync(csiProtoPath, csiLoaderOptions);
  return cachedDefinition;
}

/** The three CSI service constructors (clients) and definitions (servers) of `csi.v1`. */
export interface CsiServices {
  Identity: grpc.ServiceClientConstructor;
  Controller: grpc.ServiceClientConstructor;
  Node: grpc.ServiceClientConstructor;
}

/** Loads the `csi.v1` services as grpc-js objects. */
export function loadCsiServices(): CsiServices {
  const root = grpc.loadPackageDefinition(loadCsiPackageDefinition()) as unknown as {
    csi: { v1: CsiServices };
  };
  return root.csi.v1;
}
