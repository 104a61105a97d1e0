// Test helper (not a test file): starts the CSI server on a unix socket in a temp dir with an
// in-memory VolumeAdmin and a FakeHost, and gives promise-returning grpc-js clients built from
// the same csi.proto a CO would use. The admin tells the FakeHost each volume's size, as the
// agent's NBD server announces the current rdl size to every new connection.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { NodeStateStore } from '../../src/csi/node-state.js';
import { loadCsiServices } from '../../src/csi/proto.js';
import { startCsiServer } from '../../src/csi/server.js';
import type { CsiMode, CsiServer } from '../../src/csi/server.js';
import { MemoryVolumeAdmin } from '../../src/csi/volume-admin.js';
import type { AdminVolume } from '../../src/csi/volume-admin.js';
import { FakeHost } from './fake-host.js';

export type Call = <Response = any>(method: string, request?: object) => Promise<Response>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface Harness {
  root: string;
  admin: MemoryVolumeAdmin;
  host: FakeHost;
  server: CsiServer;
  stateDir: string;
  identity: Call;
  controller: Call;
  node: Call;
  /** Stops the server and starts a new one on the same state dir, host and admin (agent restart). */
  restart(): Promise<void>;
  close(): Promise<void>;
}

function promisify(client: grpc.Client): Call {
  return (method, request = {}) =>
    new Promise((resolve, reject) => {
      const fn = (client as unknown as Record<string, (...args: unknown[]) => void>)[method];
      if (typeof fn !== 'function') throw new Error(`no method ${method}`);
      fn.call(
        client,
        request,
        { deadline: Date.now() + 10_000 },
        (err: grpc.ServiceError | null, response: unknown) => {
          if (err !== null) reject(err);
          else resolve(response as never);
        },
      );
    });
}

export interface HarnessOptions {
  mode?: CsiMode;
  devicesCount?: number;
  capacityBytes?: number;
}

/** A MemoryVolumeAdmin whose sizes are what the FakeHost's NBD server announces on connect. */
class ExportSizingVolumeAdmin extends MemoryVolumeAdmin {
  readonly #host: FakeHost;

  constructor(host: FakeHost) {
    super();
    this.#host = host;
  }

  override async createVolume(name: string, sizeBytes: number): Promise<AdminVolume> {
    const volume = await super.createVolume(name, sizeBytes);
    this.#host.exportSizes.set(name, volume.sizeBytes);
    return volume;
  }

  override async growVolume(name: string, sizeBytes: number): Promise<AdminVolume> {
    const volume = await super.growVolume(name, sizeBytes);
    this.#host.exportSizes.set(name, volume.sizeBytes);
    return volume;
  }

  override async deleteVolume(name: string): Promise<void> {
    await super.deleteVolume(name);
    this.#host.exportSizes.delete(name);
  }
}

export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const root = mkdtempSync(join(tmpdir(), 'rdl-csi-'));
  const host = new FakeHost(root, options.devicesCount ?? 4);
  const admin = new ExportSizingVolumeAdmin(host);
  const stateDir = join(root, 'state');
  const endpoint = `unix://${join(root, 'csi', 'csi.sock')}`;
  const logger = pino({ level: 'silent' });
  const services = loadCsiServices();
  const start = (): Promise<CsiServer> =>
    startCsiServer({
      endpoint,
      mode: options.mode ?? 'all',
      logger,
      controller: {
        volumeAdmin: admin,
        defaultVolumeSizeBytes: 1024 ** 3,
        maxVolumeSizeBytes: 1024 ** 4,
        capacityBytes: options.capacityBytes ?? 10 * 1024 ** 3,
        listEntriesMax: 100,
      },
      node: {
        nodeId: 'node-a',
        volumeAdmin: admin,
        runner: host,
        stateStore: new NodeStateStore(stateDir),
        nbdHost: '127.0.0.1',
        nbdPort: 10809,
        sysBlockDir: host.sysBlockDir,
        devDir: host.devDir,
        nbdDevicesMax: 16,
        maxVolumesPerNode: 16,
      },
    });
  let server = await start();
  const clients: grpc.Client[] = [];
  const makeClient = (ctor: grpc.ServiceClientConstructor): Call => {
    const client = new ctor(endpoint, grpc.credentials.createInsecure());
    clients.push(client);
    return promisify(client);
  };
  const harness: Harness = {
    root,
    admin,
    host,
    get server() {
      return server;
    },
    stateDir,
    identity: makeClient(services.Identity),
    controller: makeClient(services.Controller),
    node: makeClient(services.Node),
    async restart() {
      await server.close();
      server = await start();
    },
    async close() {
      for (const client of clients) client.close();
      await server.close();
      rmSync(root, { recursive: true, force: true });
    },
  };
  return harness;
}

/** The gRPC status and rdl code of a failed call. */
export function failureOf(err: unknown): { status: number; rdlCode: string | undefined; details: string } {
  const serviceError = err as grpc.ServiceError;
  const value = serviceError.metadata?.get('rdl-code')[0];
  return {
    status: serviceError.code,
    rdlCode: typeof value === 'string' ? value : value?.toString(),
    details: serviceError.details,
  };
}

export const mountCapability = (fsType = '', mode = 'SINGLE_NODE_WRITER', mountFlags: string[] = []) => ({
  mount: { fs_type: fsType, mount_flags: mountFlags },
  access_mode: { mode },
});

export const blockCapability = (mode = 'SINGLE_NODE_WRITER') => ({ block: {}, access_mode: { mode } });
