#!/usr/bin/env node
// Builds classic-level's LevelDB from its bundled sources with hardware CRC32C (SSE4.2), run by
// `npm install` (the root package's postinstall).
//
// Why: classic-level's prebuilt binary computes LevelDB's CRC32C in software. LevelDB checksums
// every byte it writes (its log, and every table block of each memtable flush and compaction), and
// a profile of three rdld at 64 writes in flight spent 11% of all CPU in `crc32c::Extend`
// (docs/benchmarks.md, session 9). LevelDB 1.20 (what classic-level bundles) has the SSE4.2 path in
// port/port_posix_sse.cc, compiled in only with LEVELDB_PLATFORM_POSIX_SSE and -msse4.2. The flags
// apply to all of LevelDB and snappy, so the result needs a CPU with SSE4.2 (every x86-64 server CPU
// since 2008): build on the kind of machine it runs on.
//
// The build needs g++, make and python3 (node-gyp) and Node's headers. When anything is missing or
// fails, the prebuilt binary stays in use (the data format is the same either way) and this says
// so; `npm install` does not fail. node-gyp-build loads build/Release before the prebuilds.
// RDL_LEVELDB_PREBUILT=1 skips the build (and removes an earlier one).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
const FLAGS = '-msse4.2 -DLEVELDB_PLATFORM_POSIX_SSE';

function log(message) {
  console.log(`build-leveldb: ${message}`);
}

function main() {
  let dir;
  try {
    dir = dirname(require.resolve('classic-level/package.json'));
  } catch {
    log('classic-level is not installed; nothing to build');
    return;
  }
  const built = join(dir, 'build');
  if (process.env.RDL_LEVELDB_PREBUILT === '1') {
    rmSync(built, { recursive: true, force: true });
    log('RDL_LEVELDB_PREBUILT=1: using the prebuilt binary (software CRC32C)');
    return;
  }
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    log(`${process.platform}/${process.arch}: using the prebuilt binary (the SSE4.2 build is for Linux x64)`);
    return;
  }
  const version = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).version;
  const stamp = { classicLevel: version, modules: process.versions.modules, flags: FLAGS };
  const stampPath = join(built, 'rdl-build.json');
  if (existsSync(join(built, 'Release', 'classic_level.node')) && existsSync(stampPath)) {
    if (readFileSync(stampPath, 'utf8') === JSON.stringify(stamp)) {
      log('already built with hardware CRC32C');
      return;
    }
  }
  const nodeGyp = process.env.npm_config_node_gyp ?? findNodeGyp();
  if (nodeGyp === null) {
    log('node-gyp not found: using the prebuilt binary (software CRC32C)');
    return;
  }
  // Node's own headers (npm passes its `nodedir` setting to scripts it runs); without them
  // node-gyp would download them.
  const nodeDir = process.env.npm_config_nodedir ?? join(dirname(process.execPath), '..');
  const args = [nodeGyp, 'rebuild', '--jobs', 'max'];
  if (existsSync(join(nodeDir, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${nodeDir}`);
  log(`compiling LevelDB ${version} with ${FLAGS} (10-60 s) ...`);
  const started = Date.now();
  const result = spawnSync(process.execPath, args, {
    cwd: dir,
    env: {
      ...process.env,
      CFLAGS: `${process.env.CFLAGS ?? ''} ${FLAGS}`.trim(),
      CXXFLAGS: `${process.env.CXXFLAGS ?? ''} ${FLAGS}`.trim(),
    },
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (result.status !== 0) {
    rmSync(built, { recursive: true, force: true });
    const output = `${result.stdout ?? ''}${result.stderr ?? ''}`.trim().split('\n').slice(-15).join('\n');
    log(`build failed (${result.error?.message ?? `exit ${result.status}`}); using the prebuilt binary:\n${output}`);
    return;
  }
  const check = selfTest(dir);
  if (check !== null) {
    rmSync(built, { recursive: true, force: true });
    log(`the built binary failed its check (${check}); using the prebuilt binary`);
    return;
  }
  writeFileSync(stampPath, JSON.stringify(stamp));
  log(`built in ${((Date.now() - started) / 1000).toFixed(0)} s: ${join(built, 'Release', 'classic_level.node')}`);
}

/** node-gyp as bundled with the npm that runs this node (when not started by npm). */
function findNodeGyp() {
  const candidates = [
    join(
      dirname(process.execPath),
      '..',
      'lib',
      'node_modules',
      'npm',
      'node_modules',
      'node-gyp',
      'bin',
      'node-gyp.js',
    ),
  ];
  try {
    candidates.unshift(require.resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not a dependency here
  }
  return candidates.find((path) => existsSync(path)) ?? null;
}

/** Opens a database with the built binary in a child process, writes, reopens and reads back. */
function selfTest(dir) {
  const scratch = mkdtempSync(join(tmpdir(), 'rdl-leveldb-check-'));
  const script = `
    const { ClassicLevel } = require(${JSON.stringify(join(dir, 'index.js'))});
    const binding = require('node-gyp-build').path(${JSON.stringify(dir)});
    if (!binding.includes('build/Release')) throw new Error('loaded ' + binding);
    (async () => {
      const value = Buffer.alloc(70000, 7);
      let db = new ClassicLevel(${JSON.stringify(scratch)}, { keyEncoding: 'buffer', valueEncoding: 'buffer' });
      await db.put(Buffer.from('k'), value, { sync: true });
      await db.close();
      db = new ClassicLevel(${JSON.stringify(scratch)}, { keyEncoding: 'buffer', valueEncoding: 'buffer' });
      const read = await db.get(Buffer.from('k'));
      await db.compactRange(Buffer.from('a'), Buffer.from('z'));
      await db.close();
      if (!read || !read.equals(value)) throw new Error('read back a different value');
    })().catch((error) => { console.error(error.message); process.exit(1); });
  `;
  try {
    const result = spawnSync(process.execPath, ['-e', script], { cwd: dir, encoding: 'utf8' });
    return result.status === 0 ? null : (result.stderr || `exit ${result.status}`).trim();
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

main();
