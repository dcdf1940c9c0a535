import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { onCleanup } from '../helpers/cleanup.js';
import { Keys } from '../../src/adapters/redis/keys.js';
import { RedisPermitLimiter } from '../../src/adapters/redis/permit-limiter.js';
import { Scripts } from '../../src/adapters/redis/scripts.js';
import { sleepUntil } from '../../src/app/waiting.js';
import type { FlowPace, ProviderLimits } from '../../src/app/ports.js';
import type { PriorityClass } from '../../src/domain/campaign.js';
import { testLimits } from '../helpers/fixtures.js';
import { maxInWindow } from '../helpers/mock-provider.js';
import { cleanPrefix, testConnection } from '../helpers/redis.js';

/**
 * The limiter's second level: a campaign's pace inside its provider's cap,
 * judged where the provider would count (the departure plus a random way
 * there), across processes.
 */
function limiterOn(prefix: string) {
  const redis = testConnection();
  const limiter = new RedisPermitLimiter(redis, new Keys(prefix), new Scripts(redis));
  onCleanup(() => limiter.close());
  return limiter;
}

interface Sender {
  flow: string;
  pace: () => FlowPace | null;
  priority?: PriorityClass;
  /** Arrival times (performance.now()). */
  arrivals: number[];
}

/** `concurrency` senders of each flow on each limiter, sending until `until` (performance.now()). */
async function send(limiters: RedisPermitLimiter[], limits: ProviderLimits, senders: Sender[], until: number, concurrency = 6): Promise<void> {
  const one = async (limiter: RedisPermitLimiter, s: Sender) => {
    while (performance.now() < until) {
      const permits = await limiter.acquire(limits, 4, s.priority ?? 1, s.flow, s.pace());
      await Promise.all(
        permits.map(async (permit) => {
          await sleepUntil(permit.notBefore);
          if (performance.now() >= until) return limiter.giveBack(permit);
          const departed = performance.now();
          await sleep(Math.random() * 8);
          s.arrivals.push(performance.now());
          await sleep(10 + Math.random() * 20);
          limiter.complete(permit, 'healthy', departed);
        }),
      );
    }
  };
  await Promise.all(limiters.flatMap((limiter) => senders.flatMap((s) => Array.from({ length: concurrency }, () => one(limiter, s)))));
}

/** Arrivals a second over [from, to). */
const rate = (arrivals: number[], from: number, to: number) => (arrivals.filter((t) => t >= from && t < to).length * 1000) / (to - from);

describe('a campaign pace in the limiter', () => {
  it('caps the paced campaign in every sliding second and uses ≥ 97% of its pace; the other takes the rest of the cap', async () => {
    const p = cleanPrefix('pace');
    const limits = testLimits({ name: 'shared', tps: 400, timeoutMs: 2000, arrivalMarginMs: 10 });
    const limiters = [limiterOn(p), limiterOn(p)];
    const paced: Sender = { flow: 'paced|main', pace: () => ({ key: 'paced', tps: 100 }), arrivals: [] };
    const free: Sender = { flow: 'free|main', pace: () => null, arrivals: [] };
    const start = performance.now();
    await send(limiters, limits, [paced, free], start + 6000);
    expect(maxInWindow(paced.arrivals)).toBeLessThanOrEqual(100);
    expect(maxInWindow([...paced.arrivals, ...free.arrivals])).toBeLessThanOrEqual(400);
    // After the first second (the flows' first grants), while both have work.
    const pacedRate = rate(paced.arrivals, start + 1000, start + 5500);
    expect(pacedRate).toBeGreaterThanOrEqual(97);
    expect(rate(free.arrivals, start + 1000, start + 5500)).toBeGreaterThanOrEqual(0.9 * (400 - pacedRate));
  });

  it('a pace above the cap is the cap: the flow gets no more slots than the cap has (a million would be a million Redis calls in one script)', async () => {
    const p = cleanPrefix('pace');
    const limits = testLimits({ name: 'huge', tps: 50, timeoutMs: 2000, arrivalMarginMs: 10 });
    const limiter = limiterOn(p);
    const permits = await limiter.acquire(limits, 10, 1, 'huge|main', { key: 'huge', tps: 1_000_000 });
    expect(permits.length).toBeGreaterThan(0);
    permits.forEach((permit) => limiter.giveBack(permit));
    const flowKey = `${new Keys(p).limiter('huge').config}:pace:huge`;
    const redis = testConnection();
    expect(await redis.zcard(flowKey)).toBeGreaterThan(0);
    expect(await redis.zcard(flowKey)).toBeLessThanOrEqual(50);
    expect(Number(await redis.hget(`${flowKey}:s`, 'slots'))).toBeLessThanOrEqual(50);
  });

  it("a paced permit handed back unused in a busy process goes back to Redis at once: another process gets the flow's slot (a paused page resumed elsewhere)", async () => {
    const p = cleanPrefix('pace');
    const limits = testLimits({ name: 'handed', tps: 20, timeoutMs: 2000, arrivalMarginMs: 10 });
    const [busy, other] = [limiterOn(p), limiterOn(p)];
    // Unpaced demand that never ends keeps the busy process's limiter calling Redis.
    const until = performance.now() + 4000;
    const load = send([busy], limits, [{ flow: 'load|main', pace: () => null, arrivals: [] }], until, 12);
    const pace = { key: 'slow', tps: 1 };
    const [held] = await busy.acquire(limits, 1, 1, 'slow|main', pace);
    expect(held).toBeDefined();
    // Its page stopped before sending (paused): the one slot of the flow is handed back unused.
    busy.giveBack(held!);
    const asked = performance.now();
    const [taken] = await other.acquire(limits, 1, 1, 'slow|other', pace);
    other.giveBack(taken!);
    // Not when the busy process's lease on it runs out (timeoutMs + 10 s).
    expect(performance.now() - asked).toBeLessThan(2000);
    await load;
  });

  it('a fractional pace: at most ⌈tps⌉ in any second, tps on average, evenly spread', async () => {
    const p = cleanPrefix('pace');
    const limits = testLimits({ name: 'spread', tps: 1000, timeoutMs: 2000, arrivalMarginMs: 10 });
    const spread: Sender = { flow: 'spread|main', pace: () => ({ key: 'spread', tps: 12.5 }), arrivals: [] };
    const start = performance.now();
    await send([limiterOn(p)], limits, [spread], start + 4200, 3);
    expect(maxInWindow(spread.arrivals)).toBeLessThanOrEqual(13);
    expect(spread.arrivals.length).toBeGreaterThanOrEqual(50);
    expect(spread.arrivals.length).toBeLessThanOrEqual(54);
    // Evenly: no two arrivals much closer than the pace's interval (80 ms) after the first.
    const gaps = spread.arrivals
      .slice()
      .sort((a, b) => a - b)
      .slice(1)
      .map((t, i, all) => t - (i === 0 ? spread.arrivals.slice().sort((a, b) => a - b)[0]! : all[i - 1]!));
    expect(gaps.filter((g) => g < 40).length).toBeLessThanOrEqual(2);
  });

  it('takes a new pace within a second, and none once it is lifted', async () => {
    const p = cleanPrefix('pace');
    const limits = testLimits({ name: 'changing', tps: 300, timeoutMs: 2000, arrivalMarginMs: 10 });
    let tps: number | null = 50;
    const flow: Sender = { flow: 'c|main', pace: () => (tps === null ? null : { key: 'c', tps }), arrivals: [] };
    const start = performance.now();
    const changes = (async () => {
      await sleep(2000);
      tps = 150;
      await sleep(2000);
      tps = null;
    })();
    await send([limiterOn(p)], limits, [flow], start + 6000);
    await changes;
    expect(maxInWindow(flow.arrivals.filter((t) => t < start + 2000))).toBeLessThanOrEqual(50);
    expect(maxInWindow(flow.arrivals.filter((t) => t >= start + 3000 && t < start + 4000))).toBeLessThanOrEqual(150);
    expect(rate(flow.arrivals, start + 3000, start + 4000)).toBeGreaterThanOrEqual(140);
    expect(rate(flow.arrivals, start + 5000, start + 6000)).toBeGreaterThanOrEqual(250);
  });

  it('a high-priority campaign waiting for its own pace does not hold a low-priority one back', async () => {
    const p = cleanPrefix('pace');
    const limits = testLimits({ name: 'classes', tps: 200, timeoutMs: 2000, arrivalMarginMs: 10 });
    const urgent: Sender = { flow: 'u|main', pace: () => ({ key: 'u', tps: 20 }), priority: 0, arrivals: [] };
    const bulk: Sender = { flow: 'b|main', pace: () => null, priority: 2, arrivals: [] };
    const start = performance.now();
    await send([limiterOn(p)], limits, [urgent, bulk], start + 4000);
    expect(rate(urgent.arrivals, start + 1000, start + 4000)).toBeGreaterThanOrEqual(19);
    expect(rate(bulk.arrivals, start + 1000, start + 4000)).toBeGreaterThanOrEqual(150);
  });
});
