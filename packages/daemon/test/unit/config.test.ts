// Proves the config layering (defaults < TOML file < RDL_* env < flags), the peer syntax, that
// every problem is reported together in one DAEMON_CONFIG_INVALID error, and that the result is frozen,
// by calling loadConfig/parseArgs with in-memory file text, environments and argv.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { defaultRaftConfig } from '@rdl/raft';
import { loadConfig, parseArgs, parseBytes, parsePeerSpec, configOptions } from '../../src/config.js';

const file = `
region = "geneva"
data_dir = "/var/lib/rdl/geneva"
[listen]
client = "0.0.0.0:7001"
peer = "0.0.0.0:7101"
metrics = "127.0.0.1:9101"
[raft]
tick_interval_ms = 20
inflight_bytes_max = "16MiB"
[peers.gland]
peer = "10.0.0.2:7101"
client = "10.0.0.2:7001"
[peers.lucerne]
peer = "10.0.0.3:7101"
delay_ms = 0.35
`;

test('defaults < file < env < flags', (t) => {
  const flags = parseArgs(['--raft-tick-interval-ms', '30', '--listen-client', '127.0.0.1:8001']);
  const config = loadConfig({
    fileText: file,
    env: { RDL_RAFT_TICK_INTERVAL_MS: '25', RDL_LOG_LEVEL: 'debug', RDL_LISTEN_CLIENT: '127.0.0.1:9999' },
    flags,
  });
  t.is(config.region, 'geneva');
  t.is(config.dataDir, '/var/lib/rdl/geneva');
  t.is(config.raft.tickIntervalMs, 30); // flag beats env beats file
  t.is(config.log.level, 'debug'); // env beats default
  t.is(config.listen.client, '127.0.0.1:8001');
  t.is(config.advertiseClient, '127.0.0.1:8001');
  t.is(config.raft.inflightBytesMax, 16 * 1024 * 1024);
  t.is(config.raft.electionTimeoutTicks, 10); // default
  t.true(config.raft.isPreVoteEnabled);
  t.deepEqual(
    config.peers.map((p) => [p.id, p.peerAddress, p.clientAddress, p.delayMs]),
    [
      ['gland', '10.0.0.2:7101', '10.0.0.2:7001', 0],
      ['lucerne', '10.0.0.3:7101', null, 0.35],
    ],
  );
});

test('the result is deeply frozen', (t) => {
  const config = loadConfig({ fileText: file, env: {} });
  t.true(Object.isFrozen(config));
  t.true(Object.isFrozen(config.raft));
  t.true(Object.isFrozen(config.peers[0]));
  t.throws(() => {
    (config.raft as { tickIntervalMs: number }).tickIntervalMs = 1;
  });
});

test('--peer flags replace the file peers; --peer-delay-ms sets delays', (t) => {
  const flags = parseArgs([
    '--region',
    'gland',
    '--data-dir',
    'data/gland',
    '--peer',
    'geneva=127.0.0.1:7101,client=127.0.0.1:7001',
    '--peer',
    'lucerne=peer=127.0.0.1:7103,client=127.0.0.1:7003,delay_ms=2',
    '--peer-delay-ms',
    'geneva=0.35',
  ]);
  const config = loadConfig({ flags, env: {}, cwd: '/tmp/x' });
  t.is(config.dataDir, '/tmp/x/data/gland');
  t.deepEqual(
    config.peers.map((p) => [p.id, p.peerAddress, p.clientAddress, p.delayMs]),
    [
      ['geneva', '127.0.0.1:7101', '127.0.0.1:7001', 0.35],
      ['lucerne', '127.0.0.1:7103', '127.0.0.1:7003', 2],
    ],
  );
});

test('RDL_PEERS holds ;-separated peer specs', (t) => {
  const config = loadConfig({
    env: { RDL_REGION: 'a', RDL_DATA_DIR: '/d', RDL_PEERS: 'b=127.0.0.1:1;c=127.0.0.1:2,client=127.0.0.1:3' },
  });
  t.deepEqual(
    config.peers.map((p) => p.id),
    ['b', 'c'],
  );
});

test('every problem is reported in one DAEMON_CONFIG_INVALID error', (t) => {
  const error = t.throws(() =>
    loadConfig({
      fileText: `
region = "Geneva!"
typo_key = 1
[raft]
tick_interval_ms = "fast"
heartbeat_ticks = 20
[peers.gland]
peer = "nohost"
colour = "red"
`,
      env: { RDL_LOG_LEVEL: 'loud' },
      flags: parseArgs(['--listen-peer', 'x:99999', '--peer-delay-ms', 'nobody=1']),
    }),
  );
  t.is((error as { code?: string }).code, 'DAEMON_CONFIG_INVALID');
  const problems = (error as unknown as { problems: string[] }).problems;
  const expected = [
    'unknown key "typo_key"',
    'region',
    'data_dir is required',
    'raft.tick_interval_ms',
    'heartbeat_ticks (20) must be below',
    'peer address must be host:port',
    'unknown key "peers.gland.colour"',
    'RDL_LOG_LEVEL',
    '--listen-peer',
    '"nobody" is not a configured peer',
  ];
  for (const fragment of expected) {
    t.true(
      problems.some((p) => p.includes(fragment)),
      `missing problem mentioning ${fragment}: ${problems.join(' | ')}`,
    );
  }
});

test('a daemon listing itself as a peer, or a peer twice, is rejected', (t) => {
  const error = t.throws(() =>
    loadConfig({
      env: {},
      flags: parseArgs([
        '--region',
        'a',
        '--data-dir',
        '/d',
        '--peer',
        'a=127.0.0.1:1',
        '--peer',
        'b=127.0.0.1:2',
        '--peer',
        'b=127.0.0.1:3',
      ]),
    }),
  );
  t.regex(error!.message, /must not list itself/);
  t.regex(error!.message, /listed twice/);
});

test('a file that is not TOML gives DAEMON_CONFIG_UNREADABLE with the line', (t) => {
  const error = t.throws(() => loadConfig({ fileText: 'region = "a"\nraft = [', env: {} }));
  t.is((error as { code?: string }).code, 'DAEMON_CONFIG_UNREADABLE');
  t.regex(error!.message, /line 2/);
});

test('a missing file gives DAEMON_CONFIG_UNREADABLE', (t) => {
  const error = t.throws(() => loadConfig({ flags: parseArgs(['--config', '/nonexistent/rdl.toml']), env: {} }));
  t.is((error as { code?: string }).code, 'DAEMON_CONFIG_UNREADABLE');
});

test('unknown flags are DAEMON_CONFIG_INVALID', (t) => {
  const error = t.throws(() => parseArgs(['--no-such-flag', '1']));
  t.is((error as { code?: string }).code, 'DAEMON_CONFIG_INVALID');
});

test('sizes parse with binary and decimal units', (t) => {
  t.is(parseBytes('4096'), 4096);
  t.is(parseBytes('64KiB'), 65536);
  t.is(parseBytes('4MiB'), 4 * 1024 * 1024);
  t.is(parseBytes('2MB'), 2_000_000);
  t.is(parseBytes('1.5MiB'), null);
  t.is(parseBytes(-1), null);
});

test('peer specs reject unknown keys', (t) => {
  const problems: string[] = [];
  parsePeerSpec('gland=127.0.0.1:1,colour=red', 'flag', problems);
  t.is(problems.length, 1);
  parsePeerSpec('no-equals', 'flag', problems);
  t.is(problems.length, 2);
});

test('every option has a distinct env var and flag', (t) => {
  t.is(new Set(configOptions.map((o) => o.env)).size, configOptions.length);
  t.is(new Set(configOptions.map((o) => o.flag)).size, configOptions.length);
});

test('docs/configuration.md documents every key with its environment variable and flag', (t) => {
  const doc = readFileSync(fileURLToPath(new URL('../../../../../docs/configuration.md', import.meta.url)), 'utf8');
  for (const opt of configOptions) {
    t.true(doc.includes(`| \`${opt.key}\` |`), `key ${opt.key}`);
    t.true(doc.includes(`\`${opt.env}\``), `env ${opt.env}`);
    t.true(doc.includes(`\`${opt.flag}\``), `flag ${opt.flag}`);
  }
});

/** A default as docs/configuration.md writes it: sizes in the largest unit that divides them. */
function documentedDefault(kind: string, value: string | number | boolean | null | undefined): string {
  if (value === undefined) return 'required';
  if (value === null) return '(none)';
  if (kind === 'bytes' && typeof value === 'number') {
    for (const [unit, size] of [
      ['GiB', 1024 ** 3],
      ['MiB', 1024 ** 2],
      ['KiB', 1024],
    ] as const) {
      if (value >= size && value % size === 0) return `\`"${value / size}${unit}"\``;
    }
    return `\`${value}\``;
  }
  return typeof value === 'string' ? `\`"${value}"\`` : `\`${String(value)}\``;
}

test("docs/configuration.md states every key's default as the code has it", (t) => {
  const doc = readFileSync(fileURLToPath(new URL('../../../../../docs/configuration.md', import.meta.url)), 'utf8');
  for (const opt of configOptions) {
    const row = doc.split('\n').find((line) => line.startsWith(`| \`${opt.key}\` |`));
    t.is(row?.split('|')[2].trim(), documentedDefault(opt.kind, opt.defaultValue), opt.key);
  }
});

test('every [raft] key is a RaftNode setting', (t) => {
  const config = loadConfig({ env: { RDL_REGION: 'a', RDL_DATA_DIR: '/d' } });
  for (const key of Object.keys(config.raft)) t.true(key in defaultRaftConfig, `RaftConfig has no ${key}`);
});

test('api.request_bytes_max below the largest Io message the SDK sends is rejected', (t) => {
  const error = t.throws(() =>
    loadConfig({
      fileText: `${file}\n[api]\nrequest_bytes_max = "1MiB"\nio_bytes_max = "512KiB"\nstream_inflight_bytes_max = "1MiB"\n`,
      env: {},
      flags: parseArgs([]),
    }),
  );
  t.is((error as { code?: string }).code, 'DAEMON_CONFIG_INVALID');
  const problems = (error as unknown as { problems: string[] }).problems;
  t.true(
    problems.some((p) => p.includes('api.request_bytes_max') && p.includes('largest Io message')),
    problems.join(' | '),
  );
});

test('storage.wal_dir: <data_dir>/wal unless set; relative paths resolve; overlaps with data_dir are rejected', (t) => {
  const base = { RDL_REGION: 'a', RDL_DATA_DIR: '/var/lib/rdl/a' };
  t.is(loadConfig({ env: base }).storage.walDir, '/var/lib/rdl/a/wal');
  t.is(loadConfig({ env: { ...base, RDL_STORAGE_WAL_DIR: '' } }).storage.walDir, '/var/lib/rdl/a/wal');
  t.is(loadConfig({ env: { ...base, RDL_STORAGE_WAL_DIR: '/srv/wal/a' } }).storage.walDir, '/srv/wal/a');
  t.is(
    loadConfig({ flags: parseArgs(['--storage-wal-dir', 'wal/a']), env: base, cwd: '/srv' }).storage.walDir,
    '/srv/wal/a',
  );
  t.is(loadConfig({ fileText: '[storage]\nwal_dir = "/x/w"', env: base }).storage.walDir, '/x/w');
  for (const [walDir, message] of [
    ['/var/lib/rdl/a', /must not be data_dir itself or inside <data_dir>\/db/],
    ['/var/lib/rdl/a/db', /must not be data_dir itself or inside <data_dir>\/db/],
    ['/var/lib/rdl/a/db/wal', /must not be data_dir itself or inside <data_dir>\/db/],
    ['/var/lib/rdl', /must not contain data_dir/],
  ] as const) {
    const error = t.throws(() => loadConfig({ env: { ...base, RDL_STORAGE_WAL_DIR: walDir } }));
    t.is((error as { code?: string }).code, 'DAEMON_CONFIG_INVALID', walDir);
    t.regex(error!.message, message, walDir);
  }
  // Siblings whose names merely start like the data directory are fine.
  t.is(
    loadConfig({ env: { ...base, RDL_STORAGE_WAL_DIR: '/var/lib/rdl/a-wal' } }).storage.walDir,
    '/var/lib/rdl/a-wal',
  );
  const wrongType = t.throws(() => loadConfig({ fileText: '[storage]\nwal_dir = 3', env: base }));
  t.regex(wrongType!.message, /storage\.wal_dir: expected a path or an empty string/);
});
