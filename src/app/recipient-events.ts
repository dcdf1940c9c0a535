import { recipientId } from '../domain/recipient.js';
import { reasonName } from '../domain/respect.js';
import type { RecipientEvent } from '../domain/outbox.js';
import type { RecipientEventType } from '../domain/webhooks.js';
import { iso } from './campaign-view.js';
import type { CampaignStore, Ledger, Runs } from './ports.js';

/** A recipient event as webhooks and the events API show it. */
export interface RecipientEventView {
  type: RecipientEventType;
  /** Null only when the run's list left Redis before the event was read (archived). */
  recipientId: string | null;
  /** Its place in the run's list. */
  position: number;
  at: string;
  attempts?: number;
  /** failed, unknown: the last error. */
  error?: { code: string; message: string };
  /** skipped: why (`suppressed`, `frequency-cap`, `token-invalid`, `render-error`, …) and the detail. */
  reason?: string;
  reasonDetail?: string;
  /** delivered, undelivered: when the provider says it happened. */
  deliveredAt?: string;
}

export interface RecipientEventSources {
  store: Pick<CampaignStore, 'readPage'>;
  runs: Pick<Runs, 'getRun'>;
  ledger: Pick<Ledger, 'readEntry'>;
}

/**
 * The recipients behind one run's events: ids from the run's list (a page
 * read once per page), and for failed, unknown and skipped ones what the
 * ledger says of them (final: the outbox only ever names a final outcome).
 */
export async function describeRecipientEvents(
  deps: RecipientEventSources,
  campaignId: string,
  runId: string,
  events: readonly RecipientEvent[],
): Promise<RecipientEventView[]> {
  const run = await deps.runs.getRun(campaignId, runId);
  const pages = new Map<number, Promise<string[]>>();
  // A read that fails throws (a delivery is tried again later, with the same body): never sent with ids missing.
  const idAt = async (position: number): Promise<string | null> => {
    if (!run || run.archived) return null;
    const { pageSize, version } = run.recipients;
    const page = Math.floor(position / pageSize);
    if (!pages.has(page))
      pages.set(
        page,
        deps.store.readPage(campaignId, version, page).then((rows) => rows.map(recipientId)),
      );
    return (await pages.get(page)!)[position % pageSize] ?? null;
  };
  return Promise.all(
    events.map(async (event): Promise<RecipientEventView> => {
      const view: RecipientEventView = { type: event.type, recipientId: await idAt(event.position), position: event.position, at: iso(event.at) };
      if (event.type === 'recipient.delivered' || event.type === 'recipient.undelivered') {
        if (event.detail) view.deliveredAt = iso(Number(event.detail));
        return view;
      }
      if (event.type === 'recipient.sent' || !run || run.archived) return view;
      const entry = await deps.ledger.readEntry(campaignId, runId, event.position, run.recipients.pageSize);
      view.attempts = entry.record.attempts;
      if (event.type === 'recipient.skipped') {
        const reason = reasonName(Number(event.detail ?? entry.record.reason));
        if (reason) view.reason = reason;
        if (entry.lastError?.code === 'SKIPPED') view.reasonDetail = entry.lastError.message;
      } else if (entry.lastError) {
        view.error = { code: entry.lastError.code, message: entry.lastError.message };
      }
      return view;
    }),
  );
}
