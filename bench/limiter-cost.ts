/**
 * What the limiter costs Redis per permit, alone: one process takes and
 * completes permits at an uncapped rate against a Redis of its own. Env:
 * REDIS_URL, PERMITS. Prints JSON {permits, redisUs, calls}.
 */
import { Redis } from 'ioredis';
import { Keys } from '../src/adapters/redis/keys.js';
import { RedisPermitLimiter } from '../src/adapters/redis/permit-limiter.js';
import { Scripts } from '../src/adapters/redis/scripts.js';

const redis = new Redis(process.env.REDIS_URL!, { maxRetriesPerRequest: null });
const limiter = new RedisPermitLimiter(redis, new Keys('lc'), new Scripts(redis));
const limits = { name: 'cost', tps: 100_000, timeoutMs: 5000, arrivalMarginMs: 20, breaker: { failures: 1000, coolDownMs: 1000, maxCoolDownMs: 1000 } };
const total = Number(process.env.PERMITS ?? 200_000);
const cpu = async () => {
  const info = await redis.info('cpu');
  return Number(/used_cpu_user:([\d.]+)/.exec(info)![1]) + Number(/used_cpu_sys:([\d.]+)/.exec(info)![1]);
};
// Warm-up: the cap's slots are made by the first call.
for (const p of await limiter.acquire(limits, 10, 1)) limiter.complete(p, 'healthy');
const before = await cpu();
let left = total;
async function loop(): Promise<void> {
  while (left > 0) {
    const permits = await limiter.acquire(limits, Math.min(left, 100), 1);
    left -= permits.length;
    for (const p of permits) limiter.complete(p, 'healthy');
  }
}
await Promise.all(Array.from({ length: 8 }, loop));
await limiter.close();
const after = await cpu();
process.stdout.write(JSON.stringify({ permits: total, redisUs: ((after - before) / total) * 1e6, calls: limiter.stats.calls }) + '\n');
redis.disconnect();
