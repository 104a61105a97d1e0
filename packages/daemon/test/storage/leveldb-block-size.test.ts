// Proves storage.leveldb_block_bytes: the default (16 KiB), the environment and its bounds, and
// that the size reaches LevelDB. Every table block costs a 5-byte trailer, a restart array and an
// index entry, so the same 3,072 incompressible 4 KiB values make measurably larger table files
// with 4 KiB blocks (one value each) than with 64 KiB blocks (sixteen each); with the option
// ignored, the two would be the same size.
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { loadConfig } from '../../src/config.js';
import { openDatabase } from '../../src/storage/database.js';

const base = { RDL_REGION: 'geneva', RDL_DATA_DIR: '/d' };
const KiB = 1024;
const VALUES = 3072;

test('storage.leveldb_block_bytes: default, environment and bounds', (t) => {
  t.is(loadConfig({ env: base }).storage.leveldbBlockBytes, 16 * KiB);
  t.is(loadConfig({ env: { ...base, RDL_STORAGE_LEVELDB_BLOCK_BYTES: '64KiB' } }).storage.leveldbBlockBytes, 64 * KiB);
  for (const value of ['1KiB', '2MiB', 'big']) {
    const error = t.throws(() => loadConfig({ env: { ...base, RDL_STORAGE_LEVELDB_BLOCK_BYTES: value } }));
    t.is((error as { code?: string }).code, 'DAEMON_CONFIG_INVALID', value);
    t.regex((error as Error).message, /storage\.leveldb_block_bytes/);
  }
});

/** Bytes of table files after writing the same values with `blockSizeBytes` and compacting them. */
async function tableBytes(blockSizeBytes: number, values: readonly Buffer[]): Promise<number> {
  const directory = await mkdtemp(join(tmpdir(), 'rdl-block-size-'));
  try {
    const db = await openDatabase(directory, { blockSizeBytes });
    try {
      for (let i = 0; i < values.length; i += 64) {
        const batch = db.batch();
        for (let j = i; j < i + 64; j++) {
          const key = Buffer.alloc(8);
          key.writeUInt32BE(j, 4);
          batch.put(key, values[j]);
        }
        await batch.write();
      }
      // Flushes the memtable and compacts everything into tables built with this block size.
      await db.compactRange(Buffer.alloc(8), Buffer.alloc(8, 0xff));
    } finally {
      await db.close();
    }
    let bytes = 0;
    for (const name of await readdir(directory)) {
      if (name.endsWith('.ldb')) bytes += (await stat(join(directory, name))).size;
    }
    return bytes;
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

test('the block size reaches LevelDB', async (t) => {
  const values = Array.from({ length: VALUES }, () => randomBytes(4 * KiB));
  const small = await tableBytes(4 * KiB, values);
  const large = await tableBytes(64 * KiB, values);
  t.true(large >= VALUES * 4 * KiB, `the tables hold every value (${large} bytes)`);
  // At least a trailer and a 4-byte restart count per extra block.
  t.true(small - large > VALUES * 9, `4 KiB blocks: ${small} bytes, 64 KiB blocks: ${large} bytes`);
});
