import { describe, expect, it } from 'vitest';
import { launchCampaign, range, stacksPerTest, waitForStatus } from '../helpers/stack.js';

/**
 * Answers that would keep a recipient going round for ever: every run must
 * reach a final state, whatever a provider keeps saying.
 */
const start = stacksPerTest();

describe('requeues', () => {
  it('are bounded: a recipient the provider rate-limits every time ends failed, and the run completes', async () => {
    const stack = await start({
      workers: 1,
      mock: { respond: (body) => (body.recipient.id === 'hot' ? { status: 429, headers: { 'retry-after': '0' }, body: 'slow down' } : undefined) },
      provider: { tps: 200, maxRequeues: 3 },
    });
    const id = await launchCampaign(stack.client, ['hot', ...range(20, 'cool')]);
    const done = await waitForStatus(stack.client, id, 'completed', 30_000);
    expect(done.counts).toMatchObject({ total: 21, sent: 20, failed: 1 });
    const hot = (await stack.client.request('GET', `/api/campaigns/${id}/recipients/hot`)).body;
    expect(hot).toMatchObject({ state: 'failed', lastError: { code: 'HTTP_429' } });
    // The first try and three requeues.
    expect(stack.mock.arrivals.filter((a) => a.recipientId === 'hot')).toHaveLength(4);
  });
});
