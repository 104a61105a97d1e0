// Proves the CSI Identity and Controller services behave as the CSI spec requires, by calling
// them over the real unix socket with a grpc-js client built from the same csi.proto: plugin
// info and capabilities, CreateVolume sizing (4 KiB rounding, capacity ranges, OUT_OF_RANGE),
// idempotency (same name and size succeeds, incompatible size is ALREADY_EXISTS, DeleteVolume of
// an unknown id succeeds), INVALID_ARGUMENT for missing fields and unsupported capabilities,
// ListVolumes pagination (and ABORTED on a foreign token), GetCapacity, ControllerExpandVolume,
// and rdl failures surfacing as UNAVAILABLE. rdl is the in-memory VolumeAdmin.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { blockCapability, failureOf, mountCapability, startHarness } from './harness.js';
import type { Harness } from './harness.js';

const GiB = 1024 ** 3;

async function withHarness(fn: (h: Harness) => Promise<void>, options = {}): Promise<void> {
  const harness = await startHarness(options);
  try {
    await fn(harness);
  } finally {
    await harness.close();
  }
}

async function rejects(
  t: import('ava').ExecutionContext,
  promise: Promise<unknown>,
  status: grpc.status,
  rdlCode?: string,
) {
  const err = await t.throwsAsync(promise);
  const failure = failureOf(err);
  t.is(
    failure.status,
    status,
    `expected ${grpc.status[status]}, got ${grpc.status[failure.status]}: ${failure.details}`,
  );
  if (rdlCode !== undefined) t.is(failure.rdlCode, rdlCode);
  return failure;
}

test('Identity: plugin info, capabilities and probe', async (t) => {
  await withHarness(async (h) => {
    const info = await h.identity('GetPluginInfo');
    t.is(info.name, 'rdl.csi.rdl.io');
    t.is(info.vendor_version, '0.1.0');
    const capabilities = await h.identity('GetPluginCapabilities');
    t.deepEqual(
      capabilities.capabilities.map(
        (c: { type: string; service?: { type: string }; volume_expansion?: { type: string } }) =>
          c.type === 'service' ? `service:${c.service?.type}` : `expansion:${c.volume_expansion?.type}`,
      ),
      // OFFLINE, never ONLINE: a staged volume cannot grow (the kernel NBD device keeps the size
      // it connected with), so the CO must expand only volumes that are staged nowhere.
      ['service:CONTROLLER_SERVICE', 'expansion:OFFLINE'],
    );
    const probe = await h.identity('Probe');
    t.deepEqual(probe.ready, { value: true });
  });
});

test('ControllerGetCapabilities lists what the controller implements', async (t) => {
  await withHarness(async (h) => {
    const response = await h.controller('ControllerGetCapabilities');
    t.deepEqual(
      response.capabilities.map((c: { rpc: { type: string } }) => c.rpc.type),
      ['CREATE_DELETE_VOLUME', 'LIST_VOLUMES', 'GET_CAPACITY', 'EXPAND_VOLUME', 'SINGLE_NODE_MULTI_WRITER'],
    );
  });
});

test('CreateVolume rounds up to 4 KiB, defaults the size, caps to limit_bytes', async (t) => {
  await withHarness(async (h) => {
    const rounded = await h.controller('CreateVolume', {
      name: 'pvc-a',
      capacity_range: { required_bytes: 10_000 },
      volume_capabilities: [mountCapability()],
    });
    t.is(rounded.volume.volume_id, 'pvc-a');
    t.is(rounded.volume.capacity_bytes, '12288');
    t.is((await h.admin.statVolume('pvc-a')).sizeBytes, 12288);

    const defaulted = await h.controller('CreateVolume', {
      name: 'pvc-b',
      volume_capabilities: [blockCapability()],
      parameters: { 'csi.storage.k8s.io/pvc/name': 'data', 'csi.storage.k8s.io/pvc/namespace': 'default' },
    });
    t.is(defaulted.volume.capacity_bytes, String(GiB));

    const capped = await h.controller('CreateVolume', {
      name: 'pvc-c',
      capacity_range: { limit_bytes: 10_000 },
      volume_capabilities: [mountCapability('xfs')],
    });
    t.is(capped.volume.capacity_bytes, '8192');

    const exact = await h.controller('CreateVolume', {
      name: 'pvc-d',
      capacity_range: { required_bytes: 8192, limit_bytes: 8192 },
      volume_capabilities: [mountCapability()],
    });
    t.is(exact.volume.capacity_bytes, '8192');
  });
});

test('CreateVolume: OUT_OF_RANGE when no 4 KiB multiple fits or the size is too large', async (t) => {
  await withHarness(async (h) => {
    const caps = [mountCapability()];
    await rejects(
      t,
      h.controller('CreateVolume', {
        name: 'x',
        capacity_range: { required_bytes: 5000, limit_bytes: 6000 },
        volume_capabilities: caps,
      }),
      grpc.status.OUT_OF_RANGE,
      'AGENT_CSI_CAPACITY_OUT_OF_RANGE',
    );
    await rejects(
      t,
      h.controller('CreateVolume', {
        name: 'x',
        capacity_range: { required_bytes: 9000, limit_bytes: 8000 },
        volume_capabilities: caps,
      }),
      grpc.status.OUT_OF_RANGE,
    );
    await rejects(
      t,
      h.controller('CreateVolume', {
        name: 'x',
        capacity_range: { required_bytes: 2 * 1024 ** 4 },
        volume_capabilities: caps,
      }),
      grpc.status.OUT_OF_RANGE,
    );
    await rejects(
      t,
      h.controller('CreateVolume', {
        name: 'x',
        capacity_range: { required_bytes: '9223372036854775807' },
        volume_capabilities: caps,
      }),
      grpc.status.OUT_OF_RANGE,
    );
    await rejects(
      t,
      h.controller('CreateVolume', { name: 'x', capacity_range: { required_bytes: -1 }, volume_capabilities: caps }),
      grpc.status.INVALID_ARGUMENT,
    );
    t.deepEqual(await h.admin.listVolumes(), []);
  });
});

test('CreateVolume is idempotent: same name and size succeeds, incompatible size is ALREADY_EXISTS', async (t) => {
  await withHarness(async (h) => {
    const request = {
      name: 'pvc-idem',
      capacity_range: { required_bytes: GiB },
      volume_capabilities: [mountCapability()],
    };
    const first = await h.controller('CreateVolume', request);
    const second = await h.controller('CreateVolume', request);
    t.deepEqual(second, first);
    t.is((await h.admin.listVolumes()).length, 1);
    await rejects(
      t,
      h.controller('CreateVolume', { ...request, capacity_range: { required_bytes: 2 * GiB } }),
      grpc.status.ALREADY_EXISTS,
      'AGENT_CSI_VOLUME_INCOMPATIBLE',
    );
    await rejects(
      t,
      h.controller('CreateVolume', { ...request, capacity_range: { limit_bytes: GiB / 2 } }),
      grpc.status.ALREADY_EXISTS,
    );
    // A smaller requirement the existing volume satisfies is compatible.
    const smaller = await h.controller('CreateVolume', { ...request, capacity_range: { required_bytes: GiB / 2 } });
    t.is(smaller.volume.capacity_bytes, String(GiB));
  });
});

test('CreateVolume: names rdl cannot hold map to a stable csi- id', async (t) => {
  await withHarness(async (h) => {
    const request = { name: 'my volume/ü', volume_capabilities: [mountCapability()] };
    const first = await h.controller('CreateVolume', request);
    t.regex(first.volume.volume_id, /^csi-[0-9a-f]{40}$/);
    const again = await h.controller('CreateVolume', request);
    t.is(again.volume.volume_id, first.volume.volume_id);
    await rejects(
      t,
      h.controller('CreateVolume', { name: 'bad\u0001name', volume_capabilities: [mountCapability()] }),
      grpc.status.INVALID_ARGUMENT,
    );
  });
});

test('CreateVolume: INVALID_ARGUMENT for missing fields, unsupported capabilities and sources', async (t) => {
  await withHarness(async (h) => {
    await rejects(
      t,
      h.controller('CreateVolume', { volume_capabilities: [mountCapability()] }),
      grpc.status.INVALID_ARGUMENT,
      'AGENT_CSI_ARGUMENT_MISSING',
    );
    await rejects(
      t,
      h.controller('CreateVolume', { name: 'v' }),
      grpc.status.INVALID_ARGUMENT,
      'AGENT_CSI_ARGUMENT_MISSING',
    );
    await rejects(
      t,
      h.controller('CreateVolume', {
        name: 'v',
        volume_capabilities: [{ access_mode: { mode: 'SINGLE_NODE_WRITER' } }],
      }),
      grpc.status.INVALID_ARGUMENT,
      'AGENT_CSI_ARGUMENT_MISSING',
    );
    await rejects(
      t,
      h.controller('CreateVolume', { name: 'v', volume_capabilities: [{ mount: {} }] }),
      grpc.status.INVALID_ARGUMENT,
      'AGENT_CSI_ARGUMENT_MISSING',
    );
    for (const mode of [
      'MULTI_NODE_MULTI_WRITER',
      'MULTI_NODE_READER_ONLY',
      'MULTI_NODE_SINGLE_WRITER',
      'SINGLE_NODE_READER_ONLY',
    ]) {
      await rejects(
        t,
        h.controller('CreateVolume', { name: 'v', volume_capabilities: [mountCapability('', mode)] }),
        grpc.status.INVALID_ARGUMENT,
        'AGENT_CSI_CAPABILITY_UNSUPPORTED',
      );
    }
    await rejects(
      t,
      h.controller('CreateVolume', { name: 'v', volume_capabilities: [mountCapability('btrfs')] }),
      grpc.status.INVALID_ARGUMENT,
      'AGENT_CSI_CAPABILITY_UNSUPPORTED',
    );
    await rejects(
      t,
      h.controller('CreateVolume', {
        name: 'v',
        volume_capabilities: [mountCapability('', 'SINGLE_NODE_WRITER', ['ro,exec'])],
      }),
      grpc.status.INVALID_ARGUMENT,
    );
    await rejects(
      t,
      h.controller('CreateVolume', {
        name: 'v',
        volume_capabilities: [mountCapability()],
        parameters: { replicas: '5' },
      }),
      grpc.status.INVALID_ARGUMENT,
      'AGENT_CSI_ARGUMENT_INVALID',
    );
    await rejects(
      t,
      h.controller('CreateVolume', {
        name: 'v',
        volume_capabilities: [mountCapability()],
        volume_content_source: { snapshot: { snapshot_id: 's' } },
      }),
      grpc.status.INVALID_ARGUMENT,
      'AGENT_CSI_ARGUMENT_INVALID',
    );
    t.deepEqual(await h.admin.listVolumes(), []);
    // Every supported single-node writer mode, block and mount, ext4 and xfs, is accepted.
    for (const [index, capability] of [
      mountCapability('ext4'),
      mountCapability('xfs', 'SINGLE_NODE_SINGLE_WRITER'),
      blockCapability('SINGLE_NODE_MULTI_WRITER'),
    ].entries()) {
      await h.controller('CreateVolume', { name: `ok-${index}`, volume_capabilities: [capability] });
    }
    t.is((await h.admin.listVolumes()).length, 3);
  });
});

test('DeleteVolume deletes, succeeds for unknown ids, and needs volume_id', async (t) => {
  await withHarness(async (h) => {
    await h.controller('CreateVolume', { name: 'pvc-del', volume_capabilities: [mountCapability()] });
    await h.controller('DeleteVolume', { volume_id: 'pvc-del' });
    await t.throwsAsync(h.admin.statVolume('pvc-del'), { any: true, message: /does not exist/ });
    await h.controller('DeleteVolume', { volume_id: 'pvc-del' });
    await h.controller('DeleteVolume', { volume_id: 'never existed' });
    await rejects(t, h.controller('DeleteVolume', {}), grpc.status.INVALID_ARGUMENT, 'AGENT_CSI_ARGUMENT_MISSING');
  });
});

test('rdl failures surface as UNAVAILABLE with the backend code in the message', async (t) => {
  await withHarness(async (h) => {
    h.admin.failNext('UNAVAILABLE');
    const failure = await rejects(
      t,
      h.controller('CreateVolume', { name: 'v', volume_capabilities: [mountCapability()] }),
      grpc.status.UNAVAILABLE,
      'AGENT_CSI_BACKEND_FAILED',
    );
    t.regex(failure.details, /UNAVAILABLE/);
    await h.controller('CreateVolume', { name: 'v', volume_capabilities: [mountCapability()] });
    h.admin.failNext('DEADLINE_EXCEEDED');
    await rejects(t, h.controller('DeleteVolume', { volume_id: 'v' }), grpc.status.UNAVAILABLE);
    h.admin.failNext('UNAVAILABLE');
    await rejects(t, h.controller('ListVolumes', {}), grpc.status.UNAVAILABLE);
  });
});

test('ValidateVolumeCapabilities confirms supported capabilities, explains others, NOT_FOUND for unknown volumes', async (t) => {
  await withHarness(async (h) => {
    await h.controller('CreateVolume', { name: 'pvc-v', volume_capabilities: [mountCapability()] });
    const ok = await h.controller('ValidateVolumeCapabilities', {
      volume_id: 'pvc-v',
      volume_capabilities: [mountCapability('xfs'), blockCapability()],
      parameters: { a: 'b' },
    });
    t.is(ok.confirmed.volume_capabilities.length, 2);
    t.deepEqual(ok.confirmed.parameters, { a: 'b' });
    const no = await h.controller('ValidateVolumeCapabilities', {
      volume_id: 'pvc-v',
      volume_capabilities: [mountCapability(), mountCapability('', 'MULTI_NODE_MULTI_WRITER')],
    });
    t.is(no.confirmed, null);
    t.regex(no.message, /MULTI_NODE_MULTI_WRITER is not supported/);
    await rejects(
      t,
      h.controller('ValidateVolumeCapabilities', { volume_id: 'nope', volume_capabilities: [mountCapability()] }),
      grpc.status.NOT_FOUND,
      'AGENT_CSI_VOLUME_NOT_FOUND',
    );
    await rejects(t, h.controller('ValidateVolumeCapabilities', { volume_id: 'pvc-v' }), grpc.status.INVALID_ARGUMENT);
    await rejects(
      t,
      h.controller('ValidateVolumeCapabilities', { volume_capabilities: [mountCapability()] }),
      grpc.status.INVALID_ARGUMENT,
    );
  });
});

test('ListVolumes pages with max_entries and next_token, and ABORTs on a foreign token', async (t) => {
  await withHarness(async (h) => {
    const names = ['pvc-05', 'pvc-01', 'pvc-04', 'pvc-02', 'pvc-03'];
    for (const name of names) {
      await h.controller('CreateVolume', {
        name,
        capacity_range: { required_bytes: 4096 },
        volume_capabilities: [mountCapability()],
      });
    }
    const seen: string[] = [];
    const pageSizes: number[] = [];
    let token = '';
    for (let page = 0; page < 10; page += 1) {
      const response = await h.controller('ListVolumes', { max_entries: 2, starting_token: token });
      pageSizes.push(response.entries.length);
      for (const entry of response.entries) {
        seen.push(entry.volume.volume_id);
        t.is(entry.volume.capacity_bytes, '4096');
      }
      token = response.next_token;
      if (token === '') break;
    }
    t.deepEqual(seen, [...names].sort());
    t.deepEqual(pageSizes, [2, 2, 1]);
    const all = await h.controller('ListVolumes', {});
    t.is(all.entries.length, 5);
    t.is(all.next_token, '');
    // A volume deleted between pages does not break the walk.
    const first = await h.controller('ListVolumes', { max_entries: 2 });
    await h.controller('DeleteVolume', { volume_id: 'pvc-02' });
    const rest = await h.controller('ListVolumes', { starting_token: first.next_token });
    t.deepEqual(
      rest.entries.map((e: { volume: { volume_id: string } }) => e.volume.volume_id),
      ['pvc-03', 'pvc-04', 'pvc-05'],
    );
    await rejects(
      t,
      h.controller('ListVolumes', { starting_token: 'garbage' }),
      grpc.status.ABORTED,
      'AGENT_CSI_TOKEN_INVALID',
    );
    await rejects(t, h.controller('ListVolumes', { starting_token: 'rdl1:!!' }), grpc.status.ABORTED);
    await rejects(t, h.controller('ListVolumes', { max_entries: -1 }), grpc.status.INVALID_ARGUMENT);
  });
});

test('GetCapacity reports the pool quota minus provisioned bytes, and 0 for unsupported capabilities', async (t) => {
  await withHarness(
    async (h) => {
      const empty = await h.controller('GetCapacity', {});
      t.is(empty.available_capacity, String(10 * GiB));
      t.deepEqual(empty.maximum_volume_size, { value: String(1024 ** 4) });
      t.deepEqual(empty.minimum_volume_size, { value: '4096' });
      await h.controller('CreateVolume', {
        name: 'a',
        capacity_range: { required_bytes: 3 * GiB },
        volume_capabilities: [mountCapability()],
      });
      const after = await h.controller('GetCapacity', { volume_capabilities: [mountCapability()] });
      t.is(after.available_capacity, String(7 * GiB));
      const unsupported = await h.controller('GetCapacity', {
        volume_capabilities: [mountCapability('', 'MULTI_NODE_MULTI_WRITER')],
      });
      t.is(unsupported.available_capacity, '0');
    },
    { capacityBytes: 10 * GiB },
  );
});

test('ControllerExpandVolume grows in 4 KiB steps, is idempotent, never shrinks', async (t) => {
  await withHarness(async (h) => {
    await h.controller('CreateVolume', {
      name: 'pvc-x',
      capacity_range: { required_bytes: GiB },
      volume_capabilities: [mountCapability()],
    });
    const grown = await h.controller('ControllerExpandVolume', {
      volume_id: 'pvc-x',
      capacity_range: { required_bytes: 2 * GiB + 1 },
    });
    t.is(grown.capacity_bytes, String(2 * GiB + 4096));
    t.true(grown.node_expansion_required);
    t.is((await h.admin.statVolume('pvc-x')).sizeBytes, 2 * GiB + 4096);
    const callsBefore = h.admin.calls.filter((c) => c.startsWith('growVolume')).length;
    const again = await h.controller('ControllerExpandVolume', {
      volume_id: 'pvc-x',
      capacity_range: { required_bytes: 2 * GiB + 1 },
    });
    t.is(again.capacity_bytes, String(2 * GiB + 4096));
    const smaller = await h.controller('ControllerExpandVolume', {
      volume_id: 'pvc-x',
      capacity_range: { required_bytes: GiB },
    });
    t.is(smaller.capacity_bytes, String(2 * GiB + 4096));
    t.is(h.admin.calls.filter((c) => c.startsWith('growVolume')).length, callsBefore);
    await rejects(
      t,
      h.controller('ControllerExpandVolume', {
        volume_id: 'pvc-x',
        capacity_range: { required_bytes: GiB, limit_bytes: GiB },
      }),
      grpc.status.OUT_OF_RANGE,
    );
    const block = await h.controller('ControllerExpandVolume', {
      volume_id: 'pvc-x',
      capacity_range: { required_bytes: 3 * GiB },
      volume_capability: blockCapability(),
    });
    t.false(block.node_expansion_required);
    await rejects(
      t,
      h.controller('ControllerExpandVolume', { volume_id: 'nope', capacity_range: { required_bytes: GiB } }),
      grpc.status.NOT_FOUND,
    );
    await rejects(
      t,
      h.controller('ControllerExpandVolume', { volume_id: 'pvc-x' }),
      grpc.status.INVALID_ARGUMENT,
      'AGENT_CSI_ARGUMENT_MISSING',
    );
    await rejects(
      t,
      h.controller('ControllerExpandVolume', { capacity_range: { required_bytes: GiB } }),
      grpc.status.INVALID_ARGUMENT,
    );
    await rejects(
      t,
      h.controller('ControllerExpandVolume', {
        volume_id: 'pvc-x',
        capacity_range: { required_bytes: 4 * GiB },
        volume_capability: mountCapability('', 'MULTI_NODE_MULTI_WRITER'),
      }),
      grpc.status.INVALID_ARGUMENT,
    );
    await rejects(
      t,
      h.controller('ControllerExpandVolume', { volume_id: 'pvc-x', capacity_range: { required_bytes: 2 * 1024 ** 4 } }),
      grpc.status.OUT_OF_RANGE,
    );
  });
});

test('RPCs rdl does not implement answer UNIMPLEMENTED; a controller-only server has no Node service', async (t) => {
  await withHarness(
    async (h) => {
      const client = new grpc.Client(`unix://${h.server.socketPath}`, grpc.credentials.createInsecure());
      try {
        const err = await new Promise<grpc.ServiceError>((resolve) => {
          client.makeUnaryRequest(
            '/csi.v1.Controller/ControllerPublishVolume',
            (value: Buffer) => value,
            (value: Buffer) => value,
            Buffer.alloc(0),
            (error) => resolve(error as grpc.ServiceError),
          );
        });
        t.is(err.code, grpc.status.UNIMPLEMENTED);
      } finally {
        client.close();
      }
      await rejects(t, h.node('NodeGetInfo'), grpc.status.UNIMPLEMENTED);
      t.is((await h.identity('GetPluginInfo')).name, 'rdl.csi.rdl.io');
    },
    { mode: 'controller' },
  );
});
