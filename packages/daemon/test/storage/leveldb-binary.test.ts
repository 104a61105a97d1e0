// Proves that `npm install` (scripts/build-leveldb.mjs, the root postinstall) left rdld a LevelDB
// that checksums in hardware where it can be built: on Linux x64 with g++, make and python3, classic-level must load
// build/Release (not its prebuilt, software-CRC32C binary) and the daemon must report it so. The
// CI machine has g++, so a postinstall that stopped running or building fails here.
import { existsSync, readFileSync } from 'node:fs';
import test from 'ava';
import { levelDbBinary } from '../../src/storage/database.js';

// What scripts/build-leveldb.mjs needs (node-gyp: a C++ compiler, make and python3).
const canBuild =
  process.platform === 'linux' &&
  process.arch === 'x64' &&
  ['g++', 'make', 'python3'].every((tool) => existsSync(`/usr/bin/${tool}`));

test('the LevelDB binary is reported, and built with hardware CRC32C where the build tools are installed', (t) => {
  const binary = levelDbBinary();
  t.true(existsSync(binary.path), binary.path);
  if (!canBuild) {
    t.log(`no build tools on ${process.platform}/${process.arch}: ${binary.crc32c} CRC32C from ${binary.path}`);
    return;
  }
  t.is(binary.crc32c, 'hardware', `loaded ${binary.path}`);
  t.regex(binary.path, /build\/Release\/classic_level\.node$/);
  // The SSE4.2 build carries the crc32 instruction (crc32q is F2, a REX.W prefix 48-4F, 0F 38 F1);
  // classic-level 3.0.0's prebuilt binary has none.
  const code = readFileSync(binary.path);
  let found = false;
  for (let i = code.indexOf(0xf2); i >= 0 && !found; i = code.indexOf(0xf2, i + 1)) {
    found =
      code[i + 1] >= 0x48 &&
      code[i + 1] <= 0x4f &&
      code[i + 2] === 0x0f &&
      code[i + 3] === 0x38 &&
      code[i + 4] === 0xf1;
  }
  t.true(found, 'crc32q in the built binary');
});
