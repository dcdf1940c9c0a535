import { DomainError, ErrorCodes } from '../domain/errors.js';
import { recipientId, recipientRecord, type RecipientRecord } from '../domain/recipient.js';
import type { Campaign } from '../domain/campaign.js';
import { reasonName } from '../domain/respect.js';
import { SERIES_WINDOW_S, type RunSeriesStore, type SeriesPoint } from './run-series.js';
import type { LeftBecause, Legs } from '../domain/fallback.js';
import { campaignView, countsView, iso, latestRun, requireCampaign, runView, type CampaignView, type CountsView, type RunView } from './campaign-view.js';
import { recipientEventsOf, runEventData, type OutboxEntry } from '../domain/outbox.js';
import { describeRecipientEvents } from './recipient-events.js';
import type { CampaignEvent, CampaignStore, Ledger, LedgerEntry, OccurrenceEntry, ResultRow, ResultsArchive, Runs, RunState } from './ports.js';

export type { ResultRow } from './ports.js';

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
  /** Sent, and what the provider's receipt said since: delivered, or undelivered. */
  delivery?: 'delivered' | 'undelivered';
  /** Read from the archive: the run left Redis. */
  archived?: true;
  /**
   * A campaign with a fallback chain: the legs this recipient reached, in
   * order — each earlier one with why it was left (`failed`, `token-invalid`,
   * `no-token`, `unknown`), the last with the recipient's state on it.
   */
  legs?: Array<{ leg: number; provider: string; left?: LeftBecause; state?: string }>;
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
    ...(record.locale > 0 && run.locales[record.locale - 1] ? { locale: run.locales[record.locale - 1] } : {}),
    ...(record.delivery ? { delivery: record.delivery } : {}),
    ...(run.chain ? { provider: run.chain[entry.legs?.leg ?? 0] ?? '' } : {}),
    attempts: record.attempts,
    updatedAt: record.attempts > 0 || record.state !== 'pending' || record.reason !== 0 ? iso(run.createdAt + record.at) : null,
  };
}

/**
 * Every recipient of a live run, in list order, read a page at a time
 * (three reads per page: its recipients, its records, the errors of those
 * tried): what the results export streams, and what the archive keeps.
 */
export async function* ledgerRows(store: Pick<CampaignStore, 'readPage'>, ledger: Pick<Ledger, 'readPageEntries'>, run: RunState): AsyncGenerator<ResultRow> {
  const { total, pageSize, version } = run.recipients;
  for (let page = 0; page * pageSize < total; page += 1) {
    const recipients = await store.readPage(run.campaignId, version, page);
    const entries = await ledger.readPageEntries(run.campaignId, run.id, page, pageSize, recipients.length);
    for (const [i, stored] of recipients.entries()) {
      const entry = entries[i]!;
      yield {
        id: recipientId(stored),
        ...entryState(run, entry),
        lastError: entry.lastError ? { code: entry.lastError.code, message: entry.lastError.message, at: iso(entry.lastError.at) } : null,
      };
    }
  }
}

/** A run's rows, from Redis or, once it left, from the archive. */
function runRows(deps: { store: Pick<CampaignStore, 'readPage'>; ledger: Pick<Ledger, 'readPageEntries'>; archive: ResultsArchive }, run: RunState) {
  if (!run.archived) return ledgerRows(deps.store, deps.ledger, run);
  return archiveOf(deps.archive, run).rows(run.campaignId, run.id);
}

/** The archive an archived run is read from: this process's, if it is the kind the run went to. */
function archiveOf(archive: ResultsArchive, run: RunState): ResultsArchive {
  if (run.archived?.kind === archive.kind) return archive;
  throw new DomainError(
    ErrorCodes.STORE_UNAVAILABLE,
    `run ${run.id} of campaign ${run.campaignId} was archived to ${run.archived?.kind === 'postgres' ? 'PostgreSQL (ARCHIVE_URL)' : 'a directory (ARCHIVE_DIR)'}; this process reads ${archive.kind === 'postgres' ? 'PostgreSQL' : 'a directory'}: give it the same ARCHIVE_URL / ARCHIVE_DIR as the workers`,
  );
}

export interface Paged<T> {
  items: T[];
  nextCursor: string | null;
}

export class CampaignQueries {
  constructor(
    private readonly deps: {
      store: CampaignStore;
      runs: Pick<Runs, 'getRun' | 'waves'>;
      ledger: Pick<Ledger, 'readEntry' | 'readPageEntries' | 'listBad'>;
      /** Where archived runs are read from. */
      archive: ResultsArchive;
      /** Runs' per-second outcomes (the campaign page's chart). */
      series?: Pick<RunSeriesStore, 'read'>;
    },
  ) {}

  /** A run's per-second outcomes of its last hour (src/app/run-series.ts), oldest first. */
  async series(campaignId: string, runId: string): Promise<{ runId: string; windowSeconds: number; now: number; points: SeriesPoint[] }> {
    await requireCampaign(this.deps.store, campaignId);
    const run = RUN_ID_PATTERN.test(runId) ? await this.deps.runs.getRun(campaignId, runId) : null;
    if (!run) throw new DomainError(ErrorCodes.RUN_NOT_FOUND, `campaign ${campaignId} has no run ${JSON.stringify(runId.slice(0, 128))}`);
    const points = this.deps.series ? await this.deps.series.read(campaignId, runId) : [];
    // The server's clock, which the chart cuts at (not the browser's).
    return { runId, windowSeconds: SERIES_WINDOW_S, now: Math.floor(Date.now() / 1000), points };
  }

  private async load(id: string): Promise<{ campaign: Campaign; run: RunState | null }> {
    const campaign = await requireCampaign(this.deps.store, id);
    return { campaign, run: await latestRun(this.deps.runs, campaign) };
  }

  async get(id: string): Promise<CampaignView> {
    const { campaign, run } = await this.load(id);
    return campaignView(campaign, run, await this.wavesOf(run));
  }

  /** The waves of a run that delivers at local times (none for one that does not, or that left Redis). */
  private async wavesOf(run: RunState | null): Promise<Array<{ at: number; recipients: number }> | undefined> {
    return run?.deliverAt && !run.archived ? this.deps.runs.waves(run.campaignId, run.id) : undefined;
  }

  async list(limit: number, cursor?: string): Promise<Paged<CampaignView>> {
    const page = await this.deps.store.list(limit, cursor);
    const items = await Promise.all(
      page.items.map(async (campaign) => {
        const run = await latestRun(this.deps.runs, campaign);
        return campaignView(campaign, run, await this.wavesOf(run));
      }),
    );
    return { items, nextCursor: page.nextCursor };
  }

  async recipient(campaignId: string, id: string): Promise<RecipientEntryView> {
    const { campaign, run } = await this.load(campaignId);
    if (run?.archived) return this.archivedRecipient(campaign, run, id);
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
      ...(run.chain && entry.legs ? { legs: legsView(run.chain, entry.legs, entry.record.state) } : {}),
    };
  }

  /** A recipient of an archived run: its row from the archive, its fields from the list while the list is still in Redis. */
  private async archivedRecipient(campaign: Campaign, run: RunState, id: string): Promise<RecipientEntryView> {
    const row = await archiveOf(this.deps.archive, run).find(campaign.id, run.id, id);
    if (!row) throw new DomainError(ErrorCodes.RECIPIENT_NOT_FOUND, `campaign ${campaign.id} has no recipient ${JSON.stringify(id)}`);
    let recipient: RecipientRecord = { id };
    if (!campaign.listArchived) {
      const position = await this.deps.store.findPosition(campaign.id, run.recipients, id).catch(() => null);
      const { pageSize, version } = run.recipients;
      const page = position === null ? null : await this.deps.store.readPage(campaign.id, version, Math.floor(position / pageSize)).catch(() => null);
      const stored = page?.[position! % pageSize];
      if (stored !== undefined && recipientId(stored) === id) recipient = recipientRecord(stored);
    }
    return {
      recipient,
      runId: run.id,
      state: row.state,
      ...(row.reason ? { reason: row.reason } : {}),
      ...(row.reasonDetail ? { reasonDetail: row.reasonDetail } : {}),
      attempts: row.attempts,
      updatedAt: row.updatedAt,
      lastError: row.lastError ? { code: row.lastError.code, message: row.lastError.message, attempts: row.attempts, at: row.lastError.at ?? '' } : null,
      runStartedAt: iso(run.createdAt),
      archived: true,
    };
  }

  /**
   * Every recipient of a run, live, finished or archived, in list order
   * (see ledgerRows): what the results export streams.
   */
  async results(campaignId: string, runId: string): Promise<{ total: number; archived: boolean; rows: AsyncIterable<ResultRow> }> {
    await requireCampaign(this.deps.store, campaignId);
    // Run ids are the product's own (`main`, occurrence and retry ids): anything else names no run.
    const known = RUN_ID_PATTERN.test(runId);
    const run = known ? await this.deps.runs.getRun(campaignId, runId) : null;
    // Older than the summaries kept in Redis (RUN_SUMMARIES_KEPT): the archive has it, or nobody does.
    const manifest = !run && known ? await this.deps.archive.manifest(campaignId, runId) : null;
    if (manifest) return { total: manifest.count, archived: true, rows: this.deps.archive.rows(campaignId, runId) };
    if (!run) throw new DomainError(ErrorCodes.RUN_NOT_FOUND, `campaign ${campaignId} has no run ${JSON.stringify(runId.slice(0, 128))}`);
    return { total: run.archived ? run.archived.count : run.recipients.total, archived: run.archived !== null, rows: runRows(this.deps, run) };
  }

  /**
   * The campaign's outbox, oldest first after the cursor `after` (a stream
   * id): `next` is where to read from next time. A `recipients` entry lists
   * its recipient events with who they are.
   */
  async events(campaignId: string, after: string | null, limit: number): Promise<{ items: CampaignEvent[]; next: string | null }> {
    await requireCampaign(this.deps.store, campaignId);
    const entries = await this.deps.store.events(campaignId, after, limit);
    const items = await Promise.all(entries.map((entry) => this.eventView(campaignId, entry)));
    return { items, next: entries.at(-1)?.id ?? after };
  }

  private async eventView(campaignId: string, entry: OutboxEntry): Promise<CampaignEvent> {
    const base = { id: entry.id, type: entry.type as CampaignEvent['type'], runId: entry.runId, at: iso(entry.at) };
    if (entry.type === 'recipients') {
      return { ...base, data: { events: await describeRecipientEvents(this.deps, campaignId, entry.runId, recipientEventsOf(entry)) } };
    }
    return { ...base, data: runEventData(entry) };
  }

  /** Runs newest first with their counts, and the latest occurrences of the schedule. */
  async runs(campaignId: string, limit: number): Promise<{ items: RunDetailView[]; occurrences: OccurrenceEntry[] }> {
    await requireCampaign(this.deps.store, campaignId);
    const ids = await this.deps.store.runIds(campaignId, limit);
    const runs = await Promise.all(ids.map((id) => this.deps.runs.getRun(campaignId, id)));
    const items = runs.filter((r): r is RunState => r !== null).map((r) => ({ ...runView(r), counts: countsView(r) }));
    return { items, occurrences: await this.deps.store.occurrences(campaignId, limit) };
  }

  /** The failures of an archived run: a scan of its rows (positions are cursors, as for a live run). */
  private async archivedFailures(run: RunState, after: number, limit: number): Promise<Paged<FailureView>> {
    const items: FailureView[] = [];
    let position = -1;
    let last = -1;
    for await (const row of archiveOf(this.deps.archive, run).rows(run.campaignId, run.id)) {
      position += 1;
      if (position <= after || (row.state !== 'failed' && row.state !== 'unknown')) continue;
      if (items.length === limit) return { items, nextCursor: String(last) };
      last = position;
      items.push({
        recipientId: row.id,
        state: row.state,
        attempts: row.attempts,
        error: row.lastError ? { code: row.lastError.code, message: row.lastError.message } : null,
        at: row.lastError?.at ?? null,
      });
    }
    return { items, nextCursor: null };
  }

  async failures(campaignId: string, limit: number, cursor?: string): Promise<Paged<FailureView>> {
    const { run } = await this.load(campaignId);
    if (!run) return { items: [], nextCursor: null };
    const after = cursor === undefined ? -1 : Number(cursor);
    if (!Number.isInteger(after) || after < -1)
      throw new DomainError(ErrorCodes.VALIDATION_FAILED, 'cursor is not one this API returned', { path: ['cursor'] });
    if (run.archived) return this.archivedFailures(run, after, limit);
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

function legsView(chain: readonly string[], legs: Legs, state: string): NonNullable<RecipientEntryView['legs']> {
  return [...legs.left.map((left, leg) => ({ leg, provider: chain[leg] ?? '', left })), { leg: legs.leg, provider: chain[legs.leg] ?? '', state }];
}
