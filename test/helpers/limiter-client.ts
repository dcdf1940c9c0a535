/**
 * A process that only rate-limits and sends: N of these hammer one provider
 * key in the multi-process limiter test. Env: REDIS_URL, QUEUE_PREFIX, TPS,
 * TARGET_URL, COUNT (requests this process makes), CONCURRENCY.
 */
import { Redis } from 'ioredis';
import { request } from 'undici';
import { Keys } from '../../src/adapters/redis/keys.js';
import { RedisPermitLimiter } from '../../src/adapters/redis/permit-limiter.js';
import { Scripts } from '../../src/adapters/redis/scripts.js';
import { sleepUntil } from '../../src/app/waiting.js';

const redis = new Redis(process.env.REDIS_URL!, { maxRetriesPerRequest: null });
const limiter = new RedisPermitLimiter(redis, new Keys(process.env.QUEUE_PREFIX!), new Scripts(redis));
const limits = {
  name: 'shared',
  tps: Number(process.env.TPS),
  timeoutMs: 5000,
  arrivalMarginMs: 20,
  breaker: { failures: 1000, coolDownMs: 1000, maxCoolDownMs: 1000 },
};
let left = Number(process.env.COUNT);

async function loop(): Promise<void> {
  while (left > 0) {
    const permits = await limiter.acquire(limits, Math.min(left, 5), 1);
    await Promise.all(
      permits.map(async (permit) => {
        if (left <= 0) return limiter.giveBack(permit);
        left -= 1;
        await sleepUntil(permit.notBefore);
        const res = await request(process.env.TARGET_URL!, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            idempotencyKey: `${process.pid}-${left}`,
            campaignId: 'lim',
            runId: String(process.pid),
            recipient: { id: String(left) },
            message: {},
          }),
        });
        await res.body.dump();
        limiter.complete(permit, res.statusCode === 429 ? 'neutral' : 'healthy');
      }),
    );
  }
}

await Promise.all(Array.from({ length: Number(process.env.CONCURRENCY ?? 8) }, loop));
await limiter.close();
redis.disconnect();
process.stdout.write('done\n');
