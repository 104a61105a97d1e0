// Proves every shipped way of starting rdld passes the same V8 flags (RDLD_NODE_FLAGS): the systemd
// unit's ExecStart and bin/rdld.js's shebang; and that missingNodeFlags names what a process lacks.
// (startup-errors.test.ts runs the shebang for real; dev-cluster.ts and the bench import the list.)
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RDLD_NODE_FLAGS, missingNodeFlags } from '../../src/node-flags.js';

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

test("bin/rdld.js's shebang passes RDLD_NODE_FLAGS", (t) => {
  const shim = readFileSync(join(packageRoot, 'bin/rdld.js'), 'utf8');
  t.is(shim.split('\n')[0], `#!/usr/bin/env -S node ${RDLD_NODE_FLAGS.join(' ')}`);
});

test('missingNodeFlags names the flags a process runs without', (t) => {
  t.true(RDLD_NODE_FLAGS.length > 0);
  t.deepEqual(missingNodeFlags([]), [...RDLD_NODE_FLAGS]);
  t.deepEqual(missingNodeFlags([...RDLD_NODE_FLAGS, '--enable-source-maps']), []);
  t.deepEqual(missingNodeFlags(['--initial-old-space-size=64']), [...RDLD_NODE_FLAGS]);
});
