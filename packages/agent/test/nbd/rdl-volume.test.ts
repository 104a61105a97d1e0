// Proves the NBD server works over the rdl client SDK: RdlVolumeProvider + a real RdlClient talk to
// a stand-in rdl.v1.Block server (test/nbd/fake-block-server.ts) on 127.0.0.1, and real NBD clients
// (qemu-io, nbdinfo) and the raw-socket client go through the whole chain. It checks the bytes
// that reach the "cluster", that retryable cluster errors are retried by the SDK inside the request
// deadline instead of failing back to the NBD client, that a request still unanswered at the
// deadline fails with EIO only for itself, and that an unknown volume is NBD_REP_ERR_UNKNOWN.
import test from 'ava';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { RdlClient } from '@rdl/client';
import { NbdServer } from '../../src/nbd/server.js';
import { RdlVolumeProvider } from '../../src/nbd/rdl-volume.js';
import * as P from '../../src/nbd/protocol.js';
import { startFakeBlockServer, type FakeBlockServer } from './fake-block-server.js';
import { hasCommand, seededRandom } from './helpers.js';
import { RawClient } from './raw-client.js';

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;

interface Chain {
  fake: FakeBlockServer;
  client: RdlClient;
  server: NbdServer;
  port: number;
  close(): Promise<void>;
}

async function startChain(requestTimeoutMs: number): Promise<Chain> {
  const fake = await startFakeBlockServer({ vol: 4 * MiB });
  const client = new RdlClient({
    endpoints: [fake.address],
    requestTimeoutMs,
    retryBackoffMsMin: 5,
    retryBackoffMsMax: 20,
    random: seededRandom(3),
  });
  const server = new NbdServer({ provider: new RdlVolumeProvider(client, { requestTimeoutMs }) });
  const address = await server.listen({ host: '127.0.0.1', port: 0 });
  return {
    fake,
    client,
    server,
    port: 'port' in address ? address.port : 0,
    async close() {
      await server.close();
      await client.close();
      await fake.close();
    },
  };
}

const hasPeers = hasCommand('qemu-io') && hasCommand('nbdinfo');
const peerTitle = 'qemu-io writes and reads through NBD → RdlClient → block API; nbdinfo sees size and multi-conn';
(hasPeers ? test.serial : test.skip)(
  hasPeers
    ? peerTitle
    : `${peerTitle} — skipped: qemu-io or nbdinfo not installed (apt-get install qemu-utils libnbd-bin)`,
  async (t) => {
    const chain = await startChain(10_000);
    try {
      const uri = `nbd://127.0.0.1:${chain.port}/vol`;
      const info = JSON.parse((await execFileAsync('nbdinfo', ['--json', uri], { timeout: 30_000 })).stdout);
      t.like(info.exports[0], { 'export-size': 4 * MiB, can_multi_conn: true, block_size_preferred: 4096 });
      await execFileAsync(
        'qemu-io',
        ['-f', 'raw', uri, '-c', 'write -P 0x5c 1000 9000', '-c', 'read -P 0x5c 1000 9000', '-c', 'flush'],
        { timeout: 30_000 },
      );
      const expected = Buffer.alloc(4 * MiB);
      expected.fill(0x5c, 1000, 10_000);
      t.true(chain.fake.volumes.get('vol')!.equals(expected), 'the cluster holds exactly what qemu-io wrote');
    } finally {
      await chain.close();
    }
  },
);

test.serial(
  'retryable cluster errors are retried by the SDK within the deadline, not failed back to NBD',
  async (t) => {
    const chain = await startChain(10_000);
    try {
      const c = await RawClient.connect(chain.port);
      await c.open('vol');
      chain.fake.unavailableNext = 3;
      c.request(P.NBD_CMD_WRITE, 1n, 4096, 5, P.NBD_CMD_FLAG_FUA, Buffer.from('retry'));
      t.is((await c.readReply(new Map(), 10_000)).error, 0);
      t.true(chain.fake.ioRequests >= 4, `the write was attempted ${chain.fake.ioRequests} times`);
      t.is(chain.fake.volumes.get('vol')!.toString('utf8', 4096, 4101), 'retry');
      c.destroy();
    } finally {
      await chain.close();
    }
  },
);

test.serial('a request unanswered at the deadline fails with EIO; the connection keeps working', async (t) => {
  const chain = await startChain(300);
  try {
    const c = await RawClient.connect(chain.port);
    await c.open('vol');
    chain.fake.isHolding = true;
    const started = Date.now();
    c.request(P.NBD_CMD_READ, 1n, 0, 512);
    const reply = await c.readReply(new Map([[1n, 512]]), 10_000);
    t.is(reply.error, P.NBD_EIO);
    t.true(Date.now() - started < 5000, 'failed at about the deadline');
    chain.fake.isHolding = false;
    c.request(P.NBD_CMD_WRITE, 2n, 0, 2, 0, Buffer.from('ok'));
    t.is((await c.readReply(new Map(), 10_000)).error, 0);
    c.destroy();
  } finally {
    await chain.close();
  }
});

test.serial('an unknown volume is NBD_REP_ERR_UNKNOWN; NBD_OPT_LIST lists the cluster volumes', async (t) => {
  const chain = await startChain(5000);
  try {
    const c = await RawClient.connect(chain.port);
    await c.handshake();
    const replies = await c.infoOrGo(7, 'missing');
    t.is(replies[replies.length - 1].type, P.NBD_REP_ERR_UNKNOWN);
    c.sendOption(P.NBD_OPT_LIST);
    const server = await c.readOptionReply();
    t.is(server.type, P.NBD_REP_SERVER);
    t.is(server.data.toString('utf8', 4), 'vol');
    t.is((await c.readOptionReply()).type, P.NBD_REP_ACK);
    c.destroy();
  } finally {
    await chain.close();
  }
});
