import { invalidState, ONE_OFF_RUN_ID, sourceStatesFor } from '../domain/campaign.js';
import { campaignNotFound, DomainError, ErrorCodes } from '../domain/errors.js';
import { campaignView, type CampaignView } from './campaign-view.js';
import type { AppEvents } from './events.js';
import type { CampaignStore, Ledger } from './ports.js';
import type { RunPump } from './pump.js';

/**
 * Starts the one run of a one-off campaign. The state check and the run's
 * creation are one atomic step in the ledger, so concurrent launches create
 * exactly one run and the losers get 409.
 */
export class LaunchCampaign {
  constructor(
    private readonly store: CampaignStore,
    private readonly ledger: Ledger,
    private readonly pump: RunPump,
    private readonly events: AppEvents,
  ) {}

  async execute(campaignId: string): Promise<CampaignView> {
    const campaign = await this.store.get(campaignId);
    if (!campaign) throw campaignNotFound(campaignId);
    const runId = ONE_OFF_RUN_ID;
    // Listed as active before it exists, so the supervisor always finds a run
    // whose first pages could not be enqueued (it drops entries with no run).
    await this.ledger.markActive(campaignId, runId);
    const created = await this.ledger.createRun(campaignId, runId, {
      allowedFrom: sourceStatesFor('launch'),
      statusAfter: 'completed',
      trigger: 'launch',
    });
    if (!created.ok) {
      if (created.reason === 'missing') throw campaignNotFound(campaignId);
      if (created.reason === 'empty') {
        throw new DomainError(ErrorCodes.NO_RECIPIENTS, `campaign ${campaignId} has no recipients: upload them before launching`, {
          status: created.status,
        });
      }
      throw invalidState(campaignId, created.status ?? campaign.status, 'launch');
    }
    await this.pump.fill(campaignId, runId);
    const run = await this.ledger.getRun(campaignId, runId);
    this.events.emit('run:started', { campaignId, runId, total: run?.counts.total ?? 0 });
    const updated = await this.store.get(campaignId);
    return campaignView(updated ?? campaign, run);
  }
}
