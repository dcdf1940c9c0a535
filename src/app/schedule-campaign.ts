import { invalidState } from '../domain/campaign.js';
import { campaignNotFound, DomainError, ErrorCodes } from '../domain/errors.js';
import { parseSchedule } from '../domain/schedule.js';
import { currentView, type CampaignView } from './campaign-view.js';
import type { CampaignStore, Lifecycle, Locks, Runs, Scheduler } from './ports.js';

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
    },
  ) {}

  async execute(campaignId: string, input: { at?: string; cron?: string; timezone?: string }): Promise<CampaignView> {
    const spec = parseSchedule(input, Date.now());
    const lockName = `schedule:${campaignId}`;
    const token = await this.deps.locks.lock(lockName, 15_000, 5_000);
    if (!token) throw new DomainError(ErrorCodes.INVALID_STATE, `another change to the schedule of campaign ${campaignId} is in progress; try again`);
    try {
      const result = await this.deps.lifecycle.setSchedule(campaignId, spec);
      if (!result.ok) {
        if (result.reason === 'missing') throw campaignNotFound(campaignId);
        throw invalidState(campaignId, result.status!, 'schedule', result.message);
      }
      await this.deps.scheduler.set(campaignId, spec, result.version);
    } finally {
      await this.deps.locks.unlock(lockName, token);
    }
    return currentView(this.deps.store, this.deps.runs, campaignId);
  }
}
