import { Redis } from 'ioredis';

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

/** The URL with any password hidden, for messages. */
export function safeUrl(url: string): string {
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
export function createApiRedis(url: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: 1, enableOfflineQueue: false, retryStrategy: reconnect, lazyConnect: true });
}

/**
 * For workers and BullMQ: commands wait through a disconnection and go out
 * once Redis is back (BullMQ requires maxRetriesPerRequest: null).
 */
export function createWorkerRedis(url: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, enableOfflineQueue: true, retryStrategy: reconnect, lazyConnect: true });
}

export async function connect(redis: Redis, url: string, timeoutMs = 5000): Promise<void> {
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
  const probe = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: timeoutMs });
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

/** Refuses a Redis that may evict keys; returns a warning when it persists nothing. */
export async function checkRedis(redis: Redis, url: string): Promise<{ facts: RedisFacts; warning: string | null }> {
  const facts = await redisFacts(redis);
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
