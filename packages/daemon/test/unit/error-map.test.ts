// Proves the API's error mapping: Raft errors become the stable wire codes the SDK retries on
// (NOT_LEADER with the leader's region and client address, UNAVAILABLE, DEADLINE_EXCEEDED,
// RESOURCE_EXHAUSTED, TOO_LARGE, LEADER_TRANSFER_FAILED), apply failures keep or rename their code,
// and anything unknown is INTERNAL — by feeding real RaftError instances and apply results.
import test from 'ava';
import { RaftError } from '@rdl/raft';
import { toWireError, notLeader } from '../../src/api/error-map.js';

const addresses: Record<string, string> = { geneva: '10.0.0.1:7001', gland: '10.0.0.2:7001' };
const addressOf = (region: string): string | null => addresses[region] ?? null;
const map = (err: unknown) => toWireError(err, addressOf, 'lucerne');

test('RAFT_NOT_LEADER carries the leader region and client address', (t) => {
  const wire = map(new RaftError('RAFT_NOT_LEADER', 'not leader', { leaderHint: 'gland' }));
  t.is(wire.code, 'NOT_LEADER');
  t.is(wire.leader, 'gland');
  t.is(wire.leaderAddress, '10.0.0.2:7001');
  const unknown = map(new RaftError('RAFT_NOT_LEADER', 'not leader', { leaderHint: null }));
  t.is(unknown.code, 'NOT_LEADER');
  t.is(unknown.leader, undefined);
  t.is(notLeader('lucerne', addressOf, 'lucerne').leader, undefined, 'never redirect to oneself');
});

test('Raft failures map to retryable or final wire codes', (t) => {
  const cases: [string, string][] = [
    ['RAFT_PROPOSAL_DROPPED', 'UNAVAILABLE'],
    ['RAFT_STOPPED', 'UNAVAILABLE'],
    ['RAFT_STORAGE_FAILED', 'UNAVAILABLE'],
    ['RAFT_ABORTED', 'DEADLINE_EXCEEDED'],
    ['RAFT_UNCOMMITTED_LIMIT', 'RESOURCE_EXHAUSTED'],
    ['RAFT_ENTRY_TOO_LARGE', 'TOO_LARGE'],
    ['RAFT_TRANSFER_FAILED', 'LEADER_TRANSFER_FAILED'],
  ];
  for (const [raft, wire] of cases) t.is(map(new RaftError(raft as never, 'x')).code, wire, raft);
});

test('apply failures keep wire codes, rename the others, and unknown errors are INTERNAL', (t) => {
  t.is(map({ ok: false, code: 'VOLUME_NOT_FOUND', message: 'm' }).code, 'VOLUME_NOT_FOUND');
  t.is(map({ ok: false, code: 'OUT_OF_RANGE', message: 'm' }).code, 'OUT_OF_RANGE');
  t.is(map({ ok: false, code: 'VOLUME_SHRINK_REFUSED', message: 'm' }).code, 'INVALID_ARGUMENT');
  t.is(map({ ok: false, code: 'SESSION_WINDOW_EXCEEDED', message: 'm' }).code, 'RESOURCE_EXHAUSTED');
  t.is(map({ ok: false, code: 'SESSION_EXPIRED', message: 'm' }).code, 'SESSION_EXPIRED');
  t.is(map(new Error('boom')).code, 'INTERNAL');
  const odd = map(Object.assign(new Error('odd'), { code: 'SOMETHING_ELSE' }));
  t.is(odd.code, 'INTERNAL');
  t.regex(odd.message, /SOMETHING_ELSE/);
});
