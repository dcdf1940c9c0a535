import { performance } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import type { ApiClient } from '../helpers/api-client.js';
import { createCampaign, launchCampaign, range, stacksPerTest, waitForStatus } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';
import { maxInWindow } from '../helpers/mock-provider.js';

/**
 * Delivery windows with real processes, judged at the provider: each
 * recipient at their own local time, deadlines after which nothing goes out.
 */
const setup = stacksPerTest();

/** Wall-clock ms of an arrival at the mock provider. */
const arrivedAt = (at: number) => performance.timeOrigin + at;

/** "HH:MM:SS" of an instant on the wall clock of `zone` (Intl, not the product's code). */
function wallClock(instant: number, zone: string): string {
  return new Intl.DateTimeFormat('en-GB', { timeZone: zone, hourCycle: 'h23', hour: '2-digit', minute: '2-digit', second: '2-digit' }).format(
    new Date(instant),
  );
}

/** The first instant from `from` on, in steps of a quarter hour (zones differ by whole quarter hours), whose clock in `zone` shows `time`: `from` shows it in some zone. */
function nextShowing(time: string, zone: string, from: number): number {
  for (let t = from; t < from + 25 * 3_600_000; t += 900_000) if (wallClock(t, zone) === time) return t;
  throw new Error(`${zone} never shows ${time}`);
}

async function resultsOf(client: ApiClient, id: string): Promise<Array<{ id: string; state: string; reason?: string }>> {
  const res = await client.request('GET', `/api/campaigns/${id}/runs/main/results`);
  expect(res.status).toBe(200);
  const lines = String(res.body)
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  return lines.filter((l) => !('summary' in l)) as Array<{ id: string; state: string; reason?: string }>;
}

describe('deadlines', () => {
  it('expiresAfter: what is not sent by the deadline is skipped as expired, and nothing arrives after it (default settings)', async () => {
    // A provider cap that cannot send 1,000 recipients in 3 s.
    const stack = await setup({ workers: 2, provider: { tps: 100 } });
    const { client, mock } = stack;
    const id = await launchCampaign(client, range(1000, 'r'), { expiresAfter: '3s' });
    const started = await client.campaign(id);
    const deadline = Date.parse(started.latestRun.expiresAt);
    expect(deadline - Date.parse(started.latestRun.startAt)).toBe(3000);

    const done = await waitForStatus(client, id, 'completed', 20_000);
    // Nothing left the worker after the deadline (loopback: arrival is departure plus well under the margin).
    const arrivals = mock.arrivals.filter((a) => a.campaignId === id);
    for (const a of arrivals) expect(arrivedAt(a.at)).toBeLessThanOrEqual(deadline);
    expect(arrivals.length).toBeGreaterThan(100);
    expect(mock.duplicates()).toBe(0);
    // Exactly the unsent ones: sent are those that arrived, the rest expired.
    const arrived = new Set(arrivals.map((a) => a.recipientId));
    expect(done.counts).toMatchObject({ total: 1000, sent: arrived.size, failed: 0, unknown: 0, skipped: 1000 - arrived.size, pending: 0 });
    expect(done.counts.expired).toBe(1000 - arrived.size);
    expect(done.counts.skippedBy).toEqual({ expired: 1000 - arrived.size });
    const rows = await resultsOf(client, id);
    for (const row of rows) {
      if (arrived.has(row.id)) expect(row.state).toBe('sent');
      else expect(row).toMatchObject({ state: 'skipped', reason: 'expired' });
    }
  });

  it('a paused run past its deadline completes: its pending recipients expire', async () => {
    const stack = await setup({ workers: 1, provider: { tps: 50 } });
    const { client, mock } = stack;
    const id = await launchCampaign(client, range(400, 'p'), { expiresAfter: '2s' });
    await waitFor(() => mock.arrivals.length >= 10, { timeoutMs: 5000, what: 'the first sends' });
    expect((await client.request('POST', `/api/campaigns/${id}/pause`)).status).toBe(200);
    const done = await waitForStatus(client, id, 'completed', 20_000);
    const arrived = new Set(mock.arrivals.map((a) => a.recipientId));
    expect(done.counts).toMatchObject({ sent: arrived.size, expired: 400 - arrived.size, pending: 0 });
  });

  it('skips whole, and records, a scheduled run that every worker missed until its deadline (default grace period)', async () => {
    const stack = await setup({ workers: 0, provider: { tps: 2000 } });
    const { client, mock } = stack;
    const id = await createCampaign(client, range(20, 'late'), { expiresAfter: '1s' });
    const at = Date.now() + 1000;
    await client.request('POST', `/api/campaigns/${id}/schedule`, { at: new Date(at).toISOString() });
    await waitFor(() => Date.now() > at + 1500, { what: 'the deadline to pass with no worker up' });
    await stack.addWorker();
    const occurrence = await waitFor(
      async () => ((await client.request('GET', `/api/campaigns/${id}/runs`)).body as { occurrences: Array<Record<string, string>> }).occurrences[0],
      { what: 'the occurrence to be handled' },
    );
    expect(occurrence).toMatchObject({ outcome: 'skipped', reason: 'expired', at: new Date(at).toISOString() });
    expect(await client.campaign(id)).toMatchObject({ status: 'draft', schedule: null, latestRun: null });
    expect(mock.arrivals).toHaveLength(0);
  });

  it('refuses to launch a campaign whose expiresAt has passed, and to create one', async () => {
    const stack = await setup({ workers: 1 });
    const { client } = stack;
    const create = (deadline: Record<string, string>) =>
      client.request('POST', '/api/campaigns', { name: 'c', provider: 'mock', message: { title: 't', body: 'b' }, recipients: ['a'], ...deadline });
    expect((await create({ expiresAt: new Date(Date.now() - 1000).toISOString() })).status).toBe(422);
    expect((await create({ expiresAt: new Date(Date.now() + 60_000).toISOString(), expiresAfter: '1h' })).status).toBe(422);

    const soon = await create({ expiresAt: new Date(Date.now() + 1500).toISOString() });
    expect(soon.status).toBe(201);
    const id = soon.body.id as string;
    await waitFor(() => Date.now() > Date.parse(soon.body.expiresAt as string), { timeoutMs: 5000, what: 'the deadline' });
    const launch = await client.request('POST', `/api/campaigns/${id}/launch`);
    expect(launch.status).toBe(409);
    expect(launch.body.error.message).toMatch(/deadline/);
    expect((await client.campaign(id)).status).toBe('draft');
  });
  it('a pace that cannot finish before expiresAfter: exactly the unsent ones expire, none arrives after the deadline', async () => {
    const stack = await setup({ workers: 2, provider: { tps: 1000 } });
    const { client, mock } = stack;
    const id = await launchCampaign(client, range(600, 'e'), { pace: { tps: 100 }, expiresAfter: '3s' });
    const deadline = Date.parse((await client.campaign(id)).latestRun.expiresAt);
    const done = await waitForStatus(client, id, 'completed', 20_000);
    const arrived = new Set(mock.arrivals.map((a) => a.recipientId));
    for (const a of mock.arrivals) expect(arrivedAt(a.at)).toBeLessThanOrEqual(deadline);
    expect(maxInWindow(mock.arrivals.map((a) => a.at))).toBeLessThanOrEqual(100);
    expect(arrived.size).toBeGreaterThan(200);
    expect(arrived.size).toBeLessThan(400);
    expect(done.counts).toMatchObject({ sent: arrived.size, expired: 600 - arrived.size, skipped: 600 - arrived.size, failed: 0, unknown: 0 });
    const rows = await resultsOf(client, id);
    expect(rows.filter((r) => r.reason === 'expired').map((r) => r.id)).toEqual(range(600, 'e').filter((r) => !arrived.has(r)));
  });
});

describe('local time', () => {
  it('sends each recipient at localTime on their own clock: the zone due now within a second of it, none before, the others parked for their waves (default settings)', async () => {
    const stack = await setup({ workers: 2, provider: { tps: 1000 } });
    const { client, mock } = stack;
    // 09:00-style: a local time 5 s ahead in Seoul (whole seconds).
    const due = Math.ceil((Date.now() + 5000) / 1000) * 1000;
    const localTime = wallClock(due, 'Asia/Seoul');
    const recipients = [
      ...range(100, 'seoul').map((id) => ({ id, timezone: 'Asia/Seoul' })),
      // Same offset, another zone name.
      ...range(100, 'tokyo').map((id) => ({ id, timezone: 'Asia/Tokyo' })),
      // No zone of their own, or one that is none: the campaign's.
      ...range(50, 'nozone'),
      ...range(50, 'bad').map((id) => ({ id, timezone: 'Mars/Olympus_Mons' })),
      ...range(100, 'london').map((id) => ({ id, timezone: 'Europe/London' })),
      ...range(100, 'ny').map((id) => ({ id, timezone: 'America/New_York' })),
    ];
    const id = await launchCampaign(client, recipients, { deliverAt: { localTime, timezone: 'Asia/Seoul' } });

    await waitFor(() => mock.arrivals.length >= 300, { timeoutMs: 15_000, what: 'the Seoul-time wave' });
    const firstWave = mock.arrivals.filter((a) => a.campaignId === id);
    for (const a of firstWave) {
      expect(arrivedAt(a.at)).toBeGreaterThanOrEqual(due - 5);
      expect(arrivedAt(a.at)).toBeLessThan(due + 1000);
    }
    const view = await waitFor(
      async () => {
        const c = await client.campaign(id);
        return c.counts.sent === 300 ? c : undefined;
      },
      { timeoutMs: 5000, intervalMs: 100, what: 'the first wave recorded' },
    );
    expect(new Set(firstWave.map((a) => a.recipientId.replace(/\d+$/, '')))).toEqual(new Set(['seoul', 'tokyo', 'nozone', 'bad']));
    // The later waves: hours away, at the instants their own clocks show localTime.
    const london = nextShowing(localTime, 'Europe/London', due);
    const ny = nextShowing(localTime, 'America/New_York', due);
    expect(view.counts).toMatchObject({ pending: 200, deferred: 200, deferredBy: { 'local-time': 200 } });
    expect(view.latestRun.waves).toEqual([
      { at: new Date(due).toISOString(), recipients: 300, due: true },
      { at: new Date(london).toISOString(), recipients: 100, due: false },
      { at: new Date(ny).toISOString(), recipients: 100, due: false },
    ]);
    const entry = (await client.request('GET', `/api/campaigns/${id}/recipients/ny3`)).body;
    expect(entry).toMatchObject({ state: 'pending', reason: 'local-time', updatedAt: new Date(ny).toISOString() });
    expect(mock.arrivals.filter((a) => /^(london|ny)/.test(a.recipientId))).toEqual([]);
    expect(mock.duplicates()).toBe(0);
    await client.request('POST', `/api/campaigns/${id}/cancel`);
  });
});
