import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiClient } from '../helpers/api-client.js';
import type { MockProvider } from '../helpers/mock-provider.js';
import { testRedis } from '../helpers/redis.js';
import { startStack, type Stack } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The user story of the foundation, with real processes: an API process, two
 * worker processes and a provider on loopback. 5,000 recipients go out; each
 * arrives exactly once, with its idempotency key, and the counts add up.
 */
describe('a campaign end to end across processes', () => {
  let stack: Stack;
  let mock: MockProvider;
  let client: ApiClient;

  beforeAll(async () => {
    stack = await startStack({ workers: 2, provider: { tps: 5000 }, env: { PAGE_SIZE: '100' } });
    ({ mock, client } = stack);
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('sends every recipient exactly once and reports counts that add up', async () => {
    const ids = Array.from({ length: 5000 }, (_, i) => `user-${i}`);
    const recipients = ids.map((id, i) => (i % 2 === 0 ? id : { id, locale: 'ko', n: i }));
    const created = await client.createCampaign({ recipients });
    expect(created.status).toBe('draft');
    expect(created.recipientCount).toBe(5000);

    const launched = await client.launch(created.id);
    expect(launched.status).toBe('running');

    const seen: Array<Record<string, number>> = [];
    const done = await waitFor(
      async () => {
        const c = await client.campaign(created.id);
        seen.push(c.counts);
        return c.status === 'completed' ? c : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 100, what: 'the run to complete' },
    );
    for (const counts of seen) {
      expect(counts.sent! + counts.failed! + counts.unknown! + counts.skipped! + counts.pending!).toBe(counts.total);
    }
    expect(done.counts).toEqual({
      total: 5000,
      pending: 0,
      inflight: 0,
      sent: 5000,
      failed: 0,
      unknown: 0,
      skipped: 0,
      deferred: 0,
      deferredBy: {},
      deferredUntil: null,
      skippedBy: {},
      expired: 0,
      pace: null,
    });

    const deliveries = mock.deliveries();
    expect(mock.duplicates()).toBe(0);
    expect(deliveries.size).toBe(5000);
    for (const id of ids) expect(deliveries.get(`${created.id}|main|${id}`)).toBe(1);

    // The wire format: the key in header and body, the recipient's own fields, the message.
    const keys = new Set<string>();
    mock.bodies.forEach((body, i) => {
      expect(mock.headers[i]!['idempotency-key']).toBe(body.idempotencyKey);
      expect(mock.headers[i]!['content-type']).toBe('application/json');
      expect(body.message).toEqual({ title: 'Hello', body: 'World', data: { k: 'v' } });
      keys.add(body.idempotencyKey);
    });
    expect(keys.size).toBe(5000);
    const odd = mock.bodies.find((b) => b.recipient.id === 'user-7')!;
    expect(odd.recipient).toEqual({ id: 'user-7', locale: 'ko', n: 7 });

    const entry = await client.request('GET', `/api/campaigns/${created.id}/recipients/user-7`);
    expect(entry.status).toBe(200);
    expect(entry.body).toMatchObject({ state: 'sent', attempts: 1, lastError: null, runId: 'main' });

    // Both worker processes did part of the work (50 pages of 100).
    const connection = testRedis();
    const queue = new Queue('send', { connection, prefix: stack.prefix });
    try {
      const jobs = await queue.getJobs(['completed']);
      expect(jobs.length).toBeGreaterThanOrEqual(50);
      expect(new Set(jobs.map((j) => j.processedBy)).size).toBe(2);
    } finally {
      await queue.close();
      connection.disconnect();
    }

    const relaunch = await client.request('POST', `/api/campaigns/${created.id}/launch`);
    expect(relaunch.status).toBe(409);
  });
});
