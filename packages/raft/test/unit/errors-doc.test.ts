// Proves that docs/errors.md lists every error code of @rdl/raft: it collects every quoted
// 'RAFT_…' string in packages/raft/src and every RaftErrorCode value, and fails when one of them
// has no row in the Raft table of docs/errors.md.
import test from 'ava';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RaftErrorCode } from '../../src/errors.js';

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

function raftSection(): string {
  const doc = readFileSync(path.join(root, 'docs/errors.md'), 'utf8');
  const start = doc.indexOf('## Raft');
  const end = doc.indexOf('\n## ', start + 1);
  return doc.slice(start, end < 0 ? undefined : end);
}

test('every RAFT_ code used in packages/raft/src has a row in docs/errors.md', (t) => {
  const codes = new Set<string>(Object.values(RaftErrorCode));
  for (const file of sourceFiles(path.join(root, 'packages/raft/src'))) {
    for (const m of readFileSync(file, 'utf8').matchAll(/['"`](RAFT_[A-Z_]+)['"`]/g)) codes.add(m[1]);
  }
  t.true(codes.size >= 10);
  const section = raftSection();
  const missing = [...codes].filter((code) => !section.includes(`| \`${code}\` |`));
  t.deepEqual(missing, [], `missing from docs/errors.md: ${missing.join(', ')}`);
});
