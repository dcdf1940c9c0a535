import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseDuration } from '../../src/domain/respect.js';
import { checkWindows, formatDuration, localDue, localZone, readWindowFields, runDeadline, windowFields } from '../../src/domain/windows.js';

describe('local time', () => {
  it('is the first instant at or after the start that the zone shows it', () => {
    const start = Date.parse('2026-12-05T23:00:00Z'); // 08:00 in Seoul
    expect(new Date(localDue('09:00', 'Asia/Seoul', start)).toISOString()).toBe('2026-12-06T00:00:00.000Z');
    expect(localDue('08:00', 'Asia/Seoul', start)).toBe(start);
    expect(new Date(localDue('07:59:59', 'Asia/Seoul', start)).toISOString()).toBe('2026-12-06T22:59:59.000Z');
    expect(new Date(localDue('09:00', 'Europe/London', start)).toISOString()).toBe('2026-12-06T09:00:00.000Z');
  });

  it('follows the schedule rules across daylight saving: a skipped time is shifted by the jump, a repeated one is its first', () => {
    const springEve = Date.parse('2026-03-08T05:00:00Z'); // 00:00 EST, the night clocks jump 02:00 → 03:00
    expect(new Date(localDue('02:30', 'America/New_York', springEve)).toISOString()).toBe('2026-03-08T07:30:00.000Z');
    const fallEve = Date.parse('2026-11-01T04:00:00Z'); // 00:00 EDT, the night 01:00-02:00 happens twice
    expect(new Date(localDue('01:30', 'America/New_York', fallEve)).toISOString()).toBe('2026-11-01T05:30:00.000Z');
  });

  it('is never before the start nor more than a day and an hour after it, in any zone', () => {
    const zones = ['Asia/Seoul', 'Asia/Kathmandu', 'America/St_Johns', 'Europe/London', 'Pacific/Chatham', 'America/New_York', 'UTC'];
    fc.assert(
      fc.property(
        fc.integer({ min: Date.parse('2026-01-01T00:00:00Z'), max: Date.parse('2027-12-31T00:00:00Z') }),
        fc.integer({ min: 0, max: 86_399 }),
        fc.constantFrom(...zones),
        (start, seconds, zone) => {
          const time = [Math.floor(seconds / 3600), Math.floor((seconds % 3600) / 60), seconds % 60].map((n) => String(n).padStart(2, '0')).join(':');
          const due = localDue(time, zone, start);
          return due >= start && due - start <= 25 * 3_600_000;
        },
      ),
      { numRuns: 300 },
    );
  });

  it("reads a recipient's own valid zone, else the campaign's", () => {
    const at = { localTime: '09:00', timezone: 'asia/seoul' };
    expect(localZone(at, { id: 'a', timezone: 'europe/LONDON' })).toBe('Europe/London');
    expect(localZone(at, { id: 'a', timezone: 'Mars/Base' })).toBe('Asia/Seoul');
    expect(localZone(at, { id: 'a' })).toBe('Asia/Seoul');
  });
});

describe('deadlines and durations', () => {
  it('a run deadline is the earlier of the two', () => {
    const start = Date.parse('2026-12-05T00:00:00Z');
    expect(runDeadline({ expiresAt: null, expiresAfter: null }, start)).toBeNull();
    expect(runDeadline({ expiresAt: null, expiresAfter: '3h' }, start)).toBe(start + 3 * 3_600_000);
    expect(runDeadline({ expiresAt: '2026-12-05T01:00:00Z', expiresAfter: '3h' }, start)).toBe(start + 3_600_000);
  });

  it('formats durations back to what parses to the same', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 90 * 86_400 }), (seconds) => parseDuration(formatDuration(seconds * 1000)) === seconds * 1000));
    expect(formatDuration(10_800_000)).toBe('3h');
    expect(formatDuration(5_400_000)).toBe('90m');
  });

  it('stores and reads the settings back as given', () => {
    const settings = {
      deliverAt: { localTime: '09:00', timezone: 'Asia/Seoul' },
      pace: { spreadOver: '2h' },
      expiresAt: '2027-01-01T00:00:00.000Z',
      expiresAfter: null,
    };
    expect(readWindowFields(windowFields(settings))).toEqual(settings);
    expect(readWindowFields(windowFields({ deliverAt: null, pace: { tps: 50 }, expiresAt: null, expiresAfter: '3h' }))).toEqual({
      deliverAt: null,
      pace: { tps: 50 },
      expiresAt: null,
      expiresAfter: '3h',
    });
  });

  it('refuses two deadlines at once, and a fixed one already past', () => {
    const now = Date.now();
    expect(() => checkWindows({ expiresAt: new Date(now + 1000).toISOString(), expiresAfter: '1h' }, now)).toThrow(/not both/);
    expect(() => checkWindows({ expiresAt: new Date(now - 1).toISOString() }, now)).toThrow(/has passed/);
    expect(() => checkWindows({ expiresAt: new Date(now + 1000).toISOString() }, now)).not.toThrow();
  });
});
