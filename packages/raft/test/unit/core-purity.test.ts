// Proves the lint rule that keeps packages/raft/src/core pure: a file placed in core/ that reads
// the clock, draws Math.random, starts a timer, awaits or imports node:fs is rejected by ESLint,
// while the same code outside core/ is not. Runs the repository's real ESLint config.
import test from 'ava';
import { ESLint } from 'eslint';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../..');
const impure = [
  "import { readFileSync } from 'node:fs';",
  'export const a = Math.random();',
  'export const b = Date.now();',
  'export const c = setTimeout(() => {}, 1);',
  'export async function d(): Promise<void> {}',
  'void readFileSync;',
].join('\n');

async function lintAs(relativePath: string): Promise<string[]> {
  const eslint = new ESLint({ cwd: root });
  const [result] = await eslint.lintText(impure, { filePath: path.join(root, relativePath) });
  return result.messages.map((m) => m.ruleId ?? m.message);
}

test('impure code inside packages/raft/src/core is rejected', async (t) => {
  const rules = await lintAs('packages/raft/src/core/impure.ts');
  for (const rule of [
    'no-restricted-imports',
    'no-restricted-properties',
    'no-restricted-globals',
    'no-restricted-syntax',
  ]) {
    t.true(rules.includes(rule), `expected ${rule} in ${rules.join(', ')}`);
  }
  t.is(rules.filter((r) => r === 'no-restricted-properties').length, 2, 'Math.random and Date.now');
});

test('the same code outside core is allowed', async (t) => {
  const rules = await lintAs('packages/raft/src/impure.ts');
  t.deepEqual(
    rules.filter((r) => r.startsWith('no-restricted')),
    [],
  );
});
