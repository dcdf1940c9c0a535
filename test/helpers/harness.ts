import type { Redis } from 'ioredis';
import { RedisCampaignStore } from '../../src/adapters/redis/campaign-store.js';
import { Keys } from '../../src/adapters/redis/keys.js';
import { RedisLedger } from '../../src/adapters/redis/redis-ledger.js';
import { Scripts } from '../../src/adapters/redis/scripts.js';
import { planLayout, sourceStatesFor } from '../../src/domain/campaign.js';
import { newId } from '../../src/domain/ids.js';
import type { StoredRecipient } from '../../src/domain/recipient.js';
import { testRedis, uniquePrefix } from './redis.js';

/** Real Redis adapters under a fresh prefix, for integration tests. */
export function redisHarness(label: string, options: { redis?: Redis; prefix?: string } = {}) {
  const redis = options.redis ?? testRedis();
  const prefix = options.prefix ?? uniquePrefix(label);
  const keys = new Keys(prefix);
  const scripts = new Scripts(redis);
  const ledger = new RedisLedger(redis, keys, scripts);
  const store = new RedisCampaignStore(redis, keys, scripts);

  async function createCampaign(recipients: StoredRecipient[], pageSize = 100, provider = 'sim') {
    const id = newId();
    const layout = planLayout(recipients.length, pageSize);
    await store.create({ id, name: 'n', provider, message: { title: 't', body: 'b', data: {} }, priority: 'normal', maxAttempts: null, kind: 'transactional', quietHours: null, suppressionLists: ['global'], frequencyCap: null, createdAt: Date.now(), layout }, recipients);
    return id;
  }

  async function startRun(campaignId: string, runId = 'main') {
    const result = await ledger.createRun(campaignId, runId, { allowedFrom: sourceStatesFor('launch'), statusAfter: 'completed', trigger: 'test' });
    if (!result.ok) throw new Error(`createRun: ${result.reason}`);
    return runId;
  }

  return { redis, prefix, keys, scripts, ledger, store, createCampaign, startRun };
}

export function ids(n: number, label = 'r'): string[] {
  return Array.from({ length: n }, (_, i) => `${label}${i}`);
}
