import { fullJitterBackoff } from './backoff.js';
import type { SendOutcome } from './send-outcome.js';

/**
 * The rules that turn a provider's answer into what the ledger records and
 * what the rate limiter learns: pure, the one place they live.
 */

/** What becomes of a send whose fate is unknown: reported as `unknown`, or resent with the same idempotency key. */
export type InDoubtPolicy = 'report' | 'resend';

/** A provider's retry rules, as far as an answer's settlement needs them. */
export interface RetryRules {
  /** Backoff ceiling of the first retry; doubles per attempt up to maxMs (full jitter). */
  baseMs: number;
  maxMs: number;
  inDoubt: InDoubtPolicy;
  /** A timeout is retried (transient) rather than treated as in doubt. */
  retryTimeouts: boolean;
}

/**
 * A run's in-doubt policy and attempt limit: the campaign's limit, else its
 * provider's; `report` and one attempt when the campaign or provider is gone.
 */
export function settlePolicyOf(
  campaignMaxAttempts: number | null | undefined,
  retry: { inDoubt: InDoubtPolicy; maxAttempts: number } | undefined,
): { inDoubt: InDoubtPolicy; maxAttempts: number } {
  return { inDoubt: retry?.inDoubt ?? 'report', maxAttempts: campaignMaxAttempts ?? retry?.maxAttempts ?? 1 };
}

/**
 * What the ledger records for a recipient that was claimed:
 * - `sent`, `failed`, `unknown`: final;
 * - `retry`: a transient failure, tried again after `delayMs` (failed once its attempts are spent);
 * - `requeue`: the provider said not now (429, a refused stream): again after `delayMs`, the attempt given back, a bounded number of times;
 * - `unclaim`: it never left this process: pending again, counted nowhere.
 */
export type RecordOutcome = 'sent' | 'failed' | 'retry' | 'requeue' | 'unclaim' | 'unknown';

export interface Settlement {
  outcome: RecordOutcome;
  /** A retry after an answer in doubt (it may have been delivered): the recipient can then only end sent or unknown. */
  inDoubt?: boolean;
  /** A `failed` for want of an address: the token is dead, or there is none (a fallback chain may move on for either). */
  dead?: 'token-invalid' | 'no-token';
  delayMs: number;
  code: string;
  message: string;
}

/** What an answer means for the recipient. `attempt`: the attempt that got it (1 for the first). */
export function settlement(answer: SendOutcome, attempt: number, rules: RetryRules, random: () => number = Math.random): Settlement {
  const backoff = () => fullJitterBackoff(attempt, rules.baseMs, rules.maxMs, random);
  switch (answer.kind) {
    case 'sent':
      return { outcome: 'sent', delayMs: 0, code: '', message: '' };
    case 'permanent': {
      const dead = answer.tokenInvalid ? 'token-invalid' : answer.noAddress ? 'no-token' : undefined;
      return { outcome: 'failed', ...(dead ? { dead } : {}), delayMs: 0, code: answer.code, message: answer.message };
    }
    case 'transient':
      return { outcome: 'retry', delayMs: backoff(), code: answer.code, message: answer.message };
    case 'in-doubt':
      if (!answer.final && (rules.retryTimeouts || rules.inDoubt === 'resend'))
        return { outcome: 'retry', inDoubt: true, delayMs: backoff(), code: answer.code, message: answer.message };
      return { outcome: 'unknown', delayMs: 0, code: answer.code, message: answer.message };
    case 'rate-limited':
      // A limit on this one device (APNs TooManyRequests) is that recipient's problem: retried with a backoff like a transient failure.
      if (answer.scope === 'recipient')
        return { outcome: 'retry', delayMs: Math.max(answer.retryAfterMs ?? 0, backoff()), code: answer.code, message: answer.message };
      return { outcome: 'requeue', delayMs: answer.retryAfterMs ?? 1000, code: answer.code, message: answer.message };
    case 'not-sent':
      return { outcome: 'requeue', delayMs: 0, code: answer.code, message: answer.message };
    default: {
      const never: never = answer;
      throw new Error(`unhandled send outcome ${JSON.stringify(never)}`);
    }
  }
}

/** What a completed request says about the provider's health, for its circuit breaker. */
export type ProviderHealth = 'healthy' | 'failed' | 'neutral';

export function healthOf(answer: SendOutcome): ProviderHealth {
  if (answer.kind === 'sent' || answer.kind === 'permanent') return 'healthy';
  if (answer.kind === 'transient' || answer.kind === 'in-doubt') return 'failed';
  // A 429, a refused stream, renewed credentials, one device's limit: nothing about the provider's health.
  return 'neutral';
}

/** The same for a request that carried several recipients. */
export function healthOfRequest(answers: readonly SendOutcome[]): ProviderHealth {
  const each = answers.map(healthOf);
  if (each.includes('failed')) return 'failed';
  return each.includes('healthy') ? 'healthy' : 'neutral';
}

/** How long every worker must hold off the provider after these answers (a provider-wide 429), or null. */
export function pushback(answers: readonly SendOutcome[]): number | null {
  let pause: number | null = null;
  for (const answer of answers) {
    if (answer.kind === 'rate-limited' && answer.scope === 'provider') pause = Math.max(pause ?? 0, answer.retryAfterMs ?? 1000);
  }
  return pause;
}
