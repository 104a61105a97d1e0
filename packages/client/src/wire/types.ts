/**
 * Plain-data messages of the `rdl.v1.Block` service. Every message is a msgpack map (no records,
 * no extensions) so any msgpack implementation can speak the protocol. Integers are JavaScript
 * safe integers (msgpack uint64 on the wire when above 2^32, decoded back to `number`). Binary
 * payloads are msgpack `bin` and decode to `Buffer` views of the received message (no copy).
 *
 * Optional fields are omitted rather than set to `undefined`, so the encoding stays compact.
 */

/** A volume as the state machine stores it. */
export interface VolumeInfo {
  /** Volume name, see `VOLUME_NAME_PATTERN`. */
  name: string;
  /** Size in bytes; always a multiple of `BLOCK_SIZE_BYTES`. */
  sizeBytes: number;
  /** Block size of the store, `BLOCK_SIZE_BYTES` (4096). */
  blockSizeBytes: number;
  /** Creation time, milliseconds since the Unix epoch, as stamped by the leader. */
  createdAtMs: number;
}

/** Creates a volume; idempotent when a volume of the same name and size exists. */
export interface CreateVolumeRequest {
  name: string;
  sizeBytes: number;
}
/** `isCreated` is false when the call found an identical volume (idempotent retry). */
export interface CreateVolumeResponse {
  volume: VolumeInfo;
  isCreated: boolean;
}

/** Deletes a volume and all its blocks. `VOLUME_NOT_FOUND` when it does not exist. */
export interface DeleteVolumeRequest {
  name: string;
}
export type DeleteVolumeResponse = Record<string, never>;

export type ListVolumesRequest = Record<string, never>;
/** Volumes sorted by name. */
export interface ListVolumesResponse {
  volumes: VolumeInfo[];
}

export interface StatVolumeRequest {
  name: string;
}
export interface StatVolumeResponse {
  volume: VolumeInfo;
}

/** Grows a volume to `sizeBytes` (>= current size; equal is a no-op so retries are safe). */
export interface GrowVolumeRequest {
  name: string;
  sizeBytes: number;
}
export interface GrowVolumeResponse {
  volume: VolumeInfo;
}

/** Raft role of a member as seen by the answering daemon. */
export type MemberRole = 'leader' | 'follower' | 'candidate' | 'learner' | 'unknown';

/** Where the leader is: its region name and its client (block API) address `host:port`. */
export interface LeaderInfo {
  region: string;
  clientAddress: string;
}

/** One member of the Raft group. */
export interface MemberStatus {
  region: string;
  /** Peer (Raft transport) address `host:port`. */
  raftAddress: string;
  /** Block API address `host:port`. */
  clientAddress: string;
  role: MemberRole;
  /** Highest log index known replicated on this member; only known to the leader, else absent. */
  matchIndex?: number;
  /** Leader's last index minus `matchIndex` (entries behind); only known to the leader, else absent. */
  lagEntries?: number;
}

export type StatusRequest = Record<string, never>;
/**
 * The answering daemon's view of the group. Any member answers (no `NOT_LEADER`); only the leader
 * knows per-follower lag, so the SDK's `status()` asks the leader when one is known.
 */
export interface StatusResponse {
  /** Region of the daemon that answered. */
  region: string;
  /** Role of the daemon that answered. */
  role: MemberRole;
  term: number;
  /** Absent when no leader is known (election in progress). */
  leader?: LeaderInfo;
  commitIndex: number;
  appliedIndex: number;
  members: MemberStatus[];
}

/** Asks the leader to hand leadership to `region`. Sent to the leader, else `NOT_LEADER`. */
export interface TransferLeaderRequest {
  region: string;
}
/** Answered once `region` is leader (or with `LEADER_TRANSFER_FAILED` when it did not happen in time). */
export interface TransferLeaderResponse {
  leader: LeaderInfo;
}

/** IO operations carried by the `Io` stream. */
export type IoOp = 'read' | 'write' | 'writeZeroes' | 'trim' | 'flush';

/**
 * One IO request on the `Io` stream. Requests are multiplexed by `id` (unique among the requests
 * in flight on one stream, chosen by the client) and answered in any order. They travel in
 * batches: see `IoRequestBatch`.
 *
 * - `read`: `length` bytes at `offset`; `data` absent.
 * - `write`: `data` at `offset`; `length` equals `data.length`.
 * - `writeZeroes` / `trim`: `length` bytes at `offset` read back as zeros afterwards.
 * - `flush`: no range (`offset` = `length` = 0); answered once every write this session had
 *   acknowledged before is durable (acknowledged writes are committed, so this is a barrier).
 *
 * Exactly-once: mutating ops (`write`, `writeZeroes`, `trim`) carry the client's `session` and a
 * per-session `seq` (>= 1, unique per logical write, reused unchanged on every retry of it).
 * `ackedBelow` tells the server every seq below it has been answered to the caller, so it may
 * forget them. The state machine applies each (session, seq) at most once; a retry of an applied
 * seq is answered `ok` without applying it again, so it can never overwrite a newer write.
 * Non-mutating ops (`read`, `flush`) may omit `session`, `seq` and `ackedBelow` (the SDK does, to
 * keep reads small); when present they must be well-formed and are ignored.
 */
export interface IoRequest {
  id: number;
  op: IoOp;
  volume: string;
  offset: number;
  length: number;
  data?: Uint8Array;
  /** Required on mutating ops. */
  session?: string;
  /** Required (>= 1) on mutating ops; 0 or absent otherwise. */
  seq?: number;
  /** Required on mutating ops (<= `seq`); 0 or absent otherwise. */
  ackedBelow?: number;
}

/**
 * One message of the client's half of the `Io` stream: 1 to `IO_BATCH_REQUESTS_MAX` requests.
 * Batching is how the stream stays cheap per request: one gRPC message, one msgpack decode and one
 * ReadIndex for many requests. Senders keep the write payloads of one batch within
 * `IO_BATCH_BYTES_MAX` (a single request of up to `IO_REQUEST_BYTES_MAX` always travels alone if
 * need be). A batch that is not a map with a `requests` array, is empty, or holds a request
 * without a usable `id` fails the stream with `INVALID_ARGUMENT`; one above
 * `IO_BATCH_REQUESTS_MAX` requests fails it with `TOO_LARGE`. Any other problem of a request is
 * answered for that request alone.
 */
export interface IoRequestBatch {
  requests: IoRequest[];
}

/** An error as carried on the wire (in an `IoResponse`, or rebuilt from trailing metadata). */
export interface WireError {
  /** Stable code, one of `WireCode`. */
  code: string;
  message: string;
  /** Leader region, with `NOT_LEADER` when known. */
  leader?: string;
  /** Leader client address `host:port`, with `NOT_LEADER` when known. */
  leaderAddress?: string;
}

/** Answer to the `IoRequest` with the same `id`. `data` is present for a successful `read`. */
export interface IoResponse {
  id: number;
  ok: boolean;
  data?: Uint8Array;
  error?: WireError;
}

/**
 * One message of the server's half of the `Io` stream: 1 to `IO_BATCH_REQUESTS_MAX` responses,
 * whatever batches their requests came in (a server gathers the answers ready in the same turn of
 * its event loop), with read payloads within `IO_BATCH_BYTES_MAX` unless a single response is
 * larger on its own.
 */
export interface IoResponseBatch {
  responses: IoResponse[];
}
