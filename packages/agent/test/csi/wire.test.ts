// Proves csi.proto is wire-compatible with the CSI specification independently of the .proto file
// itself: requests are hand-encoded as raw protobuf bytes using the field numbers printed in the
// specification (spec.md of container-storage-interface/spec), sent to the server on its unix
// socket with identity serializers, and the raw response bytes are decoded by field number. A
// wrong number or type in csi.proto would make the server read a different field than the CO
// sent, and these assertions fail.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { startHarness } from './harness.js';

// ---- a minimal protobuf writer and reader (varint and length-delimited fields only)

function varint(value: number | bigint): Buffer {
  let rest = BigInt(value);
  const bytes: number[] = [];
  do {
    let byte = Number(rest & 0x7fn);
    rest >>= 7n;
    if (rest !== 0n) byte |= 0x80;
    bytes.push(byte);
  } while (rest !== 0n);
  return Buffer.from(bytes);
}
const fieldVarint = (field: number, value: number | bigint) => Buffer.concat([varint((field << 3) | 0), varint(value)]);
const fieldBytes = (field: number, value: Buffer | string) => {
  const payload = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  return Buffer.concat([varint((field << 3) | 2), varint(payload.length), payload]);
};
const message = (...fields: Buffer[]) => Buffer.concat(fields);

interface Field {
  field: number;
  varint?: bigint;
  bytes?: Buffer;
}
function decode(buffer: Buffer): Field[] {
  const fields: Field[] = [];
  let offset = 0;
  const readVarint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const byte = buffer[offset++];
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7n;
    }
  };
  while (offset < buffer.length) {
    const key = Number(readVarint());
    const field = key >> 3;
    const wireType = key & 7;
    if (wireType === 0) fields.push({ field, varint: readVarint() });
    else if (wireType === 2) {
      const length = Number(readVarint());
      fields.push({ field, bytes: buffer.subarray(offset, offset + length) });
      offset += length;
    } else throw new Error(`unexpected wire type ${wireType}`);
  }
  return fields;
}
const get = (fields: Field[], field: number) => fields.filter((entry) => entry.field === field);

async function rawCall(socketPath: string, path: string, request: Buffer): Promise<Buffer> {
  const client = new grpc.Client(`unix://${socketPath}`, grpc.credentials.createInsecure());
  try {
    return await new Promise<Buffer>((resolve, reject) =>
      client.makeUnaryRequest(
        path,
        (value: Buffer) => value,
        (value: Buffer) => value,
        request,
        (err, value) => (err === null ? resolve(value as Buffer) : reject(err)),
      ),
    );
  } finally {
    client.close();
  }
}

test('CreateVolume: spec field numbers in, spec field numbers out', async (t) => {
  const h = await startHarness();
  try {
    // CreateVolumeRequest{ name=1, capacity_range=2{required_bytes=1}, volume_capabilities=3{
    //   mount=2{fs_type=1}, access_mode=3{mode=1: SINGLE_NODE_WRITER} }, parameters=4 (map) }
    const request = message(
      fieldBytes(1, 'pvc-wire'),
      fieldBytes(2, message(fieldVarint(1, 5000))),
      fieldBytes(3, message(fieldBytes(2, message(fieldBytes(1, 'xfs'))), fieldBytes(3, message(fieldVarint(1, 1))))),
      fieldBytes(4, message(fieldBytes(1, 'csi.storage.k8s.io/pvc/name'), fieldBytes(2, 'data'))),
    );
    const response = decode(await rawCall(h.server.socketPath, '/csi.v1.Controller/CreateVolume', request));
    // CreateVolumeResponse{ volume=1{ capacity_bytes=1, volume_id=2 } }
    const volume = decode(get(response, 1)[0].bytes!);
    t.is(get(volume, 1)[0].varint, 8192n);
    t.is(get(volume, 2)[0].bytes!.toString(), 'pvc-wire');
    t.is((await h.admin.statVolume('pvc-wire')).sizeBytes, 8192);
  } finally {
    await h.close();
  }
});

test('Identity and Node answers decode by the spec numbers', async (t) => {
  const h = await startHarness();
  try {
    // GetPluginInfoResponse{ name=1, vendor_version=2 }
    const info = decode(await rawCall(h.server.socketPath, '/csi.v1.Identity/GetPluginInfo', Buffer.alloc(0)));
    t.is(get(info, 1)[0].bytes!.toString(), 'rdl.csi.rdl.io');
    t.is(get(info, 2)[0].bytes!.toString(), '0.1.0');
    // GetPluginCapabilitiesResponse{ capabilities=1: PluginCapability{ service=1{type=1} | volume_expansion=2{type} } }
    // with VolumeExpansion.Type ONLINE=1, OFFLINE=2.
    const capabilities = get(
      decode(await rawCall(h.server.socketPath, '/csi.v1.Identity/GetPluginCapabilities', Buffer.alloc(0))),
      1,
    ).map((entry) => decode(entry.bytes!));
    t.deepEqual(
      capabilities.map((fields) => [fields[0].field, decode(fields[0].bytes!)[0].varint]),
      [
        [1, 1n], // service CONTROLLER_SERVICE
        [2, 2n], // volume_expansion OFFLINE
      ],
    );
    // ProbeResponse{ ready=1: BoolValue{ value=1 } }
    const probe = decode(await rawCall(h.server.socketPath, '/csi.v1.Identity/Probe', Buffer.alloc(0)));
    t.is(decode(get(probe, 1)[0].bytes!)[0].varint, 1n);
    // NodeGetInfoResponse{ node_id=1, max_volumes_per_node=2 }
    const nodeInfo = decode(await rawCall(h.server.socketPath, '/csi.v1.Node/NodeGetInfo', Buffer.alloc(0)));
    t.is(get(nodeInfo, 1)[0].bytes!.toString(), 'node-a');
    t.is(get(nodeInfo, 2)[0].varint, 16n);
    // NodeGetCapabilitiesResponse{ capabilities=1: { rpc=1{ type=1 } } }: STAGE_UNSTAGE=1, GET_VOLUME_STATS=2, EXPAND_VOLUME=3, SINGLE_NODE_MULTI_WRITER=5
    const nodeCapabilities = get(
      decode(await rawCall(h.server.socketPath, '/csi.v1.Node/NodeGetCapabilities', Buffer.alloc(0))),
      1,
    ).map((entry) => decode(decode(entry.bytes!)[0].bytes!)[0].varint);
    t.deepEqual(nodeCapabilities, [1n, 2n, 3n, 5n]);
    // ControllerGetCapabilitiesResponse: CREATE_DELETE_VOLUME=1, LIST_VOLUMES=3, GET_CAPACITY=4, EXPAND_VOLUME=9, SINGLE_NODE_MULTI_WRITER=13
    const controllerCapabilities = get(
      decode(await rawCall(h.server.socketPath, '/csi.v1.Controller/ControllerGetCapabilities', Buffer.alloc(0))),
      1,
    ).map((entry) => decode(decode(entry.bytes!)[0].bytes!)[0].varint);
    t.deepEqual(controllerCapabilities, [1n, 3n, 4n, 9n, 13n]);
  } finally {
    await h.close();
  }
});

test('Node requests: staging paths, capabilities and capacity ranges land in the right fields', async (t) => {
  const h = await startHarness();
  try {
    await h.admin.createVolume('pvc-w', 1 << 30);
    const staging = `${h.root}/staging`;
    // NodeStageVolumeRequest{ volume_id=1, staging_target_path=3, volume_capability=4{ block=1{}, access_mode=3{mode=7} } }
    await rawCall(
      h.server.socketPath,
      '/csi.v1.Node/NodeStageVolume',
      message(
        fieldBytes(1, 'pvc-w'),
        fieldBytes(3, staging),
        fieldBytes(4, message(fieldBytes(1, Buffer.alloc(0)), fieldBytes(3, message(fieldVarint(1, 7))))),
      ),
    );
    t.deepEqual(h.host.takeCalls(), [`nbd-client 127.0.0.1 10809 ${h.host.device(0)} -N pvc-w`]);
    // NodeGetVolumeStatsRequest{ volume_id=1, volume_path=2 } -> { usage=1{ available=1, total=2, used=3, unit=4 } }
    const stats = decode(
      await rawCall(
        h.server.socketPath,
        '/csi.v1.Node/NodeGetVolumeStats',
        message(fieldBytes(1, 'pvc-w'), fieldBytes(2, staging)),
      ),
    );
    const usage = decode(get(stats, 1)[0].bytes!);
    t.is(get(usage, 2)[0].varint, BigInt(1 << 30));
    t.is(get(usage, 4)[0].varint, 1n); // BYTES
    // NodeExpandVolumeRequest{ volume_id=1, volume_path=2, capacity_range=3{ required_bytes=1 } } -> { capacity_bytes=1 }
    const expanded = decode(
      await rawCall(
        h.server.socketPath,
        '/csi.v1.Node/NodeExpandVolume',
        message(fieldBytes(1, 'pvc-w'), fieldBytes(2, staging), fieldBytes(3, message(fieldVarint(1, 1 << 30)))),
      ),
    );
    t.is(get(expanded, 1)[0].varint, BigInt(1 << 30));
    // ListVolumesRequest{ max_entries=1 } -> { entries=1{ volume=1{ volume_id=2 } }, next_token=2 }
    await h.admin.createVolume('pvc-x', 4096);
    const listed = decode(
      await rawCall(h.server.socketPath, '/csi.v1.Controller/ListVolumes', message(fieldVarint(1, 1))),
    );
    t.is(get(listed, 1).length, 1);
    t.is(get(decode(get(decode(get(listed, 1)[0].bytes!), 1)[0].bytes!), 2)[0].bytes!.toString(), 'pvc-w');
    t.true(get(listed, 2)[0].bytes!.length > 0);
  } finally {
    await h.close();
  }
});
