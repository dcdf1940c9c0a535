import { describe, expect, it } from 'vitest';
import { onCleanup } from '../helpers/cleanup.js';
import { startOwnRedis, type OwnRedis } from '../helpers/redis-server.js';
import { launchCampaign, range, stacksPerTest, waitForStatus } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';

/**
 * A master with one replica, and REDIS_WAIT_REPLICAS=1: a claim is sent
 * only once a replica holds it, so a failover to that replica cannot send
 * anyone twice. Judged at the provider, with the replica gone, and frozen
 * (connected, but acknowledging nothing).
 */
const start = stacksPerTest();

async function masterAndReplica(): Promise<{ master: OwnRedis; replica: OwnRedis }> {
  const master = await startOwnRedis({ args: ['--appendonly', 'no'] });
  const replica = await startOwnRedis({ args: ['--appendonly', 'no'], replicaOf: master });
  onCleanup(() => master.kill());
  onCleanup(() => replica.kill());
  await waitFor(async () => (await master.onlineReplicas()) === 1, { what: 'the replica to be in sync' });
  return { master, replica };
}

describe('with REDIS_WAIT_REPLICAS=1', () => {
  it('sends nothing while no replica can acknowledge claims, and carries on once one is back', async () => {
    const { master, replica } = await masterAndReplica();
    const stack = await start({ workers: 1, redisUrl: master.url, provider: { tps: 500 }, env: { REDIS_WAIT_REPLICAS: '1' } });
    await replica.kill();
    await waitFor(async () => (await master.onlineReplicas()) === 0, { what: 'the master to see its replica gone' });
    const id = await launchCampaign(stack.client, range(300, 'w'));
    // Claims are refused (not replicated): nobody is sent while a failover could forget them.
    await waitFor(async () => stack.mock.arrivals.length > 0 || stack.workers[0]!.output.includes('not replicated'), {
      timeoutMs: 10_000,
      what: 'a send, or the worker saying claims are not replicated',
    });
    expect(stack.mock.arrivals.length, 'requests sent while no replica acknowledged').toBe(0);
    await replica.start();
    await waitFor(async () => (await master.onlineReplicas()) === 1, { what: 'the replica back in sync' });
    const done = await waitForStatus(stack.client, id, 'completed', 60_000);
    expect(done.counts).toMatchObject({ total: 300, sent: 300, unknown: 0 });
    expect(stack.mock.duplicates()).toBe(0);
  });

  it('rides out a replica that is connected but acknowledges nothing: no lease lost, nobody unknown, pause within a second', async () => {
    const { master, replica } = await masterAndReplica();
    const stack = await start({ workers: 2, redisUrl: master.url, mock: { latencyMs: 20 }, provider: { tps: 800 }, env: { REDIS_WAIT_REPLICAS: '1' } });
    const { client, mock } = stack;
    mock.keepBodies = false;
    const id = await launchCampaign(client, range(8000, 'z'));
    await waitFor(() => mock.arrivals.length >= 800, { what: '800 arrivals' });
    replica.freeze();
    try {
      await new Promise((r) => setTimeout(r, 5000));
      // A pause while claims cannot be replicated still stops every worker within a second.
      const paused = await client.request('POST', `/api/campaigns/${id}/pause`);
      expect(paused.status).toBe(200);
      const pausedAt = performance.now();
      await new Promise((r) => setTimeout(r, 4000));
      const late = mock.arrivals.filter((a) => a.at > pausedAt + 1000).length;
      expect(late, 'requests that reached the provider more than 1 s after the pause').toBe(0);
    } finally {
      replica.thaw();
    }
    expect((await client.request('POST', `/api/campaigns/${id}/resume`)).status).toBe(200);
    const done = await waitForStatus(client, id, 'completed', 90_000);
    console.info(
      `frozen replica test: sent ${done.counts.sent}, unknown ${done.counts.unknown}, delivered ${mock.deliveries().size}, duplicates ${mock.duplicates()}`,
    );
    expect(mock.duplicates()).toBe(0);
    expect(done.counts).toMatchObject({ total: 8000, sent: 8000, unknown: 0, failed: 0 });
  });
});
