import { describe, expect, it } from 'vitest';
import {
  AD_NIGHT,
  capApplies,
  capIdentity,
  parseDuration,
  parseTimeOfDay,
  quietHoursFor,
  reasonName,
  REASONS,
  sendableAt,
  zoneFormatterCount,
  type QuietHours,
} from '../../src/domain/respect.js';
import { canonicalTimeZone, zoneNameCacheSize } from '../../src/domain/schedule.js';

/**
 * Quiet hours with fixed clocks: every instant below is chosen, never "now",
 * so the answers do not depend on when the suite runs.
 */
const at = (iso: string) => Date.parse(iso);
const hours = (start: string, end: string, timezone = 'UTC'): QuietHours => ({ start, end, timezone });
const someone = { id: 'u1' };

describe('quiet hours', () => {
  it('lets a recipient outside the window be sent at once', () => {
    const now = at('2026-11-25T03:00:00Z'); // 12:00 in Seoul
    expect(sendableAt(hours('21:00', '08:00', 'Asia/Seoul'), someone, now)).toBe(now);
  });

  it('holds a recipient inside a window that crosses midnight until it ends, in the campaign zone', () => {
    // 23:30 in Seoul (UTC+9, no DST): sendable at 08:00 the next morning.
    expect(sendableAt(hours('21:00', '08:00', 'Asia/Seoul'), someone, at('2026-11-25T14:30:00Z'))).toBe(at('2026-11-25T23:00:00Z'));
    // 02:00 in Seoul, after midnight: the same morning's 08:00.
    expect(sendableAt(hours('21:00', '08:00', 'Asia/Seoul'), someone, at('2026-11-25T17:00:00Z'))).toBe(at('2026-11-25T23:00:00Z'));
  });

  it('treats the start as inside and the end as outside', () => {
    const window = hours('21:00', '08:00', 'Asia/Seoul');
    expect(sendableAt(window, someone, at('2026-11-25T12:00:00Z'))).toBe(at('2026-11-25T23:00:00Z')); // 21:00:00 local
    expect(sendableAt(window, someone, at('2026-11-25T11:59:59Z'))).toBe(at('2026-11-25T11:59:59Z')); // 20:59:59 local
    expect(sendableAt(window, someone, at('2026-11-25T23:00:00Z'))).toBe(at('2026-11-25T23:00:00Z')); // 08:00:00 local
  });

  it('reads a window that does not cross midnight, to the second', () => {
    const window = hours('12:00:00', '12:00:30', 'UTC');
    expect(sendableAt(window, someone, at('2026-11-25T12:00:10Z'))).toBe(at('2026-11-25T12:00:30Z'));
    expect(sendableAt(window, someone, at('2026-11-25T12:00:30Z'))).toBe(at('2026-11-25T12:00:30Z'));
    expect(sendableAt(hours('09:00', '09:00'), someone, at('2026-11-25T09:00:00Z'))).toBe(at('2026-11-25T09:00:00Z'));
  });

  it("uses the recipient's own timezone over the campaign's, and ignores one that is not a zone", () => {
    const window = hours('21:00', '08:00', 'Asia/Seoul');
    const now = at('2026-11-25T14:30:00Z'); // 23:30 Seoul, 09:30 New York
    expect(sendableAt(window, { id: 'ny', timezone: 'America/New_York' }, now)).toBe(now);
    expect(sendableAt(window, { id: 'x', timezone: 'Mars/Olympus' }, now)).toBe(at('2026-11-25T23:00:00Z'));
    // 22:00 in New York (UTC-5 in November): held until 08:00 New York = 13:00 UTC.
    expect(sendableAt(window, { id: 'ny', timezone: 'America/New_York' }, at('2026-11-26T03:00:00Z'))).toBe(at('2026-11-26T13:00:00Z'));
  });

  it('follows DST: the window ends at local 08:00 on both sides of a change', () => {
    const window = hours('21:00', '08:00', 'America/New_York');
    // Spring forward (2026-03-08 02:00 EST → 03:00 EDT): 23:00 EST → 08:00 EDT = 12:00 UTC.
    expect(sendableAt(window, someone, at('2026-03-08T04:00:00Z'))).toBe(at('2026-03-08T12:00:00Z'));
    // Fall back (2026-11-01 02:00 EDT → 01:00 EST): 23:00 EDT → 08:00 EST = 13:00 UTC.
    expect(sendableAt(window, someone, at('2026-11-01T03:00:00Z'))).toBe(at('2026-11-01T13:00:00Z'));
    // Europe/London, last Sunday of March: 22:00 GMT → 08:00 BST = 07:00 UTC.
    expect(sendableAt(hours('21:00', '08:00', 'Europe/London'), someone, at('2026-03-28T22:00:00Z'))).toBe(at('2026-03-29T07:00:00Z'));
  });

  it('ends a window at the DST jump when its end time does not exist that day', () => {
    // 22:00–02:30 New York; 2026-03-08 the clock goes 01:59:59 EST → 03:00 EDT, so 02:30 never shows.
    expect(sendableAt(hours('22:00', '02:30', 'America/New_York'), someone, at('2026-03-08T06:00:00Z'))).toBe(at('2026-03-08T07:00:00Z'));
  });

  it('holds both passes of a repeated hour when the clock falls back', () => {
    const window = hours('01:00', '01:30', 'America/New_York');
    expect(sendableAt(window, someone, at('2026-11-01T05:15:00Z'))).toBe(at('2026-11-01T05:30:00Z')); // 01:15 EDT
    expect(sendableAt(window, someone, at('2026-11-01T06:15:00Z'))).toBe(at('2026-11-01T06:30:00Z')); // 01:15 EST
  });

  it('gives advertising the Korean night window unless the recipient consented', () => {
    const ad = { kind: 'advertising', quietHours: null };
    expect(quietHoursFor(ad, someone)).toEqual(AD_NIGHT);
    expect(AD_NIGHT).toEqual({ start: '21:00', end: '08:00', timezone: 'Asia/Seoul' });
    expect(quietHoursFor(ad, { id: 'c', nightAdConsent: true })).toBeNull();
    expect(quietHoursFor(ad, { id: 'c', nightAdConsent: 'true' })).toBeNull(); // a CSV column
    expect(quietHoursFor(ad, { id: 'c', nightAdConsent: 'yes' })).toEqual(AD_NIGHT);
    expect(quietHoursFor(ad, { id: 'c', nightAdConsent: false })).toEqual(AD_NIGHT);
    expect(quietHoursFor({ kind: 'transactional', quietHours: null }, someone)).toBeNull();
    // A campaign's own window applies to everyone, advertising or not.
    const own = hours('22:00', '07:00', 'Asia/Seoul');
    expect(quietHoursFor({ kind: 'advertising', quietHours: own }, { id: 'c', nightAdConsent: true })).toBe(own);
  });

  it('parses times of day strictly', () => {
    expect(parseTimeOfDay('08:00')).toBe(8 * 3600);
    expect(parseTimeOfDay('23:59:59')).toBe(86_399);
    for (const bad of ['8:00', '24:00', '12:60', '12:00:60', '12', 'noon']) expect(parseTimeOfDay(bad)).toBeNull();
  });
});

describe('frequency caps and reasons', () => {
  it('parses durations', () => {
    expect(parseDuration('30m')).toBe(1_800_000);
    expect(parseDuration('24h')).toBe(86_400_000);
    expect(parseDuration('7d')).toBe(604_800_000);
    expect(parseDuration('1 day')).toBeNull();
  });

  it('applies a cap to the kinds it lists, or to every kind', () => {
    expect(capApplies({ max: 1, per: '24h', kinds: ['advertising'] }, 'advertising')).toBe(true);
    expect(capApplies({ max: 1, per: '24h', kinds: ['advertising'] }, 'transactional')).toBe(false);
    expect(capApplies({ max: 1, per: '24h', kinds: [] }, 'transactional')).toBe(true);
    expect(capApplies(null, 'advertising')).toBe(false);
  });

  it('shares counters between caps of the same window and kinds, whatever their max', () => {
    expect(capIdentity({ max: 1, per: '24h', kinds: ['b', 'a'] })).toBe(capIdentity({ max: 5, per: '1d', kinds: ['a', 'b'] }));
    expect(capIdentity({ max: 1, per: '24h', kinds: [] })).not.toBe(capIdentity({ max: 1, per: '12h', kinds: [] }));
  });

  it('names reason codes', () => {
    expect(reasonName(REASONS.suppressed)).toBe('suppressed');
    expect(reasonName(REASONS['frequency-cap'])).toBe('frequency-cap');
    expect(reasonName(0)).toBeNull();
    expect(reasonName(999)).toBeNull();
  });
});

describe('time-zone names from recipients', () => {
  it('are one zone in any case, and the caches keyed by them stay bounded whatever variety arrives', () => {
    const hours = { start: '22:00', end: '07:00', timezone: 'UTC' };
    const now = Date.parse('2026-12-01T14:00:00Z');
    const formatters = zoneFormatterCount();
    const seoul = sendableAt(hours, { id: 'r', timezone: 'Asia/Seoul' }, now);
    const zones = ['asia/seoul', 'europe/berlin', 'america/new_york', 'australia/sydney', 'africa/cairo'];
    for (let i = 0; i < 5000; i += 1) {
      const zone = [...zones[i % 5]!].map((c, j) => ((Math.floor(i / 5) >> j) & 1 ? c.toUpperCase() : c)).join('');
      const at = sendableAt(hours, { id: 'r', timezone: zone }, now);
      if (zone.toLowerCase() === 'asia/seoul') expect(at).toBe(seoul);
    }
    expect(canonicalTimeZone('aSiA/sEoUl')).toBe('Asia/Seoul');
    // One formatter for each of the five zones (some other tests here made already), not one per spelling.
    expect(zoneFormatterCount()).toBeLessThanOrEqual(formatters + 5);
    // 2,552 spellings went by; the name cache keeps at most 1,024 of them.
    expect(zoneNameCacheSize()).toBeLessThanOrEqual(1024);
    for (let i = 0; i < 3000; i += 1) canonicalTimeZone(`Not/A_Zone_${i}`);
    expect(zoneNameCacheSize()).toBeLessThanOrEqual(1024);
  });
});
