import { mkdir, open, readFile, rmdir, stat, statfs, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { runChecked } from './command-runner.js';
import type { CommandRunner } from './command-runner.js';
import { CsiErrorCode, csiError } from './errors.js';
import { unaryHandler } from './handler.js';
import type { HandlerContext } from './handler.js';
import type { NodeState, NodeStateStore, StagedVolume } from './node-state.js';
import { OperationLocks } from './operation-locks.js';
import type {
  NodeExpandVolumeRequest,
  NodeExpandVolumeResponse,
  NodeGetInfoResponse,
  NodeGetVolumeStatsRequest,
  NodeGetVolumeStatsResponse,
  NodePublishVolumeRequest,
  NodeStageVolumeRequest,
  NodeUnpublishVolumeRequest,
  NodeUnstageVolumeRequest,
  VolumeCapability,
} from './types.js';
import {
  accessTypeOf,
  assertCapabilitySupported,
  capabilityKey,
  defaultFsType,
  int64ToSafeInteger,
  requireAbsolutePath,
  requirePresent,
  requireString,
} from './validation.js';
import { backendError } from './volume-admin.js';
import type { VolumeAdmin } from './volume-admin.js';

/** Node service options. */
export interface NodeServiceOptions {
  /** NodeGetInfo.node_id: the Kubernetes node name. */
  nodeId: string;
  /** Used to check a volume exists before attaching it (NOT_FOUND rather than an nbd-client error). */
  volumeAdmin: VolumeAdmin;
  /** Runs nbd-client, blkid, mkfs, mount, umount, blockdev, resize2fs, xfs_growfs, findmnt. */
  runner: CommandRunner;
  /** Where the staged/published volumes are remembered. */
  stateStore: NodeStateStore;
  /** The agent's own NBD server, which exports every volume under its name. */
  nbdHost: string;
  nbdPort: number;
  /** sysfs block directory (`/sys/block`); `nbdX/pid` exists there while /dev/nbdX is connected. */
  sysBlockDir: string;
  /** Device directory (`/dev`). */
  devDir: string;
  /** How many /dev/nbdX devices to consider (the nbd module's `nbds_max`, 16 by default). */
  nbdDevicesMax: number;
  /** NodeGetInfo.max_volumes_per_node; at most `nbdDevicesMax`. */
  maxVolumesPerNode: number;
}

/** Node capabilities: staging (attach + format + mount once), volume stats, expansion, multi-writer. */
export const nodeCapabilities = Object.freeze([
  'STAGE_UNSTAGE_VOLUME',
  'GET_VOLUME_STATS',
  'EXPAND_VOLUME',
  'SINGLE_NODE_MULTI_WRITER',
]);

/** Bytes at the start of a device that must all be zero before mkfs may run on it. */
const blankCheckBytes = 1024 * 1024;

/**
 * The Node service. NodeStageVolume attaches the volume to a free /dev/nbdX with the kernel NBD
 * client against the agent's NBD server, formats it when it holds no filesystem and nothing else
 * (ext4 or xfs), and mounts it at the staging path; NodePublishVolume bind-mounts the staging
 * path (or, for block volumes, the device file) at the target path. Every step is idempotent:
 * what is staged and published is kept in the node state file, and a repeated call with the same
 * arguments succeeds without running the steps again.
 */
export function nodeService(context: HandlerContext, options: NodeServiceOptions): UntypedServiceImplementation {
  const { runner, stateStore } = options;
  const locks = new OperationLocks();
  const nbdDevicePattern = new RegExp(`^${escapeRegExp(join(options.devDir, 'nbd'))}\\d+$`);
  let cachedState: NodeState | undefined;

  async function loadState(): Promise<NodeState> {
    cachedState ??= await stateStore.load();
    return cachedState;
  }

  async function saveState(state: NodeState): Promise<void> {
    await stateStore.save(state);
  }

  async function isDeviceConnected(devicePath: string): Promise<boolean> {
    const name = devicePath.slice(devicePath.lastIndexOf('/') + 1);
    try {
      return (await readFile(join(options.sysBlockDir, name, 'pid'), 'utf8')).trim() !== '';
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }

  async function pickFreeDevice(state: NodeState): Promise<string> {
    const used = new Set(Object.values(state.staged).map((staged) => staged.devicePath));
    let devicesSeen = 0;
    for (let index = 0; index < options.nbdDevicesMax; index += 1) {
      const name = `nbd${index}`;
      try {
        await stat(join(options.sysBlockDir, name));
      } catch {
        continue;
      }
      devicesSeen += 1;
      const devicePath = join(options.devDir, name);
      if (!used.has(devicePath) && !(await isDeviceConnected(devicePath))) return devicePath;
    }
    throw csiError(
      CsiErrorCode.NoFreeDevice,
      devicesSeen === 0
        ? `no nbd devices under ${options.sysBlockDir}: load the nbd kernel module (modprobe nbd nbds_max=${options.nbdDevicesMax})`
        : `all ${devicesSeen} nbd devices are in use`,
    );
  }

  /** The mount source at `path`, or undefined when nothing is mounted there. */
  async function mountSource(path: string): Promise<string | undefined> {
    const result = await runner.run(['findmnt', '--noheadings', '--output', 'SOURCE', '--mountpoint', path]);
    if (result.exitCode === 1) return undefined;
    if (result.exitCode !== 0) {
      throw csiError(
        CsiErrorCode.CommandFailed,
        `findmnt ${path} exited with ${result.exitCode}: ${result.stderr.trim()}`,
      );
    }
    const source = result.stdout.trim();
    return source === '' ? undefined : source;
  }

  async function isStageIntact(staged: StagedVolume): Promise<boolean> {
    if (!(await isDeviceConnected(staged.devicePath))) return false;
    return staged.accessType === 'block' || (await mountSource(staged.stagingTargetPath)) !== undefined;
  }

  async function isDeviceBlank(devicePath: string): Promise<boolean> {
    const file = await open(devicePath, 'r');
    try {
      const buffer = Buffer.alloc(blankCheckBytes);
      const { bytesRead } = await file.read(buffer, 0, blankCheckBytes, 0);
      return buffer.subarray(0, bytesRead).every((byte) => byte === 0);
    } finally {
      await file.close();
    }
  }

  /** Returns the filesystem on the device, creating `wanted` when the device is blank. */
  async function prepareFilesystem(devicePath: string, requestedFsType: string): Promise<string> {
    const probe = await runner.run(['blkid', '--probe', '--match-tag', 'TYPE', '--output', 'value', devicePath]);
    if (probe.exitCode === 0) {
      const existing = probe.stdout.trim();
      if (requestedFsType !== '' && existing !== requestedFsType) {
        throw csiError(
          CsiErrorCode.CapabilityExceeded,
          `${devicePath} already holds a ${existing} filesystem, fs_type ${requestedFsType} was requested`,
        );
      }
      if (existing !== 'ext4' && existing !== 'xfs') {
        throw csiError(CsiErrorCode.CapabilityExceeded, `${devicePath} holds ${existing}, which rdl does not mount`);
      }
      return existing;
    }
    // blkid exits 2 when it finds no signature at all; anything else is a failure to probe.
    if (probe.exitCode !== 2) {
      throw csiError(
        CsiErrorCode.CommandFailed,
        `blkid ${devicePath} exited with ${probe.exitCode}: ${probe.stderr.trim()}`,
      );
    }
    // No signature is not proof of an empty volume (a read error, raw data from block mode): only
    // a volume whose first MiB reads as zeros is formatted, so user data is never overwritten.
    if (!(await isDeviceBlank(devicePath))) {
      throw csiError(
        CsiErrorCode.CapabilityExceeded,
        `${devicePath} holds data but no filesystem blkid recognizes; refusing to format it`,
      );
    }
    const fsType = requestedFsType === '' ? defaultFsType : requestedFsType;
    await runChecked(
      runner,
      fsType === 'xfs' ? ['mkfs.xfs', '-f', '-K', devicePath] : ['mkfs.ext4', '-F', '-E', 'nodiscard', devicePath],
    );
    return fsType;
  }

  async function nodeStageVolume(request: NodeStageVolumeRequest): Promise<Record<string, never>> {
    const volumeId = requireString(request.volume_id, 'volume_id');
    const stagingTargetPath = requireAbsolutePath(request.staging_target_path, 'staging_target_path');
    const capability = requirePresent(request.volume_capability, 'volume_capability');
    assertCapabilitySupported(capability, CsiErrorCode.CapabilityExceeded);
    const accessType = accessTypeOf(capability) as 'block' | 'mount';
    const key = capabilityKey(capability);
    return locks.run(volumeId, async () => {
      const state = await loadState();
      const existing = state.staged[volumeId];
      if (existing !== undefined) {
        if (existing.stagingTargetPath !== stagingTargetPath) {
          throw csiError(
            CsiErrorCode.VolumeInUse,
            `volume ${volumeId} is already staged at ${existing.stagingTargetPath}; unstage it first`,
          );
        }
        if (existing.capabilityKey !== key) {
          throw csiError(
            CsiErrorCode.VolumeIncompatible,
            `volume ${volumeId} is staged at ${stagingTargetPath} with another volume_capability`,
          );
        }
        if (await isStageIntact(existing)) return {};
        // The record outlived the attachment (node reboot, nbd-client killed): stage again.
        context.logger.warn(
          { volumeId, devicePath: existing.devicePath },
          'staged volume lost its device; staging again',
        );
        delete state.staged[volumeId];
        await saveState(state);
      }
      try {
        await options.volumeAdmin.statVolume(volumeId);
      } catch (err) {
        throw backendError('stat', volumeId, err);
      }
      const devicePath = await pickFreeDevice(state);
      await runChecked(runner, ['nbd-client', options.nbdHost, String(options.nbdPort), devicePath, '-N', volumeId]);
      let isMounted = false;
      try {
        let fsType: string | undefined;
        if (accessType === 'mount') {
          const mount = capability.mount as NonNullable<VolumeCapability['mount']>;
          fsType = await prepareFilesystem(devicePath, mount.fs_type);
          await mkdir(stagingTargetPath, { recursive: true });
          const flags = mount.mount_flags ?? [];
          await runChecked(runner, [
            'mount',
            '-t',
            fsType,
            ...(flags.length > 0 ? ['-o', flags.join(',')] : []),
            devicePath,
            stagingTargetPath,
          ]);
          isMounted = true;
        }
        state.staged[volumeId] = {
          devicePath,
          stagingTargetPath,
          accessType,
          ...(fsType === undefined ? {} : { fsType }),
          capabilityKey: key,
        };
        await saveState(state);
      } catch (err) {
        // Leave the node as it was: the device free, nothing mounted.
        delete state.staged[volumeId];
        if (isMounted) await runner.run(['umount', stagingTargetPath]).catch(() => undefined);
        await runner.run(['nbd-client', '-d', devicePath]).catch(() => undefined);
        throw err;
      }
      return {};
    });
  }

  async function nodeUnstageVolume(request: NodeUnstageVolumeRequest): Promise<Record<string, never>> {
    const volumeId = requireString(request.volume_id, 'volume_id');
    const stagingTargetPath = requireAbsolutePath(request.staging_target_path, 'staging_target_path');
    return locks.run(volumeId, async () => {
      const state = await loadState();
      const staged = state.staged[volumeId];
      if (staged === undefined) {
        // Not recorded (already unstaged, or the state file was lost): undo whatever is still
        // mounted at the staging path so the call converges either way.
        const source = await mountSource(stagingTargetPath);
        if (source !== undefined) {
          await runChecked(runner, ['umount', stagingTargetPath]);
          if (nbdDevicePattern.test(source)) await runChecked(runner, ['nbd-client', '-d', source]);
        }
        return {};
      }
      if (staged.stagingTargetPath !== stagingTargetPath) return {};
      const publishedAt = Object.entries(state.published)
        .filter(([, published]) => published.volumeId === volumeId)
        .map(([targetPath]) => targetPath);
      if (publishedAt.length > 0) {
        throw csiError(CsiErrorCode.VolumeInUse, `volume ${volumeId} is still published at ${publishedAt.join(', ')}`);
      }
      if (staged.accessType === 'mount' && (await mountSource(stagingTargetPath)) !== undefined) {
        await runChecked(runner, ['umount', stagingTargetPath]);
      }
      if (await isDeviceConnected(staged.devicePath)) {
        await runChecked(runner, ['nbd-client', '-d', staged.devicePath]);
      }
      delete state.staged[volumeId];
      await saveState(state);
      return {};
    });
  }

  async function nodePublishVolume(request: NodePublishVolumeRequest): Promise<Record<string, never>> {
    const volumeId = requireString(request.volume_id, 'volume_id');
    const targetPath = requireAbsolutePath(request.target_path, 'target_path');
    const capability = requirePresent(request.volume_capability, 'volume_capability');
    if (request.staging_target_path === '') {
      throw csiError(
        CsiErrorCode.VolumeNotStaged,
        'staging_target_path is required: this plugin has STAGE_UNSTAGE_VOLUME',
      );
    }
    const stagingTargetPath = requireAbsolutePath(request.staging_target_path, 'staging_target_path');
    assertCapabilitySupported(capability, CsiErrorCode.CapabilityExceeded);
    const accessType = accessTypeOf(capability) as 'block' | 'mount';
    const accessMode = capability.access_mode?.mode ?? 'UNKNOWN';
    const key = capabilityKey(capability);
    const isReadonly = request.readonly;
    return locks.run(volumeId, async () => {
      const state = await loadState();
      const staged = state.staged[volumeId];
      if (staged === undefined || staged.stagingTargetPath !== stagingTargetPath) {
        throw csiError(CsiErrorCode.VolumeNotStaged, `volume ${volumeId} is not staged at ${stagingTargetPath}`);
      }
      if (staged.accessType !== accessType) {
        throw csiError(
          CsiErrorCode.CapabilityExceeded,
          `volume ${volumeId} is staged as ${staged.accessType}, cannot publish it as ${accessType}`,
        );
      }
      const existing = state.published[targetPath];
      if (existing !== undefined) {
        const isSame =
          existing.volumeId === volumeId && existing.readonly === isReadonly && existing.capabilityKey === key;
        if (!isSame) {
          throw csiError(
            CsiErrorCode.VolumeIncompatible,
            `${targetPath} is already published with other arguments (volume ${existing.volumeId})`,
          );
        }
        if ((await mountSource(targetPath)) !== undefined) return {};
        delete state.published[targetPath];
      }
      const others = Object.entries(state.published).filter(
        ([path, published]) => published.volumeId === volumeId && path !== targetPath,
      );
      const isMultiWriter =
        accessMode === 'SINGLE_NODE_MULTI_WRITER' &&
        others.every(([, published]) => published.accessMode === 'SINGLE_NODE_MULTI_WRITER');
      if (others.length > 0 && !isMultiWriter) {
        throw csiError(
          CsiErrorCode.VolumeInUse,
          `volume ${volumeId} (${accessMode}) is already published at ${others.map(([path]) => path).join(', ')}`,
        );
      }
      if (accessType === 'block') {
        await mkdir(dirname(targetPath), { recursive: true });
        await (await open(targetPath, 'a')).close();
      } else {
        await mkdir(targetPath, { recursive: true });
      }
      await runChecked(runner, [
        'mount',
        '--bind',
        accessType === 'block' ? staged.devicePath : stagingTargetPath,
        targetPath,
      ]);
      try {
        if (isReadonly) await runChecked(runner, ['mount', '-o', 'remount,bind,ro', targetPath]);
        state.published[targetPath] = { volumeId, readonly: isReadonly, capabilityKey: key, accessMode };
        await saveState(state);
      } catch (err) {
        delete state.published[targetPath];
        await runner.run(['umount', targetPath]).catch(() => undefined);
        throw err;
      }
      return {};
    });
  }

  async function nodeUnpublishVolume(request: NodeUnpublishVolumeRequest): Promise<Record<string, never>> {
    const volumeId = requireString(request.volume_id, 'volume_id');
    const targetPath = requireAbsolutePath(request.target_path, 'target_path');
    return locks.run(volumeId, async () => {
      const state = await loadState();
      if ((await mountSource(targetPath)) !== undefined) await runChecked(runner, ['umount', targetPath]);
      // The SP removes what it created at target_path: a directory (mount) or a file (block).
      // rmdir, not a recursive delete: a directory that is not empty was not unmounted, and its
      // contents are somebody's data.
      try {
        const info = await stat(targetPath);
        if (info.isDirectory()) await rmdir(targetPath);
        else await unlink(targetPath);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      if (state.published[targetPath] !== undefined) {
        delete state.published[targetPath];
        await saveState(state);
      }
      return {};
    });
  }

  async function stagedAtPath(volumeId: string, volumePath: string): Promise<StagedVolume> {
    const state = await loadState();
    const staged = state.staged[volumeId];
    const paths =
      staged === undefined
        ? []
        : [
            staged.stagingTargetPath,
            ...Object.entries(state.published)
              .filter(([, published]) => published.volumeId === volumeId)
              .map(([path]) => path),
          ];
    if (staged === undefined || !paths.includes(volumePath)) {
      throw csiError(CsiErrorCode.VolumeNotFound, `volume ${volumeId} is not staged or published at ${volumePath}`);
    }
    return staged;
  }

  async function deviceSizeBytes(devicePath: string): Promise<number> {
    const result = await runChecked(runner, ['blockdev', '--getsize64', devicePath]);
    const sizeBytes = Number(result.stdout.trim());
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) {
      throw csiError(
        CsiErrorCode.CommandFailed,
        `blockdev --getsize64 ${devicePath} printed ${JSON.stringify(result.stdout)}`,
      );
    }
    return sizeBytes;
  }

  async function nodeGetVolumeStats(request: NodeGetVolumeStatsRequest): Promise<NodeGetVolumeStatsResponse> {
    const volumeId = requireString(request.volume_id, 'volume_id');
    const volumePath = requireAbsolutePath(request.volume_path, 'volume_path');
    const staged = await stagedAtPath(volumeId, volumePath);
    if (staged.accessType === 'block') {
      return { usage: [{ total: await deviceSizeBytes(staged.devicePath), available: 0, used: 0, unit: 'BYTES' }] };
    }
    let stats: Awaited<ReturnType<typeof statfs>>;
    try {
      stats = await statfs(volumePath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw csiError(CsiErrorCode.VolumeNotFound, `${volumePath} does not exist`, err);
      }
      throw err;
    }
    return {
      usage: [
        {
          total: stats.blocks * stats.bsize,
          available: stats.bavail * stats.bsize,
          used: (stats.blocks - stats.bfree) * stats.bsize,
          unit: 'BYTES',
        },
        { total: stats.files, available: stats.ffree, used: stats.files - stats.ffree, unit: 'INODES' },
      ],
    };
  }

  async function nodeExpandVolume(request: NodeExpandVolumeRequest): Promise<NodeExpandVolumeResponse> {
    const volumeId = requireString(request.volume_id, 'volume_id');
    const volumePath = requireAbsolutePath(request.volume_path, 'volume_path');
    if (request.volume_capability !== null && request.volume_capability !== undefined) {
      assertCapabilitySupported(request.volume_capability, CsiErrorCode.CapabilityUnsupported);
    }
    const requiredBytes = int64ToSafeInteger(request.capacity_range?.required_bytes, 'capacity_range.required_bytes');
    return locks.run(volumeId, async () => {
      const staged = await stagedAtPath(volumeId, volumePath);
      const sizeBytes = await deviceSizeBytes(staged.devicePath);
      // The kernel NBD client learns a device's size when it connects and rdl-agent cannot resize
      // an attached /dev/nbdX: that is why expansion is OFFLINE. After a NodeStageVolume that
      // followed the grow, the device covers required_bytes and the filesystem is grown here. A
      // smaller device means the volume grew while staged on this node: FAILED_PRECONDITION, which
      // kubelet takes as "not while in use on this node" and retries at the next mount.
      if (requiredBytes > sizeBytes) {
        throw csiError(
          CsiErrorCode.DeviceTooSmall,
          `${staged.devicePath} reports ${sizeBytes} bytes, ${requiredBytes} required: volume ${volumeId} was grown while staged on this node, and the kernel NBD device keeps the size it connected with (expansion is OFFLINE); unstage it (stop every pod using it on this node) and stage it again`,
        );
      }
      if (staged.accessType === 'mount') {
        await runChecked(
          runner,
          staged.fsType === 'xfs' ? ['xfs_growfs', staged.stagingTargetPath] : ['resize2fs', staged.devicePath],
        );
      }
      return { capacity_bytes: sizeBytes };
    });
  }

  return {
    NodeStageVolume: unaryHandler(context, 'NodeStageVolume', nodeStageVolume),
    NodeUnstageVolume: unaryHandler(context, 'NodeUnstageVolume', nodeUnstageVolume),
    NodePublishVolume: unaryHandler(context, 'NodePublishVolume', nodePublishVolume),
    NodeUnpublishVolume: unaryHandler(context, 'NodeUnpublishVolume', nodeUnpublishVolume),
    NodeGetVolumeStats: unaryHandler(context, 'NodeGetVolumeStats', nodeGetVolumeStats),
    NodeExpandVolume: unaryHandler(context, 'NodeExpandVolume', nodeExpandVolume),
    NodeGetCapabilities: unaryHandler(context, 'NodeGetCapabilities', async () => ({
      capabilities: nodeCapabilities.map((type) => ({ rpc: { type } })),
    })),
    NodeGetInfo: unaryHandler(context, 'NodeGetInfo', async (): Promise<NodeGetInfoResponse> => ({
      node_id: options.nodeId,
      max_volumes_per_node: Math.min(options.maxVolumesPerNode, options.nbdDevicesMax),
    })),
  };
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
