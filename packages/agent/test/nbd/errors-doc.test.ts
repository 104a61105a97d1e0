// Proves every error code of the agent's NBD side (AgentErrorCode) is documented: each must appear
// as a row of the Agent section of docs/errors.md, so adding a code without documenting it fails.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AgentErrorCode } from '../../src/errors.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../..');

test('every AgentErrorCode has a row in the Agent section of docs/errors.md', (t) => {
  const doc = fs.readFileSync(path.join(repoRoot, 'docs', 'errors.md'), 'utf8');
  const start = doc.indexOf('## Agent');
  t.true(start >= 0, 'docs/errors.md has an Agent section');
  const next = doc.indexOf('\n## ', start + 1);
  const section = doc.slice(start, next < 0 ? undefined : next);
  const missing = Object.values(AgentErrorCode).filter((code) => !section.includes(`| \`${code}\` |`));
  t.deepEqual(missing, []);
});
