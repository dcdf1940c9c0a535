import { performance } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { onCleanup } from '../helpers/cleanup.js';
import type { PushqProcess } from '../helpers/processes.js';
import { TEST_REDIS_URL } from '../helpers/redis.js';
import { launchCampaign, range, stacksPerTest, waitForStatus } from '../helpers/stack.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Recovery as shipped: every test here runs with the default settings. A
 * killed worker's pages are taken over within seconds; a healthy worker that
 * pauses (GC) or sees a slow Redis is never taken over.
 */
const start = stacksPerTest();

const TAKEN_OVER = /took over a page|lost the page lease|settled pages whose worker stopped renewing/;

describe('with default settings', () => {
  it('finishes a campaign within 45 s while the oldest worker is SIGKILLed every 2 s (once its replacement is up) until the end, sending nobody twice', async () => {
    const stack = await start({ workers: 3, mock: { latencyMs: 30 }, provider: { tps: 500 } });
    const { client, mock, workers } = stack;
    mock.keepBodies = false;
    const launchedAt = performance.now();
    const id = await launchCampaign(client, range(6000, 'c'));
    let kills = 0;
    const replacements: Array<Promise<PushqProcess>> = [];
    let lastKill = performance.now();
    const churn = setInterval(() => {
      // Every 2 s, or as soon after as the last replacement is up: a kill rate above what the machine can start
      // (a tsx process takes 1 s idle, several under load) would measure process start-up, not recovery.
      if (workers.length < 3 || performance.now() - lastKill < 2000) return;
      lastKill = performance.now();
      const oldest = workers.shift();
      if (!oldest) return;
      void oldest.kill('SIGKILL');
      kills += 1;
      // Replaced at once (not awaited: a start takes a second or two on a loaded machine).
      replacements.push(stack.addWorker());
    }, 100);
    let done;
    try {
      done = await waitForStatus(client, id, 'completed', 45_000);
    } finally {
      clearInterval(churn);
      await Promise.allSettled(replacements);
      const now = await client.campaign(id);
      console.info(`churn test: after ${((performance.now() - launchedAt) / 1000).toFixed(1)} s the run is ${now.status}: ${JSON.stringify(now.counts)}`);
    }
    const seconds = (performance.now() - launchedAt) / 1000;
    const delivered = mock.deliveries().size;
    console.info(
      `churn test (defaults): ${seconds.toFixed(1)} s, kills ${kills}, sent ${done.counts.sent}, unknown ${done.counts.unknown}, delivered ${delivered}, duplicates ${mock.duplicates()}`,
    );
    expect(kills).toBeGreaterThanOrEqual(5);
    expect(mock.duplicates()).toBe(0);
    expect(done.counts).toMatchObject({ total: 6000, pending: 0, failed: 0 });
    expect(done.counts.sent + done.counts.unknown).toBe(6000);
    expect(delivered).toBeGreaterThanOrEqual(done.counts.sent);
    expect(delivered).toBeLessThanOrEqual(done.counts.sent + done.counts.unknown);
  }, 120_000);

  it('never takes over a healthy worker that freezes for a second (a GC pause) or whose Redis answers 500 ms late', async () => {
    const proxy = await startTcpProxy({ port: Number(new URL(TEST_REDIS_URL).port || 6379) });
    onCleanup(() => proxy.close());
    const stack = await start({ workers: 1, mock: { latencyMs: 20 }, provider: { tps: 200 } });
    const { client, mock, workers } = stack;
    const slow = await stack.addWorker({ REDIS_URL: proxy.url });
    proxy.latencyMs = 250; // each way: 500 ms for every answer
    const id = await launchCampaign(client, range(2400, 'h'));
    await waitFor(() => mock.arrivals.length >= 300, { what: '300 arrivals' });
    const frozen = workers[0]!;
    for (let i = 0; i < 3; i += 1) {
      frozen.proc.kill('SIGSTOP');
      await new Promise((r) => setTimeout(r, 1000));
      frozen.proc.kill('SIGCONT');
      await waitFor(() => mock.arrivals.length >= 300 + (i + 1) * 300, { timeoutMs: 30_000, what: 'sending to go on' });
    }
    const done = await waitForStatus(client, id, 'completed', 60_000);
    expect(done.counts).toMatchObject({ total: 2400, sent: 2400, unknown: 0 });
    for (const worker of [frozen, slow]) expect(worker.output).not.toMatch(TAKEN_OVER);
    expect(mock.duplicates()).toBe(0);
  }, 120_000);
});
