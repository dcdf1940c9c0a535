import { describe, expect, it } from 'vitest';
import { countsAreConserved, decodeRecord } from '../../src/domain/ledger.js';
import type { ClaimDirective, ConfirmEntry, PageRef } from '../../src/app/ports.js';
import { REASONS } from '../../src/domain/respect.js';
import { planLayout } from '../../src/domain/campaign.js';
import { newId } from '../../src/domain/ids.js';
import { RedisLifecycle } from '../../src/adapters/redis/redis-lifecycle.js';
import type { WindowSettings } from '../../src/domain/windows.js';
import { acquireOptions, confirmPolicy, draftRecord, ids, redisHarness } from '../helpers/harness.js';

/**
 * Delivery windows in the ledger: a run's deadline, local-time deferrals
 * counted by reason and wave, a run's pace through pause and resume. Real
 * Redis, the Lua steps themselves.
 */
const LEASE = 30_000;

async function campaignWith(h: ReturnType<typeof redisHarness>, size: number, windows: Partial<WindowSettings>, pageSize = 10) {
  const id = newId();
  await h.store.create(draftRecord(id, planLayout(size, pageSize), windows), ids(size));
  return id;
}

async function started(windows: Partial<WindowSettings>, size = 10, pageSize = 10) {
  const h = redisHarness('windows');
  const campaignId = await campaignWith(h, size, windows, pageSize);
  const runId = await h.startRun(campaignId);
  const ref: PageRef = { campaignId, runId, page: 0 };
  return { h, campaignId, runId, ref, runKey: h.keys.campaign(campaignId).run(runId) };
}

const claims = (...indexes: number[]): ClaimDirective[] => indexes.map((index) => ({ index, op: 'claim' as const }));
const sent = (index: number, attempt = 1): ConfirmEntry => ({ index, attempt, outcome: 'sent', delayMs: 0, code: '', message: '' });

async function records(h: ReturnType<typeof redisHarness>, ref: PageRef, size: number) {
  const raw = (await h.redis.getBuffer(h.keys.campaign(ref.campaignId).run(ref.runId).records(ref.page))) ?? Buffer.alloc(0);
  return Array.from({ length: size }, (_, i) => decodeRecord(raw, i));
}

describe('a run deadline', () => {
  it('is the earlier of expiresAt and the start plus expiresAfter, taken when the run is made', async () => {
    const at = Date.now() + 3_600_000;
    const { h, campaignId, runId } = await started({ expiresAt: new Date(at).toISOString(), expiresAfter: '2h' });
    const run = (await h.runs.getRun(campaignId, runId))!;
    expect(run.expiresAt).toBe(at);
    const later = await started({ expiresAfter: '90s' });
    const other = (await later.h.runs.getRun(later.campaignId, later.runId))!;
    expect(other.expiresAt! - other.startAt).toBe(90_000);
  });

  it('a scheduled run that starts past its deadline is not made: expired, with the deadline', async () => {
    const h = redisHarness('windows');
    const id = await campaignWith(h, 5, { expiresAfter: '1h' });
    const due = Date.now() - 2 * 3_600_000;
    const result = await h.runs.createRun(id, 'occ', { allowedFrom: ['draft'], statusAfter: 'completed', trigger: 'schedule', startAt: due });
    expect(result).toEqual({ ok: false, reason: 'expired', status: 'draft', deadline: due + 3_600_000 });
    expect(await h.runs.getRun(id, 'occ')).toBeNull();
    expect((await h.store.get(id))!.status).toBe('draft');
  });

  it('claims until the deadline less the guard, then expires instead of claiming, in the same step', async () => {
    const { h, campaignId, runId, ref, runKey } = await started({ expiresAfter: '1h' });
    await h.ledger.acquirePage(ref, 'A', acquireOptions(LEASE));
    const before = await h.ledger.claim(ref, 'A', LEASE, claims(0, 1), 10);
    expect(before.kind === 'ok' && before.claimed.map((c) => c.index)).toEqual([0, 1]);
    expect(before.kind === 'ok' && before.msLeft).toBeGreaterThan(3_590_000);
    // The deadline is 5 ms away: inside a 10 ms guard.
    await h.redis.hset(runKey.run, 'expiresAt', (await h.locks.serverTime()) + 5);
    // An expire before the deadline itself does nothing...
    await h.redis.hset(runKey.run, 'expiresAt', (await h.locks.serverTime()) + 60_000);
    const early = await h.ledger.claim(ref, 'A', LEASE, [{ index: 4, op: 'expire' }]);
    expect(early.kind === 'ok' && early.claimed).toEqual([]);
    expect((await records(h, ref, 10))[4]!.state).toBe('pending');
    // ...and a claim within the guard of it expires.
    await h.redis.hset(runKey.run, 'expiresAt', (await h.locks.serverTime()) + 5);
    const late = await h.ledger.claim(ref, 'A', LEASE, claims(2, 3), 10);
    expect(late.kind === 'ok' && late.claimed).toEqual([]);
    expect(late.kind === 'ok' && late.msLeft).toBeLessThanOrEqual(0);
    const page = await records(h, ref, 10);
    expect(page.slice(0, 4).map((r) => r.state)).toEqual(['inflight', 'inflight', 'skipped', 'skipped']);
    expect(page[2]!.reason).toBe(REASONS.expired);
    const run = (await h.runs.getRun(campaignId, runId))!;
    expect(run.counts).toMatchObject({ pending: 8, inflight: 2, skipped: 2 });
    expect(run.skippedBy).toEqual({ expired: 2 });
    // What was claimed before it is confirmed as usual.
    await h.ledger.confirm(ref, 'A', LEASE, confirmPolicy(), [sent(0), sent(1)]);
    expect((await h.runs.getRun(campaignId, runId))!.counts).toMatchObject({ sent: 2, skipped: 2, pending: 6, inflight: 0 });
  });

  it('the sweep expires every pending recipient of a run past it — on pages never opened, deferred, in doubt (unknown) — and leaves those in flight', async () => {
    const { h, campaignId, runId, ref, runKey } = await started({ expiresAfter: '1h' }, 35, 10);
    await h.ledger.acquirePage(ref, 'A', acquireOptions(LEASE, 'resend'));
    await h.ledger.claim(ref, 'A', LEASE, [...claims(0, 1, 2), { index: 3, op: 'defer', until: Date.now() + 60_000, reason: REASONS['local-time'] }]);
    // 0 sent, 1 timed out (pending again, in doubt), 2 still in flight.
    await h.ledger.confirm(ref, 'A', LEASE, confirmPolicy(), [
      sent(0),
      { index: 1, attempt: 1, outcome: 'retry', inDoubt: true, delayMs: 60_000, code: 'TIMEOUT', message: 'no answer' },
    ]);
    expect((await h.runs.getRun(campaignId, runId))!.deferredBy).toEqual({ 'local-time': 1 });
    expect(await h.ledger.expirePages(campaignId, runId, 0, 4)).toEqual({ expired: 0, unknown: 0, completed: false, early: true });

    await h.redis.hset(runKey.run, 'expiresAt', (await h.locks.serverTime()) - 1);
    const swept = await h.ledger.expirePages(campaignId, runId, 0, 4);
    expect(swept).toEqual({ expired: 32, unknown: 1, completed: false, early: false });
    let run = (await h.runs.getRun(campaignId, runId))!;
    expect(run.counts).toMatchObject({ total: 35, sent: 1, unknown: 1, skipped: 32, pending: 1, inflight: 1 });
    expect(run.deferred).toBe(0);
    expect(run.deferredBy).toEqual({});
    expect(countsAreConserved(run.counts)).toBe(true);
    const last = await records(h, { ...ref, page: 3 }, 5);
    expect(last.map((r) => [r.state, r.reason])).toEqual(Array.from({ length: 5 }, () => ['skipped', REASONS.expired]));
    // Again: nothing more to do. The one in flight ends the run when its answer comes.
    expect(await h.ledger.expirePages(campaignId, runId, 0, 4)).toEqual({ expired: 0, unknown: 0, completed: false, early: false });
    const confirmed = await h.ledger.confirm(ref, 'A', LEASE, confirmPolicy(), [sent(2)]);
    expect(confirmed).toMatchObject({ kind: 'ok', runCompleted: true });
    run = (await h.runs.getRun(campaignId, runId))!;
    expect(run.status).toBe('completed');
    expect(run.counts).toMatchObject({ sent: 2, unknown: 1, skipped: 32, pending: 0 });
  });
});

describe('a paused run past its deadline', () => {
  it("completes, and an occurrence of a recurring campaign leaves the campaign paused: the operator's pause holds for the next occurrence, and resume brings back its schedule", async () => {
    const h = redisHarness('windows');
    const campaignId = await campaignWith(h, 10, { expiresAfter: '1h' });
    const created = await h.runs.createRun(campaignId, 'occ', { allowedFrom: ['draft'], statusAfter: 'scheduled', trigger: 'schedule' });
    expect(created.ok).toBe(true);
    const lifecycle = new RedisLifecycle(h.keys, h.scripts);
    expect(await lifecycle.pause(campaignId, 'occ')).toEqual({ ok: true, status: 'paused' });
    await h.redis.hset(h.keys.campaign(campaignId).run('occ').run, 'expiresAt', (await h.locks.serverTime()) - 1);
    expect(await h.ledger.expirePages(campaignId, 'occ', 0, 1)).toMatchObject({ expired: 10, completed: true });
    expect((await h.runs.getRun(campaignId, 'occ'))!.status).toBe('completed');
    expect((await h.store.get(campaignId))!.status).toBe('paused');
    expect(await lifecycle.resume(campaignId, 'occ', 'scheduled')).toEqual({ ok: true, status: 'scheduled' });
  });

  it('of a one-off campaign completes the campaign: nothing is left to hold', async () => {
    const { h, campaignId, runId, runKey } = await started({ expiresAfter: '1h' });
    const lifecycle = new RedisLifecycle(h.keys, h.scripts);
    expect(await lifecycle.pause(campaignId, runId)).toEqual({ ok: true, status: 'paused' });
    await h.redis.hset(runKey.run, 'expiresAt', (await h.locks.serverTime()) - 1);
    expect(await h.ledger.expirePages(campaignId, runId, 0, 1)).toMatchObject({ expired: 10, completed: true });
    expect((await h.store.get(campaignId))!.status).toBe('completed');
  });
});

describe('local-time deferrals', () => {
  it('are counted by reason and by wave; a claim takes them out of both counts, a deferral to quiet hours moves them', async () => {
    const { h, campaignId, runId, ref } = await started({ deliverAt: { localTime: '09:00', timezone: 'UTC' } });
    await h.ledger.acquirePage(ref, 'A', acquireOptions(LEASE));
    const wave1 = Date.now() + 40;
    const wave2 = Date.now() + 3_600_000;
    const defer = (index: number, until: number, reason: number): ClaimDirective => ({ index, op: 'defer', until, reason });
    await h.ledger.claim(ref, 'A', LEASE, [
      defer(0, wave1, REASONS['local-time']),
      defer(1, wave1, REASONS['local-time']),
      defer(2, wave2, REASONS['local-time']),
      defer(3, wave2, REASONS['quiet-hours']),
    ]);
    // Deferred again to the same wave (a page taken over): counted once.
    await h.ledger.claim(ref, 'A', LEASE, [defer(2, wave2, REASONS['local-time'])]);
    let run = (await h.runs.getRun(campaignId, runId))!;
    expect(run.deferred).toBe(4);
    expect(run.deferredBy).toEqual({ 'local-time': 3, 'quiet-hours': 1 });
    expect(await h.runs.waves(campaignId, runId)).toEqual([
      { at: wave1, recipients: 2 },
      { at: wave2, recipients: 1 },
    ]);
    // Its local time came, and its quiet hours: deferred again, now for quiet hours.
    await h.ledger.claim(ref, 'A', LEASE, [defer(2, wave2 + 1000, REASONS['quiet-hours'])]);
    await new Promise((resolve) => setTimeout(resolve, 60));
    const claimed = await h.ledger.claim(ref, 'A', LEASE, claims(0, 1));
    expect(claimed.kind === 'ok' && claimed.claimed.length).toBe(2);
    run = (await h.runs.getRun(campaignId, runId))!;
    expect(run.deferred).toBe(2);
    expect(run.deferredBy).toEqual({ 'quiet-hours': 2 });
    // The waves are what was deferred to them: a record of the plan, not a count of who waits.
    expect(await h.runs.waves(campaignId, runId)).toHaveLength(2);
  });
});

describe('a run pace', () => {
  it('is the campaign tps, or its pending recipients over spreadOver; a pause stops the spread clock, a resume spreads what is left', async () => {
    const { h, campaignId, runId, runKey } = await started({ pace: { spreadOver: '100s' } }, 50);
    let run = (await h.runs.getRun(campaignId, runId))!;
    expect(run.pace).toBeCloseTo(0.5, 6);
    const spreadEnd = Number(await h.redis.hget(runKey.run, 'spreadEnd'));
    expect(spreadEnd - run.createdAt).toBe(100_000);
    // 40 s of the spread used and half the list sent, then paused.
    await h.redis.hset(runKey.run, 'spreadEnd', (await h.locks.serverTime()) + 60_000, 'pending', 25);
    const { RedisLifecycle } = await import('../../src/adapters/redis/redis-lifecycle.js');
    const lifecycle = new RedisLifecycle(h.keys, h.scripts);
    expect((await lifecycle.pause(campaignId, runId)).ok).toBe(true);
    const left = Number(await h.redis.hget(runKey.run, 'spreadLeft'));
    expect(left).toBeGreaterThan(59_000);
    expect(left).toBeLessThanOrEqual(60_000);
    expect((await lifecycle.resume(campaignId, runId, 'draft')).ok).toBe(true);
    run = (await h.runs.getRun(campaignId, runId))!;
    expect(run.pace).toBeCloseTo(25_000 / left, 6);

    // A new pace in any state, taken by the run at once.
    expect((await lifecycle.setPace(campaignId, runId, { tps: 7, spreadMs: null })).ok).toBe(true);
    expect((await h.runs.getRun(campaignId, runId))!.pace).toBe(7);
    expect((await h.store.get(campaignId))!.pace).toEqual({ tps: 7 });
    expect((await lifecycle.setPace(campaignId, runId, { tps: null, spreadMs: null })).ok).toBe(true);
    expect((await h.runs.getRun(campaignId, runId))!.pace).toBeNull();
    expect((await h.store.get(campaignId))!.pace).toBeNull();
  });
});
