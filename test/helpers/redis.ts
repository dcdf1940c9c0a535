import { randomBytes } from 'node:crypto';
import { onCleanup, testPrefix } from './cleanup.js';
import { Redis } from 'ioredis';

export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A prefix no other test (or run) uses, so tests never see each other's keys. */
export function uniquePrefix(label = 't'): string {
  return `pqtest-${label}-${randomBytes(5).toString('hex')}`;
}

export function testRedis(url: string = TEST_REDIS_URL): Redis {
  return new Redis(url, { maxRetriesPerRequest: null });
}

export async function keysWithPrefix(redis: Redis, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys.sort();
}

export async function deletePrefix(redis: Redis, prefix: string): Promise<void> {
  const keys = await keysWithPrefix(redis, prefix);
  for (let i = 0; i < keys.length; i += 500) await redis.del(...keys.slice(i, i + 500));
}

/** A prefix for this test whose keys are deleted after it (see helpers/cleanup.ts). */
export function cleanPrefix(label = 't'): string {
  const prefix = testPrefix(label);
  onCleanup(async () => {
    const redis = testRedis();
    try {
      await deletePrefix(redis, prefix);
    } finally {
      redis.disconnect();
    }
  });
  return prefix;
}

/** A connection to the test Redis, closed after this test. */
export function testConnection(url: string = TEST_REDIS_URL): Redis {
  const redis = testRedis(url);
  onCleanup(() => redis.disconnect());
  return redis;
}
