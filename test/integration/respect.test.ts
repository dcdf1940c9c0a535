import { describe, expect, it } from 'vitest';
import { RedisFrequencyCaps, RedisSuppressions } from '../../src/adapters/redis/redis-respect.js';
import { Keys } from '../../src/adapters/redis/keys.js';
import { Scripts } from '../../src/adapters/redis/scripts.js';
import type { FrequencyCap } from '../../src/domain/respect.js';
import { ids } from '../helpers/harness.js';
import { cleanPrefix, testConnection } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';

function adapters(prefix = cleanPrefix('respect')) {
  const redis = testConnection();
  const keys = new Keys(prefix);
  const scripts = new Scripts(redis);
  return { redis, keys, prefix, caps: new RedisFrequencyCaps(keys, scripts), suppressions: new RedisSuppressions(redis, keys) };
}

const daily = (max: number): FrequencyCap => ({ max, per: '24h', kinds: [] });

describe('frequency caps', () => {
  it('counts each recipient up to the cap, and gives back what was not sent', async () => {
    const { caps } = adapters();
    const fits = async (cap: FrequencyCap, ids: string[]) => (await caps.reserve(cap, ids)).map((r) => r !== null);
    expect(await fits(daily(2), ['a', 'b'])).toEqual([true, true]);
    const second = await caps.reserve(daily(2), ['a']);
    expect(second.map((r) => r?.id)).toEqual(['a']);
    expect(await fits(daily(2), ['a', 'b', 'c'])).toEqual([false, true, true]);
    await caps.release(daily(2), [second[0]!]);
    expect(await fits(daily(2), ['a', 'a'])).toEqual([true, false]);
    // A cap of another window counts on its own; one of the same window and kinds shares the count.
    expect(await fits({ max: 1, per: '1h', kinds: [] }, ['a'])).toEqual([true]);
    expect(await fits(daily(3), ['a'])).toEqual([true]);
  });

  it('gives a message back to the bucket it was counted in, across a bucket boundary', async () => {
    const { caps, redis } = adapters();
    // 24 buckets of one second each.
    const cap: FrequencyCap = { max: 1, per: '24s', kinds: [] };
    // Start early in a bucket, by the Redis clock, so the reserve lands in it.
    const bucketOf = async () => Math.floor((Number((await redis.time())[0]) * 1000) / 1000);
    const reservedIn = await bucketOf();
    const [reservation] = await caps.reserve(cap, ['a']);
    expect(reservation).not.toBeNull();
    await waitFor(async () => (await bucketOf()) > reservedIn, { what: 'the next bucket' });
    // The send did not happen after all: the message is given back.
    await caps.release(cap, [reservation!]);
    expect((await caps.reserve(cap, ['a']))[0]).not.toBeNull();
  });

  it('lets exactly one of many racing campaigns through per recipient under a cap of 1', async () => {
    const prefix = cleanPrefix('respect');
    const racers = Array.from({ length: 8 }, () => adapters(prefix));
    const audience = ids(500, 'u');
    const answers = await Promise.all(racers.map(({ caps }) => caps.reserve(daily(1), audience)));
    for (let i = 0; i < audience.length; i += 1) expect(answers.filter((a) => a[i] !== null).length).toBe(1);
  });

  it('forgets sends once they leave the window (counted in 24 buckets of it)', async () => {
    const { caps, redis, keys } = adapters();
    const cap: FrequencyCap = { max: 1, per: '2s', kinds: [] };
    expect((await caps.reserve(cap, ['a']))[0]).not.toBeNull();
    expect(await caps.reserve(cap, ['a'])).toEqual([null]);
    const started = Date.now();
    await waitFor(async () => (await caps.reserve(cap, ['a']))[0] ?? undefined, { timeoutMs: 5000, intervalMs: 100, what: 'the send to leave the window' });
    expect(Date.now() - started).toBeGreaterThan(1500);
    // Counters expire by themselves: nothing grows with the recipients ever capped.
    const counters = await redis.keys(`${keys.prefix}:{fc*`);
    expect(counters.length).toBe(1);
    expect(await redis.pttl(counters[0]!)).toBeLessThanOrEqual(2200);
  });
});

describe('suppression lists', () => {
  it('finds the first list that holds each id', async () => {
    const { suppressions } = adapters();
    await suppressions.add('global', ['a', 'b']);
    await suppressions.add('token-invalid:fcm', ['b', 'c']);
    expect(await suppressions.find(['global', 'token-invalid:fcm'], ['a', 'b', 'c', 'd'])).toEqual(['global', 'global', 'token-invalid:fcm', undefined]);
    expect(await suppressions.lists()).toEqual([
      { name: 'global', size: 2 },
      { name: 'token-invalid:fcm', size: 2 },
    ]);
    expect(await suppressions.remove('global', ['a', 'zz'])).toBe(1);
  });

  it('replaces a list whole, and keeps the old one when filling fails', async () => {
    const { suppressions } = adapters();
    await suppressions.add('global', ['old']);
    await expect(
      suppressions.replace('global', async (add) => {
        await add(['n1', 'n2']);
        throw new Error('the upload was cut');
      }),
    ).rejects.toThrow('the upload was cut');
    expect(await suppressions.find(['global'], ['old', 'n1'])).toEqual(['global', undefined]);
    expect(await suppressions.replace('global', async (add) => void (await add(['n1', 'n2', 'n1'])))).toBe(2);
    expect(await suppressions.find(['global'], ['old', 'n1'])).toEqual([undefined, 'global']);
  });
});
