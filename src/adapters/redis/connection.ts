import calculateSlot from 'cluster-key-slot';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';

/**
 * Redis connections and the checks a process makes before it does anything:
 * reachable, never evicts (an evicted ledger key means a duplicate send),
 * and whether it persists (a Redis that keeps nothing loses the ledger when
 * it restarts).
 */
export class RedisStartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RedisStartupError';
  }
}

/** A standalone Redis, or a Redis Cluster: every adapter takes either. */
export type RedisClient = Redis | Cluster;

export interface ClusterTarget {
  nodes: Array<{ host: string; port: number }>;
  username?: string;
  password?: string;
  tls: boolean;
}

const CLUSTER_URL = /^(rediss?)-cluster:\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/?#]+)\/?$/;

/**
 * `redis-cluster://[user:password@]host1:port1,host2:port2` (or
 * `rediss-cluster://` for TLS) names a Redis Cluster by some of its nodes;
 * anything else is a standalone Redis URL. Null for standalone.
 */
export function clusterTarget(url: string): ClusterTarget | null {
  const match = CLUSTER_URL.exec(url);
  if (!match) return null;
  const nodes = match[4]!.split(',').map((hostPort) => {
    const at = hostPort.lastIndexOf(':');
    const host = at > 0 ? hostPort.slice(0, at) : hostPort;
    const port = at > 0 ? Number(hostPort.slice(at + 1)) : 6379;
    if (!host || !Number.isInteger(port) || port < 1 || port > 65535) throw new RedisStartupError(`REDIS_URL: "${hostPort}" is not host:port`);
    return { host: host.replace(/^\[|\]$/g, ''), port };
  });
  return {
    nodes,
    ...(match[2] ? { username: decodeURIComponent(match[2]) } : {}),
    ...(match[3] ? { password: decodeURIComponent(match[3]) } : {}),
    tls: match[1] === 'rediss',
  };
}

export function isCluster(redis: RedisClient): redis is Cluster {
  return redis instanceof Cluster;
}

/**
 * Unlinks every key that starts with `prefix`, in bounded steps (SCAN, a
 * thousand at a time), on the master that holds `slotKey` (keys under one
 * hash tag live on one master). For keys whose names cannot be counted out.
 * `keep`: names left alone.
 */
export async function unlinkMatching(redis: RedisClient, slotKey: string, prefix: string, keep: ReadonlySet<string> = new Set()): Promise<number> {
  const node = await masterOf(redis, slotKey);
  const pattern = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
  let removed = 0;
  let cursor = '0';
  do {
    const [next, found] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    const names = found.filter((name) => !keep.has(name));
    if (names.length > 0) removed += await node.unlink(...names);
    cursor = next;
  } while (cursor !== '0');
  return removed;
}

/**
 * The connection to the master that holds `key` (the client itself when
 * standalone). After a failover the client's slot map may still name the
 * dead master: a node that is not connected gets the map refreshed first.
 */
async function masterOf(redis: RedisClient, key: string): Promise<Redis> {
  if (!isCluster(redis)) return redis;
  const slot = calculateSlot(key);
  const find = () => {
    const owner = (redis as unknown as { slots: Array<string[] | undefined> }).slots[slot]?.[0];
    return redis.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === owner);
  };
  let node = find();
  if (!node || node.status !== 'ready') {
    await new Promise<void>((resolve) => redis.refreshSlotsCache(() => resolve()));
    node = find();
  }
  if (!node) throw new Error(`no master known for slot ${slot} yet`);
  return node;
}

const connectedReplicas = new WeakMap<Redis, { count: number; at: number }>();

/**
 * WAIT on the master that holds `key` until `replicas` of its replicas
 * acknowledged every write this connection made there; answers whether they
 * did within `timeoutMs`. `upToConnected`: wait only for as many as are
 * connected now (none right after a failover, until one rejoins) — sending
 * goes on unprotected meanwhile; otherwise (strict) a master with fewer in
 * sync answers false, and nothing claimed is sent. WAIT blocks the
 * connection it runs on: give it one of its own.
 */
export async function waitForReplicas(redis: RedisClient, key: string, replicas: number, timeoutMs: number, upToConnected = false): Promise<boolean> {
  const node = await masterOf(redis, key);
  let want = replicas;
  if (upToConnected) {
    let known = connectedReplicas.get(node);
    if (!known || performance.now() - known.at > 1000) {
      const count = Number(/^connected_slaves:(\d+)/m.exec(await node.info('replication'))?.[1] ?? 0);
      connectedReplicas.set(node, (known = { count, at: performance.now() }));
    }
    want = Math.min(replicas, known.count);
    if (want === 0) return true;
  }
  // Never longer than asked, even when the node is unreachable (its commands wait in its queue): then not replicated.
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<number>((resolve) => {
    timer = setTimeout(() => resolve(-1), timeoutMs + 1000);
  });
  try {
    return (await Promise.race([node.wait(want, timeoutMs), late])) >= want;
  } finally {
    clearTimeout(timer);
  }
}

/** The Redis server's clock in ms: the one instant every process agrees on. */
export async function redisTime(redis: RedisClient): Promise<number> {
  const [seconds, micros] = await redis.time();
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
}

/** The URL with any password hidden, for messages. */
export function safeUrl(url: string): string {
  if (CLUSTER_URL.test(url)) return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@').replace(/\/$/, '');
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString().replace(/\/$/, '');
  } catch {
    return '(unparseable REDIS_URL)';
  }
}

const reconnect = (times: number) => Math.min(100 * 2 ** Math.min(times, 5), 2000);

/**
 * For request handlers: a command fails at once while Redis is away (the API
 * answers 503 and changes nothing) instead of waiting in a queue.
 */
export function createApiRedis(url: string): RedisClient {
  return createRedis(url, { maxRetriesPerRequest: 1, enableOfflineQueue: false });
}

/**
 * For workers and BullMQ: commands wait through a disconnection and go out
 * once Redis is back (BullMQ requires maxRetriesPerRequest: null).
 */
export function createWorkerRedis(url: string): RedisClient {
  return createRedis(url, { maxRetriesPerRequest: null, enableOfflineQueue: true });
}

function createRedis(url: string, options: { maxRetriesPerRequest: number | null; enableOfflineQueue: boolean }): RedisClient {
  const cluster = clusterTarget(url);
  if (!cluster) return new Redis(url, { ...options, retryStrategy: reconnect, lazyConnect: true });
  const redisOptions: RedisOptions = {
    ...options,
    ...(cluster.username ? { username: cluster.username } : {}),
    ...(cluster.password ? { password: cluster.password } : {}),
    ...(cluster.tls ? { tls: {} } : {}),
  };
  const clusterOptions: ClusterOptions = {
    redisOptions,
    enableOfflineQueue: options.enableOfflineQueue,
    clusterRetryStrategy: reconnect,
    lazyConnect: true,
    // A failover moves slots: follow MOVED/ASK and refresh the slot map rather than fail.
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 300,
    retryDelayOnTryAgain: 100,
    slotsRefreshTimeout: 2000,
    ...(options.maxRetriesPerRequest === null ? { maxRedirections: 64 } : {}),
  };
  return new Cluster(cluster.nodes, clusterOptions);
}

export async function connect(redis: RedisClient, url: string, timeoutMs = 5000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  let firstError: Error | undefined;
  const onError = (err: Error) => {
    firstError ??= err;
  };
  redis.on('error', onError);
  try {
    await Promise.race([
      redis.connect(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } catch (err) {
    redis.disconnect();
    throw new RedisStartupError(
      `cannot reach Redis at ${safeUrl(url)} (${(firstError ?? (err as Error)).message}). Start one (e.g. \`redis-server --appendonly yes --maxmemory-policy noeviction\`) or set REDIS_URL.`,
    );
  } finally {
    clearTimeout(timer);
    redis.off('error', onError);
  }
}

/** Answers PING within the timeout, or false; never retries. */
export async function answersPing(url: string, timeoutMs = 1000): Promise<boolean> {
  const cluster = clusterTarget(url);
  const probe: RedisClient = cluster
    ? new Cluster(cluster.nodes.slice(0, 1), {
        lazyConnect: true,
        clusterRetryStrategy: () => null,
        redisOptions: { maxRetriesPerRequest: 0, connectTimeout: timeoutMs },
      })
    : new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: timeoutMs });
  probe.on('error', () => undefined);
  try {
    await probe.connect();
    return (await probe.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    probe.disconnect();
  }
}

function infoField(info: string, field: string): string | undefined {
  const match = new RegExp(`^${field}:(.*)$`, 'm').exec(info);
  return match?.[1]?.trim();
}

export interface RedisFacts {
  version: string;
  maxmemoryPolicy: string;
  aof: boolean;
  rdb: boolean;
}

export async function redisFacts(redis: Redis): Promise<RedisFacts> {
  const [server, memory, persistence] = await Promise.all([redis.info('server'), redis.info('memory'), redis.info('persistence')]);
  let rdb = false;
  try {
    const save = (await redis.config('GET', 'save')) as string[];
    rdb = Boolean(save[1]?.trim());
  } catch {
    // CONFIG is often disabled on managed Redis; RDB status is then unknown, assume none.
  }
  return {
    version: infoField(server, 'redis_version') ?? 'unknown',
    maxmemoryPolicy: infoField(memory, 'maxmemory_policy') ?? 'unknown',
    aof: infoField(persistence, 'aof_enabled') === '1',
    rdb,
  };
}

/** The facts of a standalone Redis, or of a cluster's weakest master (evicting first, then not persisting). */
export async function weakestFacts(redis: RedisClient): Promise<RedisFacts & { masters: number }> {
  const nodes = isCluster(redis) ? redis.nodes('master') : [redis];
  if (nodes.length === 0) throw new Error('the Redis Cluster has no reachable master');
  const all = await Promise.all(nodes.map((node) => redisFacts(node)));
  const weakest = all.find((f) => f.maxmemoryPolicy !== 'noeviction') ?? all.find((f) => !f.aof && !f.rdb) ?? all[0]!;
  return { ...weakest, masters: nodes.length };
}

/**
 * Refuses a Redis that may evict keys; returns a warning when it persists
 * nothing. On a cluster every master is checked.
 */
export async function checkRedis(redis: RedisClient, url: string): Promise<{ facts: RedisFacts; warning: string | null }> {
  let facts: RedisFacts;
  try {
    facts = await weakestFacts(redis);
  } catch (err) {
    throw new RedisStartupError(`Redis at ${safeUrl(url)}: ${(err as Error).message}`);
  }
  if (facts.maxmemoryPolicy !== 'noeviction') {
    throw new RedisStartupError(
      `Redis at ${safeUrl(url)} has maxmemory-policy ${facts.maxmemoryPolicy}; pushq needs noeviction, because an evicted ledger key would let a recipient be sent twice. Run \`CONFIG SET maxmemory-policy noeviction\` (and put it in redis.conf).`,
    );
  }
  const warning =
    facts.aof || facts.rdb
      ? null
      : `Redis at ${safeUrl(url)} persists nothing (no AOF, no RDB snapshots): if it restarts, the ledger of every campaign is lost. Enable appendonly for production.`;
  return { facts, warning };
}
