import { invalidState } from '../domain/campaign.js';
import { campaignNotFound, DomainError, ErrorCodes } from '../domain/errors.js';
import type { CampaignStore, Deletions, Logger, Scheduler } from './ports.js';

export interface DeletionView {
  id: string;
  status: 'deleting';
  /** What leaves Redis (workers remove it in bounded steps). */
  removes: { recipients: number; runs: number; schedule: boolean };
  /** Archived results: kept, unless `purgeArchive`. */
  archive: 'kept' | 'purged';
}

/**
 * Deletes a campaign: one atomic step marks it deleting (refused while a
 * run sends: cancel first), after which nothing can launch, schedule or
 * change it and every read answers 404; its schedule is removed, and a
 * worker removes its keys in bounded steps. Asking again while that goes on
 * answers the same; a launch racing the delete either ran first (the delete
 * is refused) or is refused itself.
 */
export class DeleteCampaign {
  constructor(
    private readonly deps: {
      store: Pick<CampaignStore, 'get'>;
      deletions: Pick<Deletions, 'mark' | 'pending'>;
      scheduler: Pick<Scheduler, 'remove'>;
      log: Logger;
    },
  ) {}

  async execute(id: string, purgeArchive: boolean): Promise<DeletionView> {
    for (let attempt = 0; attempt < 3; attempt += 1) {
      const campaign = await this.deps.store.get(id);
      if (!campaign) {
        if (await this.deps.deletions.pending(id))
          return { id, status: 'deleting', removes: { recipients: 0, runs: 0, schedule: false }, archive: purgeArchive ? 'purged' : 'kept' };
        throw campaignNotFound(id);
      }
      const marked = await this.deps.deletions.mark(id, campaign.latestRunId, purgeArchive);
      if (marked.ok) {
        await this.deps.scheduler
          .remove(id)
          .catch((err) => this.deps.log.warn({ campaignId: id, err: (err as Error).message }, 'could not remove the schedule of a deleted campaign'));
        this.deps.log.info({ campaignId: id, purgeArchive }, 'campaign marked for deletion');
        return {
          id,
          status: 'deleting',
          removes: { recipients: campaign.recipients.total, runs: marked.runs, schedule: campaign.schedule !== null },
          archive: purgeArchive ? 'purged' : 'kept',
        };
      }
      if (marked.reason === 'missing') throw campaignNotFound(id);
      if (marked.reason === 'state') {
        throw invalidState(
          id,
          marked.status ?? campaign.status,
          'delete',
          marked.message ?? 'Cancel it first: a running or paused campaign is never deleted under its sends.',
        );
      }
    }
    throw new DomainError(ErrorCodes.INVALID_STATE, `campaign ${id} kept changing; try again`);
  }
}
