/**
 * TypeScript shapes of the CSI messages as `loadCsiPackageDefinition` decodes them: snake_case
 * field names as in the specification, int64 as decimal strings (so no precision is lost before
 * the driver checks the range), enums as their names, absent sub-messages as null, absent
 * scalars/lists/maps as their proto3 defaults, and for each oneof a virtual field naming the
 * member that is set. Responses may give int64 fields as numbers.
 */

/** Decoded int64 (a decimal string) or an int64 the driver sends (a safe integer). */
export type Int64 = string | number;

/** A protobuf `map<string, string>`. */
export type StringMap = Record<string, string>;

/** VolumeCapability.AccessMode.Mode by name. */
export type AccessModeName =
  | 'UNKNOWN'
  | 'SINGLE_NODE_WRITER'
  | 'SINGLE_NODE_READER_ONLY'
  | 'MULTI_NODE_READER_ONLY'
  | 'MULTI_NODE_SINGLE_WRITER'
  | 'MULTI_NODE_MULTI_WRITER'
  | 'SINGLE_NODE_SINGLE_WRITER'
  | 'SINGLE_NODE_MULTI_WRITER';

/** VolumeCapability.MountVolume: filesystem access. */
export interface MountVolume {
  fs_type: string;
  mount_flags: string[];
  volume_mount_group: string;
}

/** VolumeCapability: block or mount access, and an access mode. */
export interface VolumeCapability {
  block?: Record<string, never> | null;
  mount?: MountVolume | null;
  access_mode: { mode: AccessModeName } | null;
  /** Virtual oneof field: which access type is set. */
  access_type?: 'block' | 'mount';
}

/** CapacityRange: 0 means unset for either bound. */
export interface CapacityRange {
  required_bytes: Int64;
  limit_bytes: Int64;
}

/** Topology: topological segments (unused by rdl, kept for the wire). */
export interface Topology {
  segments: StringMap;
}

/** VolumeContentSource: a snapshot or volume to copy (rdl supports neither). */
export interface VolumeContentSource {
  snapshot?: { snapshot_id: string } | null;
  volume?: { volume_id: string } | null;
  type?: 'snapshot' | 'volume';
}

/** Volume as returned to the CO. */
export interface Volume {
  capacity_bytes: Int64;
  volume_id: string;
  volume_context?: StringMap;
  content_source?: VolumeContentSource | null;
  accessible_topology?: Topology[];
}

/** CreateVolumeRequest. */
export interface CreateVolumeRequest {
  name: string;
  capacity_range: CapacityRange | null;
  volume_capabilities: VolumeCapability[];
  parameters: StringMap;
  secrets: StringMap;
  volume_content_source: VolumeContentSource | null;
  accessibility_requirements: { requisite: Topology[]; preferred: Topology[] } | null;
  mutable_parameters: StringMap;
}

/** DeleteVolumeRequest. */
export interface DeleteVolumeRequest {
  volume_id: string;
  secrets: StringMap;
}

/** ValidateVolumeCapabilitiesRequest. */
export interface ValidateVolumeCapabilitiesRequest {
  volume_id: string;
  volume_context: StringMap;
  volume_capabilities: VolumeCapability[];
  parameters: StringMap;
  secrets: StringMap;
  mutable_parameters: StringMap;
}

/** ValidateVolumeCapabilitiesResponse: `confirmed` only when every capability is supported. */
export interface ValidateVolumeCapabilitiesResponse {
  confirmed?: {
    volume_context: StringMap;
    volume_capabilities: VolumeCapability[];
    parameters: StringMap;
    mutable_parameters: StringMap;
  } | null;
  message: string;
}

/** ListVolumesRequest. */
export interface ListVolumesRequest {
  max_entries: number;
  starting_token: string;
}

/** ListVolumesResponse (entries without `status`: no LIST_VOLUMES_PUBLISHED_NODES). */
export interface ListVolumesResponse {
  entries: { volume: Volume }[];
  next_token: string;
}

/** GetCapacityRequest. */
export interface GetCapacityRequest {
  volume_capabilities: VolumeCapability[];
  parameters: StringMap;
  accessible_topology: Topology | null;
}

/** GetCapacityResponse. */
export interface GetCapacityResponse {
  available_capacity: Int64;
  maximum_volume_size: { value: Int64 } | null;
  minimum_volume_size: { value: Int64 } | null;
}

/** ControllerExpandVolumeRequest. */
export interface ControllerExpandVolumeRequest {
  volume_id: string;
  capacity_range: CapacityRange | null;
  secrets: StringMap;
  volume_capability: VolumeCapability | null;
}

/** ControllerExpandVolumeResponse. */
export interface ControllerExpandVolumeResponse {
  capacity_bytes: Int64;
  node_expansion_required: boolean;
}

/** NodeStageVolumeRequest. */
export interface NodeStageVolumeRequest {
  volume_id: string;
  publish_context: StringMap;
  staging_target_path: string;
  volume_capability: VolumeCapability | null;
  secrets: StringMap;
  volume_context: StringMap;
}

/** NodeUnstageVolumeRequest. */
export interface NodeUnstageVolumeRequest {
  volume_id: string;
  staging_target_path: string;
}

/** NodePublishVolumeRequest. */
export interface NodePublishVolumeRequest {
  volume_id: string;
  publish_context: StringMap;
  staging_target_path: string;
  target_path: string;
  volume_capability: VolumeCapability | null;
  readonly: boolean;
  secrets: StringMap;
  volume_context: StringMap;
}

/** NodeUnpublishVolumeRequest. */
export interface NodeUnpublishVolumeRequest {
  volume_id: string;
  target_path: string;
}

/** NodeGetVolumeStatsRequest. */
export interface NodeGetVolumeStatsRequest {
  volume_id: string;
  volume_path: string;
  staging_target_path: string;
}

/** VolumeUsage: one unit (bytes or inodes) of NodeGetVolumeStats. */
export interface VolumeUsage {
  available: Int64;
  total: Int64;
  used: Int64;
  unit: 'UNKNOWN' | 'BYTES' | 'INODES';
}

/** NodeGetVolumeStatsResponse. */
export interface NodeGetVolumeStatsResponse {
  usage: VolumeUsage[];
}

/** NodeExpandVolumeRequest. */
export interface NodeExpandVolumeRequest {
  volume_id: string;
  volume_path: string;
  capacity_range: CapacityRange | null;
  staging_target_path: string;
  volume_capability: VolumeCapability | null;
  secrets: StringMap;
}

/** NodeExpandVolumeResponse. */
export interface NodeExpandVolumeResponse {
  capacity_bytes: Int64;
}

/** NodeGetInfoResponse. */
export interface NodeGetInfoResponse {
  node_id: string;
  max_volumes_per_node: Int64;
  accessible_topology?: Topology | null;
}
