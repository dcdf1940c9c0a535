import { compareIds, formatCursor, nextWindow, runEventData, windowParts, type Cursor, type OutboxEntry, type Window } from '../domain/outbox.js';
import type { ProviderHealth } from '../domain/send-rules.js';
import type { EventType } from '../domain/webhooks.js';
import { describeRecipientEvents, type RecipientEventSources } from './recipient-events.js';
import type { ResolvedWebhook } from './webhook-registry.js';
import type { Outbox, ProviderLimits, WebhookAnswer } from './ports.js';

/**
 * One delivery of a webhook endpoint in one campaign's outbox: what is kept
 * of it in Redis, the lease its deliverer holds, and the body it sends.
 */

/** What an endpoint is told when the outbox's bound pushed out events it had not been sent yet. */
export const OVERFLOW_EVENT = 'outbox.overflowed';

export type DeliveryType = EventType | typeof OVERFLOW_EVENT;

/**
 * The delivery an endpoint is making in a campaign, kept in Redis beside its
 * cursor so that whoever takes it over (after a crash) sends the very same
 * window, under the same ids, with the attempts made so far.
 */
export interface Delivery {
  epoch: number;
  from: Cursor;
  to: Cursor;
  /** One delivery per event type in the window, in order; `part` is the one being sent. */
  parts: DeliveryType[];
  part: number;
  /** Attempts of the current part so far, and when its first was. */
  attempt: number;
  firstAt: number;
  nextAt: number;
  lastStatus: number | null;
  lastError: string;
}

export function newDelivery(epoch: number, from: Cursor, to: Cursor, parts: DeliveryType[]): Delivery {
  return { epoch, from, to, parts, part: 0, attempt: 0, firstAt: 0, nextAt: Date.now(), lastStatus: null, lastError: '' };
}

/**
 * An endpoint-and-campaign lease: short, and renewed while its deliverer
 * works, so a deliverer that dies holds the pair up for a few seconds at most.
 */
export const PAIR_LEASE_MS = 5000;
const PAIR_RENEW_MS = 1500;

/** Entries read at a time. */
export const READ_COUNT = 256;

/** A deliverer's hold on one endpoint's place in one campaign's outbox: renewed on a timer; `signal` fires when it is lost (or the process stops). */
export class PairLease {
  private readonly lost = new AbortController();
  private readonly timer: NodeJS.Timeout;
  readonly signal: AbortSignal;

  constructor(
    private readonly outbox: Outbox,
    private readonly campaignId: string,
    private readonly endpoint: string,
    private readonly token: string,
    stopping: AbortSignal,
  ) {
    this.signal = AbortSignal.any([this.lost.signal, stopping]);
    this.timer = setInterval(() => void this.renew(), PAIR_RENEW_MS);
    this.timer.unref();
  }

  private async renew(): Promise<void> {
    const held = await this.outbox.renew(this.campaignId, this.endpoint, this.token, PAIR_LEASE_MS).catch(() => true);
    if (!held) this.lost.abort();
  }

  private held(ok: boolean): boolean {
    if (!ok) this.lost.abort();
    return ok;
  }

  async save(delivery: Delivery): Promise<boolean> {
    return this.held(await this.outbox.saveDelivery(this.campaignId, this.endpoint, this.token, PAIR_LEASE_MS, JSON.stringify(delivery)));
  }

  async advance(epoch: number, cursor: Cursor): Promise<boolean> {
    return this.held(await this.outbox.advance(this.campaignId, this.endpoint, this.token, PAIR_LEASE_MS, epoch, cursor));
  }

  async release(): Promise<void> {
    clearInterval(this.timer);
    await this.outbox.release(this.campaignId, this.endpoint, this.token).catch(() => undefined);
  }
}

/** The limits an endpoint's deliveries take permits under: its tps, rests from the answer (no departure is known). */
export function webhookLimits(endpoint: ResolvedWebhook): ProviderLimits {
  return {
    name: `wh:${endpoint.name}`,
    tps: endpoint.tps,
    timeoutMs: endpoint.timeoutMs,
    arrivalMarginMs: endpoint.timeoutMs,
    breaker: { failures: 20, coolDownMs: 5000, maxCoolDownMs: 60_000 },
  };
}

/** What an answer says of the endpoint's health (its circuit breaker in the limiter). */
export function healthOf(answer: WebhookAnswer): ProviderHealth {
  if (answer.status === null || answer.status >= 500 || answer.status === 429) return 'failed';
  return answer.status < 300 ? 'healthy' : 'neutral';
}

/**
 * Whether entries after `cursor` were pushed out by the outbox's bound
 * (`lost`: the newest that went): then an endpoint there missed them.
 */
export function missed(lost: string | null, cursor: Cursor): boolean {
  if (!lost) return false;
  const order = compareIds(lost, cursor.id);
  return order > 0 || (order === 0 && cursor.off > 0);
}

/**
 * The window a delivery was made for, read again (its end is fixed: the same
 * events, whatever came since), with what the bound pushed out as of that
 * read: when it took any of the window's entries, the window is gone.
 */
export async function rebuildWindow(
  outbox: Pick<Outbox, 'read'>,
  campaignId: string,
  delivery: Delivery,
  /** What counts as lost for this endpoint (`lost`, or `lostRun` for one that takes no recipient event). */
  lostOf: (read: { lost: string | null; lostRun: string | null }) => string | null,
): Promise<{ window: Window | null; lost: string | null }> {
  const entries: OutboxEntry[] = [];
  let from = delivery.from;
  // Read up to the window's end (unwanted entries may lie between its events); each read says what the bound had
  // pushed out by then, and the first that reaches past where it read from is the one that matters.
  for (;;) {
    const batch = await outbox.read(campaignId, from, READ_COUNT);
    const lost = lostOf(batch);
    if (missed(lost, from)) return { window: null, lost };
    entries.push(...batch.entries);
    const last = batch.entries.at(-1);
    if (!last || batch.entries.length < READ_COUNT || compareIds(last.id, delivery.to.id) >= 0) {
      const next = nextWindow(entries, delivery.from, new Set(delivery.parts as EventType[]), { until: delivery.to, limit: Number.MAX_SAFE_INTEGER });
      return { window: next.window, lost };
    }
    from = { id: last.id, off: 0 };
  }
}

/** The body of part `type` of a delivery: `{ type, timestamp, data }`, the same at every attempt. */
export async function deliveryBody(
  sources: RecipientEventSources,
  campaignId: string,
  window: Window | null,
  delivery: Delivery,
  type: DeliveryType,
): Promise<{ body: string; runId: string; count: number }> {
  if (type === OVERFLOW_EVENT || !window) {
    const data = {
      campaignId,
      from: formatCursor(delivery.from),
      to: formatCursor(delivery.to),
      message:
        "events of this campaign were pushed out of its outbox before this endpoint was sent them (it fell too far behind); every recipient's outcome is in GET /api/campaigns/:id/runs/:runId/results",
    };
    // When the last of them was written (the stream id's time).
    const timestamp = new Date(Number(delivery.to.id.split('-')[0])).toISOString();
    return { body: JSON.stringify({ type: OVERFLOW_EVENT, timestamp, data }), runId: '', count: 0 };
  }
  if (window.run) {
    const { entry } = window.run;
    const data = { campaignId, runId: entry.runId, ...runEventData(entry) };
    return { body: JSON.stringify({ type, timestamp: new Date(entry.at).toISOString(), data }), runId: entry.runId, count: 1 };
  }
  const events = windowParts(window).find((p) => p.type === type)?.events ?? [];
  const views = await describeRecipientEvents(sources, campaignId, window.runId, events);
  const recipients = views.map(({ type: _type, recipientId, ...rest }) => ({ id: recipientId, ...rest }));
  const timestamp = new Date(events.at(-1)?.at ?? Number(delivery.to.id.split('-')[0])).toISOString();
  const data = { campaignId, runId: window.runId, count: recipients.length, recipients };
  return { body: JSON.stringify({ type, timestamp, data }), runId: window.runId, count: recipients.length };
}
