// Proves docs/errors.md lists every error code of the CSI driver: it collects every CsiErrorCode
// value and every quoted 'AGENT_CSI_…' string in packages/agent/src/csi, and fails when one has
// no row in the Agent table of docs/errors.md. It also checks every code maps to a gRPC status.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { status } from '@grpc/grpc-js';
import { CsiErrorCode, grpcStatusOfCsiCode } from '../../src/csi/errors.js';

const root = fileURLToPath(new URL('../../../../../', import.meta.url));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) return sourceFiles(full);
    return name.endsWith('.ts') ? [full] : [];
  });
}

test('every AGENT_CSI_ code has a row in the Agent section of docs/errors.md', (t) => {
  const codes = new Set<string>(Object.values(CsiErrorCode));
  for (const file of sourceFiles(join(root, 'packages/agent/src/csi'))) {
    for (const match of readFileSync(file, 'utf8').matchAll(/['"`](AGENT_CSI_[A-Z_]+)['"`]/g)) codes.add(match[1]);
  }
  t.true(codes.size >= 15);
  const doc = readFileSync(join(root, 'docs/errors.md'), 'utf8');
  const start = doc.indexOf('## Agent');
  const end = doc.indexOf('\n## ', start + 1);
  const section = doc.slice(start, end < 0 ? undefined : end);
  const missing = [...codes].filter((code) => !section.includes(`| \`${code}\` |`));
  t.deepEqual(missing, [], `missing from docs/errors.md: ${missing.join(', ')}`);
});

test('codes map to the gRPC statuses the CSI spec prescribes', (t) => {
  t.is(grpcStatusOfCsiCode(CsiErrorCode.ArgumentMissing), status.INVALID_ARGUMENT);
  t.is(grpcStatusOfCsiCode(CsiErrorCode.VolumeNotFound), status.NOT_FOUND);
  t.is(grpcStatusOfCsiCode(CsiErrorCode.VolumeIncompatible), status.ALREADY_EXISTS);
  t.is(grpcStatusOfCsiCode(CsiErrorCode.CapacityOutOfRange), status.OUT_OF_RANGE);
  t.is(grpcStatusOfCsiCode(CsiErrorCode.TokenInvalid), status.ABORTED);
  t.is(grpcStatusOfCsiCode(CsiErrorCode.CapabilityExceeded), status.FAILED_PRECONDITION);
  t.is(grpcStatusOfCsiCode('SOMETHING_ELSE'), status.INTERNAL);
});
