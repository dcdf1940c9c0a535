import { invalidState, ONE_OFF_RUN_ID, sourceStatesFor } from '../domain/campaign.js';
import { campaignNotFound, DomainError, ErrorCodes } from '../domain/errors.js';
import { campaignView, requireCampaign, type CampaignView } from './campaign-view.js';
import type { CampaignStore, Lifecycle, Logger, Runs, Scheduler } from './ports.js';
import type { DryRun } from './dry-run.js';
import type { RunStarter } from './run-starter.js';
import { LEDGER_BYTES_PER_RECIPIENT, type MemoryGuard } from './memory-guard.js';

/**
 * Runs a one-off campaign now (also one scheduled `at` a later time: its
 * schedule is dropped). Concurrent launches make exactly one run; a campaign
 * that ran already gets 409 with what to do instead.
 */
export class LaunchCampaign {
  constructor(
    private readonly deps: {
      store: CampaignStore;
      runs: Pick<Runs, 'getRun'>;
      starter: RunStarter;
      lifecycle: Lifecycle;
      scheduler: Scheduler;
      /** Refuses new work while Redis is nearly full. */
      memory?: Pick<MemoryGuard, 'admit'>;
      /** Refuses a launch whose message would not render for everyone (the dry run). */
      renders?: Pick<DryRun, 'assertRenders'>;
      log: Logger;
    },
  ) {}

  async execute(campaignId: string): Promise<CampaignView> {
    const campaign = await requireCampaign(this.deps.store, campaignId);
    if (campaign.schedule?.kind === 'cron' && campaign.status !== 'draft') {
      throw invalidState(campaignId, campaign.status, 'launch', 'A recurring (cron) campaign runs at its occurrences; reschedule or cancel it instead.');
    }
    // Before anything changes: a message that would not render for someone is refused with who and why.
    if (sourceStatesFor('launch').includes(campaign.status)) await this.deps.renders?.assertRenders(campaign, 'launch');
    // The run's ledger is written as it sends: counted now, so a running campaign is never what fills Redis.
    await this.deps.memory?.admit('launch', campaign.recipients.total * LEDGER_BYTES_PER_RECIPIENT);
    const created = await this.deps.starter.start(campaignId, ONE_OFF_RUN_ID, {
      allowedFrom: sourceStatesFor('launch'),
      statusAfter: 'completed',
      trigger: 'launch',
      // What was checked (the message rendering for this list) is what runs: a PATCH or upload since refuses it.
      unchangedSince: Date.parse(campaign.updatedAt),
    });
    if (!created.ok) {
      if (created.reason === 'missing') throw campaignNotFound(campaignId);
      if (created.reason === 'empty') {
        throw new DomainError(ErrorCodes.NO_RECIPIENTS, `campaign ${campaignId} has no recipients: upload them before launching`, {
          status: created.status,
        });
      }
      if (created.reason === 'expired') {
        throw invalidState(
          campaignId,
          created.status ?? campaign.status,
          'launch',
          `Its deadline (expiresAt ${new Date(created.deadline ?? 0).toISOString()}) has passed: it would send to no one. PATCH expiresAt, or clone it.`,
        );
      }
      if (created.reason === 'changed') {
        throw new DomainError(
          ErrorCodes.INVALID_STATE,
          `campaign ${campaignId} changed while its launch was being checked (an edit or an upload): launch again`,
          {
            status: created.status,
          },
        );
      }
      throw invalidState(campaignId, created.status ?? campaign.status, 'launch');
    }
    if (campaign.schedule) {
      // Its one run has started. Should the `at` occurrence still fire, it finds the run made and does nothing.
      await this.deps.lifecycle.setSchedule(campaignId, null, campaign.scheduleVersion);
      await this.deps.scheduler
        .remove(campaignId)
        .catch((err) => this.deps.log.warn({ campaignId, err: (err as Error).message }, 'could not remove the schedule'));
    }
    const [updated, run] = await Promise.all([this.deps.store.get(campaignId), this.deps.runs.getRun(campaignId, ONE_OFF_RUN_ID)]);
    return campaignView(updated ?? campaign, run);
  }
}
