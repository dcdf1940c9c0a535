import { afterEach, describe, expect, it } from 'vitest';
import type { ApiClient } from '../helpers/api-client.js';
import type { MockProvider } from '../helpers/mock-provider.js';
import { startOwnRedis, type OwnRedis } from '../helpers/redis-server.js';
import { launchCampaign, range, startStack, waitForStatus } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Crash safety with real processes: workers killed with SIGKILL or stopped
 * with SIGTERM mid-run, and Redis itself killed and restarted. Judged at the
 * provider: nobody gets a message twice, and every recipient is accounted for.
 */
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function setup(options: { redisUrl?: string; tps: number; latencyMs: number; workers: number }) {
  const stack = await startStack({
    workers: options.workers,
    redisUrl: options.redisUrl,
    mock: { latencyMs: options.latencyMs },
    provider: { tps: options.tps },
    // Short leases so a lost worker's pages come back within seconds.
    env: { PAGE_SIZE: '100', LEASE_MS: '2000', STALLED_INTERVAL_MS: '2000', SUPERVISOR_INTERVAL_MS: '1000', STALL_MS: '5000' },
  });
  cleanups.push(() => stack.stop());
  return stack;
}

const launch = (client: ApiClient, n: number) => launchCampaign(client, range(n, 'u'));
const completed = (client: ApiClient, id: string) => waitForStatus(client, id, 'completed', 90_000);

function delivered(mock: MockProvider): number {
  return mock.deliveries().size;
}

describe('crash safety', () => {
  it('loses nothing and sends nothing twice when a worker is SIGKILLed mid-run', async () => {
    const { mock, workers, client, addWorker } = await setup({ tps: 400, latencyMs: 40, workers: 2 });
    const id = await launch(client, 3000);
    await waitFor(() => delivered(mock) >= 600, { what: '600 deliveries' });
    await workers[0]!.kill('SIGKILL');
    // A replacement arrives later, as in a real deployment.
    await addWorker();
    const done = await completed(client, id);
    const { counts } = done;
    console.info(`SIGKILL test: kills 1, sent ${counts.sent}, unknown ${counts.unknown}, delivered ${delivered(mock)}, duplicates ${mock.duplicates()}`);
    expect(mock.duplicates()).toBe(0);
    expect(counts.sent + counts.failed + counts.unknown + counts.skipped).toBe(3000);
    expect(counts.failed).toBe(0);
    // The provider got every sent one, and of the unknown ones some, maybe all, maybe none.
    expect(delivered(mock)).toBeGreaterThanOrEqual(counts.sent);
    expect(delivered(mock)).toBeLessThanOrEqual(counts.sent + counts.unknown);
    const unknown = await client.request('GET', `/api/campaigns/${id}/failures?limit=100`);
    expect(unknown.body.items.length).toBe(Math.min(100, counts.unknown));
    for (const item of unknown.body.items) expect(item).toMatchObject({ state: 'unknown', error: { code: 'LEASE_EXPIRED' } });
  });

  it('hands work over without any unknown when a worker gets SIGTERM mid-run', async () => {
    const { mock, workers, client } = await setup({ tps: 400, latencyMs: 40, workers: 2 });
    const id = await launch(client, 2000);
    await waitFor(() => delivered(mock) >= 400, { what: '400 deliveries' });
    const stopped = await workers[0]!.kill('SIGTERM');
    expect(stopped.code).toBe(0);
    expect(workers[0]!.output).toMatch(/"msg":"stopped"/);
    const done = await completed(client, id);
    expect(done.counts).toEqual({ total: 2000, pending: 0, inflight: 0, sent: 2000, failed: 0, unknown: 0, skipped: 0 });
    expect(mock.duplicates()).toBe(0);
    expect(delivered(mock)).toBe(2000);
  });

  it('carries on by itself after Redis is killed and restarted mid-run (AOF, fsync always)', async () => {
    const own: OwnRedis = await startOwnRedis(['--appendonly', 'yes', '--appendfsync', 'always']);
    cleanups.push(() => own.kill());
    const { mock, client } = await setup({ redisUrl: own.url, tps: 500, latencyMs: 20, workers: 2 });
    const id = await launch(client, 3000);
    await waitFor(() => delivered(mock) >= 700, { what: '700 deliveries' });
    await own.kill('SIGKILL');
    await own.start();
    const done = await waitFor(
      async () => {
        const res = await client.request('GET', `/api/campaigns/${id}`);
        return res.status === 200 && res.body.status === 'completed' ? res.body : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 250, what: 'completion after the Redis restart' },
    );
    console.info(`Redis restart test: sent ${done.counts.sent}, unknown ${done.counts.unknown}, delivered ${delivered(mock)}, duplicates ${mock.duplicates()}`);
    expect(mock.duplicates()).toBe(0);
    expect(done.counts.sent + done.counts.unknown).toBe(3000);
    expect(delivered(mock)).toBeGreaterThanOrEqual(done.counts.sent);
    expect(delivered(mock)).toBeLessThanOrEqual(done.counts.sent + done.counts.unknown);
  });
});
