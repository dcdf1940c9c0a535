import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compareIds, nextWindow, parseCursor, formatCursor, recipientEventsOf, windowParts, type Cursor, type OutboxEntry } from '../../src/domain/outbox.js';
import { EVENT_CODES, EVENT_TYPES, eventMask, nextAttemptAt, type EventType } from '../../src/domain/webhooks.js';

/** Random outbox entries: run events and recipient entries of a couple of runs, in stream order. */
const entriesArb = fc
  .array(
    fc.oneof(
      fc.record({
        kind: fc.constant('run' as const),
        type: fc.constantFrom('run.started', 'run.completed', 'run.paused', 'schedule.skipped'),
        run: fc.constantFrom('a', 'b'),
      }),
      fc.record({
        kind: fc.constant('recipients' as const),
        run: fc.constantFrom('a', 'b'),
        codes: fc.array(fc.constantFrom('f', 'u', 'k', 's', 'd', 'x'), { minLength: 1, maxLength: 40 }),
      }),
    ),
    { maxLength: 30 },
  )
  .map((specs) => {
    let position = 0;
    let lastUndelivered: number | null = null;
    return specs.map((spec, i): OutboxEntry => {
      const id = `${1000 + i}-0`;
      if (spec.kind === 'run') return { id, type: spec.type, runId: spec.run, at: 1000 + i, fields: {} };
      const fields: Record<string, string> = {};
      for (const code of spec.codes) {
        position += 1;
        // A delivered receipt now and then for a recipient an earlier undelivered one was about (a late success).
        let at = position;
        if (code === 'd' && lastUndelivered !== null && position % 2 === 0) [at, lastUndelivered] = [lastUndelivered, null];
        if (code === 'x') lastUndelivered = position;
        const item = code === 'k' ? `${at}:2` : String(at);
        fields[code] = fields[code] ? `${fields[code]},${item}` : item;
      }
      return { id, type: 'recipients', runId: spec.run, at: 1000 + i, fields };
    });
  });

const wantsArb = fc.subarray([...EVENT_TYPES], { minLength: 1 });

/** Every event of `entries` an endpoint wanting `wants` is owed, in stream order. */
function owed(entries: OutboxEntry[], wants: ReadonlySet<EventType>): string[] {
  return entries.flatMap((e) =>
    e.type === 'recipients'
      ? recipientEventsOf(e)
          .filter((r) => wants.has(r.type))
          .map((r) => `${r.type}:${r.position}`)
      : wants.has(e.type as EventType)
        ? [`${e.type}@${e.id}`]
        : [],
  );
}

describe('outbox windows', () => {
  it('hand an endpoint every event it wants once, in order, and the same window again when rebuilt from where it began', () => {
    fc.assert(
      fc.property(entriesArb, wantsArb, fc.integer({ min: 1, max: 50 }), (entries, wantList, limit) => {
        const wants = new Set(wantList as EventType[]);
        const got: string[] = [];
        const windowOf = new Map<string, number>();
        let windows = 0;
        let cursor: Cursor = { id: '0-0', off: 0 };
        for (let guard = 0; guard < 10_000; guard += 1) {
          const next = nextWindow(entries, cursor, wants, { limit });
          if (!next.window) {
            if (next.skipTo.id === cursor.id && next.skipTo.off === cursor.off) break;
            cursor = next.skipTo;
            continue;
          }
          const { window } = next;
          expect(window.recipients.length).toBeLessThanOrEqual(limit);
          expect(new Set(window.recipients.map(() => window.runId)).size).toBeLessThanOrEqual(1);
          // One event per recipient a window: a receiver gets a recipient's events in their order.
          expect(new Set(window.recipients.map((r) => r.position)).size).toBe(window.recipients.length);
          // Rebuilt (a retry after a crash, with more entries since): the very same events.
          const again = nextWindow(entries, window.from, new Set(windowParts(window).map((p) => p.type) as EventType[]), {
            until: window.to,
            limit: Number.MAX_SAFE_INTEGER,
          });
          expect(again.window).toEqual(window);
          if (window.run) got.push(`${window.run.type}@${window.run.entry.id}`);
          for (const part of windowParts(window)) for (const r of part.events) expect(r.type).toBe(part.type);
          got.push(...window.recipients.map((r) => `${r.type}:${r.position}`));
          for (const r of window.recipients) windowOf.set(`${r.type}:${r.position}`, windows);
          windows += 1;
          expect(compareIds(window.to.id, cursor.id)).toBeGreaterThanOrEqual(0);
          cursor = window.to;
        }
        // Within a window the parts are by type; across windows the order is the stream's.
        expect(got.slice().sort()).toEqual(owed(entries, wants).sort());
        expect(new Set(got).size).toBe(got.length);
        // A recipient's undelivered receipt reaches the endpoint before the delivered one that came after it.
        for (const [event, index] of windowOf) {
          if (!event.startsWith('recipient.delivered:')) continue;
          const earlier = windowOf.get(event.replace('delivered', 'undelivered'));
          if (earlier !== undefined) expect(earlier).toBeLessThan(index);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('keep a window of recipient events to one run, and a run event to a window of its own', () => {
    const entries: OutboxEntry[] = [
      { id: '1-0', type: 'recipients', runId: 'a', at: 1, fields: { f: '1,2', s: '3' } },
      { id: '2-0', type: 'recipients', runId: 'b', at: 2, fields: { f: '4' } },
      { id: '3-0', type: 'run.completed', runId: 'b', at: 3, fields: { counts: '{}' } },
    ];
    const wants = new Set<EventType>(['recipient.failed', 'recipient.sent', 'run.completed']);
    const first = nextWindow(entries, { id: '0-0', off: 0 }, wants, { limit: 2 });
    expect(first.window?.recipients.map((r) => r.position)).toEqual([1, 2]);
    expect(first.window?.to).toEqual({ id: '1-0', off: 2 });
    const second = nextWindow(entries, first.window!.to, wants);
    expect(second.window?.recipients.map((r) => `${r.type}:${r.position}`)).toEqual(['recipient.sent:3']);
    const third = nextWindow(entries, second.window!.to, wants);
    expect(third.window).toMatchObject({ runId: 'b', recipients: [{ position: 4 }] });
    const fourth = nextWindow(entries, third.window!.to, wants);
    expect(fourth.window?.run?.type).toBe('run.completed');
    expect(formatCursor(parseCursor('5-1/3'))).toBe('5-1/3');
  });
});

describe('webhook rules', () => {
  it('write only the recipient events some endpoint of the campaign takes', () => {
    const endpoints = [
      { events: ['recipient.failed', 'run.completed'] as EventType[], campaigns: null },
      { events: ['recipient.sent'] as EventType[], campaigns: ['c2'] },
    ];
    expect(eventMask(endpoints, 'c1')).toBe(EVENT_CODES['recipient.failed']);
    expect(eventMask(endpoints, 'c2')).toBe('fs');
    expect(eventMask([], 'c1')).toBe('');
  });

  it('space attempts out exponentially with jitter, and stop after the attempts or the time allowed', () => {
    const retry = { maxAttempts: 10, baseMs: 1000, maxMs: 8000, forMs: 20_000 };
    expect(nextAttemptAt(retry, 1, 0, 0, () => 0)).toBe(500);
    expect(nextAttemptAt(retry, 1, 0, 0, () => 0.999)).toBe(999);
    expect(nextAttemptAt(retry, 3, 0, 0, () => 0)).toBe(2000);
    expect(nextAttemptAt(retry, 6, 0, 0, () => 0)).toBe(4000); // capped at maxMs: 8000 / 2
    expect(nextAttemptAt(retry, 10, 0, 0)).toBeNull();
    expect(nextAttemptAt(retry, 2, 0, 19_000, () => 0.999)).toBeNull();
  });
});
