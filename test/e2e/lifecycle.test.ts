import { performance } from 'node:perf_hooks';
import { Queue } from 'bullmq';
import { describe, expect, it } from 'vitest';
import type { ApiClient } from '../helpers/api-client.js';
import { testRedis } from '../helpers/redis.js';
import { createCampaign, launchCampaign, range, stacksPerTest, waitForStatus, type Stack } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Scheduling and the campaign lifecycle with real processes: runs judged at
 * the provider, every race made to happen for real.
 */
const setup = stacksPerTest();

async function schedulers(stack: Stack) {
  const connection = testRedis();
  const queue = new Queue('schedule', { connection, prefix: stack.prefix });
  try {
    return await queue.getJobSchedulers();
  } finally {
    await queue.close();
    connection.disconnect();
  }
}

async function runs(client: ApiClient, id: string) {
  return (await client.request('GET', `/api/campaigns/${id}/runs?limit=100`)).body as {
    items: Array<{ id: string; status: string; createdAt: string; completedAt: string | null; counts: Record<string, number> }>;
    occurrences: Array<{ at: string; outcome: string; reason?: string; runId?: string }>;
  };
}

/** (campaign, run, recipient) delivered more than once: must stay zero. */
function duplicatesInRuns(stack: Stack): number {
  return stack.mock.duplicates();
}

describe('cron schedules', () => {
  it('fires a run at each occurrence (every 2 s), each with its own id, never overlapping', async () => {
    // Every 2 s is below the 60 s a production schedule is held to (MIN_SCHEDULE_INTERVAL_MS).
    const stack = await setup({ workers: 1, provider: { tps: 2000 }, env: { MIN_SCHEDULE_INTERVAL_MS: '1000' } });
    const { client } = stack;
    const id = await createCampaign(client, range(50, 'c'));
    const scheduled = await client.request('POST', `/api/campaigns/${id}/schedule`, { cron: '*/2 * * * * *', timezone: 'Asia/Seoul' });
    expect(scheduled.status).toBe(200);
    expect(scheduled.body).toMatchObject({ status: 'scheduled', schedule: { kind: 'cron', cron: '*/2 * * * * *', timezone: 'Asia/Seoul' } });
    expect(Date.parse(scheduled.body.schedule.nextRunAt)).toBeGreaterThan(Date.now() - 100);

    const done = await waitFor(
      async () => {
        const list = await runs(client, id);
        const finished = list.items.filter((r) => r.status === 'completed');
        return finished.length >= 3 ? finished : undefined;
      },
      { timeoutMs: 30_000, what: 'three completed runs' },
    );
    const ids = done.map((r) => r.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const run of done) {
      expect(run.id).toMatch(/^o\d{8}T\d{6}Z$/);
      expect(run.counts).toMatchObject({ total: 50, sent: 50, pending: 0 });
    }
    const ordered = [...done].sort((a, b) => Date.parse(a.createdAt) - Date.parse(b.createdAt));
    for (let i = 1; i < ordered.length; i += 1) {
      expect(Date.parse(ordered[i]!.createdAt)).toBeGreaterThanOrEqual(Date.parse(ordered[i - 1]!.completedAt!));
    }
    expect(duplicatesInRuns(stack)).toBe(0);
    for (const runId of ids) {
      expect(stack.mock.arrivals.filter((a) => a.campaignId === id && a.runId === runId)).toHaveLength(50);
    }

    const cancelled = await client.request('POST', `/api/campaigns/${id}/cancel`);
    expect(cancelled.body).toMatchObject({ status: 'cancelled', schedule: null });
    expect(await schedulers(stack)).toHaveLength(0);
  });

  it('leaves exactly one schedule after ten concurrent reschedules', async () => {
    const stack = await setup({ workers: 0 });
    const { client } = stack;
    const id = await createCampaign(client, range(5, 'r'));
    const crons = Array.from({ length: 10 }, (_, i) => `0 ${i} 9 * * *`);
    const answers = await Promise.all(crons.map((cron) => client.request('POST', `/api/campaigns/${id}/schedule`, { cron, timezone: 'Asia/Seoul' })));
    for (const answer of answers) expect(answer.status).toBe(200);
    const list = await schedulers(stack);
    expect(list).toHaveLength(1);
    const campaign = await client.campaign(id);
    // The BullMQ scheduler and the campaign agree on which schedule won.
    expect(list[0]!.pattern).toBe(campaign.schedule.cron);
    expect(list[0]!.template?.data).toMatchObject({ campaignId: id });
  });
});

describe('pause, resume, cancel', () => {
  it('stops sends within a second of the pause (measured at the provider) and resumes where it stopped', async () => {
    const stack = await setup({ workers: 2, provider: { tps: 200 }, env: { PAGE_SIZE: '100' } });
    const { client, mock } = stack;
    const id = await launchCampaign(client, range(1500, 'p'));
    await waitFor(() => mock.arrivals.length >= 200, { what: '200 deliveries' });
    const paused = await client.request('POST', `/api/campaigns/${id}/pause`);
    const pausedAt = performance.now();
    expect(paused.body.status).toBe('paused');
    // Give a pause time to show: well over a second with nothing arriving.
    await waitFor(async () => performance.now() - pausedAt > 2500 && (await client.campaign(id)).counts.inflight === 0, { what: 'a quiet spell' });
    const resumedAt = performance.now();
    const lateArrivals = mock.arrivals.filter((a) => a.at > pausedAt + 1000 && a.at < resumedAt);
    expect(lateArrivals).toHaveLength(0);
    const midway = await client.campaign(id);
    expect(midway.counts.sent).toBeLessThan(1500);
    expect((await client.request('POST', `/api/campaigns/${id}/resume`)).body.status).toBe('running');
    const done = await waitForStatus(client, id, 'completed');
    expect(done.counts).toMatchObject({ total: 1500, sent: 1500, pending: 0 });
    expect(mock.duplicates()).toBe(0);
    expect(mock.deliveries().size).toBe(1500);
  });

  it('cancels a run: pending recipients skipped, in-flight ones recorded, nothing sent after', async () => {
    const stack = await setup({ workers: 1, provider: { tps: 200 }, mock: { latencyMs: 30 } });
    const { client, mock } = stack;
    const id = await launchCampaign(client, range(1000, 'k'));
    await waitFor(() => mock.arrivals.length >= 100, { what: '100 deliveries' });
    const cancelled = await client.request('POST', `/api/campaigns/${id}/cancel`);
    expect(cancelled.body.status).toBe('cancelled');
    const settled = await waitFor(async () => {
      const c = await client.campaign(id);
      return c.counts.inflight === 0 ? c : undefined;
    });
    const { counts } = settled;
    expect(counts.sent + counts.failed + counts.unknown + counts.skipped + counts.pending).toBe(1000);
    expect(counts.pending).toBe(0);
    expect(counts.skipped).toBeGreaterThan(0);
    expect(settled.latestRun.status).toBe('cancelled');
    expect(mock.deliveries().size).toBe(counts.sent);
    const neverSent = range(1000, 'k').find((r) => !mock.arrivals.some((a) => a.recipientId === r))!;
    const entry = await client.request('GET', `/api/campaigns/${id}/recipients/${neverSent}`);
    expect(entry.body).toMatchObject({ state: 'skipped', reason: 'cancelled' });
  });

  it('answers an action the state does not allow with 409, the current state and the allowed actions', async () => {
    const stack = await setup({ workers: 1, provider: { tps: 2000 } });
    const { client } = stack;
    const id = await launchCampaign(client, range(10, 'x'));
    await waitForStatus(client, id, 'completed');
    for (const action of ['pause', 'resume', 'cancel', 'launch']) {
      const res = await client.request('POST', `/api/campaigns/${id}/${action}`);
      expect(res.status, action).toBe(409);
      expect(res.body.error).toMatchObject({ code: 'INVALID_STATE', details: { status: 'completed', allowedActions: ['clone', 'delete', 'pace'] } });
      expect(res.body.error.message).toContain('completed');
    }
    const schedule = await client.request('POST', `/api/campaigns/${id}/schedule`, { at: new Date(Date.now() + 60_000).toISOString() });
    expect(schedule.status).toBe(409);
    expect(schedule.body.error.message).toMatch(/retry-failed|clone/);
    const edit = await client.request('PATCH', `/api/campaigns/${id}`, { name: 'new name' });
    expect(edit.status).toBe(409);

    const cron = await createCampaign(client, range(3, 'y'));
    await client.request('POST', `/api/campaigns/${cron}/schedule`, { cron: '0 0 9 * * *', timezone: 'Asia/Seoul' });
    const launch = await client.request('POST', `/api/campaigns/${cron}/launch`);
    expect(launch.status).toBe(409);
    expect(launch.body.error.message).toMatch(/recurring/);
    const resume = await client.request('POST', `/api/campaigns/${cron}/resume`);
    expect(resume.body.error.details).toMatchObject({ status: 'scheduled' });
    expect(resume.body.error.details.allowedActions).toEqual(expect.arrayContaining(['pause', 'cancel', 'schedule']));
  });
});

describe('editing and cloning', () => {
  it('edits message and recipients while draft, all or nothing, and clones for sending again', async () => {
    const stack = await setup({ workers: 1, provider: { tps: 2000 } });
    const { client, mock } = stack;
    const id = await createCampaign(client, ['a', 'b', 'c']);
    const edited = await client.request('PATCH', `/api/campaigns/${id}`, {
      message: { title: 'New', body: 'Text', data: { v: 2 } },
      recipients: ['d', { id: 'e', lang: 'ko' }, 'd'],
    });
    expect(edited.status).toBe(200);
    expect(edited.body).toMatchObject({ recipientCount: 2, message: { title: 'New' }, ingest: { accepted: 2, duplicate: 1 } });
    expect((await client.request('GET', `/api/campaigns/${id}/recipients/a`)).status).toBe(404);
    expect((await client.request('GET', `/api/campaigns/${id}/recipients/e`)).body.recipient).toEqual({ id: 'e', lang: 'ko' });
    const refused = await client.request('PATCH', `/api/campaigns/${id}?invalid=reject`, { name: 'x', recipients: ['f', 42] });
    expect(refused.status).toBe(422);
    expect((await client.campaign(id)).name).toBe('c');

    await client.launch(id);
    await waitForStatus(client, id, 'completed');
    const clone = await client.request('POST', `/api/campaigns/${id}/clone`, {});
    expect(clone.status).toBe(201);
    expect(clone.body).toMatchObject({ status: 'draft', recipientCount: 2, message: { title: 'New', data: { v: 2 } }, name: 'c (copy)' });
    await client.launch(clone.body.id);
    await waitForStatus(client, clone.body.id, 'completed');
    // Same people, two campaigns: each got each message once, with different idempotency keys.
    expect(mock.arrivals.filter((a) => a.recipientId === 'e')).toHaveLength(2);
    expect(new Set(mock.arrivals.map((a) => a.key)).size).toBe(mock.arrivals.length);
  });
});

describe('misfires', () => {
  it('runs an occurrence missed while every worker was down, within the grace period', async () => {
    const stack = await setup({ workers: 0, provider: { tps: 2000 }, env: { SCHEDULE_GRACE_MS: '60000' } });
    const { client } = stack;
    const id = await createCampaign(client, range(20, 'm'));
    const at = Date.now() + 1000;
    await client.request('POST', `/api/campaigns/${id}/schedule`, { at: new Date(at).toISOString() });
    await waitFor(() => Date.now() > at + 1000, { what: 'the occurrence to pass with no worker up' });
    await stack.addWorker();
    const done = await waitForStatus(client, id, 'completed', 30_000);
    expect(done.counts.sent).toBe(20);
    expect((await runs(client, id)).occurrences[0]).toMatchObject({ outcome: 'ran', runId: 'main' });
  });

  it('skips, and records, an occurrence missed by more than the grace period', async () => {
    const stack = await setup({ workers: 0, provider: { tps: 2000 }, env: { SCHEDULE_GRACE_MS: '500' } });
    const { client, mock } = stack;
    const id = await createCampaign(client, range(20, 'n'));
    const at = Date.now() + 1000;
    await client.request('POST', `/api/campaigns/${id}/schedule`, { at: new Date(at).toISOString() });
    await waitFor(() => Date.now() > at + 1500, { what: 'the grace period to pass with no worker up' });
    await stack.addWorker();
    const occurrence = await waitFor(async () => (await runs(client, id)).occurrences[0], { what: 'the occurrence to be handled' });
    expect(occurrence).toMatchObject({ outcome: 'skipped', reason: 'misfire', at: new Date(at).toISOString() });
    const campaign = await client.campaign(id);
    expect(campaign).toMatchObject({ status: 'draft', schedule: null, latestRun: null });
    expect(mock.arrivals).toHaveLength(0);
  });
});

describe('racing lifecycle calls', () => {
  it('never delivers a recipient twice in a run, whatever mix of schedule, launch, pause and resume races a cron campaign', async () => {
    const stack = await setup({ workers: 2, provider: { tps: 400 }, env: { PAGE_SIZE: '40', MIN_SCHEDULE_INTERVAL_MS: '1000' } });
    const { client, mock } = stack;
    mock.keepBodies = false;
    const id = await createCampaign(client, range(200, 'z'));
    await client.request('POST', `/api/campaigns/${id}/schedule`, { cron: '*/2 * * * * *' });
    let seed = 7;
    const random = () => {
      seed = (seed * 48271) % 2147483647;
      return seed / 2147483647;
    };
    const schedule = () => client.request('POST', `/api/campaigns/${id}/schedule`, { cron: random() < 0.5 ? '*/2 * * * * *' : '*/3 * * * * *' });
    const resume = () => client.request('POST', `/api/campaigns/${id}/resume`);
    // Resumes outnumber pauses, or the campaign would spend most occurrences paused.
    const calls: Array<() => Promise<{ status: number }>> = [
      schedule,
      schedule,
      () => client.request('POST', `/api/campaigns/${id}/launch`),
      () => client.request('POST', `/api/campaigns/${id}/pause`),
      resume,
      resume,
    ];
    const statuses = new Map<number, number>();
    // At least 100 bursts, and on until two runs have come under fire.
    for (let iteration = 0; iteration < 2000; iteration += 1) {
      const burst = Array.from({ length: 2 + Math.floor(random() * 4) }, () => calls[Math.floor(random() * calls.length)]!());
      for (const res of await Promise.all(burst)) statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      if (iteration >= 100 && (await runs(client, id)).items.length >= 2) break;
    }
    expect(
      [...statuses.keys()].filter((s) => s !== 200 && s !== 409),
      `answers ${JSON.stringify(Object.fromEntries(statuses))}; API log: ${stack.api.output
        .split('\n')
        .filter((l) => /"level":(50|40)/.test(l))
        .slice(0, 5)
        .join('\n')}`,
    ).toEqual([]);
    // Let the last run finish, then stop the schedule.
    await client.request('POST', `/api/campaigns/${id}/resume`);
    await waitFor(async () => {
      const c = await client.campaign(id);
      return c.status === 'scheduled' && (await runs(client, id)).items.length > 0;
    });
    await client.request('POST', `/api/campaigns/${id}/cancel`);
    await waitFor(async () => (await client.campaign(id)).counts.inflight === 0);
    const list = await runs(client, id);
    console.info(`racing test: ${list.items.length} runs, ${mock.arrivals.length} requests, answers ${JSON.stringify(Object.fromEntries(statuses))}`);
    expect(list.items.length).toBeGreaterThanOrEqual(2);
    for (const run of list.items) {
      const c = run.counts;
      expect(c.sent! + c.failed! + c.unknown! + c.skipped! + c.pending!).toBe(c.total);
    }
    expect(mock.duplicates()).toBe(0);
  });
});
