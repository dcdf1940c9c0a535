import type { Message } from './campaign.js';

/**
 * Channel fallback: a campaign's recipients are sent on its own provider
 * (leg 0) and, when that leg ends for one of a few reasons that say nothing
 * was delivered, on the next provider of its `fallback` chain (legs 1–3):
 * alimtalk → SMS for people who are not KakaoTalk users, push → SMS for
 * people without a valid token.
 *
 * A recipient moves on only from an outcome that says the message did not
 * arrive: `failed` (a permanent refusal, or attempts exhausted with every
 * answer a clear failure), `token-invalid` (the provider said the token or
 * number is dead, or it is on the provider's invalid-token list),
 * `no-token` (no value in the provider's address field). Never from an
 * answer in doubt (a timeout after which the provider may have sent it):
 * such a recipient ends `unknown` on its leg, unless the leg's predecessor
 * says `onUnknown: true` — which can put the same message on two channels.
 *
 * The move happens in the ledger step that records the leg's outcome
 * (confirm.lua, claim.lua), so it is exactly once, whatever is retried or
 * killed: the recipient is pending again on the next leg, with its own
 * attempts and its own idempotency key.
 */
export const FALLBACK_REASONS = ['failed', 'token-invalid', 'no-token'] as const;
export type FallbackReason = (typeof FALLBACK_REASONS)[number];

/** Why a recipient left a leg, as kept in its legs byte: the listed reasons, and `unknown` (onUnknown). */
export type LeftBecause = FallbackReason | 'unknown';
const LEFT_CODES: readonly LeftBecause[] = ['failed', 'token-invalid', 'no-token', 'unknown'];
/** The letters the Lua scripts use for them (the run's `fb` rules). */
const LETTERS: Record<LeftBecause, string> = { failed: 'f', 'token-invalid': 't', 'no-token': 'n', unknown: 'u' };

/** Most legs after the campaign's own provider. */
export const MAX_FALLBACK_LEGS = 3;

export interface FallbackLeg {
  /** A configured provider. */
  provider: string;
  /** What of the previous leg sends a recipient here. */
  on: FallbackReason[];
  /** Also an `unknown` outcome of the previous leg (the provider may have delivered it: two messages are possible). */
  onUnknown: boolean;
  /** This leg's message (templated like the main one); null: the campaign's message. */
  message: Message | null;
  /** Most messages this leg sends in one run; beyond it recipients are skipped, reason `fallback-budget`. null: no limit. */
  maxMessages: number | null;
}

/**
 * The rules the ledger scripts apply, stored on the campaign and copied
 * into each run when it is made (a PATCH never changes a run in progress):
 * `fb` has one entry per leg a recipient can leave (legs 0 … n−1), the
 * letters of the outcomes that move it on; `fbMax` one entry per leg (0 …
 * n), its message budget, '' for none.
 */
export function fallbackRules(legs: readonly FallbackLeg[]): { fb: string; fbMax: string } {
  return {
    fb: legs.map((leg) => leg.on.map((reason) => LETTERS[reason]).join('') + (leg.onUnknown ? 'u' : '')).join(','),
    fbMax: ['', ...legs.map((leg) => (leg.maxMessages === null ? '' : String(leg.maxMessages)))].join(','),
  };
}

/**
 * A recipient's legs byte (one per recipient, in a string per page beside
 * its records, written only once someone on the page falls back; a missing
 * byte is 0, leg 0): bits 0–1 the leg it is on; bits 2k+2…2k+3 why it left
 * leg k (LEFT_CODES), for each leg k before it.
 */
export interface Legs {
  /** The leg it is on now: 0 the campaign's provider, k the k-th fallback. */
  leg: number;
  /** Why it left each earlier leg, in order. */
  left: LeftBecause[];
}

export function decodeLegs(byte: number): Legs {
  const leg = byte & 3;
  const left: LeftBecause[] = [];
  for (let k = 0; k < leg; k += 1) left.push(LEFT_CODES[(byte >> (2 * k + 2)) & 3]!);
  return { leg, left };
}

export function encodeLegs(legs: Legs): number {
  return legs.left.reduce((byte, why, k) => byte | (LEFT_CODES.indexOf(why) << (2 * k + 2)), legs.leg);
}

/**
 * The campaign as fallback leg `leg` (1…) sends it: that leg's provider, its
 * message (the campaign's when it has none), and no chain of its own.
 */
export function legCampaign<C extends { provider: string; message: Message; fallback: readonly FallbackLeg[] }>(campaign: C, leg: number): C {
  const own = campaign.fallback[leg - 1]!;
  return { ...campaign, provider: own.provider, message: own.message ?? campaign.message, fallback: [] };
}

/** The provider a recipient on `leg` is sent through. */
export function providerOfLeg(campaign: { provider: string; fallback: readonly FallbackLeg[] }, leg: number): string | undefined {
  return leg === 0 ? campaign.provider : campaign.fallback[leg - 1]?.provider;
}

/** The campaign hash fields of a fallback chain: the chain itself and the rules its runs copy. */
export function fallbackFields(legs: readonly FallbackLeg[]): Record<string, string> {
  return { fallback: legs.length > 0 ? JSON.stringify(legs) : '', ...fallbackRules(legs) };
}

/** The inverse of fallbackFields. */
export function readFallback(hash: Record<string, string | undefined>): FallbackLeg[] {
  return hash.fallback ? (JSON.parse(hash.fallback) as FallbackLeg[]) : [];
}

/** One leg's counts in a run (the run's `leg:k:*` fields, written by the ledger scripts). */
export interface LegCounts {
  leg: number;
  /** Recipients who reached this leg (leg 0: every recipient of the run). */
  entered: number;
  /** Sent on this leg. */
  sent: number;
  /** Left it for the next leg. */
  movedOn: number;
  /** Messages this leg spent of its budget (`maxMessages`), on a leg that has one. */
  messages?: number;
}

/** A run's counts by leg, from its hash; null for a run without a fallback chain. */
export function legCountsOf(hash: Record<string, string | undefined>, total: number, sent: number): LegCounts[] | null {
  if (!hash.fb) return null;
  const legs = hash.fb.split(',').length + 1;
  const max = (hash.fbMax ?? '').split(',');
  const n = (field: string) => Number(hash[field] ?? 0);
  const out: LegCounts[] = [];
  for (let leg = 0; leg < legs; leg += 1) {
    out.push({
      leg,
      entered: leg === 0 ? total : n(`leg:${leg}:in`),
      sent: n(`leg:${leg}:sent`),
      movedOn: n(`leg:${leg}:out`),
      ...(max[leg] ? { messages: n(`leg:${leg}:msgs`) } : {}),
    });
  }
  // Leg 0's sends are the rest: its confirms count them too, but a receipt that came first settles without the count.
  out[0]!.sent = Math.max(0, sent - out.slice(1).reduce((sum, c) => sum + c.sent, 0));
  // A retry run starts some on the leg they failed on: those never entered leg 0.
  const started = out.slice(1).reduce((sum, c, k) => sum + Math.max(0, c.entered - out[k]!.movedOn), 0);
  out[0]!.entered = total - started;
  return out;
}
