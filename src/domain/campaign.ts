import { DomainError, ErrorCodes } from './errors.js';
import type { FallbackLeg } from './fallback.js';
import type { RunCounts } from './ledger.js';
import type { FrequencyCap, QuietHours } from './respect.js';
import type { ScheduleSpec } from './schedule.js';
import type { DeliverAt, Pace } from './windows.js';

/**
 * Campaign lifecycle.
 *
 *              launch                      last recipient final (one-off)
 *   draft ───────────────────▶ running ──────────────────────────▶ completed
 *     │ schedule                ▲  │ ▲                                 │
 *     ▼        occurrence       │  │ │ last recipient final (cron)     │ retry-failed
 *   scheduled ──────────────────┘  │ └── scheduled ◀─┘                 ▼
 *     │ ▲ pause / resume     pause │ ▲ resume                        running
 *     ▼ │                          ▼ │
 *   paused (no occurrence)     paused (sending stopped)
 *
 *   draft | scheduled | running | paused ──cancel──▶ cancelled
 *
 * A one-off campaign (launched, or scheduled `at`) has one run; a cron
 * campaign has one run per occurrence and goes back to `scheduled` after each.
 * The table below is the one place these rules live; the Lua scripts that
 * change a status receive the allowed source states from it.
 */
export const CAMPAIGN_STATUSES = ['draft', 'scheduled', 'running', 'paused', 'completed', 'cancelled'] as const;
export type CampaignStatus = (typeof CAMPAIGN_STATUSES)[number];

export const RUN_STATUSES = ['running', 'paused', 'completed', 'cancelled'] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

export type CampaignAction = 'launch' | 'schedule' | 'pause' | 'resume' | 'cancel' | 'edit' | 'upload' | 'clone' | 'delete' | 'pace';

const ALLOWED: Record<CampaignAction, readonly CampaignStatus[]> = {
  launch: ['draft', 'scheduled'],
  // A cron campaign may be rescheduled while one of its runs is sending.
  schedule: ['draft', 'scheduled', 'running', 'paused'],
  pause: ['scheduled', 'running'],
  resume: ['paused'],
  cancel: ['draft', 'scheduled', 'running', 'paused'],
  edit: ['draft', 'scheduled'],
  upload: ['draft', 'scheduled'],
  clone: ['draft', 'scheduled', 'running', 'paused', 'completed', 'cancelled'],
  // A run that sends must be cancelled first: deleting its ledger mid-send would lose who was sent.
  delete: ['draft', 'scheduled', 'completed', 'cancelled'],
  // A run that sends takes a new pace within a second (domain/windows.ts).
  pace: ['draft', 'scheduled', 'running', 'paused', 'completed', 'cancelled'],
};

/**
 * Who goes first when campaigns share a provider: `high` (transactional:
 * receipts, one-time codes) before `normal` before `low` (bulk marketing).
 * Within a class, runs take turns page by page.
 */
export const CAMPAIGN_PRIORITIES = ['high', 'normal', 'low'] as const;
export type CampaignPriority = (typeof CAMPAIGN_PRIORITIES)[number];
export type PriorityClass = 0 | 1 | 2;

export function priorityClass(priority: CampaignPriority): PriorityClass {
  return CAMPAIGN_PRIORITIES.indexOf(priority) as PriorityClass;
}

/** A one-off campaign has exactly one run, and this is its id. */
export const ONE_OFF_RUN_ID = 'main';

export interface Message {
  title: string;
  body: string;
  data: Record<string, unknown>;
  /** Variants by BCP 47 tag, picked by the recipient's `locale` field (domain/template.ts). */
  locales?: Record<string, MessageVariant>;
}

/** A locale variant: what it sets replaces the default's; what it leaves out comes from the default. */
export interface MessageVariant {
  title?: string;
  body?: string;
  data?: Record<string, unknown>;
}

/** What a send does with a recipient whose message does not render: the launch is refused (`refuse`), or they are skipped (`skip`). */
export const RENDER_ERROR_POLICIES = ['refuse', 'skip'] as const;
export type RenderErrorPolicy = (typeof RENDER_ERROR_POLICIES)[number];

export interface RecipientLayout {
  /** Recipients stored (after deduplication). */
  total: number;
  /** Recipients per page: the unit of work of one send job. */
  pageSize: number;
  pages: number;
  /** Buckets of the id → position index. */
  buckets: number;
  /** Bumped each time the list is replaced; runs remember the version they sent. */
  version: number;
}

export interface Campaign {
  id: string;
  name: string;
  provider: string;
  message: Message;
  priority: CampaignPriority;
  /** Overrides the provider's attempts per recipient; null: the provider's. */
  maxAttempts: number | null;
  /** What it is, for caps and quiet hours: `transactional`, `advertising` (night-time rule), … */
  kind: string;
  quietHours: QuietHours | null;
  /** Suppression lists whose members it never sends to. */
  suppressionLists: string[];
  /** Its own cap; null: the configured one for its kind, if any. */
  frequencyCap: FrequencyCap | null;
  /** A recipient whose message does not render: the launch is refused (`refuse`), or the recipient is skipped (`skip`). */
  onRenderError: RenderErrorPolicy;
  status: CampaignStatus;
  createdAt: string;
  updatedAt: string;
  recipients: RecipientLayout;
  latestRunId: string | null;
  schedule: ScheduleSpec | null;
  /** Bumped by every schedule change: an occurrence of an older schedule is ignored. */
  scheduleVersion: number;
  /** Its recipient list left Redis with its last run's results (a one-off campaign past its retention). */
  listArchived: boolean;
  /** The field names its list's recipients have (null: unknown, or more than can be kept). */
  listFields: string[] | null;
  /**
   * Its message strings are Liquid templates: every campaign created or whose
   * message was PATCHed since templates exist. One stored before is sent as
   * its text reads, braces and all, until its message is next PATCHed.
   */
  templated: boolean;
  /** Each recipient at this time of their own day (domain/windows.ts); null: as soon as the run sends. */
  deliverAt: DeliverAt | null;
  /** Its own rate at the provider, inside the provider's cap; null: as fast as the provider's cap and other campaigns allow. */
  pace: Pace | null;
  /** After this instant (ISO-8601) nothing more is sent; null: no fixed deadline. */
  expiresAt: string | null;
  /** A deadline this long after each run's start ("3h"); null: none. */
  expiresAfter: string | null;
  /** Providers tried next for a recipient its own provider could not reach (domain/fallback.ts); empty: none. */
  fallback: FallbackLeg[];
}

/** What an operator sets on a campaign (create, PATCH, clone): the fields a new campaign and its view share. */
export type CampaignSettings = Pick<
  Campaign,
  | 'name'
  | 'provider'
  | 'message'
  | 'priority'
  | 'maxAttempts'
  | 'kind'
  | 'quietHours'
  | 'suppressionLists'
  | 'frequencyCap'
  | 'onRenderError'
  | 'deliverAt'
  | 'pace'
  | 'expiresAt'
  | 'expiresAfter'
  | 'fallback'
>;

export interface Run {
  id: string;
  campaignId: string;
  status: RunStatus;
  createdAt: string;
  completedAt: string | null;
  counts: RunCounts;
}

export function sourceStatesFor(action: CampaignAction): readonly CampaignStatus[] {
  return ALLOWED[action];
}

export function allowedActions(status: CampaignStatus): CampaignAction[] {
  return (Object.keys(ALLOWED) as CampaignAction[]).filter((action) => ALLOWED[action].includes(status));
}

export function invalidState(campaignId: string, status: CampaignStatus, action: string, reason?: string): DomainError {
  const allowed = allowedActions(status);
  let hint = reason ? ` ${reason}` : '';
  if ((action === 'launch' || action === 'schedule') && (status === 'completed' || status === 'running' || status === 'paused')) {
    hint += ' A one-off campaign runs once: use retry-failed to resend its failures, or clone it to send the same message again.';
  }
  return new DomainError(ErrorCodes.INVALID_STATE, `cannot ${action} campaign ${campaignId}: it is ${status}.${hint}`, { status, allowedActions: allowed });
}

/**
 * Most index buckets a list has, whatever its size or the size announced for
 * it (4 million recipients at 64 a bucket; larger lists have fuller buckets).
 * What a client announces only ever sizes work up to this.
 */
export const MAX_INDEX_BUCKETS = 65_536;

/** Index buckets for about `rows` recipients: ~64 ids each keeps a bucket a compact listpack in Redis (hash-max-listpack-entries is 128). */
export function indexBuckets(rows: number): number {
  if (!Number.isFinite(rows) || rows <= 64) return 1;
  return Math.min(MAX_INDEX_BUCKETS, Math.ceil(rows / 64));
}

/** Split `total` recipients into pages and index buckets. */
export function planLayout(total: number, pageSize: number, version = 1): RecipientLayout {
  return { total, pageSize, version, pages: Math.ceil(total / pageSize), buckets: indexBuckets(total) };
}
