/**
 * What the ledger costs Redis per recipient, alone: one process claims and
 * confirms (sent) every recipient of a campaign's pages, in batches as a
 * worker does, against a Redis of its own. Env: REDIS_URL, RECIPIENTS,
 * BATCH. Prints JSON {recipients, redisUs, claimUs, confirmUs}.
 */
import { Redis } from 'ioredis';
import { RedisCampaignStore } from '../src/adapters/redis/campaign-store.js';
import { Keys } from '../src/adapters/redis/keys.js';
import { RedisLedger } from '../src/adapters/redis/redis-ledger.js';
import { RedisRuns } from '../src/adapters/redis/redis-runs.js';
import { Scripts } from '../src/adapters/redis/scripts.js';
import { planLayout, sourceStatesFor } from '../src/domain/campaign.js';
import { newId } from '../src/domain/ids.js';
import { draftRecord } from '../test/helpers/harness.js';

const redis = new Redis(process.env.REDIS_URL!, { maxRetriesPerRequest: null });
const keys = new Keys(`lc${Date.now()}`);
const scripts = new Scripts(redis);
const ledger = new RedisLedger(redis, keys, scripts);
const runs = new RedisRuns(redis, keys, scripts);
const store = new RedisCampaignStore(redis, keys, scripts);
const total = Number(process.env.RECIPIENTS ?? 100_000);
const batch = Number(process.env.BATCH ?? 50);
const pageSize = 500;
const cpu = async () => {
  const info = await redis.info('cpu');
  return Number(/used_cpu_user:([\d.]+)/.exec(info)![1]) + Number(/used_cpu_sys:([\d.]+)/.exec(info)![1]);
};
const id = newId();
await store.create(
  draftRecord(id, planLayout(total, pageSize)),
  Array.from({ length: total }, (_, i) => ({ id: `user-${i}` })),
);
await runs.createRun(id, 'main', { allowedFrom: sourceStatesFor('launch'), statusAfter: 'completed', trigger: 'bench' });
const settle = { inDoubt: 'report' as const, maxAttempts: 5 };
const pages = Array.from({ length: Math.ceil(total / pageSize) }, (_, page) => ({ campaignId: id, runId: 'main', page }));
for (const ref of pages) await ledger.acquirePage(ref, 'T', { leaseMs: 600_000, gen: 1, settle });
const batches = pages.flatMap((ref) => {
  const size = Math.min(pageSize, total - ref.page * pageSize);
  const out = [];
  for (let from = 0; from < size; from += batch) out.push({ ref, indexes: Array.from({ length: Math.min(batch, size - from) }, (_, i) => from + i) });
  return out;
});
// Claims, then confirms, each phase measured whole (INFO costs Redis too).
const start = await cpu();
const claimed = [];
for (const { ref, indexes } of batches) {
  const result = await ledger.claim(
    ref,
    'T',
    600_000,
    indexes.map((index) => ({ index, op: 'claim' as const })),
  );
  if (result.kind !== 'ok') throw new Error(`claim: ${result.kind}`);
  claimed.push({ ref, claimed: result.claimed });
}
const middle = await cpu();
for (const { ref, claimed: those } of claimed) {
  await ledger.confirm(
    ref,
    'T',
    600_000,
    { maxAttempts: 5, maxRequeues: 50 },
    those.map((c) => ({ ...c, outcome: 'sent' as const, delayMs: 0, code: '', message: '' })),
  );
}
const end = await cpu();
process.stdout.write(
  JSON.stringify({
    recipients: total,
    batch,
    redisUs: ((end - start) / total) * 1e6,
    claimUs: ((middle - start) / total) * 1e6,
    confirmUs: ((end - middle) / total) * 1e6,
  }) + '\n',
);
redis.disconnect();
