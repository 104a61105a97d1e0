// Proves storage.leveldb_write_buffer_bytes: the default (64 MiB), the environment and its bounds,
// and that the size reaches LevelDB: the same 12 MiB of block writes stay in a 64 MiB memtable
// (no table file yet) but are flushed to level-0 files by a 4 MiB one.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { loadConfig } from '../../src/config.js';
import { openDatabase } from '../../src/storage/database.js';

const base = { RDL_REGION: 'geneva', RDL_DATA_DIR: '/d' };
const MiB = 1024 * 1024;

test('storage.leveldb_write_buffer_bytes: default, environment and bounds', (t) => {
  t.is(loadConfig({ env: base }).storage.leveldbWriteBufferBytes, 64 * MiB);
  t.is(
    loadConfig({ env: { ...base, RDL_STORAGE_LEVELDB_WRITE_BUFFER_BYTES: '8MiB' } }).storage.leveldbWriteBufferBytes,
    8 * MiB,
  );
  for (const value of ['1MiB', '2GiB', 'lots']) {
    const error = t.throws(() => loadConfig({ env: { ...base, RDL_STORAGE_LEVELDB_WRITE_BUFFER_BYTES: value } }));
    t.is((error as { code?: string }).code, 'DAEMON_CONFIG_INVALID', value);
    t.regex((error as Error).message, /storage\.leveldb_write_buffer_bytes/);
  }
});

/** Table files in levels 0-2 after writing `bytes` of 4 KiB values in 256 KiB batches. */
async function tableFilesAfterWriting(writeBufferSizeBytes: number, bytes: number): Promise<number> {
  const directory = await mkdtemp(join(tmpdir(), 'rdl-write-buffer-'));
  const db = await openDatabase(directory, { writeBufferSizeBytes });
  try {
    const value = randomBytes(4096);
    let key = 0;
    for (let written = 0; written < bytes; written += 64 * 4096) {
      const batch = db.batch();
      for (let i = 0; i < 64; i += 1) {
        const k = Buffer.alloc(8);
        k.writeUInt32BE(key++, 4);
        batch.put(k, value);
      }
      await batch.write();
    }
    // No compactRange here: it would flush the memtable itself. A write that finds the memtable
    // full makes it immutable and schedules its flush; the next such write waits for that flush
    // (LevelDB keeps one immutable memtable). So 12 MiB through a 4 MiB memtable leave at least
    // one finished table file, and through a 64 MiB one none.
    const files = async (level: number) => Number(await db.getProperty(`leveldb.num-files-at-level${level}`));
    return (await files(0)) + (await files(1)) + (await files(2));
  } finally {
    await db.close();
    await rm(directory, { recursive: true, force: true });
  }
}

test('the memtable size reaches LevelDB', async (t) => {
  t.is(await tableFilesAfterWriting(64 * MiB, 12 * MiB), 0, '12 MiB fit in a 64 MiB memtable');
  t.true((await tableFilesAfterWriting(4 * MiB, 12 * MiB)) > 0, 'a 4 MiB memtable was flushed');
});
