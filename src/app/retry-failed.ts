import { LEDGER_BYTES_PER_RECIPIENT, LIST_BYTES_PER_RECIPIENT, type MemoryGuard } from './memory-guard.js';
import { invalidState } from '../domain/campaign.js';
import { campaignNotFound, DomainError, ErrorCodes } from '../domain/errors.js';
import type { StoredRecipient } from '../domain/recipient.js';
import { decodeLegs, encodeLegs } from '../domain/fallback.js';
import { campaignView, latestRun, requireCampaign, type CampaignView } from './campaign-view.js';
import type { CampaignStore, Ledger, Runs, RunState } from './ports.js';
import type { RunStarter } from './run-starter.js';

/** The id of the retry of a run: main → main-r1 → main-r2 … (one id per source run, so racing calls make one run). */
export function retryRunId(sourceRunId: string): string {
  const match = /^(.*)-r(\d+)$/.exec(sourceRunId);
  return match ? `${match[1]}-r${Number(match[2]) + 1}` : `${sourceRunId}-r1`;
}

/**
 * Sends again to exactly the recipients that ended `failed` in the latest run,
 * and to no one else: a new run over a list of just those (with its own run
 * id, so its own idempotency keys). `unknown` ones are not retried: they may
 * have been delivered. With a fallback chain, each is retried on the leg it
 * failed on (the last it reached), never from the first channel again. The run id is derived from the run it retries, so
 * repeated or concurrent calls make one retry run.
 */
export class RetryFailed {
  constructor(
    private readonly deps: {
      store: CampaignStore;
      runs: Pick<Runs, 'getRun'>;
      ledger: Pick<Ledger, 'readEntry' | 'listBad' | 'presetLegs' | 'dropLegs' | 'countPresetLegs'>;
      starter: RunStarter;
      pageSize: number;
      /** Refuses new work while Redis is nearly full. */
      memory?: Pick<MemoryGuard, 'admit'>;
    },
  ) {}

  async execute(campaignId: string): Promise<CampaignView> {
    const campaign = await requireCampaign(this.deps.store, campaignId);
    const source = await latestRun(this.deps.runs, campaign);
    if (!source || (campaign.status !== 'completed' && campaign.status !== 'scheduled')) {
      throw invalidState(campaignId, campaign.status, 'retry-failed', 'Retry-failed needs a finished run.');
    }
    if (source.archived) {
      throw invalidState(campaignId, campaign.status, 'retry-failed', `The latest run (${source.id}) is archived (RUN_RETENTION_MS): its ledger left Redis.`);
    }
    if (source.counts.failed === 0) {
      throw new DomainError(ErrorCodes.INVALID_STATE, `the latest run (${source.id}) of campaign ${campaignId} has no failed recipients`, {
        status: campaign.status,
        runId: source.id,
      });
    }
    await this.deps.memory?.admit('retry-failed', source.counts.failed * (LIST_BYTES_PER_RECIPIENT + LEDGER_BYTES_PER_RECIPIENT));
    const { failed, legs } = await this.failedRecipients(campaignId, source);
    const staging = await this.deps.store.beginStaging(campaignId, failed.length, this.deps.pageSize);
    await staging.add(failed);
    const staged = await staging.finish();
    const runId = retryRunId(source.id);
    // A recipient that failed on a fallback leg is retried on that leg, not from the first channel again:
    // its legs byte is in place before any worker can take its page.
    // (Only legs the campaign's chain still has: one edited since starts them on its own provider again.)
    const chain = campaign.fallback.length;
    await this.presetLegs(
      campaignId,
      runId,
      legs.map((byte) => (decodeLegs(byte).leg <= chain ? byte : 0)),
      staged.pageSize,
    );
    const created = await this.deps.starter.start(campaignId, runId, {
      allowedFrom: ['completed', 'scheduled'],
      statusAfter: null,
      trigger: `retry-failed:${source.id}`,
      recipients: staged,
    });
    if (created.ok) {
      await staging.commit();
      await this.deps.ledger.countPresetLegs(
        campaignId,
        runId,
        legs.map((byte) => decodeLegs(byte).leg).filter((leg) => leg > 0 && leg <= chain),
      );
    } else {
      await staging.abort();
      // Not made by this call: legs bytes set for a run that does not exist go (a run a racing call made keeps its own).
      if (created.reason !== 'exists') await this.deps.ledger.dropLegs(campaignId, runId, staged.pages);
      if (created.reason === 'missing') throw campaignNotFound(campaignId);
      throw invalidState(
        campaignId,
        created.status ?? campaign.status,
        'retry-failed',
        created.reason === 'exists'
          ? `Run ${runId} was made already.`
          : created.reason === 'expired'
            ? `The campaign's deadline (expiresAt ${new Date(created.deadline ?? 0).toISOString()}) has passed: PATCH expiresAt to retry.`
            : undefined,
      );
    }
    const [updated, run] = await Promise.all([this.deps.store.get(campaignId), this.deps.runs.getRun(campaignId, runId)]);
    return campaignView(updated ?? campaign, run);
  }

  /** The legs bytes of a retry run's recipients (by position), page by page; pages where everyone starts on leg 0 have none. */
  private async presetLegs(campaignId: string, runId: string, legs: readonly number[], pageSize: number): Promise<void> {
    for (let page = 0; page * pageSize < legs.length; page += 1) {
      const bytes = Buffer.from(legs.slice(page * pageSize, (page + 1) * pageSize));
      if (bytes.some((b) => b !== 0)) await this.deps.ledger.presetLegs(campaignId, runId, page, bytes);
    }
  }

  /** The failed recipients of a run, in list order, read page by page, with the legs byte each ended on. */
  private async failedRecipients(campaignId: string, run: RunState): Promise<{ failed: StoredRecipient[]; legs: number[] }> {
    const { pageSize, version } = run.recipients;
    const out: StoredRecipient[] = [];
    const legs: number[] = [];
    const pages = new Map<number, StoredRecipient[]>();
    let after = -1;
    for (;;) {
      const positions = await this.deps.ledger.listBad(campaignId, run.id, after, 1000);
      if (positions.length === 0) break;
      const entries = await Promise.all(positions.map((position) => this.deps.ledger.readEntry(campaignId, run.id, position, pageSize)));
      for (const [i, position] of positions.entries()) {
        // Unknown ones may have been delivered: never resent here.
        if (entries[i]!.record.state !== 'failed') continue;
        const page = Math.floor(position / pageSize);
        if (!pages.has(page)) pages.set(page, await this.deps.store.readPage(campaignId, version, page));
        out.push(pages.get(page)![position % pageSize]!);
        legs.push(entries[i]!.legs ? encodeLegs(entries[i]!.legs!) : 0);
      }
      after = positions[positions.length - 1]!;
      pages.clear();
    }
    if (out.length === 0) throw new Error(`run ${run.id} counts failed recipients but none is listed`);
    return { failed: out, legs };
  }
}
