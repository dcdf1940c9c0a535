import { hash, randomBytes } from 'node:crypto';

const CROCKFORD = '0123456789abcdefghjkmnpqrstvwxyz';

/**
 * A ULID in lower case: 48 bits of milliseconds then 80 random bits, so ids
 * sort by creation time as plain strings (the campaign index relies on it).
 */
export function newId(now: number = Date.now()): string {
  let time = '';
  let t = now;
  for (let i = 0; i < 10; i += 1) {
    time = CROCKFORD[t % 32] + time;
    t = Math.floor(t / 32);
  }
  const bytes = randomBytes(16);
  let rand = '';
  for (let i = 0; i < 16; i += 1) rand += CROCKFORD[bytes[i]! % 32];
  return time + rand;
}

export const CAMPAIGN_ID_PATTERN = /^[0-9a-hjkmnp-tv-z]{26}$/;

/**
 * The key a provider sees for one recipient of one run: the same for every
 * attempt (so a provider that honours it can drop a repeat), different across
 * runs, campaigns and recipients. Shaped as a UUID (version 8, RFC 9562) since
 * some providers (APNs apns-id) demand that form.
 */
export function idempotencyKey(campaignId: string, runId: string, recipientId: string, leg = 0): string {
  const digest = hash('sha256', `${campaignId}\0${runId}${legSuffix(leg)}\0${recipientId}`, 'buffer');
  digest[6] = (digest[6]! & 0x0f) | 0x80;
  digest[8] = (digest[8]! & 0x3f) | 0x80;
  const hex = digest.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/**
 * The idempotency key of a run that has a number (every run made since
 * receipts exist): still a UUID (version 8), the same for every attempt at
 * one recipient of one run and different across runs and recipients, but
 * one a receipt can be traced back from without anything stored per
 * recipient. Its bits: the run's number (40), the recipient's position in
 * the run's list (32), and 50 bits of the SHA-256 of campaign, run and
 * recipient id, which a receipt must match (so a key cannot be guessed from
 * a neighbour's):
 *
 *   bytes 0-4 run number · 5 check · 6 version 8 | check · 7 check ·
 *   8 variant 10 | check · 9-12 position · 13-15 check
 */
export function receiptKey(runNo: number, position: number, campaignId: string, runId: string, recipientId: string, leg = 0): string {
  // One call on one string (crypto.hash): the same digest as hashing the parts in turn, at a fraction of the cost per recipient.
  const check = hash('sha256', `pushq-receipt\0${campaignId}\0${runId}${legSuffix(leg)}\0${recipientId}`, 'buffer');
  const bytes = Buffer.alloc(16);
  bytes.writeUIntBE(runNo, 0, 5);
  bytes[5] = check[0]!;
  bytes[6] = 0x80 | (check[1]! & 0x0f);
  bytes[7] = check[2]!;
  bytes[8] = 0x80 | (check[3]! & 0x3f);
  bytes.writeUInt32BE(position, 9);
  check.copy(bytes, 13, 4, 7);
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/** The run number and position a receipt key names, or null when the text is no such key. */
export function readReceiptKey(key: string): { runNo: number; position: number } | null {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(key)) return null;
  const bytes = Buffer.from(key.replace(/-/g, ''), 'hex');
  const runNo = bytes.readUIntBE(0, 5);
  return runNo > 0 ? { runNo, position: bytes.readUInt32BE(9) } : null;
}

/** Whether `key` is the receipt key of that recipient of that run on that fallback leg (its check bits match). */
export function isReceiptKeyOf(key: string, campaignId: string, runId: string, recipientId: string, leg = 0): boolean {
  const named = readReceiptKey(key);
  return named !== null && receiptKey(named.runNo, named.position, campaignId, runId, recipientId, leg) === key;
}

/**
 * A fallback leg (domain/fallback.ts) has keys of its own: a provider that
 * honours keys must never drop a leg's message as a repeat of another's.
 * Leg 0's keys are what they were before legs existed.
 */
function legSuffix(leg: number): string {
  return leg === 0 ? '' : `\0leg${leg}`;
}
