/**
 * Events out: the event types a campaign's outbox carries, who subscribes to
 * which, and how a webhook delivery is retried. Pure rules; the outbox itself
 * is written by the ledger's Lua steps (adapters/redis/lua/includes/outbox.lua)
 * and delivered by app/webhook-dispatcher.ts.
 */
export const RUN_EVENT_TYPES = ['run.started', 'run.paused', 'run.resumed', 'run.completed', 'run.cancelled', 'run.stuck', 'schedule.skipped'] as const;

/** One per recipient, written only while an endpoint subscribes (sent and delivered are one per send). */
export const RECIPIENT_EVENT_TYPES = [
  'recipient.failed',
  'recipient.unknown',
  'recipient.skipped',
  'recipient.sent',
  'recipient.delivered',
  'recipient.undelivered',
] as const;

export const EVENT_TYPES = [...RUN_EVENT_TYPES, ...RECIPIENT_EVENT_TYPES] as const;

export type RunEventType = (typeof RUN_EVENT_TYPES)[number];
export type RecipientEventType = (typeof RECIPIENT_EVENT_TYPES)[number];
export type EventType = (typeof EVENT_TYPES)[number];

/**
 * A recipient event type's one-letter code: in a ledger step's event mask
 * (which kinds it writes) and in the outbox's `recipients` entries, in this
 * order within an entry (RECIPIENT_KINDS in lua/includes/outbox.lua).
 */
export const EVENT_CODES: Record<RecipientEventType, string> = {
  'recipient.failed': 'f',
  'recipient.unknown': 'u',
  'recipient.skipped': 'k',
  'recipient.sent': 's',
  'recipient.undelivered': 'x',
  'recipient.delivered': 'd',
};

export const CODE_TYPES: Record<string, RecipientEventType> = Object.fromEntries(
  Object.entries(EVENT_CODES).map(([type, code]) => [code, type as RecipientEventType]),
);

export function isRecipientEvent(type: string): type is RecipientEventType {
  return (RECIPIENT_EVENT_TYPES as readonly string[]).includes(type);
}

/** How a webhook endpoint's deliveries are retried. */
export interface WebhookRetry {
  /** Attempts of one delivery at most. */
  maxAttempts: number;
  /** First wait; it doubles per attempt (with jitter) up to maxMs. */
  baseMs: number;
  maxMs: number;
  /** No attempt starts later than this after the first: the delivery is then a dead letter. */
  forMs: number;
}

export const DEFAULT_WEBHOOK_RETRY: WebhookRetry = { maxAttempts: 50, baseMs: 5000, maxMs: 3_600_000, forMs: 86_400_000 };

/** Where events go, and which. */
export interface WebhookEndpoint {
  name: string;
  url: string;
  events: EventType[];
  /** Only these campaigns' events; null: every campaign's. */
  campaigns: string[] | null;
  /** Deliveries per second to this endpoint, at most (the permit limiter's cap). */
  tps: number;
  timeoutMs: number;
  retry: WebhookRetry;
  /** From WEBHOOKS_FILE (changed by editing the file) or made through the API. */
  source: 'file' | 'api';
}

export function subscribesTo(endpoint: Pick<WebhookEndpoint, 'campaigns'>, campaignId: string): boolean {
  return endpoint.campaigns === null || endpoint.campaigns.includes(campaignId);
}

/** Whether the endpoint takes any recipient event (so it holds back their trimming). */
export function wantsRecipientEvents(endpoint: Pick<WebhookEndpoint, 'events'>): boolean {
  return endpoint.events.some(isRecipientEvent);
}

/**
 * The recipient event kinds a campaign's ledger steps write to its outbox:
 * those some endpoint that takes the campaign's events subscribes to (a sent
 * event per send costs nothing while nobody asks for it).
 */
export function eventMask(endpoints: readonly Pick<WebhookEndpoint, 'events' | 'campaigns'>[], campaignId: string): string {
  let mask = '';
  for (const endpoint of endpoints) {
    if (!subscribesTo(endpoint, campaignId)) continue;
    for (const type of endpoint.events) {
      const code = isRecipientEvent(type) ? EVENT_CODES[type] : undefined;
      if (code && !mask.includes(code)) mask += code;
    }
  }
  return mask;
}

/**
 * When attempt `attempt` (1 = the first, failed) of a delivery is followed
 * by the next: exponential from `baseMs`, at most `maxMs`, with jitter over
 * its upper half (retries of a failed burst spread out, and none comes
 * sooner than half its step). Null when no attempt is left: the attempts are
 * spent, or the next would start more than `forMs` after the first.
 */
export function nextAttemptAt(retry: WebhookRetry, attempt: number, firstAt: number, now: number, random: () => number = Math.random): number | null {
  if (attempt >= retry.maxAttempts) return null;
  const step = Math.min(retry.maxMs, retry.baseMs * 2 ** Math.max(0, attempt - 1));
  const at = now + Math.floor(step / 2 + random() * (step / 2));
  return at - firstAt > retry.forMs ? null : at;
}

/** A Standard Webhooks secret: `whsec_` and the base64 of 24 to 64 random bytes. */
export const WEBHOOK_SECRET_PATTERN = /^whsec_[A-Za-z0-9+/]{32,88}={0,2}$/;
