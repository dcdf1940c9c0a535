import { performance } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { ApiClient } from '../helpers/api-client.js';
import { launchCampaign, range, stacksPerTest, waitForStatus, type Stack, type StackOptions } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The provider pushes back (429, outages) and campaigns share it: real
 * processes against a loopback provider, judged at the provider.
 */
const start = stacksPerTest();

async function setup(options: StackOptions): Promise<Stack> {
  const stack = await start({ ...options, env: { PAGE_SIZE: '50', ...options.env } });
  stack.mock.keepBodies = false;
  return stack;
}

async function launch(client: ApiClient, ids: string[], priority?: string): Promise<string> {
  return launchCampaign(client, ids, priority ? { priority } : {});
}

const completed = (client: ApiClient, id: string) => waitForStatus(client, id, 'completed');

describe('a provider that pushes back', () => {
  it('slows every worker down on 429 and retries without spending attempts', async () => {
    // The provider really takes 100/s; it was configured as 200/s.
    const { mock, client } = await setup({ mock: { cap: 100, retryAfterSeconds: 1 }, provider: { tps: 200, maxAttempts: 2 }, workers: 2 });
    const id = await launch(client, range(800, 'r'));
    const slowed = await waitFor(async () => {
      const state = (await client.request('GET', '/api/providers/mock')).body;
      return state.rate < 1 ? state : undefined;
    });
    expect(slowed).toMatchObject({ name: 'mock', tps: 200, breaker: 'closed' });
    const done = await completed(client, id);
    expect(done.counts).toMatchObject({ sent: 800, failed: 0, unknown: 0 });
    expect(mock.duplicates()).toBe(0);
    const rejected = mock.arrivals.filter((a) => a.status === 429);
    console.info(`429 test: ${mock.arrivals.length} requests, ${rejected.length} answered 429, busiest second ${mock.maxWindow()}`);
    expect(rejected.length).toBeGreaterThan(0);
    // Without a shared pause and a lower pace, half of all requests would bounce.
    expect(rejected.length).toBeLessThan(200);
    // 429s cost no attempt: even recipients rejected more than once (maxAttempts 2) were sent.
    for (const recipientId of new Set(rejected.slice(0, 20).map((a) => a.recipientId))) {
      const entry = await client.request('GET', `/api/campaigns/${id}/recipients/${recipientId}`);
      expect(entry.body).toMatchObject({ state: 'sent', attempts: 1 });
    }
    const metrics = await (await fetch(`${client.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/pushq_provider_rate_ratio\{provider="mock"\} [0-9.]+/);
  });

  it('opens the circuit on consecutive failures, probes, and closes it once the provider is back', async () => {
    let healthy = false;
    const { mock, client } = await setup({
      mock: { respond: () => (healthy ? undefined : { status: 503, body: 'down' }) },
      provider: { tps: 100, maxAttempts: 50, retryBaseMs: 20, retryMaxMs: 100, breaker: { failures: 5, coolDownMs: 400, maxCoolDownMs: 2000 } },
      workers: 1,
    });
    const id = await launch(client, range(100, 'b'));
    const open = await waitFor(async () => {
      const state = (await client.request('GET', '/api/providers/mock')).body;
      return state.breaker === 'open' ? state : undefined;
    });
    expect(open.consecutiveFailures).toBeGreaterThanOrEqual(5);
    expect((await (await fetch(`${client.baseUrl}/metrics`)).text()).match(/pushq_provider_breaker_state\{provider="mock"\} 2/)).not.toBeNull();
    // Requests already granted when it opened may still arrive; after that, one probe per cool-down.
    await waitFor(() => mock.arrivals.length > 0 && performance.now() - mock.arrivals.at(-1)!.at > 50, { what: 'in-flight requests to land' });
    const settled = mock.arrivals.length;
    const settledAt = performance.now();
    await waitFor(() => mock.arrivals.length >= settled + 2, { what: 'two probes' });
    // Two probes need two cool-downs (400 ms, then 800 ms): an open circuit holds the provider off.
    expect(performance.now() - settledAt).toBeGreaterThanOrEqual(400);
    healthy = true;
    const done = await completed(client, id);
    expect(done.counts).toMatchObject({ sent: 100, failed: 0 });
    expect((await client.request('GET', '/api/providers/mock')).body.breaker).toBe('closed');
    expect(mock.duplicates()).toBe(0);
  });
});

describe('campaigns sharing a provider', () => {
  it('does not starve a small campaign behind a big one', async () => {
    const { client } = await setup({ mock: {}, provider: { tps: 200 }, workers: 2 });
    const big = await launch(client, range(4000, 'big'));
    await waitFor(async () => (await client.campaign(big)).counts.sent >= 200);
    const small = await launch(client, range(100, 'small'));
    await completed(client, small);
    // Alone, the big one would need 20 s; the small one finished long before.
    const bigNow = await client.campaign(big);
    console.info(`fairness test: the big campaign had sent ${bigNow.counts.sent} of 4000 when the small one completed`);
    expect(bigNow.status).toBe('running');
    expect(bigNow.counts.sent).toBeLessThan(2000);
  });

  it('serves a high-priority campaign before a low-priority one', async () => {
    const { client } = await setup({ mock: {}, provider: { tps: 200 }, workers: 2 });
    const low = await launch(client, range(3000, 'low'), 'low');
    await waitFor(async () => (await client.campaign(low)).counts.sent >= 200);
    const high = await launch(client, range(400, 'high'), 'high');
    await waitFor(async () => (await client.campaign(high)).counts.sent > 0);
    const lowAtStart = (await client.campaign(low)).counts.sent;
    await completed(client, high);
    const lowAtEnd = (await client.campaign(low)).counts.sent;
    console.info(`priority test: the low campaign sent ${lowAtEnd - lowAtStart} while the high one sent 400`);
    // While the high one had work waiting, the low one got (nearly) nothing.
    expect(lowAtEnd - lowAtStart).toBeLessThan(80);
  });
});
