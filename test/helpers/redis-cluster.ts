import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from './redis-server.js';
import { waitFor } from './wait.js';

/** Redis Cluster puts each node's cluster bus on its port + 10000. */
const BUS_PORT_OFFSET = 10_000;
const ALL_SLOTS = 16_384;
const HOST = '127.0.0.1';

export interface ClusterNodeAddress {
  host: string;
  port: number;
}

export interface ClusterMaster extends ClusterNodeAddress {
  /** Inclusive slot ranges this master serves, e.g. [[0, 5460]]. */
  slots: Array<[number, number]>;
}

export interface RedisClusterOptions {
  /** Default 3 (the minimum Redis Cluster accepts). */
  masters?: number;
  /** Default 0. */
  replicasPerMaster?: number;
  /** Turns AOF on with this fsync policy; without it, no AOF at all. */
  appendfsync?: 'always' | 'everysec' | 'no';
}

export interface RedisCluster {
  /** Every node started, masters and replicas, killed or not. */
  readonly nodes: ClusterNodeAddress[];
  /** `redis-cluster://127.0.0.1:p1,127.0.0.1:p2,...`: the masters as they were at start. */
  readonly url: string;
  /** The masters serving slots now, as a live node sees them (CLUSTER NODES). */
  masters(): Promise<ClusterMaster[]>;
  /** The master serving `key`'s slot now, as a live node sees it. */
  masterFor(key: string): Promise<ClusterMaster>;
  /** Kills one node (SIGKILL unless told) and waits for it to exit. */
  kill(port: number, signal?: NodeJS.Signals): Promise<void>;
  /** Starts a killed node again with its cluster config: a master that lost its slots rejoins as a replica. */
  restart(port: number): Promise<void>;
  /** Waits until every live node says cluster_state:ok, all slots ok, and all agree who serves which slots. */
  waitForHealthy(timeoutMs?: number): Promise<void>;
  /** Waits until every live replica has acknowledged everything its master had written when this was called. */
  waitForReplicaSync(timeoutMs?: number): Promise<void>;
  /** Kills every node and removes their directories. Safe to call twice. */
  stop(): Promise<void>;
}

/** True when both `redis-server` and `redis-cli` are on PATH. */
export function redisClusterAvailable(): boolean {
  return ['redis-server', 'redis-cli'].every((bin) => {
    const result = spawnSync(bin, ['--version'], { stdio: 'ignore', timeout: 10_000 });
    return !result.error && result.status === 0;
  });
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, HOST, () => server.close(() => resolve(true)));
  });
}

/** A free port whose bus port (+10000) is free too, and that none of `taken` uses. */
async function freeClusterPort(taken: Set<number>): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt += 1) {
    const port = await freePort();
    const bus = port + BUS_PORT_OFFSET;
    if (bus > 65_535 || taken.has(port) || taken.has(bus)) continue;
    if (!(await portIsFree(bus))) continue;
    taken.add(port);
    taken.add(bus);
    return port;
  }
  throw new Error('no free port pair (port, port + 10000) found for a Redis Cluster node');
}

/** A one-shot connection to one node: never retries, never queues, never hangs. */
async function onNode<T>(port: number, fn: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis({
    host: HOST,
    port,
    lazyConnect: true,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    connectTimeout: 2_000,
    commandTimeout: 5_000,
  });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}

function infoFields(text: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0) fields.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  return fields;
}

interface NodeLine {
  id: string;
  port: number;
  host: string;
  flags: Set<string>;
  masterId: string;
  slots: Array<[number, number]>;
}

/** Parses CLUSTER NODES: `<id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slot>...` */
function parseClusterNodes(text: string): NodeLine[] {
  const out: NodeLine[] = [];
  for (const line of text.split('\n')) {
    const parts = line.trim().split(' ');
    if (parts.length < 8) continue;
    const [id, addr, flags, masterId] = parts as [string, string, string, string];
    const hostPort = addr.split('@')[0]!;
    const colon = hostPort.lastIndexOf(':');
    const slots: Array<[number, number]> = [];
    for (const s of parts.slice(8)) {
      if (s.startsWith('[')) continue; // a slot being migrated or imported
      const [from, to] = s.split('-');
      slots.push([Number(from), Number(to ?? from)]);
    }
    out.push({
      id,
      host: hostPort.slice(0, colon) || HOST,
      port: Number(hostPort.slice(colon + 1)),
      flags: new Set(flags.split(',')),
      masterId,
      slots,
    });
  }
  return out;
}

function servingMasters(lines: NodeLine[]): ClusterMaster[] {
  return lines
    .filter((n) => n.flags.has('master') && !n.flags.has('fail') && !n.flags.has('noaddr') && !n.flags.has('handshake') && n.slots.length > 0)
    .map((n) => ({ host: n.host, port: n.port, slots: n.slots }))
    .sort((a, b) => a.slots[0]![0] - b.slots[0]![0]);
}

class ClusterNode {
  readonly dir: string;
  private child: ChildProcess | null = null;
  private done = false;
  private exited: Promise<void> = Promise.resolve();

  constructor(
    readonly port: number,
    root: string,
    private readonly args: string[],
  ) {
    this.dir = join(root, String(port));
    mkdirSync(this.dir);
  }

  get alive(): boolean {
    return this.child !== null && !this.done;
  }

  get log(): string {
    const file = join(this.dir, 'redis.log');
    return existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(-15).join('\n') : '(no log)';
  }

  async start(): Promise<void> {
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        HOST,
        '--protected-mode',
        'no',
        '--daemonize',
        'no',
        '--dir',
        this.dir,
        '--logfile',
        join(this.dir, 'redis.log'),
        '--save',
        '',
        '--maxmemory-policy',
        'noeviction',
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        'nodes.conf',
        '--cluster-node-timeout',
        '2000',
        // Replicas would otherwise wait 5 s for more replicas before their first (diskless) sync.
        '--repl-diskless-sync-delay',
        '0',
        ...this.args,
      ],
      { stdio: 'ignore' },
    );
    this.child = child;
    this.done = false;
    this.exited = new Promise((resolve) => {
      const finish = (): void => {
        this.done = true;
        resolve();
      };
      child.once('exit', finish);
      child.once('error', finish); // failed to spawn: there will be no 'exit'
    });
    // Dead on arrival (a port lost to a race, say) fails at once; the caller adds the logs.
    const state = await waitFor(
      async () => {
        if (!this.alive) return 'exited' as const;
        return (await onNode(this.port, (r) => r.ping())) === 'PONG' && ('up' as const);
      },
      { timeoutMs: 15_000, what: `cluster node on ${this.port}` },
    );
    if (state === 'exited') throw new Error(`redis-server on ${this.port} exited during start`);
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.alive) this.child!.kill(signal);
    await this.exited;
  }

  /** For process exit: synchronous, best effort. */
  killNow(): void {
    if (this.alive) this.child!.kill('SIGKILL');
  }
}

function runRedisCli(args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('redis-cli', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`redis-cli ${args.join(' ')} failed (${signal ?? `exit ${code}`}):\n${out}`));
    });
  });
}

/**
 * A real Redis Cluster of the test's own: `masters * (1 + replicasPerMaster)`
 * redis-server children on free ports of 127.0.0.1, each in its own directory,
 * joined with `redis-cli --cluster create`. Never touches any other Redis.
 */
export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisCluster> {
  const masterCount = options.masters ?? 3;
  const replicas = options.replicasPerMaster ?? 0;
  if (!Number.isInteger(masterCount) || masterCount < 3) throw new Error(`a Redis Cluster needs at least 3 masters, got ${masterCount}`);
  if (!Number.isInteger(replicas) || replicas < 0) throw new Error(`replicasPerMaster must be an integer >= 0, got ${replicas}`);

  const aof = options.appendfsync ? ['--appendonly', 'yes', '--appendfsync', options.appendfsync] : ['--appendonly', 'no'];
  const root = mkdtempSync(join(tmpdir(), 'pushq-redis-cluster-'));
  const nodes: ClusterNode[] = [];
  let stopped: Promise<void> | null = null;
  const onExit = (): void => nodes.forEach((n) => n.killNow());
  process.once('exit', onExit);

  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      process.removeListener('exit', onExit);
      await Promise.all(nodes.map((n) => n.kill('SIGKILL')));
      rmSync(root, { recursive: true, force: true });
    })());

  const liveNodes = (): ClusterNode[] => nodes.filter((n) => n.alive);

  /** Asks live nodes in turn until one answers. */
  const clusterNodes = async (): Promise<NodeLine[]> => {
    let lastError: unknown = new Error('no live node');
    for (const node of liveNodes()) {
      try {
        return parseClusterNodes(String(await onNode(node.port, (r) => r.call('CLUSTER', 'NODES'))));
      } catch (err) {
        lastError = err;
      }
    }
    throw lastError;
  };

  const masters = async (): Promise<ClusterMaster[]> => servingMasters(await clusterNodes());

  const masterFor = async (key: string): Promise<ClusterMaster> => {
    const live = liveNodes()[0];
    if (!live) throw new Error('no live node');
    const slot = Number(await onNode(live.port, (r) => r.call('CLUSTER', 'KEYSLOT', key)));
    const owner = (await masters()).find((m) => m.slots.some(([from, to]) => slot >= from && slot <= to));
    if (!owner) throw new Error(`no master serves slot ${slot} (key ${key})`);
    return owner;
  };

  const waitForHealthy = async (timeoutMs = 30_000): Promise<void> => {
    await waitFor(
      async () => {
        const live = liveNodes();
        if (live.length === 0) throw new Error('no live node');
        const views = new Set<string>();
        for (const node of live) {
          const info = infoFields(String(await onNode(node.port, (r) => r.call('CLUSTER', 'INFO'))));
          if (info.get('cluster_state') !== 'ok') return false;
          if (info.get('cluster_slots_ok') !== String(ALL_SLOTS)) return false;
          const view = servingMasters(parseClusterNodes(String(await onNode(node.port, (r) => r.call('CLUSTER', 'NODES')))));
          views.add(JSON.stringify(view));
        }
        // Every live node must agree on who serves what, or clients get sent around.
        return views.size === 1;
      },
      { timeoutMs, intervalMs: 100, what: 'Redis Cluster healthy on every live node' },
    );
  };

  const waitForReplicasLinked = async (timeoutMs: number): Promise<void> => {
    await waitFor(
      async () => {
        const lines = await clusterNodes();
        for (const line of lines.filter((l) => l.flags.has('slave'))) {
          const node = nodes.find((n) => n.port === line.port);
          if (!node?.alive) continue;
          const info = infoFields(await onNode(node.port, (r) => r.info('replication')));
          if (info.get('role') !== 'slave' || info.get('master_link_status') !== 'up') return false;
        }
        return lines.filter((l) => l.flags.has('slave')).length === masterCount * replicas;
      },
      { timeoutMs, intervalMs: 100, what: 'every replica linked to its master' },
    );
  };

  const waitForReplicaSync = async (timeoutMs = 15_000): Promise<void> => {
    const targets: Array<{ port: number; offset: number }> = [];
    for (const m of await masters()) {
      const info = infoFields(await onNode(m.port, (r) => r.info('replication')));
      targets.push({ port: m.port, offset: Number(info.get('master_repl_offset')) });
    }
    await waitFor(
      async () => {
        for (const target of targets) {
          const info = infoFields(await onNode(target.port, (r) => r.info('replication')));
          const count = Number(info.get('connected_slaves') ?? 0);
          for (let i = 0; i < count; i += 1) {
            const offset = /offset=(\d+)/.exec(info.get(`slave${i}`) ?? '')?.[1];
            if (offset === undefined || Number(offset) < target.offset) return false;
          }
        }
        return true;
      },
      { timeoutMs, intervalMs: 50, what: 'replicas caught up with their masters' },
    );
  };

  try {
    const taken = new Set<number>();
    const total = masterCount * (1 + replicas);
    for (let i = 0; i < total; i += 1) nodes.push(new ClusterNode(await freeClusterPort(taken), root, aof));
    await Promise.all(nodes.map((n) => n.start()));

    await runRedisCli(['--cluster', 'create', ...nodes.map((n) => `${HOST}:${n.port}`), '--cluster-replicas', String(replicas), '--cluster-yes'], 60_000);
    await waitForHealthy(30_000);
    if (replicas > 0) await waitForReplicasLinked(30_000);

    const seeds = await masters();
    if (seeds.length !== masterCount) throw new Error(`expected ${masterCount} masters, cluster has ${seeds.length}`);
    const url = `redis-cluster://${seeds.map((m) => `${m.host}:${m.port}`).join(',')}`;

    return {
      nodes: nodes.map((n) => ({ host: HOST, port: n.port })),
      url,
      masters,
      masterFor,
      async kill(port: number, signal: NodeJS.Signals = 'SIGKILL') {
        const node = nodes.find((n) => n.port === port);
        if (!node) throw new Error(`no node of this cluster on port ${port}`);
        await node.kill(signal);
      },
      async restart(port: number) {
        const node = nodes.find((n) => n.port === port);
        if (!node) throw new Error(`no node of this cluster on port ${port}`);
        if (node.alive) return;
        try {
          await node.start();
        } catch (err) {
          throw new Error(`${(err as Error).message}\n${node.log}`, { cause: err });
        }
      },
      waitForHealthy,
      waitForReplicaSync,
      stop,
    };
  } catch (err) {
    const logs = nodes.map((n) => `--- node ${n.port} ---\n${n.log}`).join('\n');
    await stop();
    throw new Error(`${(err as Error).message}\n${logs}`, { cause: err });
  }
}
