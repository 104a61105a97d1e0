import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { codeOf } from '../errors.js';
import { CsiErrorCode, csiError } from './errors.js';
import { unaryHandler } from './handler.js';
import type { HandlerContext } from './handler.js';
import { OperationLocks } from './operation-locks.js';
import type {
  ControllerExpandVolumeRequest,
  ControllerExpandVolumeResponse,
  CreateVolumeRequest,
  DeleteVolumeRequest,
  GetCapacityRequest,
  GetCapacityResponse,
  ListVolumesRequest,
  ListVolumesResponse,
  ValidateVolumeCapabilitiesRequest,
  ValidateVolumeCapabilitiesResponse,
  Volume,
} from './types.js';
import {
  accessTypeOf,
  assertCapabilitySupported,
  capabilityProblem,
  chooseVolumeSize,
  decodeListToken,
  encodeListToken,
  int64ToSafeInteger,
  isPlausibleVolumeId,
  requirePresent,
  requireString,
  sizeSatisfiesRange,
  volumeBlockSizeBytes,
  volumeIdForName,
} from './validation.js';
import type { SizeLimits } from './validation.js';
import { backendError, volumeExistsCode, volumeNotFoundCode } from './volume-admin.js';
import type { AdminVolume, VolumeAdmin } from './volume-admin.js';

/** Controller options; every size is in bytes. */
export interface ControllerOptions extends SizeLimits {
  /** How rdl is asked to create, delete, list, stat and grow volumes. */
  volumeAdmin: VolumeAdmin;
  /**
   * Capacity of the pool the driver provisions from, an operator-set quota: GetCapacity reports
   * it minus the sizes of the volumes rdl holds (rdl itself has no fixed pool size).
   */
  capacityBytes: number;
  /** Largest page ListVolumes returns, whatever max_entries asks. */
  listEntriesMax: number;
}

/**
 * The Controller service: provisions rdl volumes for the CO. Every call is idempotent as the spec
 * requires, and a volume's id is its rdl name, so the controller keeps no state of its own.
 */
export function controllerService(context: HandlerContext, options: ControllerOptions): UntypedServiceImplementation {
  const admin = options.volumeAdmin;
  const locks = new OperationLocks();

  async function statOrUndefined(volumeId: string): Promise<AdminVolume | undefined> {
    try {
      return await admin.statVolume(volumeId);
    } catch (err) {
      if (codeOf(err) === volumeNotFoundCode) return undefined;
      throw backendError('stat', volumeId, err);
    }
  }

  function compatibleOrThrow(existing: AdminVolume, request: CreateVolumeRequest): Volume {
    if (!sizeSatisfiesRange(existing.sizeBytes, request.capacity_range)) {
      throw csiError(
        CsiErrorCode.VolumeIncompatible,
        `volume ${existing.name} already exists with ${existing.sizeBytes} bytes, outside the requested capacity_range`,
      );
    }
    return toCsiVolume(existing);
  }

  async function createVolume(request: CreateVolumeRequest): Promise<{ volume: Volume }> {
    const name = requireString(request.name, 'name');
    if (request.volume_capabilities.length === 0) {
      throw csiError(CsiErrorCode.ArgumentMissing, 'volume_capabilities is required');
    }
    for (const capability of request.volume_capabilities) {
      assertCapabilitySupported(capability, CsiErrorCode.CapabilityUnsupported);
    }
    if (request.volume_content_source !== null && request.volume_content_source !== undefined) {
      throw csiError(
        CsiErrorCode.ArgumentInvalid,
        'volume_content_source is not supported: rdl has no snapshots or clones (CLONE_VOLUME and CREATE_DELETE_SNAPSHOT are not advertised)',
      );
    }
    // rdl volumes take no parameters; the CO's own keys (fstype, PVC metadata) are ignored. An
    // unknown key is most likely a StorageClass typo, which silently ignoring would hide.
    const unknownParameters = Object.keys(request.parameters ?? {}).filter((key) => !key.startsWith(coParameterPrefix));
    if (unknownParameters.length > 0) {
      throw csiError(
        CsiErrorCode.ArgumentInvalid,
        `unknown parameters ${unknownParameters.join(', ')}: rdl volumes take none (only ${coParameterPrefix}* keys are accepted)`,
      );
    }
    const volumeId = volumeIdForName(name);
    const sizeBytes = chooseVolumeSize(request.capacity_range, options);
    return locks.run(volumeId, async () => {
      const existing = await statOrUndefined(volumeId);
      if (existing !== undefined) return { volume: compatibleOrThrow(existing, request) };
      try {
        return { volume: toCsiVolume(await admin.createVolume(volumeId, sizeBytes)) };
      } catch (err) {
        // Another controller (or a retry racing this one) created it between stat and create.
        if (codeOf(err) === volumeExistsCode) {
          const raced = await statOrUndefined(volumeId);
          if (raced !== undefined) return { volume: compatibleOrThrow(raced, request) };
        }
        throw backendError('create', volumeId, err);
      }
    });
  }

  async function deleteVolume(request: DeleteVolumeRequest): Promise<Record<string, never>> {
    const volumeId = requireString(request.volume_id, 'volume_id');
    // An id rdl could never hold names no volume: deleting it is the idempotent no-op.
    if (!isPlausibleVolumeId(volumeId)) return {};
    return locks.run(volumeId, async () => {
      try {
        await admin.deleteVolume(volumeId);
      } catch (err) {
        if (codeOf(err) !== volumeNotFoundCode) throw backendError('delete', volumeId, err);
      }
      return {};
    });
  }

  async function statExisting(volumeId: string): Promise<AdminVolume> {
    if (!isPlausibleVolumeId(volumeId)) {
      throw csiError(CsiErrorCode.VolumeNotFound, `volume ${volumeId} does not exist`);
    }
    try {
      return await admin.statVolume(volumeId);
    } catch (err) {
      throw backendError('stat', volumeId, err);
    }
  }

  async function validateVolumeCapabilities(
    request: ValidateVolumeCapabilitiesRequest,
  ): Promise<ValidateVolumeCapabilitiesResponse> {
    const volumeId = requireString(request.volume_id, 'volume_id');
    if (request.volume_capabilities.length === 0) {
      throw csiError(CsiErrorCode.ArgumentMissing, 'volume_capabilities is required');
    }
    await statExisting(volumeId);
    const problems = request.volume_capabilities
      .map((capability) => capabilityProblem(capability))
      .filter((problem) => problem !== undefined);
    if (problems.length > 0) return { confirmed: null, message: problems.join('; ') };
    return {
      confirmed: {
        volume_context: request.volume_context,
        volume_capabilities: request.volume_capabilities,
        parameters: request.parameters,
        mutable_parameters: {},
      },
      message: '',
    };
  }

  async function listVolumes(request: ListVolumesRequest): Promise<ListVolumesResponse> {
    if (request.max_entries < 0) {
      throw csiError(CsiErrorCode.ArgumentInvalid, `max_entries must not be negative, got ${request.max_entries}`);
    }
    const afterVolumeId = request.starting_token === '' ? undefined : decodeListToken(request.starting_token);
    let volumes: AdminVolume[];
    try {
      volumes = await admin.listVolumes();
    } catch (err) {
      throw backendError('list', '*', err);
    }
    // Sorted by name, so a token (the last name returned) resumes correctly even if volumes were
    // created or deleted in between (the spec allows duplicates or misses then, not errors).
    volumes = [...volumes].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const remaining = afterVolumeId === undefined ? volumes : volumes.filter((volume) => volume.name > afterVolumeId);
    const pageSize = Math.min(
      request.max_entries === 0 ? options.listEntriesMax : request.max_entries,
      options.listEntriesMax,
    );
    const page = remaining.slice(0, pageSize);
    const hasMore = remaining.length > page.length;
    return {
      entries: page.map((volume) => ({ volume: toCsiVolume(volume) })),
      next_token: hasMore ? encodeListToken(page[page.length - 1].name) : '',
    };
  }

  async function getCapacity(request: GetCapacityRequest): Promise<GetCapacityResponse> {
    const limits = {
      maximum_volume_size: { value: options.maxVolumeSizeBytes },
      minimum_volume_size: { value: volumeBlockSizeBytes },
    };
    // Volumes with a capability rdl cannot serve cannot be provisioned at all.
    if (request.volume_capabilities.some((capability) => capabilityProblem(capability) !== undefined)) {
      return { available_capacity: 0, ...limits };
    }
    let volumes: AdminVolume[];
    try {
      volumes = await admin.listVolumes();
    } catch (err) {
      throw backendError('list', '*', err);
    }
    const usedBytes = volumes.reduce((sum, volume) => sum + volume.sizeBytes, 0);
    return { available_capacity: Math.max(0, options.capacityBytes - usedBytes), ...limits };
  }

  async function controllerExpandVolume(
    request: ControllerExpandVolumeRequest,
  ): Promise<ControllerExpandVolumeResponse> {
    const volumeId = requireString(request.volume_id, 'volume_id');
    const range = requirePresent(request.capacity_range, 'capacity_range');
    if (request.volume_capability !== null && request.volume_capability !== undefined) {
      assertCapabilitySupported(request.volume_capability, CsiErrorCode.CapabilityUnsupported);
    }
    const requiredBytes = int64ToSafeInteger(range.required_bytes, 'capacity_range.required_bytes');
    const limitBytes = int64ToSafeInteger(range.limit_bytes, 'capacity_range.limit_bytes');
    if (requiredBytes === 0 && limitBytes === 0) {
      throw csiError(CsiErrorCode.ArgumentMissing, 'capacity_range needs required_bytes or limit_bytes');
    }
    // Expansion is OFFLINE: the spec has the CO expand only volumes staged on no node. The
    // controller cannot check that (rdl has no ControllerPublish step and no record of
    // attachments), so it grows the volume whenever asked, and Kubernetes' csi-resizer does ask
    // while a pod runs (it holds back only after a FAILED_PRECONDITION). That is harmless: an
    // attached /dev/nbdX keeps its old size and its data, NodeExpandVolume there answers
    // FAILED_PRECONDITION (kubelet then defers to the next mount), and the next NodeStageVolume
    // attaches the device at the new size, after which NodeExpandVolume grows the filesystem when
    // this is true. A block volume has no filesystem to grow.
    const isNodeExpansionRequired =
      request.volume_capability === null ||
      request.volume_capability === undefined ||
      accessTypeOf(request.volume_capability) !== 'block';
    return locks.run(volumeId, async () => {
      const existing = await statExisting(volumeId);
      const targetBytes = chooseVolumeSize(range, { ...options, defaultVolumeSizeBytes: existing.sizeBytes });
      // Already as large as asked (a retry, or a shrink request rdl cannot honour): nothing to do.
      if (existing.sizeBytes >= targetBytes) {
        if (limitBytes > 0 && existing.sizeBytes > limitBytes) {
          throw csiError(
            CsiErrorCode.CapacityOutOfRange,
            `volume ${volumeId} has ${existing.sizeBytes} bytes, more than limit_bytes ${limitBytes}; volumes cannot shrink`,
          );
        }
        return { capacity_bytes: existing.sizeBytes, node_expansion_required: isNodeExpansionRequired };
      }
      let grown: AdminVolume;
      try {
        grown = await admin.growVolume(volumeId, targetBytes);
      } catch (err) {
        throw backendError('grow', volumeId, err);
      }
      return { capacity_bytes: grown.sizeBytes, node_expansion_required: isNodeExpansionRequired };
    });
  }

  return {
    CreateVolume: unaryHandler(context, 'CreateVolume', createVolume),
    DeleteVolume: unaryHandler(context, 'DeleteVolume', deleteVolume),
    ValidateVolumeCapabilities: unaryHandler(context, 'ValidateVolumeCapabilities', validateVolumeCapabilities),
    ListVolumes: unaryHandler(context, 'ListVolumes', listVolumes),
    GetCapacity: unaryHandler(context, 'GetCapacity', getCapacity),
    ControllerGetCapabilities: unaryHandler(context, 'ControllerGetCapabilities', async () => ({
      capabilities: controllerCapabilities.map((type) => ({ rpc: { type } })),
    })),
    ControllerExpandVolume: unaryHandler(context, 'ControllerExpandVolume', controllerExpandVolume),
  };
}

/** Parameters the CO itself adds or consumes (external-provisioner's csi.storage.k8s.io/*). */
const coParameterPrefix = 'csi.storage.k8s.io/';

/** Controller capabilities: provisioning, listing, capacity, expansion, single-node writer modes. */
export const controllerCapabilities = Object.freeze([
  'CREATE_DELETE_VOLUME',
  'LIST_VOLUMES',
  'GET_CAPACITY',
  'EXPAND_VOLUME',
  'SINGLE_NODE_MULTI_WRITER',
]);

function toCsiVolume(volume: AdminVolume): Volume {
  // volume_context stays empty: the volume id alone tells the node which NBD export to attach.
  return { capacity_bytes: volume.sizeBytes, volume_id: volume.name, volume_context: {} };
}
