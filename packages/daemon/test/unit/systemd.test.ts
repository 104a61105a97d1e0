// Proves the shipped systemd unit is valid and hardened: `systemd-analyze verify` accepts it with no
// warning (a deliberately broken copy shows the check can fail), the hardening and readiness settings
// are present, the example /etc/rdl/geneva.toml loads through the real config loader, and the
// drop-in docs/operations.md gives for a WAL on its own device verifies with the unit.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../src/config.js';

// dist/test/unit → package root
const packageRoot = fileURLToPath(new URL('../../../', import.meta.url));
const unitText = readFileSync(join(packageRoot, 'systemd/rdld@.service'), 'utf8');
const hasAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;

/** Verifies `text` as rdld@geneva.service with ExecStart pointing at a fake executable; returns stderr. */
function verify(text: string): { status: number | null; stderr: string } {
  const dir = mkdtempSync(join(tmpdir(), 'rdld-unit-'));
  try {
    const fake = join(dir, 'node');
    writeFileSync(fake, '#!/bin/sh\nexit 0\n');
    chmodSync(fake, 0o755);
    // The unit names /usr/bin/node; CI machines may keep node elsewhere, so point at a stand-in.
    const path = join(dir, 'rdld@geneva.service');
    writeFileSync(path, text.replace('ExecStart=/usr/bin/node', `ExecStart=${fake}`));
    const result = spawnSync('systemd-analyze', ['verify', '--man=no', path], { encoding: 'utf8' });
    return { status: result.status, stderr: result.stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('systemd-analyze verify accepts rdld@.service without warnings', (t) => {
  if (!hasAnalyze) {
    t.log('systemd-analyze is not installed: skipping the verify check (apt-get install systemd)');
    t.pass();
    return;
  }
  const result = verify(unitText);
  t.is(result.status, 0, result.stderr);
  t.false(/rdld@geneva\.service/.test(result.stderr), result.stderr);
});

test('the verify check catches a broken unit', (t) => {
  if (!hasAnalyze) {
    t.pass();
    return;
  }
  const result = verify(unitText.replace('[Service]', '[Service]\nNoSuchSetting=1'));
  t.regex(result.stderr, /Unknown key 'NoSuchSetting'/);
});

test('the unit is hardened and reports readiness', (t) => {
  for (const line of [
    'Type=notify',
    'NotifyAccess=all',
    'User=rdl',
    'Restart=on-failure',
    'ProtectSystem=strict',
    'ReadWritePaths=/var/lib/rdl/%i',
    'NoNewPrivileges=yes',
    'PrivateTmp=yes',
    'ProtectHome=yes',
    'CapabilityBoundingSet=',
    'LimitNOFILE=65536',
    '--config /etc/rdl/%i.toml',
  ]) {
    t.true(
      unitText.split('\n').some((l) => l.includes(line)),
      `missing ${line}`,
    );
  }
});

test('the example /etc/rdl/geneva.toml is a valid configuration', (t) => {
  const config = loadConfig({ fileText: readFileSync(join(packageRoot, 'systemd/geneva.toml'), 'utf8'), env: {} });
  t.is(config.region, 'geneva');
  t.is(config.dataDir, '/var/lib/rdl/geneva');
  t.deepEqual(
    config.peers.map((p) => p.id),
    ['gland', 'lucerne'],
  );
});

test("docs/operations.md's drop-in for a WAL device verifies with the unit, and its wal_dir loads", (t) => {
  const operations = readFileSync(join(packageRoot, '../../docs/operations.md'), 'utf8');
  const dropIn = /<<'UNIT'\n([\s\S]*?)\nUNIT\n/.exec(operations)?.[1];
  t.truthy(dropIn, 'the drop-in heredoc is in operations.md');
  t.regex(dropIn!, /^RequiresMountsFor=\/srv\/rdl-wal\/%i$/m);
  t.regex(dropIn!, /^ReadWritePaths=\/srv\/rdl-wal\/%i$/m);
  if (hasAnalyze) {
    // A drop-in's sections extend the unit's: appended to the unit text, they verify the same way.
    const result = verify(`${unitText}\n${dropIn!}\n`);
    t.is(result.status, 0, result.stderr);
    t.false(/rdld@geneva\.service/.test(result.stderr), result.stderr);
  }
  const walDir = /^#\s+wal_dir = "([^"]+)"$/m.exec(operations)?.[1];
  t.is(walDir, '/srv/rdl-wal/geneva');
  const example = readFileSync(join(packageRoot, 'systemd/geneva.toml'), 'utf8');
  const config = loadConfig({ fileText: `${example}\n[storage]\nwal_dir = "${walDir!}"\n`, env: {} });
  t.is(config.storage.walDir, '/srv/rdl-wal/geneva');
});
