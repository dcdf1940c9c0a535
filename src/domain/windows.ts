import { z } from 'zod';
import { DomainError, ErrorCodes } from './errors.js';
import { BoundedCache } from './bounded-cache.js';
import { canonicalTimeZone, isValidTimeZone, nextOccurrence } from './schedule.js';
import { parseDuration, parseTimeOfDay } from './respect.js';
import type { RecipientRecord } from './recipient.js';

/**
 * Delivery windows: when, within a run, a recipient may be sent.
 *
 *   provider tps ⊃ campaign pace          (how fast)
 *   quiet hours ⊃ local time              (when, for each recipient)
 *   deadline over all                     (until when at all)
 *
 * - Local time (`deliverAt`): each recipient is due at the first instant at or
 *   after the run's start at which the clock of their own `timezone` field
 *   (the campaign's zone when they have no valid one) shows `localTime`; zones
 *   go out in waves. Daylight saving follows domain/schedule.ts: a time a
 *   spring-forward jump skips is shifted by the jump, a time that occurs twice
 *   is the first. Quiet hours are checked again when a recipient is due, and
 *   win.
 * - Pace: `{ tps }` caps the campaign at the provider in every sliding second
 *   (inside the provider's own cap); `{ spreadOver }` spreads the recipients
 *   still pending evenly over that long (the run's pace is pending ÷ time,
 *   worked out at the start and again at each resume, whose clock stops while
 *   the run is paused).
 * - Deadline (`expiresAt`, or `expiresAfter` from each run's start): a
 *   recipient not sent by then is skipped, reason `expired`.
 *
 * A run's start is the instant it was due: a scheduled occurrence's own time
 * (however late every worker was), a launch's moment.
 */
export interface DeliverAt {
  /** "HH:MM" or "HH:MM:SS" on the recipient's local clock. */
  localTime: string;
  /** IANA zone for recipients without a valid `timezone` of their own. */
  timezone: string;
}

export type Pace = { tps: number } | { spreadOver: string };

/** Longest a deadline or a spread may be: beyond it a campaign is not a campaign any more. */
export const WINDOW_MAX_MS = 90 * 86_400_000;

/** The slowest pace a campaign may set, in recipients per second (one an hour and a bit). */
export const PACE_MIN_TPS = 0.0002;

/** A duration as the API takes it ("90s", "30m", "3h", "2d"), between 1 s and 90 days. */
export const windowDuration = z.string().superRefine((value, ctx) => {
  const ms = parseDuration(value);
  if (ms === null) ctx.addIssue({ code: 'custom', message: `a duration such as 90s, 30m, 3h or 2d (got ${JSON.stringify(value.slice(0, 32))})` });
  else if (ms < 1000 || ms > WINDOW_MAX_MS) ctx.addIssue({ code: 'custom', message: 'between 1s and 90d' });
});

export const deliverAtSchema = z.strictObject({
  localTime: z.string().regex(/^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$/, 'a local time HH:MM or HH:MM:SS'),
  /** For recipients without a valid `timezone` field of their own. */
  timezone: z.string().refine(isValidTimeZone, 'an IANA time zone such as Asia/Seoul').default('UTC'),
});

export const paceSchema = z.union([z.strictObject({ tps: z.number().min(PACE_MIN_TPS).max(100_000) }), z.strictObject({ spreadOver: windowDuration })]);

/** ms → the shortest exact duration string ("3h", "90m", "45s"); the inverse of parseDuration for whole seconds. */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
  ] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${Math.round(ms / 1000)}s`;
}

/** When a run that starts at `startAt` stops sending: the earlier of the campaign's `expiresAt` and `startAt + expiresAfter`; null for never. */
export function runDeadline(windows: { expiresAt: string | null; expiresAfter: string | null }, startAt: number): number | null {
  const at = windows.expiresAt === null ? Infinity : Date.parse(windows.expiresAt);
  const after = windows.expiresAfter === null ? Infinity : startAt + (parseDuration(windows.expiresAfter) ?? Infinity);
  const deadline = Math.min(at, after);
  return Number.isFinite(deadline) ? deadline : null;
}

/** The zone a recipient's local time is read in: its own valid `timezone`, else the campaign's. */
export function localZone(deliverAt: DeliverAt, recipient: RecipientRecord): string {
  const own = typeof recipient.timezone === 'string' ? canonicalTimeZone(recipient.timezone) : null;
  return own ?? canonicalTimeZone(deliverAt.timezone) ?? 'UTC';
}

/** Due instants by (time of day, zone, run start): a run's recipients share a few dozen zones. */
const dueCache = new BoundedCache<string, number>(4096);

/**
 * The first instant at or after `startAt` at which the clock in `zone` shows
 * `localTime` (within a day and an hour of it, DST included).
 */
export function localDue(localTime: string, zone: string, startAt: number): number {
  return dueCache.get(`${localTime}|${zone}|${startAt}`, () => {
    const seconds = parseTimeOfDay(localTime);
    if (seconds === null) throw new Error(`not a time of day: ${localTime}`);
    const [h, m, s] = [Math.floor(seconds / 3600), Math.floor((seconds % 3600) / 60), seconds % 60];
    // nextOccurrence is strictly after: from a millisecond before, an instant that shows it exactly is taken.
    return nextOccurrence({ kind: 'cron', cron: `${s} ${m} ${h} * * *`, timezone: zone }, startAt - 1) ?? startAt;
  });
}

/** A campaign's delivery-window settings. */
export interface WindowSettings {
  deliverAt: DeliverAt | null;
  pace: Pace | null;
  expiresAt: string | null;
  expiresAfter: string | null;
}

/**
 * The campaign hash fields that hold `settings` (those given): plain numbers
 * where lua/create-run.lua and lua/set-pace.lua read them — `expiresAt` (ms),
 * `expiresAfter` (ms), `paceTps`, `paceSpreadMs` — '' for none.
 */
export function windowFields(settings: Partial<WindowSettings>): Record<string, string> {
  const fields: Record<string, string> = {};
  if (settings.deliverAt !== undefined) fields.deliverAt = settings.deliverAt ? JSON.stringify(settings.deliverAt) : '';
  if (settings.expiresAt !== undefined) fields.expiresAt = settings.expiresAt === null ? '' : String(Date.parse(settings.expiresAt));
  if (settings.expiresAfter !== undefined) fields.expiresAfter = settings.expiresAfter === null ? '' : String(parseDuration(settings.expiresAfter));
  if (settings.pace !== undefined) {
    fields.paceTps = settings.pace && 'tps' in settings.pace ? String(settings.pace.tps) : '';
    fields.paceSpreadMs = settings.pace && 'spreadOver' in settings.pace ? String(parseDuration(settings.pace.spreadOver)) : '';
  }
  return fields;
}

/** The inverse of windowFields. */
export function readWindowFields(hash: Record<string, string | undefined>): WindowSettings {
  const ms = (value: string | undefined) => (value ? Number(value) : null);
  const expiresAt = ms(hash.expiresAt);
  const expiresAfter = ms(hash.expiresAfter);
  const spread = ms(hash.paceSpreadMs);
  return {
    deliverAt: hash.deliverAt ? (JSON.parse(hash.deliverAt) as DeliverAt) : null,
    pace: hash.paceTps ? { tps: Number(hash.paceTps) } : spread !== null ? { spreadOver: formatDuration(spread) } : null,
    expiresAt: expiresAt === null ? null : new Date(expiresAt).toISOString(),
    expiresAfter: expiresAfter === null ? null : formatDuration(expiresAfter),
  };
}

/**
 * What the schemas cannot check alone: one deadline at most, and a fixed one
 * still ahead (a campaign that could only ever skip everyone is a mistake).
 */
export function checkWindows(settings: Partial<Pick<WindowSettings, 'expiresAt' | 'expiresAfter'>>, now: number): void {
  const problem = (path: string, message: string) => new DomainError(ErrorCodes.VALIDATION_FAILED, message, { issues: [{ path, message }] });
  if (settings.expiresAt && settings.expiresAfter) {
    throw problem('body.expiresAfter', "give expiresAt (an instant) or expiresAfter (a duration from each run's start), not both");
  }
  if (settings.expiresAt && Date.parse(settings.expiresAt) <= now) {
    throw problem('body.expiresAt', `expiresAt ${settings.expiresAt} has passed: nothing would be sent`);
  }
}
