/**
 * Reading a campaign's outbox for one webhook endpoint: the stream's
 * entries, a cursor into them, and the next delivery window — the events an
 * endpoint gets in one go, in stream order. Pure: the adapter reads entries,
 * the dispatcher delivers windows.
 *
 * An entry is one run event (`run.started`, …) or a `recipients` entry: the
 * recipient events of one ledger step, positions by kind in the order of
 * CODE_ORDER (lua/includes/outbox.lua). A window is either one run event, or
 * up to `limit` recipient events of one run from consecutive entries, at most
 * one per recipient; it is sent as one delivery per event type in it. A cursor is an entry id and how
 * many of that entry's events are behind it, so a window may end inside an
 * entry and the next begin there.
 */
import { CODE_TYPES, isRecipientEvent, type EventType, type RecipientEventType, type RunEventType } from './webhooks.js';

export interface OutboxEntry {
  /** The stream id (`<ms>-<seq>`). */
  id: string;
  type: string;
  runId: string;
  /** When the step happened (epoch ms). */
  at: number;
  /** The entry's other fields. */
  fields: Record<string, string>;
}

export interface Cursor {
  id: string;
  /** Events of entry `id` already behind the cursor; 0 when the whole entry is. */
  off: number;
}

/** Codes in the order a `recipients` entry lists its events. */
export const CODE_ORDER = ['f', 'u', 'k', 's', 'x', 'd'] as const;

export interface RecipientEvent {
  type: RecipientEventType;
  position: number;
  /** What the step said beside the position: the skip reason's code; the receipt's time (ms). */
  detail: string | null;
  at: number;
}

export interface Window {
  /** Where it begins (the cursor before it) and ends (the cursor after it). */
  from: Cursor;
  to: Cursor;
  runId: string;
  /** A run event, or null for a window of recipient events. */
  run: { type: RunEventType; entry: OutboxEntry } | null;
  recipients: RecipientEvent[];
}

export const MAX_WINDOW_EVENTS = 500;

export function formatCursor(cursor: Cursor): string {
  return cursor.off > 0 ? `${cursor.id}/${cursor.off}` : cursor.id;
}

export function parseCursor(text: string): Cursor {
  const [id = '0-0', off] = text.split('/');
  return { id, off: off ? Number(off) : 0 };
}

/** Stream ids compare as (ms, seq). */
export function compareIds(a: string, b: string): number {
  const [am = 0, as = 0] = a.split('-').map(Number);
  const [bm = 0, bs = 0] = b.split('-').map(Number);
  return am - bm || as - bs;
}

/** The events of a `recipients` entry, in their canonical order. */
export function recipientEventsOf(entry: OutboxEntry): RecipientEvent[] {
  const out: RecipientEvent[] = [];
  for (const code of CODE_ORDER) {
    const list = entry.fields[code];
    if (!list) continue;
    for (const item of list.split(',')) {
      const sep = item.indexOf(':');
      out.push({
        type: CODE_TYPES[code]!,
        position: Number(sep < 0 ? item : item.slice(0, sep)),
        detail: sep < 0 ? null : item.slice(sep + 1),
        at: entry.at,
      });
    }
  }
  return out;
}

/**
 * The next window after `from` for an endpoint subscribed to `wants`, from
 * `entries` (the stream after `from`, its entry included when `from` is
 * inside it). `until`: stop there (rebuilding a window already begun, whose
 * end is fixed). Answers the window, or null with the cursor to move to when
 * the entries hold nothing it wants (it moves past them untold).
 */
export function nextWindow(
  entries: readonly OutboxEntry[],
  from: Cursor,
  wants: ReadonlySet<EventType>,
  options: { limit?: number; until?: Cursor } = {},
): { window: Window; skipTo?: undefined } | { window: null; skipTo: Cursor } {
  const limit = options.limit ?? MAX_WINDOW_EVENTS;
  let end: Cursor = from;
  let runId: string | null = null;
  const recipients: RecipientEvent[] = [];
  const positions = new Set<number>();
  const done = () => (recipients.length > 0 ? { window: { from, to: end, runId: runId!, run: null, recipients } } : { window: null, skipTo: end });

  for (const entry of entries) {
    const order = compareIds(entry.id, from.id);
    if (order < 0 || (order === 0 && from.off === 0)) continue;
    if (options.until && compareIds(entry.id, options.until.id) > 0) break;
    // The window ends inside this entry (or, off 0, after all of it).
    const stopAt = options.until && entry.id === options.until.id && options.until.off > 0 ? options.until.off : Infinity;
    if (entry.type !== 'recipients') {
      if (recipients.length > 0) return done();
      end = { id: entry.id, off: 0 };
      if (wants.has(entry.type as EventType)) {
        return { window: { from, to: end, runId: entry.runId, run: { type: entry.type as RunEventType, entry }, recipients: [] } };
      }
      continue;
    }
    if (recipients.length > 0 && entry.runId !== runId) return done();
    const events = recipientEventsOf(entry);
    const start = entry.id === from.id ? from.off : 0;
    for (let i = start; i < events.length; i += 1) {
      const event = events[i]!;
      const wanted = wants.has(event.type);
      // A recipient's second event (undelivered, then delivered) goes in the next window: a window's parts go by
      // type, so within one its order would not be theirs.
      if (i >= stopAt || recipients.length >= limit || (wanted && positions.has(event.position))) {
        // Ends before event i of this entry (before all of it: where the last one ended).
        if (i > 0) end = { id: entry.id, off: i };
        return done();
      }
      if (!wanted) continue;
      runId ??= entry.runId;
      recipients.push(event);
      positions.add(event.position);
    }
    end = { id: entry.id, off: 0 };
    if (options.until && entry.id === options.until.id) break;
  }
  return done();
}

/** What a run event carries, typed back from the stream's strings (`counts` is JSON; numbers are numbers). */
export function runEventData(entry: OutboxEntry): Record<string, unknown> {
  const data: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(entry.fields))
    data[k] = k === 'counts' ? (JSON.parse(v) as unknown) : /^-?\d+$/.test(v) && k !== 'trigger' ? Number(v) : v;
  return data;
}

/** A window's deliveries: one per event type in it, in the order of CODE_ORDER (a run event: one). */
export function windowParts(window: Window): Array<{ type: EventType; events: RecipientEvent[] }> {
  if (window.run) return [{ type: window.run.type, events: [] }];
  const byType = new Map<RecipientEventType, RecipientEvent[]>();
  for (const code of CODE_ORDER) byType.set(CODE_TYPES[code]!, []);
  for (const event of window.recipients) byType.get(event.type)!.push(event);
  return [...byType].filter(([, events]) => events.length > 0).map(([type, events]) => ({ type, events }));
}

/** A delivery's id: the same for every attempt (a receiver drops repeats by it), different for every delivery. */
export function deliveryId(campaignId: string, window: Pick<Window, 'from'>, type: string): string {
  const code = isRecipientEvent(type) ? type.slice('recipient.'.length) : type.replace('.', '-');
  return `evt_${campaignId}_${window.from.id}_${window.from.off}_${code}`;
}
