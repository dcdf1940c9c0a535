import { describe, expect, it } from 'vitest';
import type { ClaimDirective, ConfirmEntry, PageRef } from '../../src/app/ports.js';
import { RedisLifecycle } from '../../src/adapters/redis/redis-lifecycle.js';
import { decodeRecord } from '../../src/domain/ledger.js';
import { REASONS } from '../../src/domain/respect.js';
import { acquireOptions, confirmPolicy, ids, redisHarness, settlePolicy, supervisorHarness } from '../helpers/harness.js';

/**
 * The ledger when something was lost on the way: a confirm that never
 * landed, a claim a failover forgot, a worker that keeps dying on the same
 * recipient, a cancel while requests are on the wire. Every run must reach a
 * final state, and nothing that may have gone out is sent again.
 */
const LEASE = 1000;

function setup(inDoubt: 'report' | 'resend' = 'report', maxAttempts = 5) {
  const { h, supervisor } = supervisorHarness('ledgerfault', { inDoubt, maxAttempts, intervalMs: 100, stuckMs: 60_000 });
  return { h, supervisor, lifecycle: new RedisLifecycle(h.keys, h.scripts) };
}

async function runningPage(h: ReturnType<typeof redisHarness>, size: number) {
  const campaignId = await h.createCampaign(ids(size), 100);
  const runId = await h.startRun(campaignId);
  await h.runs.markActive(campaignId, runId);
  await h.runs.advanceCursor(campaignId, runId, 0, 1);
  const ref: PageRef = { campaignId, runId, page: 0 };
  return { campaignId, runId, ref };
}

const claims = (...indexes: number[]): ClaimDirective[] => indexes.map((index) => ({ index, op: 'claim' as const }));
const entry = (index: number, outcome: ConfirmEntry['outcome'], attempt = 1): ConfirmEntry => ({
  index,
  attempt,
  outcome,
  delayMs: 0,
  code: outcome === 'sent' ? '' : 'X',
  message: '',
});

/** Ticks the supervisor for up to `ms` (lock released between ticks), until `done`. */
async function tickFor(s: ReturnType<typeof setup>, ms: number, done: () => Promise<boolean>): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    await s.h.locks.unlock('supervisor', '1');
    await s.supervisor.tick();
    if (await done()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return done();
}

async function stateOf(h: ReturnType<typeof redisHarness>, ref: PageRef, index: number) {
  const raw = (await h.redis.getBuffer(h.keys.campaign(ref.campaignId).run(ref.runId).records(ref.page))) ?? Buffer.alloc(0);
  return decodeRecord(raw, index);
}

describe('records in flight without a live lease', () => {
  it('settles a recipient whose confirm never landed once its page is released, and completes the run', async () => {
    const s = setup('report');
    const { h } = s;
    const { campaignId, runId, ref } = await runningPage(h, 2);
    await h.ledger.acquirePage(ref, 'A', acquireOptions(LEASE, 'report'));
    await h.ledger.claim(ref, 'A', LEASE, claims(0, 1));
    // Recipient 1's confirm is lost (a failover, an AOF everysec crash): only 0 lands.
    await h.ledger.confirm(ref, 'A', LEASE, confirmPolicy(5), [entry(0, 'sent')]);
    await h.ledger.releasePage(ref, 'A', 2, settlePolicy());
    const settled = await tickFor(s, 3 * LEASE, async () => (await h.runs.getRun(campaignId, runId))?.status === 'completed');
    const run = await h.runs.getRun(campaignId, runId);
    expect(run?.counts, 'counts once a lease period is over').toMatchObject({ pending: 0, inflight: 0, sent: 1, unknown: 1 });
    expect(settled).toBe(true);
    expect((await stateOf(h, ref, 1)).state).toBe('unknown');
  });
});

describe('a claim lost after the send went out', () => {
  it('lets the lease holder’s confirm land, so the recipient is never sent again', async () => {
    const { h } = setup();
    const { campaignId, runId, ref } = await runningPage(h, 2);
    await h.ledger.acquirePage(ref, 'A', acquireOptions(LEASE * 30, 'report'));
    await h.ledger.claim(ref, 'A', LEASE * 30, claims(0));
    // A failover promotes a replica that never got the claim: recipient 0 is pending again, the lease still A's.
    await h.forgetClaim(ref, 0);
    await h.ledger.confirm(ref, 'A', LEASE * 30, confirmPolicy(5), [entry(0, 'sent')]);
    expect((await stateOf(h, ref, 0)).state).toBe('sent');
    expect(await h.ledger.claim(ref, 'A', LEASE * 30, claims(0))).toEqual({ kind: 'ok', claimed: [], msLeft: null });
    expect((await h.runs.getRun(campaignId, runId))?.counts).toMatchObject({ pending: 1, inflight: 0, sent: 1 });
  });
});

describe('in-doubt resends', () => {
  it('stop at the attempt limit: a recipient whose worker keeps dying ends unknown, not pending for ever', async () => {
    const s = setup('resend', 2);
    const { h } = s;
    const { campaignId, runId, ref } = await runningPage(h, 1);
    for (const token of ['A', 'B', 'C']) {
      const acquired = await h.ledger.acquirePage(ref, token, acquireOptions(LEASE, 'resend', 2));
      if (acquired.kind !== 'ok') break;
      await h.ledger.claim(ref, token, LEASE, claims(0));
      // The worker dies with the request on the wire.
      await h.abandonLease(ref);
    }
    await tickFor(s, 3 * LEASE, async () => (await h.runs.getRun(campaignId, runId))?.status === 'completed');
    const record = await stateOf(h, ref, 0);
    expect(record.attempts).toBeLessThanOrEqual(2);
    expect(record.state).toBe('unknown');
  });
});

describe('cancel while requests are on the wire', () => {
  it('counts nothing pending in a cancelled run once its in-flight recipients come back or their worker is gone', async () => {
    const s = setup('report');
    const { h, lifecycle } = s;
    const { campaignId, runId, ref } = await runningPage(h, 4);
    await h.ledger.acquirePage(ref, 'A', acquireOptions(LEASE, 'report'));
    await h.ledger.claim(ref, 'A', LEASE, claims(0, 1, 2));
    expect(await lifecycle.cancel(campaignId, runId)).toMatchObject({ ok: true });
    // 0 comes back transient (would be retried), 1 rate limited (would be requeued); 2's worker dies.
    await h.ledger.confirm(ref, 'A', LEASE, confirmPolicy(5), [entry(0, 'retry'), entry(1, 'requeue')]);
    await h.abandonLease(ref);
    await tickFor(s, 3 * LEASE, async () => (await h.runs.getRun(campaignId, runId))?.counts.pending === 0);
    const run = await h.runs.getRun(campaignId, runId);
    expect(run?.status).toBe('cancelled');
    expect(run?.counts).toMatchObject({ total: 4, pending: 0, inflight: 0, unknown: 1, skipped: 3 });
  });
});

describe('a recipient an earlier attempt may have reached', () => {
  it('never ends failed or skipped, so retry-failed never sends it again under a new key: it ends unknown', async () => {
    const { h } = setup('report');
    const { campaignId, runId, ref } = await runningPage(h, 3);
    await h.ledger.acquirePage(ref, 'A', acquireOptions(LEASE * 30, 'report'));
    await h.ledger.claim(ref, 'A', LEASE * 30, claims(0, 1, 2));
    // Timeouts retried with the same key (retryTimeouts): in doubt, then a definite answer.
    const doubt = (index: number): ConfirmEntry => ({ index, attempt: 1, outcome: 'retry', inDoubt: true, delayMs: 0, code: 'TIMEOUT', message: 'no answer' });
    await h.ledger.confirm(ref, 'A', LEASE * 30, confirmPolicy(5), [doubt(0), doubt(1), entry(2, 'retry')]);
    await h.ledger.claim(ref, 'A', LEASE * 30, [...claims(0, 2), { index: 1, op: 'skip', reason: REASONS.suppressed, detail: 'on suppression list global' }]);
    await h.ledger.confirm(ref, 'A', LEASE * 30, confirmPolicy(5), [entry(0, 'failed', 2), entry(2, 'failed', 2)]);
    expect((await stateOf(h, ref, 0)).state, 'a 4xx after a timeout').toBe('unknown');
    expect((await stateOf(h, ref, 1)).state, 'suppressed after a timeout').toBe('unknown');
    expect((await stateOf(h, ref, 2)).state, 'a 4xx after a 5xx').toBe('failed');
    expect((await h.runs.getRun(campaignId, runId))?.counts).toMatchObject({ pending: 0, failed: 1, unknown: 2, skipped: 0 });
    expect((await h.ledger.readEntry(campaignId, runId, 0, 100)).lastError?.message).toMatch(/may have been delivered/);
  });
});

describe('cancel of a run with recipients waiting to be sent again after an answer in doubt', () => {
  it('counts them unknown, not skipped: an earlier attempt may have been delivered', async () => {
    const { h, lifecycle } = setup('resend');
    const { campaignId, runId, ref } = await runningPage(h, 4);
    await h.ledger.acquirePage(ref, 'A', acquireOptions(LEASE * 30, 'resend'));
    await h.ledger.claim(ref, 'A', LEASE * 30, claims(0, 1));
    // 0 timed out (retried with the same key, in doubt); 1 got a 503 (not delivered).
    await h.ledger.confirm(ref, 'A', LEASE * 30, confirmPolicy(5), [
      { index: 0, attempt: 1, outcome: 'retry', inDoubt: true, delayMs: 60_000, code: 'TIMEOUT', message: 'no answer' },
      { ...entry(1, 'retry'), delayMs: 60_000 },
    ]);
    expect(await lifecycle.cancel(campaignId, runId)).toMatchObject({ ok: true });
    const run = await h.runs.getRun(campaignId, runId);
    expect(run?.counts).toMatchObject({ total: 4, pending: 0, unknown: 1, skipped: 3 });
    expect(await h.ledger.listBad(campaignId, runId, -1, 10)).toEqual([0]);
    // A claim of a doubtful recipient takes it out of the index: in flight is not pending.
    const other = await runningPage(h, 2);
    await h.ledger.acquirePage(other.ref, 'A', acquireOptions(LEASE * 30, 'resend'));
    await h.ledger.claim(other.ref, 'A', LEASE * 30, claims(0));
    await h.ledger.confirm(other.ref, 'A', LEASE * 30, confirmPolicy(5), [
      { index: 0, attempt: 1, outcome: 'retry', inDoubt: true, delayMs: 0, code: 'TIMEOUT', message: '' },
    ]);
    await h.ledger.claim(other.ref, 'A', LEASE * 30, claims(0));
    expect(await h.redis.zcard(h.keys.campaign(other.campaignId).run(other.runId).doubt)).toBe(0);
  });
});
