import { CronExpressionParser } from 'cron-parser';
import { BoundedCache } from './bounded-cache.js';
import { DomainError, ErrorCodes } from './errors.js';

/**
 * When a campaign runs: once at an instant, or at each occurrence of a cron
 * expression in an IANA time zone.
 *
 * Daylight saving time (the rule of cron-parser, which BullMQ's schedulers use):
 * - a wall-clock time that does not exist on a spring-forward day (02:30 when
 *   clocks jump from 02:00 to 03:00) runs once, shifted by the jump (03:30);
 * - a wall-clock time that occurs twice on a fall-back day (01:30) runs once,
 *   at its first occurrence;
 * - expressions that step through the hours (every 30 minutes) follow elapsed
 *   time: no runs inside the skipped hour, two passes through the repeated one.
 */
export type ScheduleSpec = { kind: 'at'; at: number } | { kind: 'cron'; cron: string; timezone: string };

/** Marks the BullMQ scheduler pattern of a one-time schedule (see nextOccurrence). */
const AT_PATTERN = '@at ';

/** Zone names as given → their canonical IANA spelling, or null: bounded, because recipients' fields choose the names. */
const zoneNames = new BoundedCache<string, string | null>(1024);

/**
 * The canonical name of a time zone (`aSiA/sEoUl` → `Asia/Seoul`), or null
 * when it is none. Names are case-insensitive; everything keyed by a zone
 * uses this, so variants of one zone are one entry.
 */
export function canonicalTimeZone(zone: string): string | null {
  if (zone.length === 0 || zone.length > 64) return null;
  return zoneNames.get(zone, () => {
    try {
      return new Intl.DateTimeFormat('en-US', { timeZone: zone }).resolvedOptions().timeZone;
    } catch {
      return null;
    }
  });
}

export function isValidTimeZone(zone: string): boolean {
  return canonicalTimeZone(zone) !== null;
}

/** Entries in the zone-name cache (for tests: it stays bounded). */
export function zoneNameCacheSize(): number {
  return zoneNames.size;
}

function invalid(message: string, path: string): DomainError {
  return new DomainError(ErrorCodes.VALIDATION_FAILED, message, { issues: [{ path, message }] });
}

/** Occurrences of a cron looked at for the shortest interval between two of them. */
const INTERVAL_LOOKAHEAD = 400;

/**
 * The first two occurrences (after `now`) closer together than `minIntervalMs`,
 * among the next few hundred, or null. Each occurrence of a cron is a run that
 * sends to everyone again: every second is a mistake, not a schedule.
 */
function tooFrequent(spec: ScheduleSpec & { kind: 'cron' }, now: number, minIntervalMs: number): [number, number] | null {
  const times = occurrencesBetween(spec, now, Infinity, INTERVAL_LOOKAHEAD + 1);
  for (let i = 1; i < times.length; i += 1) if (times[i]! - times[i - 1]! < minIntervalMs) return [times[i - 1]!, times[i]!];
  return null;
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

/**
 * Checks a schedule request; `now` bounds how far in the past `at` may be,
 * `minIntervalMs` (MIN_SCHEDULE_INTERVAL_MS) how close two runs of a cron may come.
 */
export function parseSchedule(input: { at?: string; cron?: string; timezone?: string }, now: number, minIntervalMs = 0): ScheduleSpec {
  if ((input.at === undefined) === (input.cron === undefined)) throw invalid('give either "at" or "cron" (with "timezone")', 'body');
  if (input.at !== undefined) {
    const at = Date.parse(input.at);
    if (!/^\d{4}-\d{2}-\d{2}T/.test(input.at) || Number.isNaN(at)) throw invalid('"at" must be an ISO-8601 date-time', 'body.at');
    // A few seconds of client clock skew are fine; a run in the past is a mistake.
    if (at < now - 60_000) throw invalid('"at" is in the past; use launch to run now', 'body.at');
    return { kind: 'at', at: Math.max(at, now) };
  }
  const timezone = input.timezone ?? 'UTC';
  if (!isValidTimeZone(timezone)) throw invalid(`unknown time zone ${JSON.stringify(timezone)} (use an IANA name such as Asia/Seoul)`, 'body.timezone');
  const cron = input.cron!.trim();
  const fields = cron.split(/\s+/).length;
  if (fields !== 5 && fields !== 6) throw invalid('"cron" needs 5 fields, or 6 with seconds first', 'body.cron');
  try {
    CronExpressionParser.parse(cron, { tz: timezone, strict: false });
  } catch (err) {
    throw invalid(`"cron" is not a valid expression: ${(err as Error).message}`, 'body.cron');
  }
  const spec = { kind: 'cron' as const, cron, timezone };
  if (nextOccurrence(spec, now) === null) throw invalid('"cron" never occurs', 'body.cron');
  const close = minIntervalMs > 0 ? tooFrequent(spec, now, minIntervalMs) : null;
  if (close) {
    const [a, b] = close.map((t) => new Date(t).toISOString()) as [string, string];
    const message = `"cron" fires ${seconds(close[1] - close[0])} apart (${a}, then ${b}); runs of a schedule must be at least ${seconds(minIntervalMs)} apart (MIN_SCHEDULE_INTERVAL_MS), as each one sends to every recipient again`;
    throw new DomainError(ErrorCodes.VALIDATION_FAILED, message, { issues: [{ path: 'body.cron', message }], next: [a, b], minIntervalMs });
  }
  return spec;
}

/** First occurrence strictly after `after`, or null when there is none. */
export function nextOccurrence(spec: ScheduleSpec, after: number): number | null {
  if (spec.kind === 'at') return spec.at > after ? spec.at : null;
  try {
    return CronExpressionParser.parse(spec.cron, { tz: spec.timezone, currentDate: new Date(after) })
      .next()
      .getTime();
  } catch {
    return null;
  }
}

/** Occurrences in (from, to], oldest first, at most `limit`. */
export function occurrencesBetween(spec: ScheduleSpec, from: number, to: number, limit = 1000): number[] {
  const out: number[] = [];
  let at = nextOccurrence(spec, from);
  while (at !== null && at <= to && out.length < limit) {
    out.push(at);
    at = nextOccurrence(spec, at);
  }
  return out;
}

/** A cron run's id, from its occurrence: the same occurrence always gives the same run. */
export function runIdForOccurrence(at: number): string {
  return `o${new Date(at)
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}Z$/, 'Z')}`;
}

/** The occurrence a cron run is for (ISO-8601), from its id; null for a one-off run. */
export function occurrenceOfRunId(runId: string): string | null {
  const m = /^o(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(runId);
  return m ? `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.000Z` : null;
}

/** The BullMQ scheduler pattern and time zone for a spec (read back by `specFromPattern`). */
export function schedulerPattern(spec: ScheduleSpec): { pattern: string; tz?: string } {
  return spec.kind === 'at' ? { pattern: `${AT_PATTERN}${spec.at}` } : { pattern: spec.cron, tz: spec.timezone };
}

export function specFromPattern(pattern: string, tz: string | undefined): ScheduleSpec {
  if (pattern.startsWith(AT_PATTERN)) return { kind: 'at', at: Number(pattern.slice(AT_PATTERN.length)) };
  return { kind: 'cron', cron: pattern, timezone: tz ?? 'UTC' };
}

export interface ScheduleView {
  kind: 'at' | 'cron';
  at?: string;
  cron?: string;
  timezone?: string;
  nextRunAt: string | null;
  /** The next five occurrences (one for `at`), ISO-8601 UTC; the campaign page shows them in the schedule's zone. */
  next: string[];
}

export function scheduleView(spec: ScheduleSpec, now: number): ScheduleView {
  const next: string[] = [];
  for (let after = now - 1; next.length < 5;) {
    const at = nextOccurrence(spec, after);
    if (at === null) break;
    next.push(new Date(at).toISOString());
    after = at;
  }
  const base = spec.kind === 'at' ? { kind: spec.kind, at: new Date(spec.at).toISOString() } : { kind: spec.kind, cron: spec.cron, timezone: spec.timezone };
  return { ...base, nextRunAt: next[0] ?? null, next };
}
