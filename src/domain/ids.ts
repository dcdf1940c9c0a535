import { createHash, randomBytes } from 'node:crypto';

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
export function idempotencyKey(campaignId: string, runId: string, recipientId: string): string {
  const digest = createHash('sha256').update(campaignId).update('\0').update(runId).update('\0').update(recipientId).digest();
  digest[6] = (digest[6]! & 0x0f) | 0x80;
  digest[8] = (digest[8]! & 0x3f) | 0x80;
  const hex = digest.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}
