import { Redis } from 'ioredis';
import { TEST_REDIS_URL } from './helpers/redis.js';

/** Fails fast, with one clear line, when the Redis the tests need is not there. */
export default async function setup(): Promise<void> {
  const redis = new Redis(TEST_REDIS_URL, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    const policy = (await redis.config('GET', 'maxmemory-policy')) as string[];
    if (policy[1] !== 'noeviction') throw new Error(`maxmemory-policy is ${policy[1]}, tests need noeviction`);
  } catch (err) {
    throw new Error(`tests need a Redis at ${TEST_REDIS_URL} (set TEST_REDIS_URL, or run .ci/run, which starts one): ${(err as Error).message}`, {
      cause: err,
    });
  } finally {
    redis.disconnect();
  }
}
