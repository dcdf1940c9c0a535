import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { Keys } from '../../src/adapters/redis/keys.js';
import { ApiClient } from '../helpers/api-client.js';
import { onCleanup, testPrefix } from '../helpers/cleanup.js';
import { providersFile, TEST_TOKEN } from '../helpers/fixtures.js';
import { startInProcess } from '../helpers/in-process.js';
import { deletePrefix, keysWithPrefix, testRedis } from '../helpers/redis.js';
import { range } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Deleting a campaign: refused while it sends, everything of it gone from
 * Redis afterwards (removed by a worker in bounded steps), the archive kept
 * unless asked, and a launch racing the delete never half-happens.
 */
async function pushq(env: Record<string, string> = {}) {
  const prefix = testPrefix('del');
  const redis = testRedis();
  onCleanup(() => deletePrefix(redis, prefix));
  const dir = mkdtempSync(join(tmpdir(), 'pushq-delete-'));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const running = await startInProcess(prefix, {
    ARCHIVE_DIR: dir,
    PROVIDERS_FILE: providersFile([
      { name: 'sim', type: 'sim', tps: 50_000, latencyMs: 0 },
      { name: 'slow', type: 'sim', tps: 1, latencyMs: 0 },
      // Answers after 100 ms: a launched run is still running when a delete a few ms behind arrives.
      { name: 'race', type: 'sim', tps: 50_000, latencyMs: 100 },
    ]),
    MIN_SCHEDULE_INTERVAL_MS: '1000',
    ...env,
  });
  onCleanup(() => running.stop());
  const client = new ApiClient(running.url!, TEST_TOKEN);
  const keys = new Keys(prefix);
  /** Every key of the campaign (its hash tag), and whether the global sets still name it. */
  const traces = async (id: string) => {
    const own = await keysWithPrefix(redis, keys.campaignBase(id));
    const listed = (await redis.zscore(keys.campaignIndex(), id)) !== null || (await redis.zscore(keys.deletions(), id)) !== null;
    const retained = (await redis.zrange(keys.retention(), 0, -1)).filter((m) => m.startsWith(`${id}|`));
    const active = (await redis.smembers(keys.activeRuns())).filter((m) => m.startsWith(`${id}|`));
    return [...own, ...(listed ? ['(listed)'] : []), ...retained, ...active];
  };
  const create = async (n: number, extra: Record<string, unknown> = {}) =>
    (await client.createCampaign({ provider: 'sim', recipients: range(n, 'r'), ...extra })).id as string;
  return { prefix, redis, dir, client, traces, create };
}

describe('DELETE /api/campaigns/:id', () => {
  it('removes a finished campaign, its list, runs and ledgers from Redis; 404 afterwards; the archive stays unless purgeArchive', async () => {
    const { client, traces, create, dir } = await pushq({ RUN_RETENTION_MS: '1000' });
    const kept = await create(300);
    const purged = await create(300);
    for (const id of [kept, purged]) await client.launch(id);
    for (const id of [kept, purged]) {
      await waitFor(async () => (await client.request('GET', `/api/campaigns/${id}`)).body.latestRun?.archived === true, {
        timeoutMs: 30_000,
        what: 'the run archived',
      });
    }
    expect(readdirSync(join(dir, kept)).sort()).toEqual(['main.manifest.json', 'main.ndjson.gz']);

    const answer = await client.request('DELETE', `/api/campaigns/${kept}`);
    expect(answer.status).toBe(202);
    expect(answer.body).toEqual({ id: kept, status: 'deleting', removes: { recipients: 300, runs: 1, schedule: false }, archive: 'kept' });
    expect((await client.request('GET', `/api/campaigns/${kept}`)).status).toBe(404);
    expect((await client.request('GET', '/api/campaigns')).body.items.map((c: { id: string }) => c.id)).not.toContain(kept);
    expect((await client.request('DELETE', `/api/campaigns/${purged}?purgeArchive=true`)).body.archive).toBe('purged');

    for (const id of [kept, purged]) await waitFor(async () => (await traces(id)).length === 0, { what: `every key of ${id} removed` });
    // Gone for good: a second delete is a 404, like any unknown id.
    expect((await client.request('DELETE', `/api/campaigns/${kept}`)).status).toBe(404);
    expect(readdirSync(join(dir, kept)).sort()).toEqual(['main.manifest.json', 'main.ndjson.gz']);
    expect(existsSync(join(dir, purged))).toBe(false);
  });

  it('refuses a running or paused campaign (cancel first) and takes a cron campaign with its schedule', async () => {
    const { client, traces, create, prefix } = await pushq();
    // At 1 TPS a run of 20 sends for 20 s: paused, then running again, it is refused both times.
    const slow = await create(20, { provider: 'slow' });
    await client.launch(slow);
    for (const state of ['running', 'paused']) {
      if (state === 'paused') expect((await client.request('POST', `/api/campaigns/${slow}/pause`)).status).toBe(200);
      const refused = await client.request('DELETE', `/api/campaigns/${slow}`);
      expect(refused.status, state).toBe(409);
      expect(refused.body.error.message).toMatch(new RegExp(`it is ${state}.*Cancel it first`));
      expect((await client.request('GET', `/api/campaigns/${slow}`)).body.status).toBe(state);
    }
    // Cancelled, it goes (once the request in flight, if any, is recorded).
    expect((await client.request('POST', `/api/campaigns/${slow}/cancel`)).status).toBe(200);
    await waitFor(async () => (await client.request('DELETE', `/api/campaigns/${slow}`)).status === 202, { what: 'the cancelled campaign deleted' });
    await waitFor(async () => (await traces(slow)).length === 0, { what: 'the cancelled campaign removed' });

    const cron = await create(10);
    expect((await client.request('POST', `/api/campaigns/${cron}/schedule`, { cron: '0 0 9 * * *', timezone: 'Asia/Seoul' })).status).toBe(200);
    const schedules = new Queue('schedule', { connection: { host: '127.0.0.1', port: 6379 }, prefix });
    onCleanup(() => schedules.close());
    expect(await schedules.getJobSchedulersCount()).toBe(1);
    const answer = await client.request('DELETE', `/api/campaigns/${cron}`);
    expect(answer.status).toBe(202);
    expect(answer.body.removes).toEqual({ recipients: 10, runs: 0, schedule: true });
    expect(await schedules.getJobSchedulersCount()).toBe(0);
    // While it is being removed, asking again answers the same way.
    expect([202, 404]).toContain((await client.request('DELETE', `/api/campaigns/${cron}`)).status);
    await waitFor(async () => (await traces(cron)).length === 0, { what: 'the cron campaign removed' });
  });

  it('never lets a launch and a delete racing each other both happen, nor leave half of either', async () => {
    const { client, traces, create } = await pushq();
    const outcomes = { deleted: 0, launched: 0 };
    for (let i = 0; i < 8; i += 1) {
      // Not a provider that ends 400 sends within the lag (a delete after the run completed is no race, and is taken).
      const id = await create(400, { provider: 'race' });
      const launch = () => client.request('POST', `/api/campaigns/${id}/launch`);
      const remove = () => client.request('DELETE', `/api/campaigns/${id}`);
      // Started together, one of them a few milliseconds behind in some rounds (the delete in even rounds, the launch in odd ones), so both orders happen.
      const lag = (i % 4) * 4;
      const after = <T>(ms: number, f: () => Promise<T>) => new Promise((resolve) => setTimeout(resolve, ms)).then(f);
      const [l, d] = i % 2 === 0 ? await Promise.all([launch(), after(lag, remove)]) : await Promise.all([after(lag, launch), remove()]);
      const launched = l!.status === 200;
      const deleted = d!.status === 202;
      expect(launched !== deleted, `round ${i}: launch ${l!.status}, delete ${d!.status}`).toBe(true);
      if (deleted) {
        expect([404, 409]).toContain(l!.status);
        outcomes.deleted += 1;
      } else {
        expect(d!.status).toBe(409);
        outcomes.launched += 1;
        await waitFor(async () => (await client.request('GET', `/api/campaigns/${id}`)).body.status === 'completed', { what: 'the launched run to complete' });
        const run = (await client.request('GET', `/api/campaigns/${id}`)).body.counts;
        expect(run).toMatchObject({ total: 400, sent: 400 });
        expect((await client.request('DELETE', `/api/campaigns/${id}`)).status).toBe(202);
      }
      await waitFor(async () => (await traces(id)).length === 0, { what: `round ${i}: every key removed` });
    }
    console.log(`launch vs delete: delete won ${outcomes.deleted}×, launch won ${outcomes.launched}×`);
  });
});
