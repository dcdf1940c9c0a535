import { DomainError, ErrorCodes } from '../domain/errors.js';
import { recipientId, recipientRecord, type RecipientRecord } from '../domain/recipient.js';
import type { Campaign } from '../domain/campaign.js';
import { reasonName } from '../domain/respect.js';
import { campaignView, countsView, iso, latestRun, requireCampaign, runView, type CampaignView, type CountsView, type RunView } from './campaign-view.js';
import type { CampaignStore, Ledger, LedgerEntry, OccurrenceEntry, Runs, RunState } from './ports.js';

export interface RecipientEntryView {
  recipient: RecipientRecord;
  runId: string | null;
  state: string;
  attempts: number;
  lastError: { code: string; message: string; attempts: number; at: string } | null;
  /** For pending: when the next attempt is due; otherwise: when the state last changed. */
  updatedAt: string | null;
  runStartedAt: string | null;
  /** Why it was skipped (`suppressed`, `frequency-cap`, `token-invalid`, `cancelled`) or, while pending, deferred (`quiet-hours`, until `updatedAt`). */
  reason?: string;
  reasonDetail?: string;
}

export interface RunDetailView extends RunView {
  counts: CountsView;
}

export interface FailureView {
  recipientId: string;
  state: 'failed' | 'unknown';
  attempts: number;
  error: { code: string; message: string } | null;
  at: string | null;
}

const RUN_ID_PATTERN = /^[A-Za-z0-9._-]{1,128}$/;

/** One recipient of a run in its results export. */
export interface ResultRow {
  id: string;
  state: string;
  attempts: number;
  reason?: string;
  reasonDetail?: string;
  lastError: { code: string; message: string; at: string | null } | null;
  /** For pending: when the next attempt is due; otherwise: when the state last changed. */
  updatedAt: string | null;
}

/** What a recipient's ledger entry says, as the API shows it. */
function entryState(run: RunState, entry: LedgerEntry) {
  const { record } = entry;
  // Cancelling a run settles its pending recipients in the counts at once (their records stay pending):
  // skipped, or unknown when an earlier attempt may have been delivered.
  const cancelled = run.status === 'cancelled' && record.state === 'pending';
  const reason = cancelled && !record.inDoubt ? 'cancelled' : reasonName(record.reason);
  return {
    state: cancelled ? (record.inDoubt ? 'unknown' : 'skipped') : record.state,
    ...(reason ? { reason } : {}),
    ...(reason && entry.lastError?.code === 'SKIPPED' ? { reasonDetail: entry.lastError.message } : {}),
    attempts: record.attempts,
    updatedAt: record.attempts > 0 || record.state !== 'pending' || record.reason !== 0 ? iso(run.createdAt + record.at) : null,
  };
}

export interface Paged<T> {
  items: T[];
  nextCursor: string | null;
}

export class CampaignQueries {
  constructor(
    private readonly deps: {
      store: CampaignStore;
      runs: Pick<Runs, 'getRun'>;
      ledger: Pick<Ledger, 'readEntry' | 'readPageEntries' | 'listBad'>;
    },
  ) {}

  private async load(id: string): Promise<{ campaign: Campaign; run: RunState | null }> {
    const campaign = await requireCampaign(this.deps.store, id);
    return { campaign, run: await latestRun(this.deps.runs, campaign) };
  }

  async get(id: string): Promise<CampaignView> {
    const { campaign, run } = await this.load(id);
    return campaignView(campaign, run);
  }

  async list(limit: number, cursor?: string): Promise<Paged<CampaignView>> {
    const page = await this.deps.store.list(limit, cursor);
    const items = await Promise.all(page.items.map(async (campaign) => campaignView(campaign, await latestRun(this.deps.runs, campaign))));
    return { items, nextCursor: page.nextCursor };
  }

  async recipient(campaignId: string, id: string): Promise<RecipientEntryView> {
    const { campaign, run } = await this.load(campaignId);
    // The latest run's own version of the list (the list may have been replaced since).
    const layout = run ? run.recipients : campaign.recipients;
    const position = await this.deps.store.findPosition(campaignId, layout, id);
    if (position === null) {
      throw new DomainError(ErrorCodes.RECIPIENT_NOT_FOUND, `campaign ${campaignId} has no recipient ${JSON.stringify(id)}`);
    }
    const { pageSize } = layout;
    const stored = (await this.deps.store.readPage(campaignId, layout.version, Math.floor(position / pageSize)))[position % pageSize];
    if (stored === undefined || recipientId(stored) !== id) throw new Error(`recipient index of campaign ${campaignId} is inconsistent`);
    if (!run) {
      return { recipient: recipientRecord(stored), runId: null, state: 'pending', attempts: 0, lastError: null, updatedAt: null, runStartedAt: null };
    }
    const entry = await this.deps.ledger.readEntry(campaignId, run.id, position, pageSize);
    return {
      recipient: recipientRecord(stored),
      runId: run.id,
      ...entryState(run, entry),
      lastError: entry.lastError ? { ...entry.lastError, at: iso(entry.lastError.at) } : null,
      runStartedAt: iso(run.createdAt),
    };
  }

  /**
   * Every recipient of a run, live or finished, in list order, read a page
   * at a time (three reads per page: its recipients, its records, the errors
   * of those tried): what the results export streams.
   */
  async results(campaignId: string, runId: string): Promise<{ total: number; rows: AsyncGenerator<ResultRow> }> {
    await requireCampaign(this.deps.store, campaignId);
    // Run ids are the product's own (`main`, occurrence and retry ids): anything else names no run.
    const run = RUN_ID_PATTERN.test(runId) ? await this.deps.runs.getRun(campaignId, runId) : null;
    if (!run) throw new DomainError(ErrorCodes.RUN_NOT_FOUND, `campaign ${campaignId} has no run ${JSON.stringify(runId.slice(0, 128))}`);
    const { store, ledger } = this.deps;
    const { total, pageSize, version } = run.recipients;
    async function* rows(): AsyncGenerator<ResultRow> {
      for (let page = 0; page * pageSize < total; page += 1) {
        const recipients = await store.readPage(campaignId, version, page);
        const entries = await ledger.readPageEntries(campaignId, runId, page, pageSize, recipients.length);
        for (const [i, stored] of recipients.entries()) {
          const entry = entries[i]!;
          yield {
            id: recipientId(stored),
            ...entryState(run!, entry),
            lastError: entry.lastError ? { code: entry.lastError.code, message: entry.lastError.message, at: iso(entry.lastError.at) } : null,
          };
        }
      }
    }
    return { total, rows: rows() };
  }

  /** Runs newest first with their counts, and the latest occurrences of the schedule. */
  async runs(campaignId: string, limit: number): Promise<{ items: RunDetailView[]; occurrences: OccurrenceEntry[] }> {
    await requireCampaign(this.deps.store, campaignId);
    const ids = await this.deps.store.runIds(campaignId, limit);
    const runs = await Promise.all(ids.map((id) => this.deps.runs.getRun(campaignId, id)));
    const items = runs.filter((r): r is RunState => r !== null).map((r) => ({ ...runView(r), counts: countsView(r) }));
    return { items, occurrences: await this.deps.store.occurrences(campaignId, limit) };
  }

  async failures(campaignId: string, limit: number, cursor?: string): Promise<Paged<FailureView>> {
    const { run } = await this.load(campaignId);
    if (!run) return { items: [], nextCursor: null };
    const after = cursor === undefined ? -1 : Number(cursor);
    if (!Number.isInteger(after) || after < -1)
      throw new DomainError(ErrorCodes.VALIDATION_FAILED, 'cursor is not one this API returned', { path: ['cursor'] });
    const positions = await this.deps.ledger.listBad(campaignId, run.id, after, limit + 1);
    const shown = positions.slice(0, limit);
    const { pageSize, version } = run.recipients;
    const pages = new Map<number, Promise<Awaited<ReturnType<CampaignStore['readPage']>>>>();
    const items = await Promise.all(
      shown.map(async (position) => {
        const pageNo = Math.floor(position / pageSize);
        if (!pages.has(pageNo)) pages.set(pageNo, this.deps.store.readPage(campaignId, version, pageNo));
        const [page, entry] = await Promise.all([pages.get(pageNo)!, this.deps.ledger.readEntry(campaignId, run.id, position, pageSize)]);
        return {
          recipientId: recipientId(page[position % pageSize]!),
          // (A pending record here is one a cancel settled as unknown: it was in doubt.)
          state: entry.record.state === 'failed' ? ('failed' as const) : ('unknown' as const),
          attempts: entry.record.attempts,
          error: entry.lastError ? { code: entry.lastError.code, message: entry.lastError.message } : null,
          at: entry.lastError ? iso(entry.lastError.at) : null,
        };
      }),
    );
    return { items, nextCursor: positions.length > limit ? String(shown[shown.length - 1]) : null };
  }
}
