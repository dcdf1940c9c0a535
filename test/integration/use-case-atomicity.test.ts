import { describe, expect, it } from 'vitest';
import { CampaignLifecycle } from '../../src/app/campaign-lifecycle.js';
import { AppEvents } from '../../src/app/events.js';
import type { Lifecycle, Scheduler } from '../../src/app/ports.js';
import { LaunchCampaign } from '../../src/app/launch-campaign.js';
import { ScheduleCampaign } from '../../src/app/schedule-campaign.js';
import { ONE_OFF_RUN_ID, planLayout } from '../../src/domain/campaign.js';
import { newId } from '../../src/domain/ids.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { buildServices } from '../../src/wiring/services.js';
import { onCleanup } from '../helpers/cleanup.js';
import { draftRecord } from '../helpers/harness.js';
import { cleanPrefix, TEST_REDIS_URL, testConnection } from '../helpers/redis.js';

/**
 * A use case that answers an error changed nothing, and one that answers
 * success changed everything it was asked to: on real Redis, with the one
 * port that fails (or races) replaced.
 */
function services(label: string) {
  const redis = testConnection();
  const prefix = cleanPrefix(label);
  const config = loadConfig({ QUEUE_PREFIX: prefix, REDIS_URL: TEST_REDIS_URL });
  const s = buildServices(redis, config, new AppEvents());
  onCleanup(() => s.close());
  const log = createLogger('silent');
  const lifecycle = (over: Partial<Lifecycle> = {}, scheduler: Scheduler = s.scheduler) =>
    new CampaignLifecycle({
      store: s.store,
      runs: s.runs,
      lifecycle: { ...bind(s.lifecycle), ...over } as Lifecycle,
      scheduler,
      queue: s.pageQueue,
      pump: s.pump,
      pageSize: 100,
      providers: { get: () => undefined, names: () => [] },
      log,
    });
  const schedule = (scheduler: Scheduler) =>
    new ScheduleCampaign({ store: s.store, runs: s.runs, locks: s.locks, lifecycle: s.lifecycle, scheduler, minIntervalMs: 60_000, log });
  return { s, lifecycle, schedule };
}

/** The methods of an object, bound, as a plain object one can override parts of. */
function bind<T extends object>(target: T): T {
  const proto = Object.getPrototypeOf(target) as object;
  const out: Record<string, unknown> = {};
  for (const name of Object.getOwnPropertyNames(proto)) {
    const value = (target as Record<string, unknown>)[name];
    if (name !== 'constructor' && typeof value === 'function') out[name] = (value as (...a: unknown[]) => unknown).bind(target);
  }
  return out as T;
}

async function draft(s: ReturnType<typeof services>['s'], recipients: string[] = ['a', 'b']) {
  const id = newId();
  await s.store.create(draftRecord(id, planLayout(recipients.length, 100), { name: 'before' }), recipients);
  return id;
}

const storeDown = (): Scheduler => ({
  set: () => Promise.reject(Object.assign(new Error('Connection is closed.'), { code: 'ECONNRESET' })),
  remove: () => Promise.reject(Object.assign(new Error('Connection is closed.'), { code: 'ECONNRESET' })),
});

describe('POST /schedule when the BullMQ scheduler cannot be written', () => {
  it('leaves a draft a draft, with no schedule, when the scheduler write fails', async () => {
    const { s, schedule } = services('schedule-undo');
    const id = await draft(s);
    await expect(schedule(storeDown()).execute(id, { cron: '0 0 9 * * *', timezone: 'Asia/Seoul' })).rejects.toThrow(/Connection is closed/);
    const after = await s.store.get(id);
    expect(after).toMatchObject({ status: 'draft', schedule: null });
  });

  it('keeps the schedule it had, and its version, when a reschedule cannot be written', async () => {
    const { s, schedule } = services('reschedule-undo');
    const id = await draft(s);
    await schedule(s.scheduler).execute(id, { cron: '0 0 9 * * *', timezone: 'Asia/Seoul' });
    const before = await s.store.get(id);
    await expect(schedule(storeDown()).execute(id, { cron: '0 30 10 * * *', timezone: 'UTC' })).rejects.toThrow(/Connection is closed/);
    const after = await s.store.get(id);
    expect(after?.status).toBe('scheduled');
    expect(after?.schedule).toEqual(before?.schedule);
    expect(after?.scheduleVersion).toBe(before?.scheduleVersion);
  });
});

describe('PATCH with recipients and fields', () => {
  it('changes the list and the fields together, even when a launch comes right after the list is written', async () => {
    const { s, lifecycle } = services('patch-atomic');
    const id = await draft(s);
    // A launch that lands between writing the list and writing the other fields.
    const racing = lifecycle({
      swapRecipients: async (...args) => {
        const result = await s.lifecycle.swapRecipients(...args);
        await s.runs.createRun(id, 'main', { allowedFrom: ['draft', 'scheduled'], statusAfter: 'completed', trigger: 'launch' });
        return result;
      },
    });
    const outcome = await racing.edit(id, { name: 'after', recipients: ['x', 'y', 'z'], invalid: 'reject' }).then(
      () => 'ok' as const,
      (err: Error) => err.message,
    );
    const after = await s.store.get(id);
    // All or nothing: either both changed, or (refused) neither did.
    if (outcome === 'ok') expect({ name: after?.name, total: after?.recipients.total }).toEqual({ name: 'after', total: 3 });
    else expect({ name: after?.name, total: after?.recipients.total, outcome }).toEqual({ name: 'before', total: 2, outcome });
  });
});

describe('a launch refused with 409', () => {
  // Found by the API fuzzer: the refusal took the running run off the supervisor's list of active runs.
  it('leaves the running run on the list the supervisor watches', async () => {
    const { s } = services('launch-409');
    const id = await draft(s);
    const log = createLogger('silent');
    const launch = new LaunchCampaign({ store: s.store, runs: s.runs, starter: s.starter, lifecycle: s.lifecycle, scheduler: s.scheduler, log });
    await launch.execute(id);
    const before = await s.runs.activeRuns();
    expect(before).toContainEqual({ campaignId: id, runId: ONE_OFF_RUN_ID });
    await expect(launch.execute(id)).rejects.toMatchObject({ code: 'INVALID_STATE' });
    expect(await s.runs.activeRuns()).toEqual(before);
  });
});

describe('a launch racing an edit', () => {
  it('refuses (409, nothing started) when the campaign changed after its message was checked to render for its list', async () => {
    const { s, lifecycle } = services('launch-edit');
    const id = await draft(s);
    const log = createLogger('silent');
    // The check passes; an edit lands right after it, before the run is made (an upload or a PATCH would, in the API).
    const renders = {
      assertRenders: async () => {
        await lifecycle().edit(id, { message: { title: 'Hi {{ name }}', body: 'b', data: {} }, invalid: 'reject' });
        return null;
      },
    };
    const launch = new LaunchCampaign({ store: s.store, runs: s.runs, starter: s.starter, lifecycle: s.lifecycle, scheduler: s.scheduler, renders, log });
    await expect(launch.execute(id)).rejects.toMatchObject({
      code: 'INVALID_STATE',
      message: expect.stringMatching(/changed while its launch was being checked/),
    });
    expect(await s.store.get(id)).toMatchObject({ status: 'draft', latestRunId: null });
    expect(await s.runs.getRun(id, ONE_OFF_RUN_ID)).toBeNull();
    expect(await s.runs.activeRuns()).not.toContainEqual({ campaignId: id, runId: ONE_OFF_RUN_ID });
    // Launched again, it checks what is there now.
    const again = new LaunchCampaign({ store: s.store, runs: s.runs, starter: s.starter, lifecycle: s.lifecycle, scheduler: s.scheduler, log });
    await again.execute(id);
    expect((await s.store.get(id))?.status).toBe('running');
  });
});
