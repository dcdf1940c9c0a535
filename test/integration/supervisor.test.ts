import { describe, expect, it } from 'vitest';
import { acquireOptions, confirmPolicy, ids, redisHarness, settlePolicy, supervisorHarness } from '../helpers/harness.js';

function setup(inDoubt: 'report' | 'resend') {
  return supervisorHarness('sup', { inDoubt, intervalMs: 1000, stuckMs: 1000 });
}

/** A run whose page 0 a worker took and then vanished with two recipients in flight. */
async function abandonedPage(h: ReturnType<typeof redisHarness>, size: number) {
  const campaignId = await h.createCampaign(ids(size), 100);
  const runId = await h.startRun(campaignId);
  await h.runs.markActive(campaignId, runId);
  const ref = { campaignId, runId, page: 0 };
  await h.ledger.acquirePage(ref, 'gone', acquireOptions(60_000, 'report'));
  await h.ledger.claim(ref, 'gone', 60_000, [
    { index: 0, op: 'claim' },
    { index: 1, op: 'claim' },
  ]);
  // Its lease ran out long ago.
  await h.abandonLease(ref);
  return { campaignId, runId, ref };
}

describe('the supervisor', () => {
  it('reports the in-flight recipients of an abandoned page as unknown, and completes a run with nothing left', async () => {
    const { h, supervisor } = setup('report');
    const { campaignId, runId, ref } = await abandonedPage(h, 2);
    await supervisor.tick();
    const run = await h.runs.getRun(campaignId, runId);
    expect(run?.counts).toMatchObject({ total: 2, pending: 0, inflight: 0, unknown: 2 });
    expect(run?.status).toBe('completed');
    expect((await h.ledger.readEntry(campaignId, runId, 1, 100)).lastError?.code).toBe('LEASE_EXPIRED');
    expect(await h.runs.activeRuns()).toEqual([]);
    // The lost worker comes back: fenced.
    expect(
      await h.ledger.confirm(ref, 'gone', 60_000, confirmPolicy(5), [{ index: 0, attempt: 1, outcome: 'sent', delayMs: 0, code: '', message: '' }]),
    ).toEqual({ kind: 'fenced' });
  });

  it('makes them pending again, with their attempt kept, when the provider resends in-doubt sends', async () => {
    const { h, supervisor } = setup('resend');
    const { campaignId, runId } = await abandonedPage(h, 3);
    await supervisor.tick();
    const run = await h.runs.getRun(campaignId, runId);
    expect(run?.counts).toMatchObject({ total: 3, pending: 3, inflight: 0, unknown: 0 });
    expect(run?.status).toBe('running');
    expect((await h.ledger.readEntry(campaignId, runId, 0, 100)).record).toMatchObject({ state: 'pending', attempts: 1 });
  });

  it('raises the stuck-run alarm when pending recipients see no progress', async () => {
    const { h, supervisor } = setup('report');
    const campaignId = await h.createCampaign(ids(5), 100);
    const runId = await h.startRun(campaignId);
    await h.runs.markActive(campaignId, runId);
    await h.ageRun(campaignId, runId, 3_600_000, 0);
    await supervisor.tick();
    expect((await h.runs.getRun(campaignId, runId))?.stuckSince).not.toBeNull();
    // The outbox says so once, in the same step, however often it is marked.
    await h.runs.markStuck(campaignId, runId, true);
    const stuck = (await h.store.events(campaignId, null, 100)).filter((e) => e.type === 'run.stuck');
    expect(stuck).toEqual([expect.objectContaining({ type: 'run.stuck', runId, fields: expect.objectContaining({ pending: '5' }) })]);
    // Progress again: the alarm clears.
    await h.ageRun(campaignId, runId, 0);
    await h.locks.unlock('supervisor', '1');
    await supervisor.tick();
    expect((await h.runs.getRun(campaignId, runId))?.stuckSince).toBeNull();
  });

  it('does not call a slow paced run stuck (nor kick it) between sends its pace spaces apart, and does once it misses a couple of them', async () => {
    const { h, supervisor } = setup('report');
    const campaignId = await h.createCampaign(ids(5), 100);
    const runId = await h.startRun(campaignId);
    await h.runs.markActive(campaignId, runId);
    // One send every 1,000 s (1,000 recipients spread over 11.5 days).
    await h.redis.hset(h.keys.campaign(campaignId).run(runId).run, 'pace', 0.001);
    await h.runs.advanceCursor(campaignId, runId, 0, 1);
    const gen = Number(await h.redis.hget(h.keys.campaign(campaignId).run(runId).run, 'gen'));
    await h.ageRun(campaignId, runId, 600_000);
    await supervisor.tick();
    let run = (await h.runs.getRun(campaignId, runId))!;
    expect(run.stuckSince).toBeNull();
    // Not kicked: its page was not enqueued again under a new generation.
    expect(Number(await h.redis.hget(h.keys.campaign(campaignId).run(runId).run, 'gen'))).toBe(gen);
    await h.ageRun(campaignId, runId, 3_600_000);
    await h.locks.unlock('supervisor', '1');
    await supervisor.tick();
    run = (await h.runs.getRun(campaignId, runId))!;
    expect(run.stuckSince).not.toBeNull();
  });

  it('leaves a run alone whose pending recipients are all parked (quiet hours), and kicks it once they are due', async () => {
    const { h, supervisor } = setup('report');
    const campaignId = await h.createCampaign(ids(3), 100);
    const runId = await h.startRun(campaignId);
    await h.runs.markActive(campaignId, runId);
    await h.runs.advanceCursor(campaignId, runId, 0, 1);
    const ref = { campaignId, runId, page: 0 };
    await h.ledger.acquirePage(ref, 'A', acquireOptions(60_000, 'report'));
    await h.ledger.claim(
      ref,
      'A',
      60_000,
      [0, 1, 2].map((index) => ({ index, op: 'defer' as const, until: Date.now() + 3_600_000 })),
    );
    await h.ledger.releasePage(ref, 'A', 3, settlePolicy());
    // Long without progress, by the clock of the run.
    await h.ageRun(campaignId, runId, 3_600_000);
    expect(await h.runs.kickStalled(campaignId, runId, 60_000)).toMatchObject({ kind: 'parked' });
    await supervisor.tick();
    const parked = (await h.runs.getRun(campaignId, runId))!;
    expect(parked.stuckSince).toBeNull();
    expect(parked.gen).toBe(1);
    // The wake-up time passed a stall period ago and nothing ran: the page's job was lost. Kick it.
    await h.oversleep(ref);
    expect(await h.runs.kickStalled(campaignId, runId, 60_000)).toEqual({ kind: 'kicked', gen: 2, pages: [0] });
  });

  it('says loudly when the counts of a run do not add up', async () => {
    const { h, supervisor, events } = setup('report');
    const campaignId = await h.createCampaign(ids(5), 100);
    const runId = await h.startRun(campaignId);
    await h.runs.markActive(campaignId, runId);
    await h.redis.hincrby(h.keys.campaign(campaignId).run(runId).run, 'sent', 1);
    const seen: string[] = [];
    events.on('run:counts-mismatch', (e) => seen.push(e.runId));
    await supervisor.tick();
    expect(seen).toEqual([runId]);
  });
});
