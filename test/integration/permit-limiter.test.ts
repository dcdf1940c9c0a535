import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { onCleanup } from '../helpers/cleanup.js';
import { Redis } from 'ioredis';
import { Keys } from '../../src/adapters/redis/keys.js';
import { RedisPermitLimiter, type PermitLimiterOptions } from '../../src/adapters/redis/permit-limiter.js';
import { Scripts } from '../../src/adapters/redis/scripts.js';
import { sleepUntil } from '../../src/app/waiting.js';
import type { Permit } from '../../src/app/ports.js';
import { testLimits } from '../helpers/fixtures.js';
import { maxInWindow } from '../helpers/mock-provider.js';
import { cleanPrefix, testConnection } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';

function limiterOn(prefix: string, options: PermitLimiterOptions = {}) {
  const redis = testConnection();
  const limiter = new RedisPermitLimiter(redis, new Keys(prefix), new Scripts(redis), options);
  onCleanup(() => limiter.close());
  return { redis, limiter };
}

const prefix = () => cleanPrefix('lim');

async function serverTime(redis: Redis): Promise<number> {
  const [s, us] = await redis.time();
  return Number(s) * 1000 + Math.floor(Number(us) / 1000);
}

describe('the permit limiter', () => {
  it('never lets more than tps requests arrive in any sliding second, across clients', async () => {
    const p = prefix();
    const limits = testLimits({ name: 'capped', tps: 40, timeoutMs: 2000 });
    const clients = [limiterOn(p), limiterOn(p), limiterOn(p)];
    const arrivals: number[] = [];
    const total = 140;
    let started = 0;
    let waited = 0;
    // Each request "arrives" at a random moment between its start and its completion,
    // as a real one does somewhere between write and response.
    const sender = async (limiter: RedisPermitLimiter) => {
      while (started < total) {
        const before = performance.now();
        const permits = await limiter.acquire(limits, 1 + Math.floor(Math.random() * 4), 1);
        if (performance.now() - before > 50) waited += 1;
        await Promise.all(
          permits.map(async (permit) => {
            if (started >= total) return limiter.giveBack(permit);
            started += 1;
            // As a worker does: a permit granted early is used no earlier than its time.
            await sleepUntil(permit.notBefore);
            const latency = Math.random() * 120;
            const arriveAfter = Math.random() * latency;
            await sleep(arriveAfter);
            arrivals.push(performance.now());
            await sleep(latency - arriveAfter);
            limiter.complete(permit, 'healthy');
          }),
        );
      }
    };
    await Promise.all(clients.flatMap(({ limiter }) => Array.from({ length: 8 }, () => sender(limiter))));
    expect(arrivals).toHaveLength(total);
    expect(waited).toBeGreaterThan(0);
    const busiest = maxInWindow(arrivals);
    expect(busiest).toBeLessThanOrEqual(limits.tps);
    // The cap was actually reached, so the check above tested something.
    expect(busiest).toBeGreaterThan(limits.tps / 2);
  });

  it('at a cap where one grant carries many permits, keeps every sliding second within the cap, before and after the cap is lowered', async () => {
    // Starts closer together than a couple of ms are granted as one (lua/permit-lease.lua GRANT_SPAN_MS): at 3,000 tps
    // a grant is several permits, whose units come back at the instants their requests were answered (apart).
    const p = prefix();
    const high = testLimits({ name: 'wide', tps: 3000, timeoutMs: 2000 });
    const low = testLimits({ name: 'wide', tps: 1500, timeoutMs: 2000 });
    const arrivals: number[] = [];
    const grants = new Set<string>();
    let permitsUsed = 0;
    const started = performance.now();
    let lowered = Infinity;
    const sender = async (limiter: RedisPermitLimiter, limits: typeof high, from: number, until: number) => {
      await sleep(from);
      while (performance.now() - started < until) {
        const permits = await limiter.acquire(limits, 40, 1);
        await Promise.all(
          permits.map(async (permit, i) => {
            // Some permits of a grant go back unused (a page ends), the rest are answered at scattered instants.
            if (i % 17 === 16) return limiter.giveBack(permit);
            grants.add(permit.id.split('/')[0]!);
            permitsUsed += 1;
            await sleepUntil(permit.notBefore);
            const latency = Math.random() * 30;
            const arriveAfter = Math.random() * latency;
            await sleep(arriveAfter);
            arrivals.push(performance.now());
            await sleep(latency - arriveAfter);
            limiter.complete(permit, 'healthy');
          }),
        );
      }
    };
    // Several loops per process, as a worker's pages are: demand well above either cap.
    const process = (limits: typeof high) => {
      const { limiter } = limiterOn(p);
      return Promise.all(Array.from({ length: 4 }, () => sender(limiter, limits, 0, 5000)));
    };
    const lowering = async () => {
      await sleep(2500);
      lowered = performance.now();
      await process(low);
    };
    await Promise.all([process(high), process(high), process(high), lowering()]);
    const before = arrivals.filter((at) => at < lowered);
    const after = arrivals.filter((at) => at >= lowered + 1000);
    expect(maxInWindow(before)).toBeLessThanOrEqual(high.tps);
    expect(maxInWindow(after)).toBeLessThanOrEqual(low.tps);
    // The caps were reached (so the checks above tested something), and grants did carry several permits each.
    expect(maxInWindow(before)).toBeGreaterThan(high.tps * 0.9);
    expect(maxInWindow(after)).toBeGreaterThan(low.tps * 0.9);
    expect(permitsUsed / grants.size).toBeGreaterThan(2);
  });

  it('holds every permit of a provider while it is paused (429 with Retry-After)', async () => {
    const p = prefix();
    const { redis, limiter } = limiterOn(p);
    const other = limiterOn(p).limiter;
    const limits = testLimits({ name: 'paused', tps: 100 });
    const first = await limiter.acquire(limits, 1, 1);
    first.forEach((permit) => limiter.giveBack(permit));
    await limiter.pause('paused', 600);
    const pausedUntil = Number(await redis.hget(new Keys(p).limiter('paused').config, 'pausedUntil'));
    const permits = await other.acquire(limits, 1, 1);
    expect(await serverTime(redis)).toBeGreaterThanOrEqual(pausedUntil);
    expect(permits).toHaveLength(1);
  });

  it('takes permits back from a holder that died, one second after its lease ended', async () => {
    const p = prefix();
    const limits = testLimits({ name: 'lost', tps: 2, timeoutMs: 100 });
    const dying = limiterOn(p, { leaseSlackMs: 200 });
    const heldAt = await serverTime(dying.redis);
    // Grants are paced: it may take more than one call to hold both permits.
    const held: Permit[] = [];
    while (held.length < 2) held.push(...(await dying.limiter.acquire(limits, 2 - held.length, 1)));
    expect(new Set(held.map((p) => p.id)).size).toBe(2);
    // The holder vanishes without returning anything.
    dying.redis.disconnect();
    const { redis: survivorRedis, limiter: survivor } = limiterOn(p);
    const permits = await waitFor(() => survivor.acquire(limits, 2, 1), { timeoutMs: 10_000, what: 'recovered permits' });
    expect(permits.length).toBeGreaterThan(0);
    // Granted up to a few ms early; usable from notBefore on.
    const notBefore = Math.max(...permits.map((p) => p.notBefore));
    await sleepUntil(notBefore);
    // Lease (100 + 200 ms) plus the one-second rest, by the server's clock.
    expect(await serverTime(survivorRedis)).toBeGreaterThanOrEqual(heldAt + 300 + 1000);
  });

  it('rests a permit from the answer until the answer time settles, then from the departure plus the margin, and from the answer less the fastest answer time when an answer comes late', async () => {
    const limits = testLimits({ name: 'departures', tps: 1, timeoutMs: 2000, arrivalMarginMs: 10 });
    const { limiter } = limiterOn(prefix(), { flushDelayMs: 1 });
    /** Uses the one slot for a request that left `answerMs` before now and was just answered; resolves with how long until the slot's next start. */
    const turn = async (answerMs: number) => {
      const [permit] = await limiter.acquire(limits, 1, 1);
      await sleepUntil(permit!.notBefore);
      const answeredAt = performance.now();
      limiter.complete(permit!, 'healthy', answeredAt - answerMs);
      const [next] = await limiter.acquire(limits, 1, 1);
      limiter.giveBack(next!);
      return Math.max(performance.now(), next!.notBefore) - answeredAt;
    };
    // The first answer time cannot be trusted yet: a second from the answer.
    expect(await turn(300)).toBeGreaterThanOrEqual(1000);
    // Settled (the slot's next turn comes a second later, and no faster answer): a second and the margin from the departure.
    const steady = await turn(300);
    expect(steady).toBeGreaterThan(1000 - 300);
    expect(steady).toBeLessThan(1000 - 300 + 10 + 100);
    // 300 ms later than the fastest answer: it may have queued on the way in, so it rests from the answer less 300 ms.
    const late = await turn(600);
    expect(late).toBeGreaterThan(1000 - 300);
    expect(late).toBeLessThan(1000 - 300 + 100);
  });

  it('gives unused permits back at once', async () => {
    const p = prefix();
    const limits = testLimits({ name: 'unused', tps: 3 });
    const a = limiterOn(p, { flushDelayMs: 5 });
    const b = limiterOn(p);
    const permits: Permit[] = [];
    while (permits.length < 3) permits.push(...(await a.limiter.acquire(limits, 3, 1)));
    permits.forEach((permit) => a.limiter.giveBack(permit));
    const started = await serverTime(b.redis);
    const again = await b.limiter.acquire(limits, 3, 1);
    expect(again.length).toBeGreaterThan(0);
    // Never used, so no one-second rest: only the pacing (one per 333 ms) applies.
    expect(await serverTime(b.redis)).toBeLessThan(started + 1000);
  });
});
