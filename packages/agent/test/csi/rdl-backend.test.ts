// Proves the CSI controller works against rdl through the real client SDK: a minimal rdl.v1.Block
// server (the wire protocol from @rdl/client/wire, on 127.0.0.1 with an ephemeral port) stands in
// for the daemons, RdlClient talks to it, and runCsiDriver serves CSI on a unix socket exactly as
// `rdl-agent csi` does. CreateVolume idempotency and ALREADY_EXISTS, DeleteVolume of an unknown
// id, NOT_FOUND and ListVolumes go through the SDK's real error codes. Also checks that
// parseCsiFlags reports every bad flag at once with AGENT_CONFIG_INVALID.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { blockService, toGrpcError } from '@rdl/client/wire';
import type { VolumeInfo } from '@rdl/client/wire';
import { runCsiDriver } from '../../src/csi/command.js';
import { csiFlagDefaults, parseCsiFlags } from '../../src/csi/config.js';
import { loadCsiServices } from '../../src/csi/proto.js';
import { failureOf, mountCapability } from './harness.js';

interface FakeDaemon {
  address: string;
  volumes: Map<string, number>;
  close(): Promise<void>;
}

/** rdl.v1.Block volume methods over a Map, with the daemon's codes. */
async function startFakeDaemon(): Promise<FakeDaemon> {
  const volumes = new Map<string, number>();
  const info = (name: string): VolumeInfo => ({
    name,
    sizeBytes: volumes.get(name) ?? 0,
    blockSizeBytes: 4096,
    createdAtMs: 1,
  });
  const notFound = (name: string) =>
    toGrpcError({ code: 'VOLUME_NOT_FOUND', message: `volume ${name} does not exist` });
  type Unary = (
    call: grpc.ServerUnaryCall<Record<string, unknown>, unknown>,
    callback: grpc.sendUnaryData<unknown>,
  ) => void;
  const handlers: Record<string, Unary> = {
    createVolume: (call, callback) => {
      const { name, sizeBytes } = call.request as { name: string; sizeBytes: number };
      const existing = volumes.get(name);
      if (existing !== undefined && existing !== sizeBytes) {
        callback(toGrpcError({ code: 'VOLUME_EXISTS', message: `volume ${name} exists with ${existing} bytes` }));
        return;
      }
      volumes.set(name, sizeBytes);
      callback(null, { volume: info(name), isCreated: existing === undefined });
    },
    deleteVolume: (call, callback) => {
      const { name } = call.request as { name: string };
      if (!volumes.delete(name)) callback(notFound(name));
      else callback(null, {});
    },
    listVolumes: (_call, callback) => callback(null, { volumes: [...volumes.keys()].sort().map(info) }),
    statVolume: (call, callback) => {
      const { name } = call.request as { name: string };
      if (!volumes.has(name)) callback(notFound(name));
      else callback(null, { volume: info(name) });
    },
    growVolume: (call, callback) => {
      const { name, sizeBytes } = call.request as { name: string; sizeBytes: number };
      if (!volumes.has(name)) {
        callback(notFound(name));
        return;
      }
      volumes.set(name, Math.max(sizeBytes, volumes.get(name) ?? 0));
      callback(null, { volume: info(name) });
    },
    status: (_call, callback) => callback(toGrpcError({ code: 'UNAVAILABLE', message: 'not implemented by the fake' })),
    transferLeader: (_call, callback) =>
      callback(toGrpcError({ code: 'UNAVAILABLE', message: 'not implemented by the fake' })),
  };
  const server = new grpc.Server();
  server.addService(blockService, {
    ...handlers,
    io: (call: grpc.ServerDuplexStream<unknown, unknown>) =>
      call.emit('error', toGrpcError({ code: 'UNAVAILABLE', message: 'no io here' })),
  } as unknown as grpc.UntypedServiceImplementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, boundPort) =>
      err === null ? resolve(boundPort) : reject(err),
    ),
  );
  return {
    address: `127.0.0.1:${port}`,
    volumes,
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}

function flags(overrides: Record<string, string | undefined>) {
  return { ...csiFlagDefaults, ...overrides };
}

test('the controller provisions through RdlClient with the SDK error codes', async (t) => {
  const daemon = await startFakeDaemon();
  const root = mkdtempSync(join(tmpdir(), 'rdl-csi-sdk-'));
  const config = parseCsiFlags(
    flags({
      endpoint: `unix://${join(root, 'csi.sock')}`,
      rdlEndpoints: daemon.address,
      nodeId: 'node-1',
      stateDir: join(root, 'state'),
      requestTimeoutMs: '3000',
    }),
  );
  const driver = await runCsiDriver(config, pino({ level: 'silent' }));
  const services = loadCsiServices();
  const client = new services.Controller(`unix://${driver.server.socketPath}`, grpc.credentials.createInsecure());
  const call = <T>(method: string, request: object) =>
    new Promise<T>((resolve, reject) =>
      (client as unknown as Record<string, (r: object, cb: (e: Error | null, v: T) => void) => void>)[method](
        request,
        (err, value) => (err === null ? resolve(value) : reject(err)),
      ),
    );
  try {
    const request = {
      name: 'pvc-sdk',
      capacity_range: { required_bytes: 5000 },
      volume_capabilities: [mountCapability()],
    };
    const created = await call<{ volume: { volume_id: string; capacity_bytes: string } }>('CreateVolume', request);
    t.deepEqual(created.volume, {
      capacity_bytes: '8192',
      volume_id: 'pvc-sdk',
      volume_context: {},
      content_source: null,
      accessible_topology: [],
    });
    t.is(daemon.volumes.get('pvc-sdk'), 8192);
    t.deepEqual(await call('CreateVolume', request), created);
    const conflict = failureOf(
      await t.throwsAsync(call('CreateVolume', { ...request, capacity_range: { required_bytes: 1 << 20 } })),
    );
    t.is(conflict.status, grpc.status.ALREADY_EXISTS);
    const listed = await call<{ entries: { volume: { volume_id: string } }[] }>('ListVolumes', {});
    t.deepEqual(
      listed.entries.map((entry) => entry.volume.volume_id),
      ['pvc-sdk'],
    );
    const grown = await call<{ capacity_bytes: string }>('ControllerExpandVolume', {
      volume_id: 'pvc-sdk',
      capacity_range: { required_bytes: 16384 },
    });
    t.is(grown.capacity_bytes, '16384');
    const missing = failureOf(
      await t.throwsAsync(
        call('ValidateVolumeCapabilities', { volume_id: 'pvc-none', volume_capabilities: [mountCapability()] }),
      ),
    );
    t.is(missing.status, grpc.status.NOT_FOUND);
    await call('DeleteVolume', { volume_id: 'pvc-sdk' });
    t.false(daemon.volumes.has('pvc-sdk'));
    await call('DeleteVolume', { volume_id: 'pvc-sdk' });
  } finally {
    client.close();
    await driver.close();
    await daemon.close();
    rmSync(root, { recursive: true, force: true });
  }
});

test('an unreachable rdl is UNAVAILABLE to the CO, within the request timeout', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'rdl-csi-sdk-'));
  // A port nothing listens on: bind one, note it, close it.
  const daemon = await startFakeDaemon();
  await daemon.close();
  const config = parseCsiFlags(
    flags({
      endpoint: `unix://${join(root, 'csi.sock')}`,
      rdlEndpoints: daemon.address,
      nodeId: 'n',
      stateDir: join(root, 's'),
      requestTimeoutMs: '500',
    }),
  );
  const driver = await runCsiDriver(config, pino({ level: 'silent' }));
  const client = new (loadCsiServices().Controller)(
    `unix://${driver.server.socketPath}`,
    grpc.credentials.createInsecure(),
  );
  try {
    const err = await new Promise<Error>((resolve) =>
      (client as unknown as Record<string, (r: object, o: object, cb: (e: Error | null) => void) => void>).CreateVolume(
        { name: 'v', volume_capabilities: [mountCapability()] },
        { deadline: Date.now() + 10_000 },
        (error) => resolve(error as Error),
      ),
    );
    const failure = failureOf(err);
    t.is(failure.status, grpc.status.UNAVAILABLE, failure.details);
    t.is(failure.rdlCode, 'AGENT_CSI_BACKEND_FAILED');
  } finally {
    client.close();
    await driver.close();
    rmSync(root, { recursive: true, force: true });
  }
});

test('parseCsiFlags lists every problem in one AGENT_CONFIG_INVALID error', (t) => {
  const error = t.throws(() =>
    parseCsiFlags(
      flags({
        endpoint: 'tcp://0.0.0.0:1',
        mode: 'both',
        rdlEndpoints: 'nohostport',
        nbdPort: '70000',
        defaultVolumeSize: '1000',
        stateDir: 'rel',
        logLevel: 'loud',
      }),
      {},
    ),
  );
  t.is((error as { code?: string }).code, 'AGENT_CONFIG_INVALID');
  for (const flag of [
    '--endpoint',
    '--mode',
    '--rdl-endpoints',
    '--nbd-port',
    '--default-volume-size',
    '--state-dir',
    '--log-level',
  ]) {
    t.true(error.message.includes(flag), flag);
  }
  const config = parseCsiFlags(flags({ rdlEndpoints: 'a:1, b:2' }), { NODE_ID: 'from-env' });
  t.is(config.nodeId, 'from-env');
  t.deepEqual(config.rdlEndpoints, ['a:1', 'b:2']);
  t.is(config.defaultVolumeSizeBytes, 1024 ** 3);
  t.true(Object.isFrozen(config));
});
