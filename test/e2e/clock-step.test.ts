import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { onCleanup } from '../helpers/cleanup.js';
import { clockShiftLibrary, startOwnRedis } from '../helpers/redis-server.js';
import { launchCampaign, range, stacksPerTest, waitForStatus } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Redis's wall clock steps (an NTP step, a failover to a node whose clock
 * differs) while a campaign runs: a Redis of the test's own whose clock the
 * test moves (test/helpers/native/clock-shift.c). Leases and permit rests
 * are durations; a step must neither end them early (a takeover of healthy
 * workers, the cap broken) nor stretch them (a provider stalled for an hour).
 */
const available = clockShiftLibrary() !== null;
if (!available) console.warn('clock-step tests skipped: no C compiler (cc) to build test/helpers/native/clock-shift.c');

const start = stacksPerTest();

describe.skipIf(!available)('a Redis clock that steps', () => {
  it('forward by a minute: no healthy worker loses its pages, nobody is unknown, the cap holds at the provider', async () => {
    const redis = await startOwnRedis({ clockShift: true });
    onCleanup(() => redis.kill());
    let pushingBack = false;
    const stack = await start({
      workers: 2,
      redisUrl: redis.url,
      mock: { latencyMs: 20, respond: () => (pushingBack ? { status: 429, headers: { 'retry-after': '2' }, body: 'slow down' } : undefined) },
      provider: { tps: 300, timeoutMs: 2000 },
    });
    const { client, mock } = stack;
    const id = await launchCampaign(client, range(3000, 's'));
    await waitFor(() => mock.arrivals.length >= 600, { what: '600 arrivals' });
    // The provider pushes back: every worker holds off, its pages wait for permits and only renew their leases.
    pushingBack = true;
    await waitFor(() => mock.count(429) > 0, { what: 'a 429' });
    redis.shiftClock(60_000);
    // The pushback lasts 1.5 s past the step (the fault's duration, not a wait for anything): the workers ride it out across the step.
    await sleep(1500);
    pushingBack = false;
    const done = await waitForStatus(client, id, 'completed', 60_000);
    const busiest = mock.maxWindow(1000);
    console.info(`clock step +60 s: sent ${done.counts.sent}, unknown ${done.counts.unknown}, busiest second ${busiest}, 429s ${mock.count(429)}`);
    expect(done.counts).toMatchObject({ sent: 3000, unknown: 0 });
    expect(stack.workers.map((w) => w.output).join('\n')).not.toMatch(/lost the page lease|took over a page/);
    expect(stack.api.output + stack.workers.map((w) => w.output).join('\n')).not.toMatch(/settled pages whose worker stopped renewing/);
    expect(busiest).toBeLessThanOrEqual(300);
    expect(mock.duplicates()).toBe(0);
  });

  it('back by an hour: sending goes on (permits, pacing and leases do not wait an hour)', async () => {
    const redis = await startOwnRedis({ clockShift: true });
    onCleanup(() => redis.kill());
    const stack = await start({ workers: 1, redisUrl: redis.url, provider: { tps: 300 } });
    const { client, mock } = stack;
    const id = await launchCampaign(client, range(2000, 'b'));
    await waitFor(() => mock.arrivals.length >= 300, { what: '300 arrivals' });
    redis.shiftClock(-3_600_000);
    const done = await waitForStatus(client, id, 'completed', 30_000);
    expect(done.counts).toMatchObject({ sent: 2000, unknown: 0 });
    expect(mock.maxWindow(1000)).toBeLessThanOrEqual(300);
  });
});
