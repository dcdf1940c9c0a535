/**
 * The per-recipient ledger of a run: the one source of truth for who was sent.
 *
 * State machine of one recipient in one run:
 *
 *   pending ──claim──▶ inflight ──confirm──▶ sent | failed | unknown
 *      ▲                  │
 *      └──retry/requeue───┘          (inflight whose lease expired ──▶ unknown)
 *   pending ──skip──▶ skipped
 *   sent ──receipt──▶ sent, delivered | undelivered (the provider's later word)
 *
 * `sent`, `failed`, `unknown` and `skipped` are final for the run. Nothing ever
 * leaves `unknown` by itself: a send that may have reached the provider is
 * reported, never silently repeated.
 *
 * Storage: each recipient of a page has a fixed-width record in one Redis
 * string per (run, page). The Lua scripts in adapters/redis/lua write it; this
 * module is the single decoder of its layout (keep both in step):
 *
 *   byte 0     state (RecipientState; 6 and 7 are `sent` with a receipt:
 *              delivered, undelivered)
 *   byte 1     attempts so far
 *   bytes 2-3  big-endian u16: the low 14 bits a code: why skipped, or
 *              deferred while pending (domain/respect.ts REASONS), 0 when
 *              none; once claimed, LOCALE_CODE_BASE + k when it was sent in
 *              the run's k-th locale variant (RunState.locales); bit 15 set once the recipient was counted against a
 *              frequency cap in this run; bit 14 once an attempt was in
 *              doubt (it may have been delivered: it can only end sent or
 *              unknown, never failed or skipped)
 *   bytes 4-9  time in ms since the run began (big-endian u48), on the
 *              run's clock that never runs backwards (lua/includes/ledger.lua
 *              runClocks): for pending, the earliest next attempt; otherwise
 *              the last transition
 *
 * A record that was never written reads as zeros: pending, no attempts.
 */
export const RecipientState = {
  pending: 0,
  inflight: 1,
  sent: 2,
  failed: 3,
  unknown: 4,
  skipped: 5,
} as const;
export type RecipientStateName = keyof typeof RecipientState;

const STATE_NAMES: RecipientStateName[] = ['pending', 'inflight', 'sent', 'failed', 'unknown', 'skipped'];

/** Sent, and what a receipt said of it since (state codes 6 and 7: DELIVERED, UNDELIVERED in lua/includes/ledger.lua). */
export type Delivery = 'delivered' | 'undelivered';
const DELIVERY_CODES: Record<Delivery, number> = { delivered: 6, undelivered: 7 };

export const RECORD_BYTES = 10;

/** Codes from here up are a locale variant (LOCALE in lua/includes/ledger.lua), not a reason. */
export const LOCALE_CODE_BASE = 4096;

export interface LedgerRecord {
  state: RecipientStateName;
  attempts: number;
  /** A domain/respect.ts REASONS code, 0 when none. */
  reason: number;
  /** The locale variant it was sent in: k ≥ 1 the run's k-th tag, 0 the default message. */
  locale: number;
  /** Counted against a frequency cap in this run already. */
  counted: boolean;
  /** An attempt may have reached the provider without an answer: never failed or skipped, only sent or unknown. */
  inDoubt: boolean;
  /** ms since the run began; see the layout above for its meaning per state. */
  at: number;
  /** A sent recipient the provider's receipt said was delivered (or not) since; null without a receipt. */
  delivery: Delivery | null;
}

export function stateName(code: number): RecipientStateName {
  const name = code === DELIVERY_CODES.delivered || code === DELIVERY_CODES.undelivered ? 'sent' : STATE_NAMES[code];
  if (!name) throw new Error(`corrupt ledger record: state ${code}`);
  return name;
}

export function decodeRecord(page: Buffer, index: number): LedgerRecord {
  const offset = index * RECORD_BYTES;
  if (offset + RECORD_BYTES > page.length)
    return { state: 'pending', attempts: 0, reason: 0, locale: 0, counted: false, inDoubt: false, at: 0, delivery: null };
  const reason = page.readUInt16BE(offset + 2);
  const code = reason & 0x3fff;
  const state = page.readUInt8(offset);
  return {
    state: stateName(state),
    delivery: state === DELIVERY_CODES.delivered ? 'delivered' : state === DELIVERY_CODES.undelivered ? 'undelivered' : null,
    attempts: page.readUInt8(offset + 1),
    reason: code >= LOCALE_CODE_BASE ? 0 : code,
    locale: code >= LOCALE_CODE_BASE ? code - LOCALE_CODE_BASE : 0,
    counted: (reason & 0x8000) !== 0,
    inDoubt: (reason & 0x4000) !== 0,
    at: page.readUIntBE(offset + 4, 6),
  };
}

/** The inverse of decodeRecord: the 10 bytes the Lua scripts write for `record`. */
export function encodeRecord(record: LedgerRecord): Buffer {
  const out = Buffer.alloc(RECORD_BYTES);
  out.writeUInt8(record.delivery ? DELIVERY_CODES[record.delivery] : STATE_NAMES.indexOf(record.state), 0);
  out.writeUInt8(record.attempts, 1);
  const code = record.locale > 0 ? LOCALE_CODE_BASE + record.locale : record.reason;
  out.writeUInt16BE((code & 0x3fff) | (record.counted ? 0x8000 : 0) | (record.inDoubt ? 0x4000 : 0), 2);
  out.writeUIntBE(record.at, 4, 6);
  return out;
}

/** Counts of one run. `pending` includes `inflight`. */
export interface RunCounts {
  total: number;
  pending: number;
  inflight: number;
  sent: number;
  failed: number;
  unknown: number;
  skipped: number;
  /** Of `sent`: those a provider's receipt said were delivered, or not (providers that report it). */
  delivered?: number;
  undelivered?: number;
}

export function emptyCounts(total: number): RunCounts {
  return { total, pending: total, inflight: 0, sent: 0, failed: 0, unknown: 0, skipped: 0 };
}

/** The invariant every ledger transition preserves. */
export function countsAreConserved(c: RunCounts): boolean {
  return (
    c.sent + c.failed + c.unknown + c.skipped + c.pending === c.total &&
    c.inflight >= 0 &&
    c.inflight <= c.pending &&
    [c.sent, c.failed, c.unknown, c.skipped, c.pending].every((n) => n >= 0)
  );
}
