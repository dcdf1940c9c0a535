import { LEDGER_BYTES_PER_RECIPIENT, type MemoryGuard } from './memory-guard.js';
import { invalidState } from '../domain/campaign.js';
import { campaignNotFound, DomainError, ErrorCodes } from '../domain/errors.js';
import { parseSchedule, scheduleView, type ScheduleView } from '../domain/schedule.js';
import { currentView, type CampaignView } from './campaign-view.js';
import type { DryRun } from './dry-run.js';
import type { CampaignStore, Lifecycle, Locks, Logger, Runs, ScheduleBefore, Scheduler } from './ports.js';

/**
 * Schedules a campaign, or replaces its schedule. The campaign's record (one
 * Lua step, which bumps the schedule version) and the BullMQ job scheduler
 * (one upsert) change under a per-campaign lock, so concurrent reschedules
 * leave exactly one schedule, the last one, in both. An occurrence of an
 * older schedule carries an older version and is ignored.
 */
export class ScheduleCampaign {
  constructor(
    private readonly deps: {
      store: CampaignStore;
      runs: Pick<Runs, 'getRun'>;
      locks: Locks;
      lifecycle: Lifecycle;
      scheduler: Scheduler;
      /** MIN_SCHEDULE_INTERVAL_MS. */
      minIntervalMs: number;
      log: Logger;
      /** Refuses new work while Redis is nearly full. */
      memory?: Pick<MemoryGuard, 'admit'>;
      /** Refuses a schedule whose message would not render for everyone (the dry run). */
      renders?: Pick<DryRun, 'assertRenders'>;
    },
  ) {}

  /** What a schedule would be, checked as `execute` checks it, with its next occurrences: nothing is changed. */
  preview(input: { at?: string; cron?: string; timezone?: string }): ScheduleView {
    const now = Date.now();
    return scheduleView(parseSchedule(input, now, this.deps.minIntervalMs), now);
  }

  async execute(campaignId: string, input: { at?: string; cron?: string; timezone?: string }): Promise<CampaignView> {
    const spec = parseSchedule(input, Date.now(), this.deps.minIntervalMs);
    const campaign = await this.deps.store.get(campaignId);
    if (campaign) await this.deps.memory?.admit('schedule', campaign.recipients.total * LEDGER_BYTES_PER_RECIPIENT);
    // A list can still change after this (uploads while scheduled): whoever then fails to render is skipped at send time, never sent half-filled.
    if (campaign && (campaign.status === 'draft' || campaign.status === 'scheduled')) await this.deps.renders?.assertRenders(campaign, 'schedule');
    const lockName = `schedule:${campaignId}`;
    const token = await this.deps.locks.lock(lockName, 15_000, 5_000);
    if (!token) throw new DomainError(ErrorCodes.INVALID_STATE, `another change to the schedule of campaign ${campaignId} is in progress; try again`);
    try {
      const result = await this.deps.lifecycle.setSchedule(campaignId, spec);
      if (!result.ok) {
        if (result.reason === 'missing') throw campaignNotFound(campaignId);
        throw invalidState(campaignId, result.status!, 'schedule', result.message);
      }
      try {
        await this.deps.scheduler.set(campaignId, spec, result.version);
      } catch (err) {
        await this.undo(campaignId, result.version, result.before);
        throw err;
      }
    } finally {
      await this.deps.locks.unlock(lockName, token);
    }
    return currentView(this.deps.store, this.deps.runs, campaignId);
  }

  /**
   * The scheduler write failed, so the answer will be "nothing changed": make
   * it true. The campaign's record goes back as it was, and so, in case the
   * write did land before its reply was lost, does the scheduler. Both are
   * attempted; when Redis is gone for both, the warning says what to do.
   */
  private async undo(campaignId: string, version: number, before: ScheduleBefore): Promise<void> {
    try {
      if (!(await this.deps.lifecycle.restoreSchedule(campaignId, version, before))) return;
      if (before.schedule) await this.deps.scheduler.set(campaignId, before.schedule, before.version);
      else await this.deps.scheduler.remove(campaignId);
    } catch (err) {
      this.deps.log.warn(
        { campaignId, err: (err as Error).message },
        'a schedule change failed and could not be fully undone; send POST /api/campaigns/:id/schedule again once Redis answers',
      );
    }
  }
}
