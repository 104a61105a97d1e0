// Proves the CSI Node service attaches, formats, mounts, publishes, grows and detaches volumes
// with the exact host commands a real node would run, over the real unix socket with a grpc-js
// client. These machines have no nbd kernel module, so the host is a FakeHost behind the
// injectable CommandRunner: it records every argv and keeps the state real commands would change
// (sysfs pid files, device contents, mount table) and, like the kernel, fixes a device's size when
// it connects, so the OFFLINE expansion sequence (grow while unstaged, stage at the new size, grow
// the filesystem) is checked as a CO runs it. The tests check the command sequences,
// idempotency (a repeated call succeeds without re-running the steps), recovery after a reboot
// or a lost state file, and the spec's error codes (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS,
// FAILED_PRECONDITION, RESOURCE_EXHAUSTED, INTERNAL, DEADLINE_EXCEEDED).
import { existsSync, mkdirSync, readFileSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import type { ExecutionContext } from 'ava';
import * as grpc from '@grpc/grpc-js';
import { csiError, CsiErrorCode } from '../../src/csi/errors.js';
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

async function rejects(t: ExecutionContext, promise: Promise<unknown>, status: grpc.status, rdlCode?: string) {
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

/** Creates volume `id` in rdl and returns the staging and target paths for it. */
async function prepare(h: Harness, id: string) {
  await h.admin.createVolume(id, GiB);
  const staging = join(h.root, 'kubelet', 'staging', id);
  mkdirSync(staging, { recursive: true });
  const target = join(h.root, 'kubelet', 'pods', 'pod-1', id);
  mkdirSync(join(h.root, 'kubelet', 'pods', 'pod-1'), { recursive: true });
  return { staging, target };
}

test('NodeGetInfo and NodeGetCapabilities', async (t) => {
  await withHarness(async (h) => {
    t.deepEqual(await h.node('NodeGetInfo'), {
      node_id: 'node-a',
      max_volumes_per_node: '16',
      accessible_topology: null,
    });
    const capabilities = await h.node('NodeGetCapabilities');
    t.deepEqual(
      capabilities.capabilities.map((c: { rpc: { type: string } }) => c.rpc.type),
      ['STAGE_UNSTAGE_VOLUME', 'GET_VOLUME_STATS', 'EXPAND_VOLUME', 'SINGLE_NODE_MULTI_WRITER'],
    );
  });
});

test('full filesystem lifecycle runs the exact command sequence, and every step is idempotent', async (t) => {
  await withHarness(async (h) => {
    const { staging, target } = await prepare(h, 'pvc-1');
    const device = h.host.device(0);
    const stage = {
      volume_id: 'pvc-1',
      staging_target_path: staging,
      volume_capability: mountCapability('', 'SINGLE_NODE_WRITER', ['noatime']),
    };
    await h.node('NodeStageVolume', stage);
    t.deepEqual(h.host.takeCalls(), [
      `nbd-client 127.0.0.1 10809 ${device} -N pvc-1`,
      `blkid --probe --match-tag TYPE --output value ${device}`,
      `mkfs.ext4 -F -E nodiscard ${device}`,
      `mount -t ext4 -o noatime ${device} ${staging}`,
    ]);
    t.is(h.host.mounts.get(staging), device);
    const state = JSON.parse(readFileSync(join(h.stateDir, 'node-state.json'), 'utf8'));
    t.is(state.staged['pvc-1'].devicePath, device);
    t.is(state.staged['pvc-1'].fsType, 'ext4');

    // Repeated stage: only a check, no attach, format or mount.
    await h.node('NodeStageVolume', stage);
    t.deepEqual(h.host.takeCalls(), [`findmnt --noheadings --output SOURCE --mountpoint ${staging}`]);

    const publish = {
      volume_id: 'pvc-1',
      staging_target_path: staging,
      target_path: target,
      volume_capability: stage.volume_capability,
      readonly: false,
    };
    await h.node('NodePublishVolume', publish);
    t.deepEqual(h.host.takeCalls(), [`mount --bind ${staging} ${target}`]);
    t.true(existsSync(target));
    await h.node('NodePublishVolume', publish);
    t.deepEqual(h.host.takeCalls(), [`findmnt --noheadings --output SOURCE --mountpoint ${target}`]);

    await h.node('NodeUnpublishVolume', { volume_id: 'pvc-1', target_path: target });
    t.deepEqual(h.host.takeCalls(), [
      `findmnt --noheadings --output SOURCE --mountpoint ${target}`,
      `umount ${target}`,
    ]);
    t.false(existsSync(target));
    await h.node('NodeUnpublishVolume', { volume_id: 'pvc-1', target_path: target });
    t.deepEqual(h.host.takeCalls(), [`findmnt --noheadings --output SOURCE --mountpoint ${target}`]);

    await h.node('NodeUnstageVolume', { volume_id: 'pvc-1', staging_target_path: staging });
    t.deepEqual(h.host.takeCalls(), [
      `findmnt --noheadings --output SOURCE --mountpoint ${staging}`,
      `umount ${staging}`,
      `nbd-client -d ${device}`,
    ]);
    t.is(h.host.connected.size, 0);
    t.deepEqual(JSON.parse(readFileSync(join(h.stateDir, 'node-state.json'), 'utf8')).staged, {});
    await h.node('NodeUnstageVolume', { volume_id: 'pvc-1', staging_target_path: staging });
    t.deepEqual(h.host.takeCalls(), [`findmnt --noheadings --output SOURCE --mountpoint ${staging}`]);

    // Staging again finds the filesystem made the first time and does not format.
    await h.node('NodeStageVolume', stage);
    t.deepEqual(h.host.takeCalls(), [
      `nbd-client 127.0.0.1 10809 ${device} -N pvc-1`,
      `blkid --probe --match-tag TYPE --output value ${device}`,
      `mount -t ext4 -o noatime ${device} ${staging}`,
    ]);
  });
});

test('xfs is formatted with mkfs.xfs and, after an offline grow and restage, grown with xfs_growfs on the staging path', async (t) => {
  await withHarness(async (h) => {
    const { staging } = await prepare(h, 'pvc-x');
    const device = h.host.device(0);
    const stage = { volume_id: 'pvc-x', staging_target_path: staging, volume_capability: mountCapability('xfs') };
    await h.node('NodeStageVolume', stage);
    t.deepEqual(h.host.takeCalls(), [
      `nbd-client 127.0.0.1 10809 ${device} -N pvc-x`,
      `blkid --probe --match-tag TYPE --output value ${device}`,
      `mkfs.xfs -f -K ${device}`,
      `mount -t xfs ${device} ${staging}`,
    ]);
    await h.node('NodeUnstageVolume', { volume_id: 'pvc-x', staging_target_path: staging });
    await h.controller('ControllerExpandVolume', { volume_id: 'pvc-x', capacity_range: { required_bytes: 2 * GiB } });
    await h.node('NodeStageVolume', stage);
    h.host.takeCalls();
    const expanded = await h.node('NodeExpandVolume', {
      volume_id: 'pvc-x',
      volume_path: staging,
      capacity_range: { required_bytes: 2 * GiB },
    });
    t.is(expanded.capacity_bytes, String(2 * GiB));
    t.deepEqual(h.host.takeCalls(), [`blockdev --getsize64 ${device}`, `xfs_growfs ${staging}`]);
  });
});

test('block volumes attach without a filesystem and publish the device file', async (t) => {
  await withHarness(async (h) => {
    const { staging, target } = await prepare(h, 'pvc-b');
    const device = h.host.device(0);
    const capability = blockCapability();
    await h.node('NodeStageVolume', {
      volume_id: 'pvc-b',
      staging_target_path: staging,
      volume_capability: capability,
    });
    t.deepEqual(h.host.takeCalls(), [`nbd-client 127.0.0.1 10809 ${device} -N pvc-b`]);
    await h.node('NodeStageVolume', {
      volume_id: 'pvc-b',
      staging_target_path: staging,
      volume_capability: capability,
    });
    t.deepEqual(h.host.takeCalls(), []);
    await h.node('NodePublishVolume', {
      volume_id: 'pvc-b',
      staging_target_path: staging,
      target_path: target,
      volume_capability: capability,
      readonly: true,
    });
    t.deepEqual(h.host.takeCalls(), [`mount --bind ${device} ${target}`, `mount -o remount,bind,ro ${target}`]);
    t.true(h.host.readonlyMounts.has(target));
    t.false(readFileSync(target).length > 0, 'the target is an empty file the device is bound onto');
    const stats = await h.node('NodeGetVolumeStats', { volume_id: 'pvc-b', volume_path: target });
    t.deepEqual(stats.usage, [{ available: '0', total: String(GiB), used: '0', unit: 'BYTES' }]);
    const expanded = await h.node('NodeExpandVolume', {
      volume_id: 'pvc-b',
      volume_path: staging,
      capacity_range: { required_bytes: GiB },
    });
    t.is(expanded.capacity_bytes, String(GiB));
    h.host.takeCalls();
    await rejects(
      t,
      h.node('NodePublishVolume', {
        volume_id: 'pvc-b',
        staging_target_path: staging,
        target_path: `${target}-2`,
        volume_capability: mountCapability(),
        readonly: false,
      }),
      grpc.status.FAILED_PRECONDITION,
      'AGENT_CSI_CAPABILITY_EXCEEDED',
    );
    await h.node('NodeUnpublishVolume', { volume_id: 'pvc-b', target_path: target });
    t.false(existsSync(target));
    await h.node('NodeUnstageVolume', { volume_id: 'pvc-b', staging_target_path: staging });
    t.deepEqual(h.host.takeCalls(), [
      `findmnt --noheadings --output SOURCE --mountpoint ${target}`,
      `umount ${target}`,
      `nbd-client -d ${device}`,
    ]);
  });
});

test('NodeStage: ALREADY_EXISTS for another capability, FAILED_PRECONDITION for another staging path', async (t) => {
  await withHarness(async (h) => {
    const { staging } = await prepare(h, 'pvc-1');
    await h.node('NodeStageVolume', {
      volume_id: 'pvc-1',
      staging_target_path: staging,
      volume_capability: mountCapability(),
    });
    h.host.takeCalls();
    await rejects(
      t,
      h.node('NodeStageVolume', {
        volume_id: 'pvc-1',
        staging_target_path: staging,
        volume_capability: mountCapability('xfs'),
      }),
      grpc.status.ALREADY_EXISTS,
      'AGENT_CSI_VOLUME_INCOMPATIBLE',
    );
    await rejects(
      t,
      h.node('NodeStageVolume', {
        volume_id: 'pvc-1',
        staging_target_path: staging,
        volume_capability: blockCapability(),
      }),
      grpc.status.ALREADY_EXISTS,
    );
    await rejects(
      t,
      h.node('NodeStageVolume', {
        volume_id: 'pvc-1',
        staging_target_path: `${staging}-other`,
        volume_capability: mountCapability(),
      }),
      grpc.status.FAILED_PRECONDITION,
      'AGENT_CSI_VOLUME_IN_USE',
    );
    // An explicit ext4 is the same capability as the default filesystem.
    await h.node('NodeStageVolume', {
      volume_id: 'pvc-1',
      staging_target_path: staging,
      volume_capability: mountCapability('ext4'),
    });
    t.deepEqual(h.host.takeCalls(), [`findmnt --noheadings --output SOURCE --mountpoint ${staging}`]);
  });
});

test('NodeStage: INVALID_ARGUMENT for missing fields, FAILED_PRECONDITION for unsupported modes, NOT_FOUND for unknown volumes, none of them touching the host', async (t) => {
  await withHarness(async (h) => {
    const { staging } = await prepare(h, 'pvc-1');
    await rejects(
      t,
      h.node('NodeStageVolume', { staging_target_path: staging, volume_capability: mountCapability() }),
      grpc.status.INVALID_ARGUMENT,
      'AGENT_CSI_ARGUMENT_MISSING',
    );
    await rejects(
      t,
      h.node('NodeStageVolume', { volume_id: 'pvc-1', volume_capability: mountCapability() }),
      grpc.status.INVALID_ARGUMENT,
      'AGENT_CSI_ARGUMENT_MISSING',
    );
    await rejects(
      t,
      h.node('NodeStageVolume', { volume_id: 'pvc-1', staging_target_path: staging }),
      grpc.status.INVALID_ARGUMENT,
      'AGENT_CSI_ARGUMENT_MISSING',
    );
    await rejects(
      t,
      h.node('NodeStageVolume', {
        volume_id: 'pvc-1',
        staging_target_path: 'relative/path',
        volume_capability: mountCapability(),
      }),
      grpc.status.INVALID_ARGUMENT,
      'AGENT_CSI_ARGUMENT_INVALID',
    );
    await rejects(
      t,
      h.node('NodeStageVolume', {
        volume_id: 'pvc-1',
        staging_target_path: staging,
        volume_capability: mountCapability('', 'MULTI_NODE_MULTI_WRITER'),
      }),
      grpc.status.FAILED_PRECONDITION,
      'AGENT_CSI_CAPABILITY_EXCEEDED',
    );
    await rejects(
      t,
      h.node('NodeStageVolume', {
        volume_id: 'pvc-1',
        staging_target_path: staging,
        volume_capability: mountCapability('vfat'),
      }),
      grpc.status.FAILED_PRECONDITION,
    );
    await rejects(
      t,
      h.node('NodeStageVolume', {
        volume_id: 'nope',
        staging_target_path: staging,
        volume_capability: mountCapability(),
      }),
      grpc.status.NOT_FOUND,
      'AGENT_CSI_VOLUME_NOT_FOUND',
    );
    await rejects(t, h.node('NodeUnstageVolume', { volume_id: 'pvc-1' }), grpc.status.INVALID_ARGUMENT);
    await rejects(t, h.node('NodeUnpublishVolume', { volume_id: 'pvc-1' }), grpc.status.INVALID_ARGUMENT);
    await rejects(t, h.node('NodeUnpublishVolume', { target_path: staging }), grpc.status.INVALID_ARGUMENT);
    await rejects(t, h.node('NodeGetVolumeStats', { volume_id: 'pvc-1' }), grpc.status.INVALID_ARGUMENT);
    await rejects(t, h.node('NodeExpandVolume', { volume_path: staging }), grpc.status.INVALID_ARGUMENT);
    t.deepEqual(h.host.takeCalls(), []);
  });
});

test('a device holding data but no filesystem is never formatted; a foreign filesystem is refused', async (t) => {
  await withHarness(async (h) => {
    const { staging } = await prepare(h, 'pvc-raw');
    h.host.scribble(h.host.device(0));
    await rejects(
      t,
      h.node('NodeStageVolume', {
        volume_id: 'pvc-raw',
        staging_target_path: staging,
        volume_capability: mountCapability(),
      }),
      grpc.status.FAILED_PRECONDITION,
      'AGENT_CSI_CAPABILITY_EXCEEDED',
    );
    const calls = h.host.takeCalls();
    t.false(calls.some((call) => call.startsWith('mkfs')));
    t.is(calls[calls.length - 1], `nbd-client -d ${h.host.device(0)}`, 'the attach is rolled back');
    t.is(h.host.connected.size, 0);

    h.host.filesystems.set(h.host.device(0), 'xfs');
    await rejects(
      t,
      h.node('NodeStageVolume', {
        volume_id: 'pvc-raw',
        staging_target_path: staging,
        volume_capability: mountCapability('ext4'),
      }),
      grpc.status.FAILED_PRECONDITION,
    );
    // With no fs_type the existing filesystem is used as it is.
    await h.node('NodeStageVolume', {
      volume_id: 'pvc-raw',
      staging_target_path: staging,
      volume_capability: mountCapability(),
    });
    t.is(h.host.takeCalls().pop(), `mount -t xfs ${h.host.device(0)} ${staging}`);
  });
});

test('device selection skips connected devices; RESOURCE_EXHAUSTED when none is free or the module is missing', async (t) => {
  await withHarness(
    async (h) => {
      writeFileSync(join(h.host.sysBlockDir, 'nbd0', 'pid'), '999\n');
      const a = await prepare(h, 'pvc-a');
      const b = await prepare(h, 'pvc-b');
      await h.node('NodeStageVolume', {
        volume_id: 'pvc-a',
        staging_target_path: a.staging,
        volume_capability: blockCapability(),
      });
      t.deepEqual(h.host.takeCalls(), [`nbd-client 127.0.0.1 10809 ${h.host.device(1)} -N pvc-a`]);
      await rejects(
        t,
        h.node('NodeStageVolume', {
          volume_id: 'pvc-b',
          staging_target_path: b.staging,
          volume_capability: blockCapability(),
        }),
        grpc.status.RESOURCE_EXHAUSTED,
        'AGENT_CSI_NO_FREE_DEVICE',
      );
    },
    { devicesCount: 2 },
  );
  await withHarness(
    async (h) => {
      const a = await prepare(h, 'pvc-a');
      const failure = await rejects(
        t,
        h.node('NodeStageVolume', {
          volume_id: 'pvc-a',
          staging_target_path: a.staging,
          volume_capability: blockCapability(),
        }),
        grpc.status.RESOURCE_EXHAUSTED,
      );
      t.regex(failure.details, /modprobe nbd/);
    },
    { devicesCount: 0 },
  );
});

test('a failing command maps to INTERNAL with its stderr and the attach is rolled back; a timeout to DEADLINE_EXCEEDED', async (t) => {
  await withHarness(async (h) => {
    const { staging } = await prepare(h, 'pvc-1');
    const device = h.host.device(0);
    h.host.failures.push({
      match: (argv) => argv[0] === 'mount',
      result: { exitCode: 32, stdout: '', stderr: 'mount: wrong fs type' },
    });
    const failure = await rejects(
      t,
      h.node('NodeStageVolume', {
        volume_id: 'pvc-1',
        staging_target_path: staging,
        volume_capability: mountCapability(),
      }),
      grpc.status.INTERNAL,
      'AGENT_CSI_COMMAND_FAILED',
    );
    t.regex(failure.details, /wrong fs type/);
    t.deepEqual(h.host.takeCalls().slice(-2), [`mount -t ext4 ${device} ${staging}`, `nbd-client -d ${device}`]);
    t.is(h.host.connected.size, 0);

    h.host.failures.push({
      match: (argv) => argv[0] === 'nbd-client',
      error: csiError(CsiErrorCode.CommandTimeout, 'nbd-client did not finish within 1 ms'),
    });
    await rejects(
      t,
      h.node('NodeStageVolume', {
        volume_id: 'pvc-1',
        staging_target_path: staging,
        volume_capability: mountCapability(),
      }),
      grpc.status.DEADLINE_EXCEEDED,
      'AGENT_CSI_COMMAND_TIMEOUT',
    );
    // After the failures, the same call succeeds (the volume was formatted by the first attempt).
    h.host.takeCalls();
    await h.node('NodeStageVolume', {
      volume_id: 'pvc-1',
      staging_target_path: staging,
      volume_capability: mountCapability(),
    });
    t.false(h.host.takeCalls().some((call) => call.startsWith('mkfs')));
  });
});

test('NodePublish: FAILED_PRECONDITION when not staged, ALREADY_EXISTS for other arguments at the same target, single writer vs multi writer', async (t) => {
  await withHarness(async (h) => {
    const { staging, target } = await prepare(h, 'pvc-1');
    const capability = mountCapability('', 'SINGLE_NODE_SINGLE_WRITER');
    const publish = {
      volume_id: 'pvc-1',
      staging_target_path: staging,
      target_path: target,
      volume_capability: capability,
      readonly: false,
    };
    await rejects(
      t,
      h.node('NodePublishVolume', publish),
      grpc.status.FAILED_PRECONDITION,
      'AGENT_CSI_VOLUME_NOT_STAGED',
    );
    await rejects(
      t,
      h.node('NodePublishVolume', { ...publish, staging_target_path: '' }),
      grpc.status.FAILED_PRECONDITION,
      'AGENT_CSI_VOLUME_NOT_STAGED',
    );
    await rejects(t, h.node('NodePublishVolume', { ...publish, target_path: '' }), grpc.status.INVALID_ARGUMENT);
    await rejects(
      t,
      h.node('NodePublishVolume', { ...publish, volume_capability: null }),
      grpc.status.INVALID_ARGUMENT,
    );
    await h.node('NodeStageVolume', {
      volume_id: 'pvc-1',
      staging_target_path: staging,
      volume_capability: capability,
    });
    await h.node('NodePublishVolume', publish);
    await rejects(
      t,
      h.node('NodePublishVolume', { ...publish, readonly: true }),
      grpc.status.ALREADY_EXISTS,
      'AGENT_CSI_VOLUME_INCOMPATIBLE',
    );
    await rejects(
      t,
      h.node('NodePublishVolume', { ...publish, target_path: `${target}-second` }),
      grpc.status.FAILED_PRECONDITION,
      'AGENT_CSI_VOLUME_IN_USE',
    );
    await rejects(
      t,
      h.node('NodeUnstageVolume', { volume_id: 'pvc-1', staging_target_path: staging }),
      grpc.status.FAILED_PRECONDITION,
      'AGENT_CSI_VOLUME_IN_USE',
    );
    await h.node('NodeUnpublishVolume', { volume_id: 'pvc-1', target_path: target });
    await h.node('NodeUnstageVolume', { volume_id: 'pvc-1', staging_target_path: staging });

    // SINGLE_NODE_MULTI_WRITER may be published at several targets on the node.
    const multi = mountCapability('', 'SINGLE_NODE_MULTI_WRITER');
    await h.node('NodeStageVolume', { volume_id: 'pvc-1', staging_target_path: staging, volume_capability: multi });
    await h.node('NodePublishVolume', { ...publish, volume_capability: multi });
    await h.node('NodePublishVolume', {
      ...publish,
      volume_capability: multi,
      target_path: `${target}-second`,
      readonly: true,
    });
    t.true(h.host.readonlyMounts.has(`${target}-second`));
    t.is(h.host.mounts.get(`${target}-second`), staging);
  });
});

test('NodeGetVolumeStats reports statfs of the volume path; NOT_FOUND for other paths and unstaged volumes', async (t) => {
  await withHarness(async (h) => {
    const { staging, target } = await prepare(h, 'pvc-1');
    await h.node('NodeStageVolume', {
      volume_id: 'pvc-1',
      staging_target_path: staging,
      volume_capability: mountCapability(),
    });
    await h.node('NodePublishVolume', {
      volume_id: 'pvc-1',
      staging_target_path: staging,
      target_path: target,
      volume_capability: mountCapability(),
      readonly: false,
    });
    const stats = await h.node('NodeGetVolumeStats', {
      volume_id: 'pvc-1',
      volume_path: target,
      staging_target_path: staging,
    });
    // The fake mount is a plain directory, so statfs sees the temp filesystem: compare to it.
    const expected = statfsSync(target);
    const [bytes, inodes] = stats.usage;
    t.is(bytes.unit, 'BYTES');
    t.is(Number(bytes.total), expected.blocks * expected.bsize);
    t.true(Number(bytes.used) + Number(bytes.available) <= Number(bytes.total));
    t.is(inodes.unit, 'INODES');
    t.is(Number(inodes.total), expected.files);
    await rejects(
      t,
      h.node('NodeGetVolumeStats', { volume_id: 'pvc-1', volume_path: join(h.root, 'elsewhere') }),
      grpc.status.NOT_FOUND,
      'AGENT_CSI_VOLUME_NOT_FOUND',
    );
    await rejects(t, h.node('NodeGetVolumeStats', { volume_id: 'pvc-2', volume_path: target }), grpc.status.NOT_FOUND);
  });
});

test('OFFLINE expansion end to end: grown while unstaged, staged at the new size, resize2fs after publish; FAILED_PRECONDITION when grown while staged', async (t) => {
  await withHarness(async (h) => {
    const { staging, target } = await prepare(h, 'pvc-1');
    const device = h.host.device(0);
    const capability = mountCapability();
    const stage = { volume_id: 'pvc-1', staging_target_path: staging, volume_capability: capability };
    const publish = { ...stage, target_path: target, readonly: false };
    await h.node('NodeStageVolume', stage);
    await h.node('NodePublishVolume', publish);
    // The pod stops: kubelet unpublishes and unstages; then the CO calls ControllerExpandVolume,
    // as OFFLINE requires, for a volume staged on no node.
    await h.node('NodeUnpublishVolume', { volume_id: 'pvc-1', target_path: target });
    await h.node('NodeUnstageVolume', { volume_id: 'pvc-1', staging_target_path: staging });
    const grown = await h.controller('ControllerExpandVolume', {
      volume_id: 'pvc-1',
      capacity_range: { required_bytes: 2 * GiB },
      volume_capability: capability,
    });
    t.deepEqual(grown, { capacity_bytes: String(2 * GiB), node_expansion_required: true });
    // The pod starts again: stage attaches the device at its new size and mounts the existing
    // filesystem (no mkfs), publish bind-mounts it, and NodeExpandVolume on the target path grows it.
    h.host.takeCalls();
    await h.node('NodeStageVolume', stage);
    t.deepEqual(h.host.takeCalls(), [
      `nbd-client 127.0.0.1 10809 ${device} -N pvc-1`,
      `blkid --probe --match-tag TYPE --output value ${device}`,
      `mount -t ext4 ${device} ${staging}`,
    ]);
    await h.node('NodePublishVolume', publish);
    h.host.takeCalls();
    const expanded = await h.node('NodeExpandVolume', {
      volume_id: 'pvc-1',
      volume_path: target,
      staging_target_path: staging,
      capacity_range: { required_bytes: 2 * GiB },
      volume_capability: capability,
    });
    t.is(expanded.capacity_bytes, String(2 * GiB));
    t.deepEqual(h.host.takeCalls(), [`blockdev --getsize64 ${device}`, `resize2fs ${device}`]);

    // Grown while staged (Kubernetes' csi-resizer does this while a pod runs; the controller
    // cannot see attachments): the attached device keeps 2 GiB, so the node answers
    // FAILED_PRECONDITION (kubelet then waits for the next mount) until the volume is restaged.
    await h.admin.growVolume('pvc-1', 3 * GiB);
    const tooSmall = await rejects(
      t,
      h.node('NodeExpandVolume', {
        volume_id: 'pvc-1',
        volume_path: staging,
        capacity_range: { required_bytes: 3 * GiB },
      }),
      grpc.status.FAILED_PRECONDITION,
      'AGENT_CSI_DEVICE_TOO_SMALL',
    );
    t.regex(tooSmall.details, /grown while staged.*OFFLINE/);
    t.deepEqual(h.host.takeCalls(), [`blockdev --getsize64 ${device}`]);
    await h.node('NodeUnpublishVolume', { volume_id: 'pvc-1', target_path: target });
    await h.node('NodeUnstageVolume', { volume_id: 'pvc-1', staging_target_path: staging });
    await h.node('NodeStageVolume', stage);
    h.host.takeCalls();
    const restaged = await h.node('NodeExpandVolume', {
      volume_id: 'pvc-1',
      volume_path: staging,
      capacity_range: { required_bytes: 3 * GiB },
    });
    t.is(restaged.capacity_bytes, String(3 * GiB));
    t.deepEqual(h.host.takeCalls(), [`blockdev --getsize64 ${device}`, `resize2fs ${device}`]);

    await rejects(
      t,
      h.node('NodeExpandVolume', { volume_id: 'pvc-1', volume_path: join(h.root, 'x') }),
      grpc.status.NOT_FOUND,
    );
    await rejects(
      t,
      h.node('NodeExpandVolume', {
        volume_id: 'pvc-1',
        volume_path: staging,
        volume_capability: mountCapability('', 'MULTI_NODE_MULTI_WRITER'),
      }),
      grpc.status.INVALID_ARGUMENT,
    );
  });
});

test('OFFLINE expansion of a block volume: the restaged device has the new size and no node step is needed', async (t) => {
  await withHarness(async (h) => {
    const { staging, target } = await prepare(h, 'pvc-b');
    const capability = blockCapability();
    const stage = { volume_id: 'pvc-b', staging_target_path: staging, volume_capability: capability };
    await h.node('NodeStageVolume', stage);
    await h.node('NodeUnstageVolume', { volume_id: 'pvc-b', staging_target_path: staging });
    const grown = await h.controller('ControllerExpandVolume', {
      volume_id: 'pvc-b',
      capacity_range: { required_bytes: 2 * GiB },
      volume_capability: capability,
    });
    t.deepEqual(grown, { capacity_bytes: String(2 * GiB), node_expansion_required: false });
    await h.node('NodeStageVolume', stage);
    await h.node('NodePublishVolume', { ...stage, target_path: target, readonly: false });
    const stats = await h.node('NodeGetVolumeStats', { volume_id: 'pvc-b', volume_path: target });
    t.is(stats.usage[0].total, String(2 * GiB));
  });
});

test('state survives an agent restart; after a node reboot a repeated stage attaches again', async (t) => {
  await withHarness(async (h) => {
    const { staging } = await prepare(h, 'pvc-1');
    const device = h.host.device(0);
    const stage = { volume_id: 'pvc-1', staging_target_path: staging, volume_capability: mountCapability() };
    await h.node('NodeStageVolume', stage);
    await h.restart();
    h.host.takeCalls();
    await h.node('NodeStageVolume', stage);
    t.deepEqual(h.host.takeCalls(), [`findmnt --noheadings --output SOURCE --mountpoint ${staging}`]);

    h.host.reboot();
    await h.restart();
    await h.node('NodeStageVolume', stage);
    t.deepEqual(h.host.takeCalls(), [
      `nbd-client 127.0.0.1 10809 ${device} -N pvc-1`,
      `blkid --probe --match-tag TYPE --output value ${device}`,
      `mount -t ext4 ${device} ${staging}`,
    ]);
  });
});

test('a lost state file still lets NodeUnstage undo the mount and the attach; a corrupt one is INTERNAL', async (t) => {
  await withHarness(async (h) => {
    const { staging } = await prepare(h, 'pvc-1');
    const device = h.host.device(0);
    await h.node('NodeStageVolume', {
      volume_id: 'pvc-1',
      staging_target_path: staging,
      volume_capability: mountCapability(),
    });
    writeFileSync(join(h.stateDir, 'node-state.json'), JSON.stringify({ version: 1, staged: {}, published: {} }));
    await h.restart();
    h.host.takeCalls();
    await h.node('NodeUnstageVolume', { volume_id: 'pvc-1', staging_target_path: staging });
    t.deepEqual(h.host.takeCalls(), [
      `findmnt --noheadings --output SOURCE --mountpoint ${staging}`,
      `umount ${staging}`,
      `nbd-client -d ${device}`,
    ]);
    t.is(h.host.connected.size, 0);

    writeFileSync(join(h.stateDir, 'node-state.json'), '{not json');
    await h.restart();
    await rejects(
      t,
      h.node('NodeStageVolume', {
        volume_id: 'pvc-1',
        staging_target_path: staging,
        volume_capability: mountCapability(),
      }),
      grpc.status.INTERNAL,
      'AGENT_CSI_STATE_CORRUPT',
    );
  });
});

test('concurrent calls for one volume: the second is ABORTED', async (t) => {
  await withHarness(async (h) => {
    const { staging } = await prepare(h, 'pvc-1');
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    // Hold the first stage inside nbd-client until the second call has been answered.
    const runner = h.host.run.bind(h.host);
    let isAttachStarted = false;
    h.host.run = async (argv, options) => {
      if (argv[0] === 'nbd-client') {
        isAttachStarted = true;
        await gate;
      }
      return runner(argv, options);
    };
    const stage = { volume_id: 'pvc-1', staging_target_path: staging, volume_capability: mountCapability() };
    const first = h.node('NodeStageVolume', stage);
    await waitFor(() => isAttachStarted);
    await rejects(t, h.node('NodeStageVolume', stage), grpc.status.ABORTED, 'AGENT_CSI_OPERATION_PENDING');
    release();
    await first;
    t.is(h.host.connected.size, 1);
  });
});

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
