// Proves every shipped way of starting rdld passes the same V8 flags (RDLD_NODE_FLAGS) and
// environment (RDLD_ENVIRONMENT): the systemd unit's ExecStart and Environment= lines and
// bin/rdld.js's shebang; and that missingNodeFlags and missingEnvironment name what a process lacks.
// (startup-errors.test.ts runs the shebang for real; dev-cluster.ts and the bench import the list.)
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RDLD_ENVIRONMENT, RDLD_NODE_FLAGS, missingEnvironment, missingNodeFlags } from '../../src/node-flags.js';

// dist/test/unit → package root
const packageRoot = fileURLToPath(new URL('../../../', import.meta.url));

test('the systemd unit starts node with RDLD_NODE_FLAGS', (t) => {
  const unit = readFileSync(join(packageRoot, 'systemd/rdld@.service'), 'utf8');
  const execStart = unit.split('\n').find((line) => line.startsWith('ExecStart='));
  t.is(
    execStart,
    `ExecStart=/usr/bin/node ${RDLD_NODE_FLAGS.join(' ')} /opt/rdl/packages/daemon/bin/rdld.js --config /etc/rdl/%i.toml`,
  );
});

test('the systemd unit sets RDLD_ENVIRONMENT', (t) => {
  const unit = readFileSync(join(packageRoot, 'systemd/rdld@.service'), 'utf8');
  const lines = unit.split('\n');
  for (const [name, value] of Object.entries(RDLD_ENVIRONMENT))
    t.true(lines.includes(`Environment=${name}=${value}`), name);
});

test("bin/rdld.js's shebang sets RDLD_ENVIRONMENT and passes RDLD_NODE_FLAGS", (t) => {
  const shim = readFileSync(join(packageRoot, 'bin/rdld.js'), 'utf8');
  const assignments = Object.entries(RDLD_ENVIRONMENT).map(([name, value]) => `${name}=${value}`);
  t.is(shim.split('\n')[0], `#!/usr/bin/env -S ${assignments.join(' ')} node ${RDLD_NODE_FLAGS.join(' ')}`);
  // The kernel reads at most 256 bytes of a shebang line (Linux 5.1 and later; 127 before).
  t.true(shim.split('\n')[0].length < 256);
});

test('missingNodeFlags names the flags a process runs without', (t) => {
  t.true(RDLD_NODE_FLAGS.length > 0);
  t.deepEqual(missingNodeFlags([]), [...RDLD_NODE_FLAGS]);
  t.deepEqual(missingNodeFlags([...RDLD_NODE_FLAGS, '--enable-source-maps']), []);
  t.deepEqual(missingNodeFlags(['--initial-old-space-size=64']), [...RDLD_NODE_FLAGS]);
});

test('missingEnvironment names each setting a process lacks, on glibc only', (t) => {
  const tunables = RDLD_ENVIRONMENT.GLIBC_TUNABLES.split(':');
  t.true(tunables.length > 1);
  t.deepEqual(
    missingEnvironment({}, true),
    tunables.map((item) => `GLIBC_TUNABLES=${item}`),
  );
  t.deepEqual(missingEnvironment({ ...RDLD_ENVIRONMENT }, true), []);
  // Other tunables may be there too; one of ours missing is named alone.
  t.deepEqual(missingEnvironment({ GLIBC_TUNABLES: `glibc.malloc.arena_max=2:${tunables[1]}` }, true), [
    `GLIBC_TUNABLES=${tunables[0]}`,
  ]);
  t.deepEqual(missingEnvironment({}, false), []);
});
