// Proves every daemon error code (DaemonErrorCode and the storage codes) has a row in the Daemon
// section of docs/errors.md, by reading the document and looking each code up.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DaemonErrorCode } from '../../src/errors.js';
import { StorageErrorCode } from '../../src/storage/errors.js';

const doc = readFileSync(fileURLToPath(new URL('../../../../../docs/errors.md', import.meta.url)), 'utf8');
const section = doc.slice(doc.indexOf('## Daemon'), doc.indexOf('\n## ', doc.indexOf('## Daemon') + 1));

test('every daemon code is documented in the Daemon section', (t) => {
  const codes = new Set([...Object.values(DaemonErrorCode), ...Object.values(StorageErrorCode)]);
  for (const code of codes) t.true(section.includes(`| \`${code}\` |`), `${code} is missing from docs/errors.md`);
});
