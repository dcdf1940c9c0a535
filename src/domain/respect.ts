import { z } from 'zod';
import { BoundedCache } from './bounded-cache.js';
import { canonicalTimeZone, nextOccurrence } from './schedule.js';
import type { RecipientRecord } from './recipient.js';

/**
 * Recipient respect: when a recipient may be sent to at all.
 *
 * Quiet hours: a window of local time (start inclusive, end exclusive,
 * crossing midnight when start > end) in the recipient's own `timezone` field
 * when it has a valid one, else the campaign's. A recipient inside it is not
 * sent and not dropped: it waits until the window ends (the first instant the
 * local clock shows `end`, DST included).
 *
 * Advertising: a campaign of kind `advertising` gets 21:00–08:00 Asia/Seoul
 * unless it sets its own quiet hours (Korean law: advertising pushes at night
 * need separate consent); a recipient with `nightAdConsent: true` (or the
 * string "true", as a CSV column gives it) is exempt from that default.
 */
export interface QuietHours {
  /** "HH:MM" or "HH:MM:SS", local time. */
  start: string;
  end: string;
  /** IANA zone for recipients without a `timezone` of their own. */
  timezone: string;
}

export const AD_NIGHT: QuietHours = { start: '21:00', end: '08:00', timezone: 'Asia/Seoul' };

/** Why a recipient was skipped or is waiting: stored as a small code in its ledger record. */
export const REASONS = {
  none: 0,
  'quiet-hours': 1,
  suppressed: 2,
  'frequency-cap': 3,
  'token-invalid': 4,
  cancelled: 5,
  /** The message did not render for this recipient (a missing variable): never sent as a half-filled text. */
  'render-error': 6,
  /** Waiting for its local time (a campaign's `deliverAt`, domain/windows.ts): deferred, like quiet hours. */
  'local-time': 7,
  /** Not sent before the run's deadline (`expiresAt` / `expiresAfter`, domain/windows.ts). */
  expired: 8,
  /** A fallback leg's message budget (`maxMessages`) was spent before this recipient's turn on it (domain/fallback.ts). */
  'fallback-budget': 9,
} as const;

/** The reasons a pending recipient waits for (the others are why one was skipped). */
export const DEFER_REASONS = ['quiet-hours', 'local-time'] as const;
export type DeferReason = (typeof DEFER_REASONS)[number];
export type ReasonName = keyof typeof REASONS;

export function reasonName(code: number): ReasonName | null {
  const entry = Object.entries(REASONS).find(([, value]) => value === code);
  return entry && entry[0] !== 'none' ? (entry[0] as ReasonName) : null;
}

const TIME = /^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$/;

export function parseTimeOfDay(value: string): number | null {
  const match = TIME.exec(value);
  if (!match) return null;
  return Number(match[1]) * 3600 + Number(match[2]) * 60 + Number(match[3] ?? 0);
}

/** One formatter per canonical zone (at most a few hundred exist; bounded anyway). */
const formatters = new BoundedCache<string, Intl.DateTimeFormat>(1024);

/** Formatters held (for tests: one per canonical zone, bounded). */
export function zoneFormatterCount(): number {
  return formatters.size;
}

/** Seconds since local midnight of `instant` in `zone` (a valid zone name, in any case). */
function localSeconds(instant: number, zone: string): number {
  const canonical = canonicalTimeZone(zone) ?? 'UTC';
  const format = formatters.get(
    canonical,
    (timeZone) => new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', hour: '2-digit', minute: '2-digit', second: '2-digit' }),
  );
  let seconds = 0;
  for (const part of format.formatToParts(new Date(instant))) {
    if (part.type === 'hour') seconds += Number(part.value) * 3600;
    else if (part.type === 'minute') seconds += Number(part.value) * 60;
    else if (part.type === 'second') seconds += Number(part.value);
  }
  return seconds;
}

function inside(seconds: number, start: number, end: number): boolean {
  if (start === end) return false;
  return start < end ? seconds >= start && seconds < end : seconds >= start || seconds < end;
}

/** The quiet hours that apply to a recipient of a campaign, or null. */
export function quietHoursFor(campaign: { quietHours: QuietHours | null; kind: string }, recipient: RecipientRecord): QuietHours | null {
  if (campaign.quietHours) return campaign.quietHours;
  // `"true"` too: a CSV column has no booleans.
  if (campaign.kind === 'advertising' && recipient.nightAdConsent !== true && recipient.nightAdConsent !== 'true') return AD_NIGHT;
  return null;
}

/** The zone quiet hours are read in for a recipient: its own valid `timezone`, else the window's. */
export function zoneFor(hours: QuietHours, recipient: RecipientRecord): string {
  const own = typeof recipient.timezone === 'string' ? canonicalTimeZone(recipient.timezone) : null;
  return own ?? canonicalTimeZone(hours.timezone) ?? 'UTC';
}

/**
 * When a recipient in `zone` may be sent to: `now` when outside quiet hours,
 * else the first instant the window is over — the local clock showing `end`,
 * or, when a DST jump skips `end` that day, the jump itself.
 */
export function quietUntil(hours: QuietHours, zone: string, now: number): number {
  const start = parseTimeOfDay(hours.start)!;
  const end = parseTimeOfDay(hours.end)!;
  const quiet = (instant: number) => inside(localSeconds(instant, zone), start, end);
  if (!quiet(now)) return now;
  const [h, m, s] = [Math.floor(end / 3600), Math.floor((end % 3600) / 60), end % 60];
  let until = nextOccurrence({ kind: 'cron', cron: `${s} ${m} ${h} * * *`, timezone: zone }, now) ?? now;
  if (!quiet(until - 1000)) {
    // `end` fell into a DST gap: the window ended at the jump, before `until`. Find it to the second.
    let low = Math.max(now, until - 3 * 3_600_000);
    while (until - low > 1000) {
      const mid = low + Math.floor((until - low) / 2000) * 1000;
      if (quiet(mid)) low = mid;
      else until = mid;
    }
  }
  return until;
}

export function sendableAt(hours: QuietHours, recipient: RecipientRecord, now: number): number {
  return quietUntil(hours, zoneFor(hours, recipient), now);
}

/**
 * A frequency cap: at most `max` messages to one recipient in any `per`
 * window, across campaigns of the listed kinds (all kinds when empty),
 * counted in buckets of a 24th of the window (an hour for "24h"): exact at
 * bucket granularity, small at millions of recipients.
 */
export interface FrequencyCap {
  max: number;
  /** "30m", "24h", "7d". */
  per: string;
  kinds: string[];
}

export function parseDuration(value: string): number | null {
  const match = /^(\d{1,9})(s|m|h|d)$/.exec(value);
  if (!match) return null;
  return Number(match[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] as 's' | 'm' | 'h' | 'd'];
}

/** The shortest and longest frequency-cap windows: a shorter one caps nothing a send rate would not, a longer one outlives any campaign. */
export const CAP_WINDOW_MIN_MS = 60_000;
export const CAP_WINDOW_MAX_MS = 90 * 86_400_000;

function capWindowProblem(value: string): string | null {
  const ms = parseDuration(value);
  if (ms === null) return 'a duration such as 30m, 24h or 7d';
  if (ms < CAP_WINDOW_MIN_MS || ms > CAP_WINDOW_MAX_MS) return 'between 1m and 90d';
  return null;
}

/** A frequency cap as campaigns and FREQUENCY_CAPS give it. */
export const frequencyCapSchema = z.strictObject({
  max: z.number().int().min(1).max(10_000),
  per: z.string().superRefine((value, ctx) => {
    const problem = capWindowProblem(value);
    if (problem) ctx.addIssue({ code: 'custom', message: `frequencyCap.per must be ${problem} (got ${JSON.stringify(value.slice(0, 32))})` });
  }),
  /** Campaign kinds it counts and applies to; all kinds when empty. */
  kinds: z.array(z.string().min(1).max(32)).max(20).default([]),
});

export const CAP_BUCKETS = 24;

/**
 * What a cap counts: messages in its window from campaigns of its kinds.
 * Campaigns whose caps have the same window and kinds share the counters (each
 * checks them against its own `max`).
 */
export function capIdentity(cap: FrequencyCap): string {
  return `${parseDuration(cap.per)}ms:${[...cap.kinds].sort().join(',') || '*'}`;
}

export function capApplies(cap: FrequencyCap | null, kind: string): cap is FrequencyCap {
  return cap !== null && (cap.kinds.length === 0 || cap.kinds.includes(kind));
}
