import { performance } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { launchCampaign, range, stacksPerTest, waitForStatus } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';
import { maxInWindow, rateIn } from '../helpers/mock-provider.js';

/**
 * A campaign's pace with real processes, judged at the provider: a spread
 * over a given time, a pace under a deadline, pages of a paced run beside
 * another campaign, a pace changed while it sends. (Its share of the cap
 * beside a busy campaign is timed alone: pace-share.test.ts.)
 */
const setup = stacksPerTest();

describe('pace', () => {
  it('spreadOver: 1,000 recipients over 20 s arrive evenly (each 2 s within ±10% of its share)', async () => {
    const stack = await setup({ workers: 2, provider: { tps: 1000 } });
    const { client, mock } = stack;
    const id = await launchCampaign(client, range(1000, 's'), { pace: { spreadOver: '20s' } });
    expect((await client.campaign(id)).counts.pace).toBe(50);
    await waitForStatus(client, id, 'completed', 40_000);
    const times = mock.arrivals.map((a) => a.at).sort((a, b) => a - b);
    expect(times).toHaveLength(1000);
    const start = times[0]!;
    // The whole list over 20 s, give or take 10%.
    expect(times[times.length - 1]! - start).toBeGreaterThan(18_000);
    expect(times[times.length - 1]! - start).toBeLessThan(22_000);
    for (let from = 0; from < 20_000; from += 2000) {
      const n = times.filter((t) => t >= start + from && t < start + from + 2000).length;
      expect(n).toBeGreaterThanOrEqual(90);
      expect(n).toBeLessThanOrEqual(110);
    }
  });

  it('a paced run holds a few pages, not every worker slot: a campaign launched beside it goes out at once (default settings)', async () => {
    // 300/s in pages of 500 (PAGE_SIZE): each page gets a share of the pace, so
    // it is far longer than two seconds from its end when it starts.
    const stack = await setup({ workers: 2, provider: { tps: 1000 } });
    const { client, mock } = stack;
    mock.keepBodies = false;
    const paced = await launchCampaign(client, range(40_000, 'p'), { pace: { tps: 300 } });
    // Long enough for its pages to have filled every slot (16: 2 workers × 8) had they kept letting each other in.
    await waitFor(() => mock.arrivals.length >= 1500, { timeoutMs: 20_000, what: 'five seconds of the paced run' });
    const other = await launchCampaign(client, range(1000, 'o'));
    const launched = performance.now();
    await waitForStatus(client, other, 'completed', 30_000);
    // Its 1,000 at the 700/s the pace leaves take under 2 s; waiting for a paced page to end would take ~25 s.
    expect(performance.now() - launched).toBeLessThan(8000);
    expect(maxInWindow(mock.arrivals.filter((a) => a.campaignId === paced).map((a) => a.at))).toBeLessThanOrEqual(300);
    await client.request('POST', `/api/campaigns/${paced}/cancel`);
  });

  it('a PATCH of pace alone, while the run sends, takes effect within a second', async () => {
    const stack = await setup({ workers: 2, provider: { tps: 1000 } });
    const { client, mock } = stack;
    mock.keepBodies = false;
    const id = await launchCampaign(client, range(3000, 'c'), { pace: { tps: 50 } });
    await waitFor(() => mock.arrivals.length >= 60, { timeoutMs: 10_000, what: 'the first second at 50/s' });
    const refused = await client.request('PATCH', `/api/campaigns/${id}`, { pace: { tps: 200 }, name: 'x' });
    expect(refused.status).toBe(409);
    const patched = await client.request('PATCH', `/api/campaigns/${id}`, { pace: { tps: 200 } });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ pace: { tps: 200 }, counts: { pace: 200 } });
    const changedAt = performance.now();
    await waitFor(() => mock.arrivals.length >= 60 + 600, { timeoutMs: 15_000, what: 'sends at the new pace' });
    const times = mock.arrivals.map((a) => a.at);
    expect(maxInWindow(times.filter((t) => t < changedAt))).toBeLessThanOrEqual(50);
    expect(maxInWindow(times)).toBeLessThanOrEqual(200);
    // From a second after the change on, the new pace.
    expect(rateIn(times, changedAt + 1000, changedAt + 3000)).toBeGreaterThanOrEqual(190);
    await client.request('POST', `/api/campaigns/${id}/cancel`);
  });
});
