import { describe, expect, it } from 'vitest';
import {
  nextOccurrence,
  occurrencesBetween,
  parseSchedule,
  runIdForOccurrence,
  scheduleView,
  specFromPattern,
  schedulerPattern,
  type ScheduleSpec,
} from '../../src/domain/schedule.js';

const at = (iso: string) => Date.parse(iso);
const local = (ms: number, timeZone: string) => new Date(ms).toLocaleString('sv-SE', { timeZone, hour12: false }).replace(' ', 'T');

function cron(expr: string, timezone: string): ScheduleSpec {
  return { kind: 'cron', cron: expr, timezone };
}

describe('parseSchedule', () => {
  const now = at('2026-11-25T12:00:00Z');

  it('accepts an instant, or a cron with a time zone', () => {
    expect(parseSchedule({ at: '2026-11-25T23:00:00+09:00' }, now)).toEqual({ kind: 'at', at: at('2026-11-25T14:00:00Z') });
    expect(parseSchedule({ cron: '0 0 9 * * *', timezone: 'Asia/Seoul' }, now)).toEqual({ kind: 'cron', cron: '0 0 9 * * *', timezone: 'Asia/Seoul' });
    expect(parseSchedule({ cron: '0 9 * * 1-5' }, now)).toEqual({ kind: 'cron', cron: '0 9 * * 1-5', timezone: 'UTC' });
  });

  it('refuses what it cannot run, naming the field', () => {
    const fails = (input: object, path: string) => {
      try {
        parseSchedule(input, now);
        throw new Error('accepted');
      } catch (err) {
        expect((err as { code: string }).code).toBe('VALIDATION_FAILED');
        expect(JSON.stringify((err as { details: unknown }).details)).toContain(path);
      }
    };
    fails({}, 'body');
    fails({ at: '2026-11-25T13:00:00Z', cron: '* * * * *' }, 'body');
    fails({ at: 'tomorrow' }, 'body.at');
    fails({ at: '2026-11-25T10:00:00Z' }, 'body.at');
    fails({ cron: '61 * * * *' }, 'body.cron');
    fails({ cron: '* * *' }, 'body.cron');
    fails({ cron: '0 9 * * *', timezone: 'Mars/Olympus' }, 'body.timezone');
  });
});

describe('cron occurrences and daylight saving time', () => {
  it('runs a 02:30 occurrence once on a spring-forward day, shifted by the jump', () => {
    // New York jumps from 02:00 to 03:00 on 2026-03-08.
    const spec = cron('0 30 2 * * *', 'America/New_York');
    const times = occurrencesBetween(spec, at('2026-03-07T00:00:00Z'), at('2026-03-10T00:00:00Z'));
    expect(times.map((t) => local(t, 'America/New_York'))).toEqual(['2026-03-07T02:30:00', '2026-03-08T03:30:00', '2026-03-09T02:30:00']);
  });

  it('runs a 01:30 occurrence once on a fall-back day, at its first occurrence', () => {
    // New York falls back from 02:00 to 01:00 on 2026-11-01: 01:30 happens twice.
    const spec = cron('0 30 1 * * *', 'America/New_York');
    const times = occurrencesBetween(spec, at('2026-10-31T12:00:00Z'), at('2026-11-02T12:00:00Z'));
    expect(times.map((t) => new Date(t).toISOString())).toEqual(['2026-11-01T05:30:00.000Z', '2026-11-02T06:30:00.000Z']);
  });

  it('follows elapsed time for expressions that step through the hours', () => {
    const spring = occurrencesBetween(cron('0 */30 * * * *', 'America/New_York'), at('2026-03-08T06:00:00Z'), at('2026-03-08T08:00:00Z'));
    expect(spring.map((t) => local(t, 'America/New_York'))).toEqual([
      '2026-03-08T01:30:00',
      '2026-03-08T03:00:00',
      '2026-03-08T03:30:00',
      '2026-03-08T04:00:00',
    ]);
    const fall = occurrencesBetween(cron('0 0 * * * *', 'Europe/Berlin'), at('2026-10-24T23:30:00Z'), at('2026-10-25T02:30:00Z'));
    // 02:00 CEST and 02:00 CET are an hour apart: both run.
    expect(fall.map((t) => new Date(t).toISOString())).toEqual(['2026-10-25T00:00:00.000Z', '2026-10-25T01:00:00.000Z', '2026-10-25T02:00:00.000Z']);
  });

  it('keeps zones without daylight saving time regular', () => {
    const times = occurrencesBetween(cron('0 0 9 * * *', 'Asia/Seoul'), at('2026-02-28T12:00:00Z'), at('2026-03-02T12:00:00Z'));
    expect(times.map((t) => new Date(t).toISOString())).toEqual(['2026-03-01T00:00:00.000Z', '2026-03-02T00:00:00.000Z']);
  });

  it('gives each occurrence a run id of its own, the same every time', () => {
    expect(runIdForOccurrence(at('2026-11-25T12:00:02.000Z'))).toBe('o20261125T120002Z');
    expect(runIdForOccurrence(at('2026-11-25T12:00:02.000Z'))).toBe(runIdForOccurrence(at('2026-11-25T12:00:02.000Z')));
  });

  it('has one occurrence for an instant', () => {
    const spec: ScheduleSpec = { kind: 'at', at: at('2026-11-25T12:00:00Z') };
    expect(nextOccurrence(spec, at('2026-11-25T11:00:00Z'))).toBe(spec.at);
    expect(nextOccurrence(spec, spec.at)).toBeNull();
    expect(scheduleView(spec, at('2026-11-25T11:00:00Z')).nextRunAt).toBe('2026-11-25T12:00:00.000Z');
  });

  it('round-trips through the BullMQ scheduler pattern', () => {
    for (const spec of [{ kind: 'at', at: 123 } as ScheduleSpec, cron('0 0 9 * * *', 'Asia/Seoul')]) {
      const { pattern, tz } = schedulerPattern(spec);
      expect(specFromPattern(pattern, tz)).toEqual(spec);
    }
  });
});
