/**
 * Turns whatever the Raft node, the state machine or the block store reports into the stable wire
 * error the client SDK rebuilds (`@rdl/client/wire` `WireError`). One place, so every RPC and every
 * IO request answers the same code for the same cause.
 */
import { WireCode } from '@rdl/client/wire';
import type { WireError } from '@rdl/client/wire';
import { codeOf } from '../errors.js';

/** Resolves a region to the client address redirects point at (null when unknown). */
export type LeaderAddressOf = (region: string) => string | null;

/** A NOT_LEADER error with the leader's region and client address when known. */
export function notLeader(leader: string | null, addressOf: LeaderAddressOf, self: string): WireError {
  const error: WireError = {
    code: WireCode.NOT_LEADER,
    message:
      leader === null
        ? `${self} is not the leader and no leader is known (election in progress); retry shortly`
        : `${self} is not the leader; the leader is ${leader}`,
  };
  if (leader !== null && leader !== self) {
    error.leader = leader;
    const address = addressOf(leader);
    if (address !== null) error.leaderAddress = address;
  }
  return error;
}

/** Apply-result and block-store codes that are wire codes under another name. */
const renamed: Readonly<Record<string, string>> = {
  VOLUME_SHRINK_REFUSED: WireCode.INVALID_ARGUMENT,
  VOLUME_LIMIT_REACHED: WireCode.RESOURCE_EXHAUSTED,
  SESSION_WINDOW_EXCEEDED: WireCode.RESOURCE_EXHAUSTED,
};

const wireCodes: ReadonlySet<string> = new Set(Object.values(WireCode));

/** True when the error is an unexpected failure (to be logged at error level). */
export function isInternal(error: WireError): boolean {
  return error.code === WireCode.INTERNAL;
}

/**
 * Maps an apply failure (`{ ok: false, code, message }`) or a thrown error to a wire error.
 * `RAFT_NOT_LEADER` becomes NOT_LEADER with the hint; a dropped proposal, a stopped node or a
 * failed storage is UNAVAILABLE (retry elsewhere: the write was not applied, or its outcome is
 * carried by the retried (session, seq)); an aborted wait is DEADLINE_EXCEEDED; limits are
 * RESOURCE_EXHAUSTED or TOO_LARGE; unknown errors are INTERNAL.
 */
export function toWireError(err: unknown, addressOf: LeaderAddressOf, self: string): WireError {
  const code = codeOf(err);
  const message = err instanceof Error ? err.message : String((err as { message?: unknown })?.message ?? err);
  switch (code) {
    case 'RAFT_NOT_LEADER':
      return notLeader((err as { leaderHint?: string | null }).leaderHint ?? null, addressOf, self);
    case 'RAFT_PROPOSAL_DROPPED':
    case 'RAFT_STOPPED':
    case 'RAFT_STORAGE_FAILED':
    case 'DAEMON_STOPPED':
    case 'DAEMON_STORAGE_CLOSED':
    case 'DAEMON_STORAGE_BUSY':
      return { code: WireCode.UNAVAILABLE, message };
    case 'RAFT_ABORTED':
      return { code: WireCode.DEADLINE_EXCEEDED, message };
    case 'RAFT_UNCOMMITTED_LIMIT':
    case 'RAFT_BATCH_TOO_LARGE':
      return { code: WireCode.RESOURCE_EXHAUSTED, message };
    case 'RAFT_ENTRY_TOO_LARGE':
      return { code: WireCode.TOO_LARGE, message };
    case 'RAFT_TRANSFER_FAILED':
      return { code: WireCode.LEADER_TRANSFER_FAILED, message };
    case undefined:
      return { code: WireCode.INTERNAL, message };
    default:
      if (renamed[code] !== undefined) return { code: renamed[code], message };
      if (wireCodes.has(code)) return { code, message };
      return { code: WireCode.INTERNAL, message: `${code}: ${message}` };
  }
}
