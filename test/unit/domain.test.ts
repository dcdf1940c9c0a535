import { describe, expect, it } from 'vitest';
import { fullJitterBackoff } from '../../src/domain/backoff.js';
import { allowedActions, invalidState, planLayout } from '../../src/domain/campaign.js';
import { countsAreConserved, decodeRecord, encodeRecord, RECORD_BYTES } from '../../src/domain/ledger.js';
import { Semaphore } from '../../src/app/semaphore.js';
import { parseRetryAfter } from '../../src/adapters/push/http-support.js';
import { healthOf, healthOfRequest, pushback, settlement } from '../../src/domain/send-rules.js';

describe('campaign rules', () => {
  it('allows launch only from draft or scheduled', () => {
    expect(allowedActions('draft')).toContain('launch');
    expect(allowedActions('scheduled')).toContain('launch');
    for (const status of ['running', 'paused', 'completed', 'cancelled'] as const) expect(allowedActions(status)).not.toContain('launch');
  });

  it('tells the operator what to do instead of relaunching a finished campaign', () => {
    const err = invalidState('c1', 'completed', 'launch');
    expect(err.code).toBe('INVALID_STATE');
    expect(err.message).toMatch(/retry-failed/);
    expect(err.message).toMatch(/clone/);
    expect(err.details).toEqual({ status: 'completed', allowedActions: ['clone', 'delete', 'pace'] });
  });

  it('splits recipients into pages and small index buckets', () => {
    expect(planLayout(0, 500)).toEqual({ total: 0, pageSize: 500, pages: 0, buckets: 1, version: 1 });
    expect(planLayout(1001, 500, 4)).toEqual({ total: 1001, pageSize: 500, pages: 3, buckets: 16, version: 4 });
  });
});

describe('ledger records', () => {
  it('decodes the fixed-width layout the Lua scripts write', () => {
    const page = Buffer.alloc(RECORD_BYTES * 2);
    page.writeUInt8(3, RECORD_BYTES);
    page.writeUInt8(4, RECORD_BYTES + 1);
    page.writeUInt16BE(0x8000 | 0x4000 | 7, RECORD_BYTES + 2);
    page.writeUIntBE(123_456_789_012, RECORD_BYTES + 4, 6);
    expect(decodeRecord(page, 0)).toEqual({ state: 'pending', attempts: 0, reason: 0, locale: 0, counted: false, inDoubt: false, at: 0, delivery: null });
    expect(decodeRecord(page, 1)).toEqual({
      state: 'failed',
      attempts: 4,
      reason: 7,
      locale: 0,
      counted: true,
      inDoubt: true,
      at: 123_456_789_012,
      delivery: null,
    });
    // Never written: pending.
    expect(decodeRecord(page, 9)).toEqual({ state: 'pending', attempts: 0, reason: 0, locale: 0, counted: false, inDoubt: false, at: 0, delivery: null });
  });

  it('encodes exactly what it decodes', () => {
    const record = { state: 'unknown' as const, attempts: 3, reason: 5, locale: 0, counted: false, inDoubt: true, at: 987_654, delivery: null };
    expect(decodeRecord(encodeRecord(record), 0)).toEqual(record);
    const sentInVariant = { state: 'sent' as const, attempts: 1, reason: 0, locale: 3, counted: true, inDoubt: false, at: 5, delivery: null };
    expect(decodeRecord(encodeRecord(sentInVariant), 0)).toEqual(sentInVariant);
    // A receipt since: still sent, and what the provider said.
    for (const delivery of ['delivered', 'undelivered'] as const) {
      const received = { ...sentInVariant, delivery };
      expect(decodeRecord(encodeRecord(received), 0)).toEqual(received);
    }
  });

  it('checks the conservation of counts', () => {
    expect(countsAreConserved({ total: 10, pending: 4, inflight: 2, sent: 3, failed: 1, unknown: 1, skipped: 1 })).toBe(true);
    expect(countsAreConserved({ total: 10, pending: 4, inflight: 2, sent: 3, failed: 1, unknown: 1, skipped: 0 })).toBe(false);
    expect(countsAreConserved({ total: 10, pending: 1, inflight: 2, sent: 9, failed: 0, unknown: 0, skipped: 0 })).toBe(false);
  });
});

describe('fullJitterBackoff', () => {
  it('stays between zero and a doubling ceiling capped at the maximum', () => {
    expect(fullJitterBackoff(1, 1000, 60_000, () => 0.999)).toBe(999);
    expect(fullJitterBackoff(3, 1000, 60_000, () => 0.5)).toBe(2000);
    expect(fullJitterBackoff(30, 1000, 60_000, () => 0.5)).toBe(30_000);
    expect(fullJitterBackoff(2, 1000, 60_000, () => 0)).toBe(0);
  });
});

describe('Semaphore', () => {
  it('grants what is free and queues the rest in order', async () => {
    const s = new Semaphore(3);
    expect(await s.acquire(2)).toBe(2);
    expect(await s.acquire(5)).toBe(1);
    const waiting = s.acquire(4);
    const order: number[] = [];
    void waiting.then((n) => order.push(n));
    s.release(2);
    expect(await waiting).toBe(2);
    expect(order).toEqual([2]);
    expect(s.free).toBe(0);
  });
});

describe('parseRetryAfter', () => {
  it('reads seconds and HTTP dates', () => {
    expect(parseRetryAfter('2')).toBe(2000);
    expect(parseRetryAfter('0.5')).toBe(500);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 4000)).toBe(6000);
    expect(parseRetryAfter(undefined)).toBeUndefined();
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter('999999')).toBe(3_600_000);
  });
});

describe('settlement: what the ledger records for an answer', () => {
  const retry = { baseMs: 100, maxMs: 1000, inDoubt: 'report' as const, retryTimeouts: true };
  const timeout = { kind: 'in-doubt' as const, code: 'TIMEOUT', message: 'slow' };

  it('maps each answer to one ledger outcome', () => {
    expect(settlement({ kind: 'sent' }, 1, retry).outcome).toBe('sent');
    expect(settlement({ kind: 'permanent', code: 'HTTP_400', message: 'x' }, 1, retry)).toMatchObject({ outcome: 'failed', code: 'HTTP_400' });
    expect(settlement({ kind: 'transient', code: 'HTTP_503', message: 'x' }, 1, retry).outcome).toBe('retry');
    expect(settlement({ kind: 'rate-limited', scope: 'provider', code: 'HTTP_429', message: 'x', retryAfterMs: 2000 }, 1, retry)).toMatchObject({
      outcome: 'requeue',
      delayMs: 2000,
    });
    expect(settlement({ kind: 'not-sent', code: 'X', message: 'x' }, 1, retry)).toMatchObject({ outcome: 'requeue', delayMs: 0 });
  });

  it('retries a device-scoped rate limit with a backoff, like a transient failure, no sooner than Retry-After', () => {
    const answer = { kind: 'rate-limited' as const, scope: 'recipient' as const, code: 'TooManyRequests', message: 'x', retryAfterMs: 300 };
    expect(settlement(answer, 2, retry, () => 0)).toMatchObject({ outcome: 'retry', delayMs: 300 });
    expect(settlement(answer, 2, retry, () => 0.99).delayMs).toBe(300);
    expect(settlement({ ...answer, retryAfterMs: undefined }, 3, retry, () => 0.5).delayMs).toBe(200);
  });

  it('retries a timeout under the contract, or reports it when the provider does not retry timeouts', () => {
    expect(settlement(timeout, 1, retry).outcome).toBe('retry');
    expect(settlement(timeout, 1, { ...retry, retryTimeouts: false }).outcome).toBe('unknown');
    expect(settlement(timeout, 1, { ...retry, retryTimeouts: false, inDoubt: 'resend' }).outcome).toBe('retry');
    expect(settlement({ ...timeout, final: true }, 1, retry).outcome).toBe('unknown');
  });
});

describe('what answers say about the provider', () => {
  it('counts a device-scoped 429, a refused stream and a provider 429 as neither healthy nor failed', () => {
    expect(healthOf({ kind: 'rate-limited', scope: 'recipient', code: 'x', message: '' })).toBe('neutral');
    expect(healthOf({ kind: 'rate-limited', scope: 'provider', code: 'x', message: '' })).toBe('neutral');
    expect(healthOf({ kind: 'not-sent', code: 'REFUSED_STREAM', message: '' })).toBe('neutral');
    expect(healthOf({ kind: 'in-doubt', code: 'TIMEOUT', message: '' })).toBe('failed');
    expect(healthOfRequest([{ kind: 'sent' }, { kind: 'transient', code: 'x', message: '' }])).toBe('failed');
    expect(healthOfRequest([{ kind: 'not-sent', code: 'x', message: '' }, { kind: 'sent' }])).toBe('healthy');
  });

  it('pauses every worker only for a provider-wide 429, for the longest Retry-After', () => {
    expect(pushback([{ kind: 'rate-limited', scope: 'recipient', code: 'x', message: '', retryAfterMs: 5000 }])).toBeNull();
    expect(
      pushback([
        { kind: 'rate-limited', scope: 'provider', code: 'x', message: '' },
        { kind: 'rate-limited', scope: 'provider', code: 'x', message: '', retryAfterMs: 3000 },
      ]),
    ).toBe(3000);
    expect(pushback([{ kind: 'sent' }])).toBeNull();
  });
});
