import { join } from 'node:path';
import { mkdirSync } from 'node:fs';

import * as grpc from '@grpc/grpc-js';
import { fromJSON } from '@grpc/proto-loader';

import { BenchError } from '../errors.js';
import { freePorts, startProcess, stopProcess, waitForPort, waitUntil } from '../processes.js';
import type { ManagedProcess } from '../processes.js';

/**
 * The part of etcd's v3 API (etcdserverpb, api/etcdserverpb/rpc.proto) the harness calls, as a
 * protobufjs JSON descriptor: KV.Put, KV.Range and Maintenance.Status. Field numbers are etcd's;
 * fields the harness does not use are left out (protobuf skips unknown fields when decoding).
 */
const etcdProto = {
  nested: {
    etcdserverpb: {
      nested: {
        ResponseHeader: {
          fields: {
            cluster_id: { type: 'uint64', id: 1 },
            member_id: { type: 'uint64', id: 2 },
            revision: { type: 'int64', id: 3 },
            raft_term: { type: 'uint64', id: 4 },
          },
        },
        PutRequest: { fields: { key: { type: 'bytes', id: 1 }, value: { type: 'bytes', id: 2 } } },
        PutResponse: { fields: { header: { type: 'ResponseHeader', id: 1 } } },
        RangeRequest: { fields: { key: { type: 'bytes', id: 1 } } },
        KeyValue: {
          fields: {
            key: { type: 'bytes', id: 1 },
            mod_revision: { type: 'int64', id: 3 },
            value: { type: 'bytes', id: 5 },
          },
        },
        RangeResponse: {
          fields: {
            header: { type: 'ResponseHeader', id: 1 },
            kvs: { rule: 'repeated', type: 'KeyValue', id: 2 },
            count: { type: 'int64', id: 4 },
          },
        },
        StatusRequest: { fields: {} },
        StatusResponse: {
          fields: {
            header: { type: 'ResponseHeader', id: 1 },
            version: { type: 'string', id: 2 },
            leader: { type: 'uint64', id: 4 },
          },
        },
        KV: {
          methods: {
            Put: { requestType: 'PutRequest', responseType: 'PutResponse' },
            Range: { requestType: 'RangeRequest', responseType: 'RangeResponse' },
          },
        },
        Maintenance: {
          methods: { Status: { requestType: 'StatusRequest', responseType: 'StatusResponse' } },
        },
      },
    },
  },
};

type Callback<T> = (err: grpc.ServiceError | null, value?: T) => void;

interface KvClient extends grpc.Client {
  Put(request: { key: Buffer; value: Buffer }, callback: Callback<unknown>): void;
  Range(request: { key: Buffer }, callback: Callback<{ kvs: Array<{ value: Buffer }> }>): void;
}

interface MaintenanceClient extends grpc.Client {
  Status(request: object, options: grpc.CallOptions, callback: Callback<StatusResponse>): void;
}

interface StatusResponse {
  header: { member_id: string };
  leader: string;
}

type ClientConstructor<T> = new (address: string, credentials: grpc.ChannelCredentials) => T;

const loaded = grpc.loadPackageDefinition(
  fromJSON(etcdProto as unknown as Parameters<typeof fromJSON>[0], { keepCase: true, longs: String, defaults: true }),
) as unknown as {
  etcdserverpb: { KV: ClientConstructor<KvClient>; Maintenance: ClientConstructor<MaintenanceClient> };
};

/**
 * A minimal etcd v3 client over gRPC (one HTTP/2 channel, like etcd's Go client with one
 * endpoint). Puts and linearizable ranges; errors keep the gRPC status as `code`.
 */
export class EtcdKv {
  private readonly client: KvClient;

  constructor(endpoint: string) {
    this.client = new loaded.etcdserverpb.KV(endpoint, grpc.credentials.createInsecure());
  }

  /** Puts `value` at `key`; resolves once etcd has committed it. */
  put(key: Buffer, value: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.client.Put({ key, value }, (err) => (err === null ? resolve() : reject(err)));
    });
  }

  /** Linearizable read of `key`; resolves with the value bytes (empty when absent). */
  get(key: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.client.Range({ key }, (err, response) => {
        if (err !== null) reject(err);
        else resolve(response?.kvs[0]?.value ?? Buffer.alloc(0));
      });
    });
  }

  close(): void {
    this.client.close();
  }
}

/** Asks one member for its status: its member id and the leader it knows (both as decimal strings). */
export function etcdStatus(endpoint: string, timeoutMs = 2000): Promise<{ memberId: string; leaderId: string }> {
  const client = new loaded.etcdserverpb.Maintenance(endpoint, grpc.credentials.createInsecure());
  return new Promise<{ memberId: string; leaderId: string }>((resolve, reject) => {
    client.Status({}, { deadline: Date.now() + timeoutMs }, (err, response) => {
      if (err !== null || response === undefined) reject(err ?? new Error('no status'));
      else resolve({ memberId: response.header.member_id, leaderId: response.leader });
    });
  }).finally(() => client.close());
}

/** A running 3-member etcd cluster on loopback. */
export interface EtcdCluster {
  readonly endpoints: readonly string[];
  /** The client endpoint of the current leader (the harness sends to it, as rdl's SDK does). */
  readonly leaderEndpoint: string;
  readonly processes: readonly ManagedProcess[];
  stop(): Promise<void>;
}

/**
 * Starts three etcd members (`etcd` from Debian's etcd-server) on 127.0.0.1 ports reserved just
 * before, each with a fresh data directory under `workDir`, waits for a leader, and returns the
 * cluster. Member logs go to `workDir/etcd-<n>.log`.
 */
export async function startEtcdCluster(
  workDir: string,
  walDir: string | null = null,
  timeoutMs = 30_000,
): Promise<EtcdCluster> {
  const ports = await freePorts(6);
  const names = ['etcd-1', 'etcd-2', 'etcd-3'];
  const clientPorts = ports.slice(0, 3);
  const peerPorts = ports.slice(3);
  const initialCluster = names.map((name, i) => `${name}=http://127.0.0.1:${peerPorts[i]}`).join(',');
  const processes: ManagedProcess[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(processes.map((p) => stopProcess(p)));
  };
  try {
    for (let i = 0; i < 3; i++) {
      const dataDir = join(workDir, names[i]);
      mkdirSync(dataDir, { recursive: true });
      processes.push(
        startProcess(
          names[i],
          'etcd',
          [
            `--name=${names[i]}`,
            `--data-dir=${dataDir}`,
            ...(walDir === null ? [] : [`--wal-dir=${join(walDir, names[i])}`]),
            `--listen-client-urls=http://127.0.0.1:${clientPorts[i]}`,
            `--advertise-client-urls=http://127.0.0.1:${clientPorts[i]}`,
            `--listen-peer-urls=http://127.0.0.1:${peerPorts[i]}`,
            `--initial-advertise-peer-urls=http://127.0.0.1:${peerPorts[i]}`,
            `--initial-cluster=${initialCluster}`,
            '--initial-cluster-state=new',
            '--initial-cluster-token=rdl-bench',
            '--logger=zap',
            '--log-level=error',
          ],
          join(workDir, `${names[i]}.log`),
        ),
      );
    }
    const endpoints = clientPorts.map((port) => `127.0.0.1:${port}`);
    for (let i = 0; i < 3; i++) await waitForPort(names[i], clientPorts[i], timeoutMs, processes);
    let leaderEndpoint = '';
    await waitUntil(
      'an etcd leader',
      async () => {
        for (const endpoint of endpoints) {
          const status = await etcdStatus(endpoint).catch(() => null);
          if (status !== null && status.leaderId !== '0' && status.leaderId === status.memberId) {
            leaderEndpoint = endpoint;
            return true;
          }
        }
        return false;
      },
      timeoutMs,
      processes,
    );
    if (leaderEndpoint === '') throw new BenchError('BENCH_STARTUP_TIMEOUT', 'etcd elected no leader');
    return { endpoints, leaderEndpoint, processes, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
