import { describe, expect, it } from 'vitest';
import { launchCampaign, range, stacksPerTest, waitForStatus } from '../helpers/stack.js';
import { maxInWindow, rateIn } from '../helpers/mock-provider.js';

/**
 * A paced campaign's share of the cap beside a busy unpaced one, measured at
 * the provider. A guarantee about rates on this machine: it runs in the
 * `timed` project, after the rest of the suite and alone (vitest.config.ts);
 * beside the other end-to-end tests on two cores it measured their CPU.
 */
const setup = stacksPerTest();

describe('pace', () => {
  it('tps: the paced campaign never exceeds its pace at the provider and uses ≥ 97% of it; the other takes the rest of the cap (default settings)', async () => {
    const stack = await setup({ workers: 2, provider: { tps: 400 } });
    const { client, mock } = stack;
    mock.keepBodies = false;
    const [paced, free] = await Promise.all([launchCampaign(client, range(1200, 'p'), { pace: { tps: 100 } }), launchCampaign(client, range(4000, 'f'))]);
    await waitForStatus(client, paced, 'completed', 60_000);
    await waitForStatus(client, free, 'completed', 60_000);
    const times = (id: string) =>
      mock.arrivals
        .filter((a) => a.campaignId === id)
        .map((a) => a.at)
        .sort((a, b) => a - b);
    const p = times(paced);
    const f = times(free);
    expect(p).toHaveLength(1200);
    expect(maxInWindow(p)).toBeLessThanOrEqual(100);
    expect(maxInWindow([...p, ...f])).toBeLessThanOrEqual(400);
    // While both have work: from a second after the first arrival to a second before the other ends.
    const from = p[0]! + 1000;
    const to = Math.min(p[p.length - 1]!, f[f.length - 1]!) - 1000;
    expect(to - from).toBeGreaterThan(4000);
    const pacedRate = rateIn(p, from, to);
    expect(pacedRate).toBeGreaterThanOrEqual(97);
    expect(rateIn(f, from, to)).toBeGreaterThanOrEqual(0.9 * (400 - pacedRate));
    expect(mock.duplicates()).toBe(0);
  });
});
