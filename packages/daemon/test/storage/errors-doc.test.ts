// Proves docs/errors.md lists every error code the storage modules raise: it collects every
// StorageErrorCode value and every quoted 'DAEMON_…' string in packages/daemon/src/storage, and
// fails when one has no row in the Daemon table.
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { StorageErrorCode } from '../../src/storage/errors.js';

// Compiled to packages/daemon/dist/test/storage: five levels below the repository root.
const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../../../..');

test('every storage error code has a row in the Daemon section of docs/errors.md', (t) => {
  const codes = new Set<string>(Object.values(StorageErrorCode));
  const sourceDirectory = join(root, 'packages/daemon/src/storage');
  for (const name of readdirSync(sourceDirectory)) {
    if (!name.endsWith('.ts')) continue;
    for (const match of readFileSync(join(sourceDirectory, name), 'utf8').matchAll(/['"`](DAEMON_[A-Z_]+)['"`]/g)) {
      codes.add(match[1]);
    }
  }
  t.true(codes.size >= 8);
  const doc = readFileSync(join(root, 'docs/errors.md'), 'utf8');
  const start = doc.indexOf('## Daemon');
  const end = doc.indexOf('\n## ', start + 1);
  const section = doc.slice(start, end < 0 ? undefined : end);
  const missing = [...codes].filter((code) => !section.includes(`| \`${code}\` |`));
  t.deepEqual(missing, [], `missing from docs/errors.md: ${missing.join(', ')}`);
});
