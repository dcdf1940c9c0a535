import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import { clockShiftLibrary, startOwnRedis, type OwnRedis } from '../helpers/redis-server.js';
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

const servers: OwnRedis[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await server.kill();
});
const start = stacksPerTest();

describe.skipIf(!available)('a Redis clock that steps', () => {
  it('forward by a minute: no healthy worker loses its pages, nobody is unknown, the cap holds at the provider', async () => {
    const redis = await startOwnRedis({ clockShift: true });
    servers.push(redis);
    const stack = await start({ workers: 2, redisUrl: redis.url, mock: { latencyMs: 20 }, provider: { tps: 300, timeoutMs: 2000 }, env: { LEASE_MS: '3000', SUPERVISOR_INTERVAL_MS: '1000' } });
    const { client, mock } = stack;
    const id = await launchCampaign(client, range(3000, 's'));
    await waitFor(() => mock.arrivals.length >= 600, { what: '600 arrivals' });
    const steppedAt = performance.now();
    redis.shiftClock(60_000);
    const done = await waitForStatus(client, id, 'completed', 60_000);
    const around = mock.arrivals.filter((a) => Math.abs(a.at - steppedAt) < 3000).map((a) => a.at);
    const busiest = mock.maxWindow(1000);
    console.info(`clock step +60 s: sent ${done.counts.sent}, unknown ${done.counts.unknown}, busiest second ${busiest}, arrivals within 3 s of the step ${around.length}`);
    expect(done.counts).toMatchObject({ sent: 3000, unknown: 0 });
    expect(stack.workers.map((w) => w.output).join('\n')).not.toMatch(/lost the page lease/);
    expect(busiest).toBeLessThanOrEqual(300);
    expect(mock.duplicates()).toBe(0);
  });

  it('back by an hour: sending goes on (permits, pacing and leases do not wait an hour)', async () => {
    const redis = await startOwnRedis({ clockShift: true });
    servers.push(redis);
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
