// Proves `npm run bench` starts the bench process with BENCH_NODE_FLAGS (the root package.json's
// script) and that missingNodeFlags names what a process lacks of them (the bench warns with it).
import test from 'ava';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { missingNodeFlags } from '@rdl/daemon';
import { BENCH_NODE_FLAGS } from '../../src/node-flags.js';

// bench/dist/test/unit → repository root
const rootPackage = fileURLToPath(new URL('../../../../package.json', import.meta.url));

test('the bench script runs node with BENCH_NODE_FLAGS', (t) => {
  const scripts = (JSON.parse(readFileSync(rootPackage, 'utf8')) as { scripts: Record<string, string> }).scripts;
  t.is(scripts.bench, `npm run build --silent && node ${BENCH_NODE_FLAGS.join(' ')} bench/dist/src/main.js`);
});

test('missingNodeFlags names the bench flags a process runs without', (t) => {
  t.true(BENCH_NODE_FLAGS.length > 0);
  t.deepEqual(missingNodeFlags([], BENCH_NODE_FLAGS), [...BENCH_NODE_FLAGS]);
  t.deepEqual(missingNodeFlags([...BENCH_NODE_FLAGS, '--trace-gc'], BENCH_NODE_FLAGS), []);
});
