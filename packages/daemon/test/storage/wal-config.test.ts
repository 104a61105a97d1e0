// Proves the daemon's WAL setting: storage.wal_segment_bytes defaults to 64 MiB, is read from the
// environment, is bounded, and must hold the largest Raft entry plus 128 KiB (else one coded
// DAEMON_CONFIG_INVALID naming the key), so an accepted configuration never makes an append fail
// with DAEMON_WAL_RECORD_TOO_LARGE.
import test from 'ava';
import { loadConfig } from '../../src/config.js';
import { WalLogStore } from '../../src/storage/wal-log-store.js';

const base = { RDL_REGION: 'geneva', RDL_DATA_DIR: '/d' };

test('storage.wal_segment_bytes: default, environment, bounds and the cross-check with raft.entry_bytes_max', (t) => {
  t.is(loadConfig({ env: base }).storage.walSegmentBytes, 64 * 1024 * 1024);
  t.is(
    loadConfig({ env: { ...base, RDL_STORAGE_WAL_SEGMENT_BYTES: '16MiB' } }).storage.walSegmentBytes,
    16 * 1024 * 1024,
  );
  for (const value of ['512KiB', '2GiB']) {
    const error = t.throws(() => loadConfig({ env: { ...base, RDL_STORAGE_WAL_SEGMENT_BYTES: value } }));
    t.is((error as { code?: string }).code, 'DAEMON_CONFIG_INVALID', value);
  }
  const tooSmall = t.throws(() =>
    loadConfig({ env: { ...base, RDL_STORAGE_WAL_SEGMENT_BYTES: '4MiB', RDL_RAFT_ENTRY_BYTES_MAX: '4MiB' } }),
  );
  t.is((tooSmall as { code?: string }).code, 'DAEMON_CONFIG_INVALID');
  t.regex((tooSmall as Error).message, /storage\.wal_segment_bytes/);
});

test('an accepted segment size holds an entry of raft.entry_bytes_max', (t) => {
  const config = loadConfig({ env: { ...base, RDL_STORAGE_WAL_SEGMENT_BYTES: '5MiB' } });
  const store = new WalLogStore('/nowhere', { segmentBytes: config.storage.walSegmentBytes });
  t.true(store.entryBytesMax >= config.raft.entryBytesMax, `${store.entryBytesMax} >= ${config.raft.entryBytesMax}`);
});
