// Proves the rdl-lincheck CLI's contract by spawning the real binary (bin/rdl-lincheck.js) on
// history files in a temporary directory: exit 0 for a linearizable history, 1 with the key and
// explanation for a non-linearizable one, 2 with the entry and field for malformed input.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const bin = path.join(packageRoot, 'bin/rdl-lincheck.js');
const dir = mkdtempSync(path.join(tmpdir(), 'rdl-lincheck-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

function run(name: string, content: string): { status: number | null; stdout: string; stderr: string } {
  const file = path.join(dir, name);
  writeFileSync(file, content);
  const result = spawnSync(process.execPath, [bin, file], { encoding: 'utf8', timeout: 30_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

test('exit 0 on a linearizable history', (t) => {
  const history = [
    { client: 1, op: 'write', key: 'k', value: 'a', call: 0, return: 1 },
    { client: 2, op: 'read', key: 'k', value: 'a', call: 2, return: 3 },
    { client: 3, op: 'write', key: 'k', value: 'b', call: 4, return: null },
  ];
  const result = run('ok.json', JSON.stringify(history));
  t.is(result.status, 0, result.stderr);
  t.regex(result.stdout, /^linearizable/);
});

test('exit 1 on a stale read, naming the key and the operations', (t) => {
  const history = [
    { client: 1, op: 'write', key: 'vol/7', value: 'a', call: 0, return: 1 },
    { client: 1, op: 'write', key: 'vol/7', value: 'b', call: 2, return: 3 },
    { client: 2, op: 'read', key: 'vol/7', value: 'a', call: 4, return: 5 },
  ];
  const result = run('stale.json', JSON.stringify(history));
  t.is(result.status, 1);
  t.regex(result.stdout, /not linearizable: key "vol\/7"/);
  t.regex(result.stdout, /client 2 read -> "a"/);
});

test('exit 2 on a file that is not JSON', (t) => {
  const result = run('broken.json', '[{"client": 1,');
  t.is(result.status, 2);
  t.regex(result.stderr, /not valid JSON/);
});

test('exit 2 naming the entry and field at fault', (t) => {
  const history = [
    { client: 1, op: 'write', key: 'k', value: 'a', call: 0, return: 1 },
    { client: 1, op: 'delete', key: 'k', value: null, call: 2, return: 3 },
  ];
  const result = run('bad-op.json', JSON.stringify(history));
  t.is(result.status, 2);
  t.regex(result.stderr, /entry 1: field "op" must be "write" or "read"/);
  const missing = run('missing.json', JSON.stringify([{ client: 1, op: 'read', key: 'k', value: null, call: 0 }]));
  t.is(missing.status, 2);
  t.regex(missing.stderr, /entry 0: missing field "return"/);
  const backwards = run(
    'backwards.json',
    JSON.stringify([{ client: 1, op: 'read', key: 'k', value: null, call: 5, return: 4 }]),
  );
  t.is(backwards.status, 2);
  t.regex(backwards.stderr, /entry 0: field "return" \(4\) is before "call" \(5\)/);
});

test('exit 2 when the file does not exist or no file is given', (t) => {
  const result = spawnSync(process.execPath, [bin, path.join(dir, 'nope.json')], { encoding: 'utf8' });
  t.is(result.status, 2);
  t.regex(result.stderr, /cannot read/);
  const usage = spawnSync(process.execPath, [bin], { encoding: 'utf8' });
  t.is(usage.status, 2);
});
