import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ApiClient } from '../helpers/api-client.js';
import { onCleanup, testPrefix } from '../helpers/cleanup.js';
import { providersFile, TEST_TOKEN } from '../helpers/fixtures.js';
import { startInProcess } from '../helpers/in-process.js';
import { deletePrefix, testRedis } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';
import { RedisOutbox } from '../../src/adapters/redis/redis-outbox.js';
import { RedisLedger } from '../../src/adapters/redis/redis-ledger.js';
import { REASONS } from '../../src/domain/respect.js';
import { acquireOptions, ids, redisHarness } from '../helpers/harness.js';

/**
 * The campaign outbox: each run transition writes its event in the same Lua
 * step, so the events correspond one to one with the transitions that
 * happened — none for a refused one, none lost.
 */
async function pushq(label: string, roles: { worker: boolean }): Promise<ApiClient> {
  const prefix = testPrefix(label);
  const redis = testRedis();
  onCleanup(() => deletePrefix(redis, prefix));
  const running = await startInProcess(
    prefix,
    { PROVIDERS_FILE: providersFile([{ name: 'sim', type: 'sim', tps: 5000, latencyMs: 0 }]), MIN_SCHEDULE_INTERVAL_MS: '1000' },
    roles,
  );
  onCleanup(() => running.stop());
  return new ApiClient(running.url!, TEST_TOKEN);
}

async function events(client: ApiClient, id: string): Promise<Array<{ type: string; runId: string; data: Record<string, unknown> }>> {
  const res = await client.request('GET', `/api/campaigns/${id}/events?limit=1000`);
  expect(res.status).toBe(200);
  return res.body.items;
}

describe('the campaign outbox', () => {
  it('holds one event per run transition that happened and none for a refused one (random launch / pause / resume / cancel / schedule)', async () => {
    // No worker: runs never complete here, so every transition is the API's.
    const client = await pushq('outbox', { worker: false });
    const actions = fc.array(fc.constantFrom('launch', 'pause', 'resume', 'cancel', 'schedule'), { minLength: 1, maxLength: 8 });
    await fc.assert(
      fc.asyncProperty(actions, async (sequence) => {
        const id = (await client.request('POST', '/api/campaigns', { name: 'o', provider: 'sim', message: { title: 't', body: 'b' }, recipients: ['a', 'b'] }))
          .body.id as string;
        const expected: string[] = [];
        for (const action of sequence) {
          const before = (await client.campaign(id)).status as string;
          const res =
            action === 'schedule'
              ? await client.request('POST', `/api/campaigns/${id}/schedule`, { at: new Date(Date.now() + 3_600_000).toISOString() })
              : await client.request('POST', `/api/campaigns/${id}/${action}`);
          if (res.status !== 200) continue;
          const after = (await client.campaign(id)).status as string;
          if (action === 'launch') expected.push('run.started');
          if (action === 'pause' && before === 'running') expected.push('run.paused');
          if (action === 'resume' && after === 'running') expected.push('run.resumed');
          if (action === 'cancel' && (before === 'running' || before === 'paused') && (await client.campaign(id)).latestRun) expected.push('run.cancelled');
        }
        const got = await events(client, id);
        expect(got.map((e) => e.type)).toEqual(expected);
        for (const e of got) expect(e.runId).toBe('main');
      }),
      { numRuns: 40 },
    );
  });

  it('reports a run started and completed, with its counts, and pages with ?after', async () => {
    const client = await pushq('outbox-run', { worker: true });
    const id = (await client.request('POST', '/api/campaigns', { name: 'o', provider: 'sim', message: { title: 't', body: 'b' }, recipients: ['a', 'b', 'c'] }))
      .body.id as string;
    await client.launch(id);
    await waitFor(async () => (await client.campaign(id)).status === 'completed', { what: 'the run to complete' });
    const got = await events(client, id);
    expect(got).toMatchObject([
      { type: 'run.started', runId: 'main', data: { trigger: 'launch', total: 3 } },
      { type: 'run.completed', runId: 'main', data: { trigger: 'launch', counts: { total: 3, sent: 3, failed: 0, unknown: 0, skipped: 0 } } },
    ]);
    const first = await client.request('GET', `/api/campaigns/${id}/events?limit=1`);
    expect(first.body.items).toHaveLength(1);
    const rest = await client.request('GET', `/api/campaigns/${id}/events?after=${first.body.next}`);
    expect(rest.body.items.map((e: { type: string }) => e.type)).toEqual(['run.completed']);
    const none = await client.request('GET', `/api/campaigns/${id}/events?after=${rest.body.next}`);
    expect(none.body).toEqual({ items: [], next: rest.body.next });
    expect((await client.request('GET', '/api/campaigns/01aaaaaaaaaaaaaaaaaaaaaaaa/events')).status).toBe(404);
    expect((await client.request('GET', `/api/campaigns/${id}/events?after=nope`)).status).toBe(422);
  });

  it('reports a skipped cron occurrence (here: the campaign paused) in the same transaction as its record', async () => {
    const client = await pushq('outbox-skip', { worker: true });
    const id = (await client.request('POST', '/api/campaigns', { name: 'o', provider: 'sim', message: { title: 't', body: 'b' }, recipients: ['a'] })).body
      .id as string;
    expect((await client.request('POST', `/api/campaigns/${id}/schedule`, { cron: '* * * * * *' })).status).toBe(200);
    expect((await client.request('POST', `/api/campaigns/${id}/pause`)).status).toBe(200);
    const skipped = await waitFor(
      async () => {
        const got = (await events(client, id)).filter((e) => e.type === 'schedule.skipped');
        return got.length > 0 ? got : undefined;
      },
      { what: 'a schedule.skipped event' },
    );
    const occurrences = (await client.request('GET', `/api/campaigns/${id}/runs`)).body.occurrences as Array<{ at: string; outcome: string; reason?: string }>;
    expect(skipped[0]!.data).toMatchObject({ reason: 'paused', occurrence: expect.stringMatching(/^\d{4}-/) });
    expect(occurrences).toContainEqual(expect.objectContaining({ at: skipped[0]!.data.occurrence, outcome: 'skipped', reason: 'paused' }));
  });
});

describe('outbox trimming', () => {
  it('removes recipient entries endpoints have passed even behind more than a look of run events, and keeps the run events', async () => {
    const h = redisHarness('trim');
    const outbox = new RedisOutbox(h.redis, h.keys, h.scripts);
    const ledger = new RedisLedger(h.redis, h.keys, h.scripts, undefined, { maskFor: () => 'k' });
    const campaignId = await h.createCampaign(ids(20), 20);
    const runId = await h.startRun(campaignId);
    // 1,100 run events at the head of the stream (skipped occurrences of a frequent schedule), then 20 recipient entries.
    for (let i = 0; i < 1100; i += 1) {
      await h.store.recordOccurrence(campaignId, {
        at: new Date(i * 1000).toISOString(),
        outcome: 'skipped',
        reason: 'paused',
        handledAt: new Date().toISOString(),
      });
    }
    const ref = { campaignId, runId, page: 0 };
    await ledger.acquirePage(ref, 'w', acquireOptions(60_000));
    for (let index = 0; index < 20; index += 1) {
      await ledger.claim(ref, 'w', 60_000, [{ index, op: 'skip', reason: REASONS.suppressed, detail: 'global' }]);
    }
    const kinds = async () => (await h.store.events(campaignId, null, 10_000)).map((e) => e.type);
    expect((await kinds()).filter((t) => t === 'recipients')).toHaveLength(20);
    // No endpoint takes recipient events: every recipient entry may go (those older than `before`).
    let result = { removed: 0, left: true };
    for (let call = 0; call < 5 && result.left; call += 1) result = await outbox.trim(campaignId, [], Date.now() + 60_000);
    expect(result.left).toBe(false);
    const after = await kinds();
    expect(after.filter((t) => t === 'recipients')).toHaveLength(0);
    expect(after.filter((t) => t === 'schedule.skipped')).toHaveLength(1100);
  });
});
