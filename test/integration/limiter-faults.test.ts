import { performance } from 'node:perf_hooks';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { onCleanup } from '../helpers/cleanup.js';
import { Keys } from '../../src/adapters/redis/keys.js';
import { RedisPermitLimiter, type PermitLimiterOptions } from '../../src/adapters/redis/permit-limiter.js';
import { Scripts } from '../../src/adapters/redis/scripts.js';
import { sleepUntil } from '../../src/app/waiting.js';
import type { Permit, ProviderLimits } from '../../src/app/ports.js';
import { testLimits } from '../helpers/fixtures.js';
import { maxInWindow } from '../helpers/mock-provider.js';
import { cleanPrefix, testConnection } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The limiter under the faults a fleet of workers meets: a circuit probe
 * that says nothing, a permit handed back after its lease ended and it was
 * granted again, processes that disagree about a provider's tps during a
 * rolling config change.
 */
function limiterOn(prefix: string, options: PermitLimiterOptions = {}) {
  const redis = testConnection();
  const limiter = new RedisPermitLimiter(redis, new Keys(prefix), new Scripts(redis), options);
  onCleanup(() => limiter.close());
  return limiter;
}

const prefix = () => cleanPrefix('limfault');

/** Resolves with what `promise` gives within `ms`, or with 'timeout'. */
function within<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  return Promise.race([promise, sleep(ms).then(() => 'timeout' as const)]);
}

describe('the circuit breaker', () => {
  it('lets another probe through when a half-open probe answers neither good nor bad (a 429, a refused stream)', async () => {
    const limits = testLimits({ name: 'flaky', tps: 50, breaker: { failures: 2, coolDownMs: 300, maxCoolDownMs: 1000 } });
    const limiter = limiterOn(prefix(), { flushDelayMs: 1 });
    // Two transient failures in a row open the circuit.
    for (let i = 0; i < 2; i += 1) {
      const [permit] = await limiter.acquire(limits, 1, 1);
      limiter.complete(permit!, 'failed');
    }
    const state = await waitFor(async () => ((await limiter.state(limits)).breaker === 'open' ? 'open' : undefined), { what: 'the circuit to open' });
    expect(state).toBe('open');
    // After the cool-down, one probe; it is rate limited (neutral).
    const [probe] = await limiter.acquire(limits, 1, 1);
    limiter.complete(probe!, 'neutral');
    // The provider must get another probe; it never sent again before.
    const next = await within(limiter.acquire(limits, 1, 1), 5000);
    expect(next, 'a permit after a neutral probe').not.toBe('timeout');
  });
});

describe('permit identity', () => {
  it('never frees a permit that was granted again after its lease ended, when the first holder hands it back late', async () => {
    const p = prefix();
    const limits = (timeoutMs: number) => testLimits({ name: 'one', tps: 1, timeoutMs, breaker: { failures: 100, coolDownMs: 1000, maxCoolDownMs: 1000 } });
    // A: a worker cut off from Redis longer than its permit lease (timeout + slack).
    const a = limiterOn(p, { leaseSlackMs: 100, flushDelayMs: 1 });
    const [late] = await a.acquire(limits(100), 1, 1);
    // B gets the same slot once A's lease ran out and the permit rested, and holds it.
    const b = limiterOn(p, { flushDelayMs: 1 });
    const [held] = await waitFor(() => b.acquire(limits(5000), 1, 1), { timeoutMs: 10_000, what: 'the permit again' });
    // tps 1: one unit, so B holds the unit A held, under a grant of its own.
    expect(held!.id).not.toBe(late!.id);
    // A comes back and reports its request completed.
    a.complete(late!, 'healthy');
    // C must not get a permit while B holds the only one (tps 1).
    const c = limiterOn(p, { flushDelayMs: 1 });
    const got = await within(c.acquire(limits(5000), 1, 1), 2500);
    expect(got, 'a second holder of a tps-1 provider').toBe('timeout');
    b.giveBack(held!);
  });

  it('keeps the cap through a rolling tps change (processes configured with different tps for one provider)', async () => {
    const p = prefix();
    const breaker = { failures: 1000, coolDownMs: 1000, maxCoolDownMs: 1000 };
    const oldConfig = testLimits({ name: 'rolling', tps: 8, timeoutMs: 2000, breaker });
    const newConfig = testLimits({ name: 'rolling', tps: 4, timeoutMs: 2000, breaker });
    const arrivals: number[] = [];
    const started = performance.now();
    const sender = async (limiter: RedisPermitLimiter, limits: ProviderLimits) => {
      while (performance.now() - started < 6000) {
        const permits = await limiter.acquire(limits, 2, 1);
        await Promise.all(
          permits.map(async (permit: Permit) => {
            await sleepUntil(permit.notBefore);
            arrivals.push(performance.now());
            await sleep(20);
            limiter.complete(permit, 'healthy');
          }),
        );
      }
    };
    await Promise.all([
      ...Array.from({ length: 4 }, () => sender(limiterOn(p), oldConfig)),
      ...Array.from({ length: 4 }, () => sender(limiterOn(p), newConfig)),
    ]);
    // The lower value holds as soon as a process that has it asks (a cap is lowered because the provider's is):
    // after the first second, whichever value a process has, no sliding second sees more than the lower one.
    const settled = arrivals.filter((at) => at - started >= 1000);
    expect(maxInWindow(settled)).toBeLessThanOrEqual(newConfig.tps);
    // The cap was reached, so the check tested something.
    expect(maxInWindow(settled)).toBeGreaterThanOrEqual(newConfig.tps - 1);
  });
});

describe('a rolling upgrade', () => {
  it('gets back, within a minute, the cap a worker of the earlier layout loses when it meets a block of permits', async () => {
    const p = prefix();
    const limits = testLimits({ name: 'upgrade', tps: 4, timeoutMs: 2000 });
    const keys = new Keys(p).limiter('upgrade');
    const redis = testConnection();
    // This version's worker makes the provider's permits (one block of 4 units) and hands one back.
    const current = limiterOn(p, { flushDelayMs: 1 });
    const [first] = await current.acquire(limits, 1, 1);
    current.giveBack(first!);
    await current.close();
    // A worker of the earlier version (its script, its arguments) takes the block as one slot once it is free...
    const v1 = readFileSync(new URL('../helpers/permit-lease-v1.lua', import.meta.url), 'utf8');
    const call = (completed: string[]) =>
      redis.eval(
        v1,
        4,
        keys.free,
        keys.held,
        keys.config,
        keys.retired,
        4,
        completed.length > 0 ? 0 : 1,
        12_000,
        1002,
        1,
        1000,
        1000,
        1000,
        50,
        -1,
        completed.length / 3,
        0,
        ...completed,
      ) as Promise<Array<string | number>>;
    const granted = await waitFor(
      async () => {
        const reply = await call([]);
        return reply.length > 2 ? String(reply[2]) : undefined;
      },
      { timeoutMs: 5000, what: 'a grant for the earlier version' },
    );
    // ...and fails to read it when it hands it back: the block is off the held set, the units lost.
    await expect(call([granted, '0', 's'])).rejects.toThrow();
    // A minute later (by the limiter's audit clock), every unit is there again: four permits at once.
    await redis.hset(keys.config, 'auditAt', 0);
    const next = limiterOn(p, { flushDelayMs: 1 });
    const held: Permit[] = [];
    const all = async () => {
      while (held.length < 4) held.push(...(await next.acquire(limits, 4 - held.length, 1)));
      return held.length;
    };
    expect(await within(all(), 5000), 'all four permits of the cap').toBe(4);
    expect(held).toHaveLength(4);
    held.forEach((permit) => next.giveBack(permit));
  });
});
