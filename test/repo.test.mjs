// Repository-wide checks that no single package owns, run by `npm test` with node's test runner:
// every error code declared in any package's errors.ts has a row in docs/errors.md; every relative
// link in README.md and docs/ points to a file that exists; the README shows the front-door
// commands. Each would fail if a code, a linked file or a command went missing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const roots = ['packages/raft/src', 'packages/daemon/src', 'packages/client/src', 'packages/agent/src', 'bench/src'];

function walk(dir, accept) {
  const out = [];
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir)) {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) out.push(...walk(full, accept));
    else if (accept(name)) out.push(full);
  }
  return out;
}

test('every error code declared in an errors.ts is documented in docs/errors.md', () => {
  const doc = readFileSync(path.join(root, 'docs/errors.md'), 'utf8');
  const documented = new Set([...doc.matchAll(/^\|\s*`([A-Z][A-Z0-9_]+)`\s*\|/gm)].map((m) => m[1]));
  const missing = [];
  let declared = 0;
  for (const dir of roots) {
    for (const file of walk(path.join(root, dir), (n) => n === 'errors.ts')) {
      const text = readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
      for (const m of text.matchAll(/['"]([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)['"]/g)) {
        declared++;
        if (!documented.has(m[1])) missing.push(`${m[1]} (${path.relative(root, file)})`);
      }
    }
  }
  assert.ok(declared >= 10, `expected many declared codes, found ${declared}`);
  assert.deepEqual([...new Set(missing)], [], 'codes missing from docs/errors.md');
});

test('relative links in README.md and docs/*.md point to existing files', () => {
  const files = [path.join(root, 'README.md'), ...walk(path.join(root, 'docs'), (n) => n.endsWith('.md'))];
  const broken = [];
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1].split('#')[0];
      if (!target || /^[a-z]+:/i.test(target)) continue;
      if (!existsSync(path.resolve(path.dirname(file), target))) broken.push(`${path.relative(root, file)} -> ${m[1]}`);
    }
  }
  assert.deepEqual(broken, []);
});

test('README shows the front-door commands', () => {
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  assert.match(readme, /npm install && npm start/);
  assert.match(readme, /npm test/);
});
