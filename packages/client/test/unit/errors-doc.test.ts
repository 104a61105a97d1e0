// Proves that docs/errors.md lists every error code of @rdl/client: every WireCode and ClientCode
// value, and every quoted upper-case code literal in packages/client/src, must have a row in the
// "Block API and client SDK" table; and that every wire code has a gRPC status of its own mapping.
import test from 'ava';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { ClientCode, ERROR_CODES } from '../../src/errors.js';
import { WireCode, grpcStatusOf } from '../../src/wire/index.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../..');

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) out.push(...sourceFiles(full));
    else if (name.endsWith('.ts')) out.push(full);
  }
  return out;
}

function clientSection(): string {
  const doc = readFileSync(path.join(root, 'docs/errors.md'), 'utf8');
  const start = doc.indexOf('## Block API and client SDK');
  const end = doc.indexOf('\n## ', start + 1);
  return doc.slice(start, end < 0 ? undefined : end);
}

test('every client and wire code has a row in docs/errors.md', (t) => {
  const codes = new Set<string>([...Object.values(WireCode), ...Object.values(ClientCode), ...ERROR_CODES]);
  for (const file of sourceFiles(path.join(root, 'packages/client/src'))) {
    for (const m of readFileSync(file, 'utf8').matchAll(/['"`](CLIENT_[A-Z_]+)['"`]/g)) codes.add(m[1]);
  }
  t.true(codes.size >= 20);
  const section = clientSection();
  const missing = [...codes].filter((code) => !section.includes(`| \`${code}\` |`));
  t.deepEqual(missing, [], `missing from docs/errors.md: ${missing.join(', ')}`);
});

test('every wire code maps to a specific gRPC status', (t) => {
  for (const code of Object.values(WireCode)) {
    const status = grpcStatusOf(code);
    t.not(status, GrpcStatus.OK, code);
    t.not(status, GrpcStatus.UNKNOWN, code);
    if (code !== WireCode.INTERNAL) t.not(status, GrpcStatus.INTERNAL, code);
  }
});
