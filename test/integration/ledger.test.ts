import { describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { countsAreConserved, decodeRecord, type RecipientStateName } from '../../src/domain/ledger.js';
import type { ClaimDirective, ConfirmEntry, PageRef } from '../../src/app/ports.js';
import { REASONS } from '../../src/domain/respect.js';
import { acquireOptions, confirmPolicy, ids, redisHarness, settlePolicy } from '../helpers/harness.js';
import { TEST_REDIS_URL } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';

const LEASE = 30_000;
const harness = () => redisHarness('ledger');

/** A fresh campaign of `size` recipients with its run started; `ref` is its first page. */
async function runningPage(size: number) {
  const h = harness();
  const campaignId = await h.createCampaign(ids(size));
  const runId = await h.startRun(campaignId);
  const ref: PageRef = { campaignId, runId, page: 0 };
  return { h, campaignId, runId, ref };
}

const claims = (...indexes: number[]): ClaimDirective[] => indexes.map((index) => ({ index, op: 'claim' as const }));

const sent = (index: number): ConfirmEntry => ({ index, attempt: 1, outcome: 'sent', delayMs: 0, code: '', message: '' });

async function states(h: ReturnType<typeof redisHarness>, ref: PageRef, size: number): Promise<RecipientStateName[]> {
  const raw = (await h.redis.getBuffer(h.keys.campaign(ref.campaignId).run(ref.runId).records(ref.page))) ?? Buffer.alloc(0);
  return Array.from({ length: size }, (_, i) => decodeRecord(raw, i).state);
}

describe('create-run', () => {
  it('makes exactly one run out of many concurrent launches', async () => {
    const h = harness();
    const campaignId = await h.createCampaign(ids(10));
    const connections = Array.from({ length: 5 }, () => new Redis(TEST_REDIS_URL));
    try {
      const results = await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          redisHarness('ledger', { redis: connections[i % 5]!, prefix: h.prefix }).runs.createRun(campaignId, 'main', {
            allowedFrom: ['draft', 'scheduled'],
            statusAfter: 'completed',
            trigger: 'launch',
          }),
        ),
      );
      expect(results.filter((r) => r.ok)).toHaveLength(1);
      expect(results.filter((r) => !r.ok && r.reason === 'state')).toHaveLength(39);
    } finally {
      connections.forEach((c) => c.disconnect());
    }
    const run = await h.runs.getRun(campaignId, 'main');
    expect(run?.counts).toEqual({ total: 10, pending: 10, inflight: 0, sent: 0, failed: 0, unknown: 0, skipped: 0 });
    expect((await h.store.get(campaignId))?.status).toBe('running');
  });

  it('refuses a campaign without recipients, an unknown campaign, and a second run', async () => {
    const h = harness();
    const empty = await h.createCampaign([]);
    const opts = { allowedFrom: ['draft', 'scheduled', 'running'] as const, statusAfter: 'completed' as const, trigger: 't' };
    expect(await h.runs.createRun(empty, 'main', opts)).toEqual({ ok: false, reason: 'empty', status: 'draft' });
    expect(await h.runs.createRun('nope', 'main', opts)).toMatchObject({ ok: false, reason: 'missing' });
    const campaignId = await h.createCampaign(ids(3));
    expect((await h.runs.createRun(campaignId, 'main', opts)).ok).toBe(true);
    expect(await h.runs.createRun(campaignId, 'main', opts)).toMatchObject({ ok: false, reason: 'exists' });
  });
});

describe('claim and confirm', () => {
  it('moves recipients through every transition and keeps the counts', async () => {
    const { h, campaignId, runId, ref } = await runningPage(10);
    const acquired = await h.ledger.acquirePage(ref, 'A', acquireOptions(LEASE, 'report'));
    expect(acquired.kind).toBe('ok');

    const claim = await h.ledger.claim(ref, 'A', LEASE, claims(0, 1, 2, 3, 4, 5, 6, 7, 8));
    expect(claim).toEqual({ kind: 'ok', claimed: [0, 1, 2, 3, 4, 5, 6, 7, 8].map((index) => ({ index, attempt: 1 })), msLeft: null });
    expect((await h.runs.getRun(campaignId, runId))?.counts).toMatchObject({ pending: 10, inflight: 9 });

    const result = await h.ledger.confirm(ref, 'A', LEASE, confirmPolicy(5), [
      sent(0),
      sent(1),
      { index: 2, attempt: 1, outcome: 'failed', delayMs: 0, code: 'HTTP_400', message: '잘못된 토큰 (bad token) — 🚫' },
      { index: 3, attempt: 1, outcome: 'retry', delayMs: 0, code: 'HTTP_503', message: 'busy' },
      { index: 4, attempt: 1, outcome: 'requeue', delayMs: 60_000, code: 'HTTP_429', message: 'slow down' },
      { index: 5, attempt: 1, outcome: 'unknown', delayMs: 0, code: 'TIMEOUT', message: 'no answer' },
    ]);
    expect(result).toEqual({ kind: 'ok', runCompleted: false, applied: 6 });
    const run = await h.runs.getRun(campaignId, runId);
    expect(run?.counts).toEqual({ total: 10, pending: 6, inflight: 3, sent: 2, failed: 1, unknown: 1, skipped: 0 });
    expect(await states(h, ref, 10)).toEqual(['sent', 'sent', 'failed', 'pending', 'pending', 'unknown', 'inflight', 'inflight', 'inflight', 'pending']);

    // A transient failure spent its attempt; a rate-limited one did not, and is not due for a minute.
    const again = await h.ledger.claim(ref, 'A', LEASE, claims(3, 4, 9));
    expect(again).toEqual({
      kind: 'ok',
      claimed: [
        { index: 3, attempt: 2 },
        { index: 9, attempt: 1 },
      ],
      msLeft: null,
    });
    const failedEntry = await h.ledger.readEntry(campaignId, runId, 2, 100);
    expect(failedEntry.record).toMatchObject({ state: 'failed', attempts: 1 });
    // Texts go to the ledger packed (redis-ledger.ts): Korean and emoji arrive whole.
    expect(failedEntry.lastError).toMatchObject({ code: 'HTTP_400', message: '잘못된 토큰 (bad token) — 🚫', attempts: 1 });
    expect((await h.ledger.readEntry(campaignId, runId, 4, 100)).record).toMatchObject({ state: 'pending', attempts: 0 });
    expect(await h.ledger.listBad(campaignId, runId, -1, 10)).toEqual([2, 5]);
  });

  it('lets 50 concurrent claimers with their own tokens win a recipient exactly once', async () => {
    const { h, campaignId, runId, ref } = await runningPage(5);
    const connections = Array.from({ length: 10 }, () => new Redis(TEST_REDIS_URL));
    try {
      const wins = await Promise.all(
        Array.from({ length: 50 }, async (_, i) => {
          const ledger = redisHarness('ledger', { redis: connections[i % 10]!, prefix: h.prefix }).ledger;
          const token = `worker-${i}`;
          const acquired = await ledger.acquirePage(ref, token, acquireOptions(LEASE, 'report'));
          if (acquired.kind !== 'ok') return 0;
          const claim = await ledger.claim(ref, token, LEASE, claims(0));
          return claim.kind === 'ok' ? claim.claimed.length : 0;
        }),
      );
      expect(wins.reduce((a, b) => a + b, 0)).toBe(1);
    } finally {
      connections.forEach((c) => c.disconnect());
    }
    expect((await h.runs.getRun(campaignId, runId))?.counts.inflight).toBe(1);
  });

  it('answers a resent claim with the same recipients and counts them once', async () => {
    const { h, campaignId, runId, ref } = await runningPage(5);
    await h.ledger.acquirePage(ref, 'A', acquireOptions(LEASE, 'report'));
    const replies = await Promise.all(Array.from({ length: 20 }, () => h.ledger.claim(ref, 'A', LEASE, claims(1))));
    for (const reply of replies) expect(reply).toEqual({ kind: 'ok', claimed: [{ index: 1, attempt: 1 }], msLeft: null });
    expect((await h.runs.getRun(campaignId, runId))?.counts.inflight).toBe(1);
  });

  it('refuses claims and confirms from a worker that does not hold the page', async () => {
    const { h, ref } = await runningPage(5);
    await h.ledger.acquirePage(ref, 'A', acquireOptions(LEASE, 'report'));
    await h.ledger.claim(ref, 'A', LEASE, claims(0, 1));
    const busy = await h.ledger.acquirePage(ref, 'B', acquireOptions(LEASE, 'report'));
    expect(busy.kind).toBe('busy');
    expect(await h.ledger.claim(ref, 'B', LEASE, claims(2))).toEqual({ kind: 'fenced' });
    expect(await h.ledger.confirm(ref, 'B', LEASE, confirmPolicy(5), [sent(0)])).toEqual({ kind: 'fenced' });
    expect(await states(h, ref, 3)).toEqual(['inflight', 'inflight', 'pending']);
  });

  it('marks the in-flight recipients of an expired lease unknown and fences the old holder', async () => {
    const { h, campaignId, runId, ref } = await runningPage(4);
    await h.ledger.acquirePage(ref, 'A', acquireOptions(300, 'report'));
    await h.ledger.claim(ref, 'A', 300, claims(0, 1));
    await h.ledger.confirm(ref, 'A', 300, confirmPolicy(5), [sent(0)]);
    // Worker A "dies". Once its lease ends, B takes the page over.
    const takeover = await waitFor(async () => {
      const r = await h.ledger.acquirePage(ref, 'B', acquireOptions(LEASE, 'report'));
      return r.kind === 'ok' ? r : undefined;
    });
    expect(takeover.markedUnknown).toBe(1);
    expect(await states(h, ref, 4)).toEqual(['sent', 'unknown', 'pending', 'pending']);
    expect((await h.ledger.readEntry(campaignId, runId, 1, 100)).lastError?.code).toBe('LEASE_EXPIRED');
    // A comes back and reports its send: refused, the recipient stays unknown (never silently resent).
    expect(await h.ledger.confirm(ref, 'A', LEASE, confirmPolicy(5), [sent(1)])).toEqual({ kind: 'fenced' });
    expect(await h.ledger.claim(ref, 'B', LEASE, claims(1, 2, 3))).toEqual({
      kind: 'ok',
      claimed: [
        { index: 2, attempt: 1 },
        { index: 3, attempt: 1 },
      ],
      msLeft: null,
    });
    const result = await h.ledger.confirm(ref, 'B', LEASE, confirmPolicy(5), [sent(2), sent(3)]);
    expect(result).toMatchObject({ kind: 'ok', runCompleted: true });
    const run = await h.runs.getRun(campaignId, runId);
    expect(run?.status).toBe('completed');
    expect(run?.counts).toEqual({ total: 4, pending: 0, inflight: 0, sent: 3, failed: 0, unknown: 1, skipped: 0 });
    expect((await h.store.get(campaignId))?.status).toBe('completed');
  });

  it('fails a recipient once its attempts are spent', async () => {
    const { h, campaignId, runId, ref } = await runningPage(1);
    await h.ledger.acquirePage(ref, 'A', acquireOptions(LEASE, 'report'));
    const transient: ConfirmEntry = { index: 0, attempt: 1, outcome: 'retry', delayMs: 0, code: 'HTTP_500', message: 'oops' };
    await h.ledger.claim(ref, 'A', LEASE, claims(0));
    expect(await h.ledger.confirm(ref, 'A', LEASE, confirmPolicy(2), [transient])).toMatchObject({ runCompleted: false });
    await h.ledger.claim(ref, 'A', LEASE, claims(0));
    expect(await h.ledger.confirm(ref, 'A', LEASE, confirmPolicy(2), [transient])).toMatchObject({ runCompleted: true });
    expect((await h.ledger.readEntry(campaignId, runId, 0, 100)).record).toMatchObject({ state: 'failed', attempts: 2 });
  });

  it('ignores a confirm resent after a lost reply: the record is final, or pending with that attempt spent', async () => {
    const { h, campaignId, runId, ref } = await runningPage(2);
    await h.ledger.acquirePage(ref, 'A', acquireOptions(LEASE, 'report'));
    await h.ledger.claim(ref, 'A', LEASE, claims(0, 1));
    const retry: ConfirmEntry = { index: 1, attempt: 1, outcome: 'retry', delayMs: 60_000, code: 'HTTP_503', message: 'busy' };
    expect(await h.ledger.confirm(ref, 'A', LEASE, confirmPolicy(5), [sent(0), retry])).toMatchObject({ applied: 2 });
    expect(await h.ledger.confirm(ref, 'A', LEASE, confirmPolicy(5), [sent(0), retry])).toMatchObject({ applied: 0 });
    expect((await h.runs.getRun(campaignId, runId))?.counts).toMatchObject({ sent: 1, pending: 1, inflight: 0 });
    expect((await h.ledger.readEntry(campaignId, runId, 1, 100)).record).toMatchObject({ state: 'pending', attempts: 1 });
  });

  it('stops claims once the run is no longer running', async () => {
    const { h, campaignId, runId, ref } = await runningPage(2);
    await h.ledger.acquirePage(ref, 'A', acquireOptions(LEASE, 'report'));
    await h.setRunStatus(campaignId, runId, 'paused');
    expect(await h.ledger.claim(ref, 'A', LEASE, claims(0))).toEqual({ kind: 'inactive', status: 'paused' });
    expect(await h.ledger.acquirePage(ref, 'B', acquireOptions(LEASE, 'report'))).toMatchObject({ kind: 'busy' });
  });
});

describe('claims that defer and skip (recipient respect)', () => {
  it('defers, skips with a reason and claims in one step, and keeps the breakdown', async () => {
    const { h, campaignId, runId, ref } = await runningPage(6);
    await h.ledger.acquirePage(ref, 'A', acquireOptions(LEASE, 'report'));
    const result = await h.ledger.claim(ref, 'A', LEASE, [
      { index: 0, op: 'claim' },
      { index: 1, op: 'defer', until: Date.now() + 60_000 },
      { index: 2, op: 'defer', until: Date.now() + 30_000 },
      { index: 3, op: 'skip', reason: REASONS.suppressed, detail: '수신 거부 목록 global' },
      { index: 4, op: 'skip', reason: REASONS['frequency-cap'], detail: 'frequency cap: at most 1 per 24h' },
    ]);
    expect(result).toEqual({ kind: 'ok', claimed: [{ index: 0, attempt: 1 }], msLeft: null });
    let run = (await h.runs.getRun(campaignId, runId))!;
    expect(run.counts).toMatchObject({ total: 6, pending: 4, inflight: 1, skipped: 2 });
    expect(run.deferred).toBe(2);
    expect(run.deferredUntil! - run.createdAt).toBeGreaterThanOrEqual(60_000);
    expect(run.skippedBy).toEqual({ suppressed: 1, 'frequency-cap': 1 });
    const skipped = await h.ledger.readEntry(campaignId, runId, 3, 100);
    expect(skipped.record).toMatchObject({ state: 'skipped', reason: REASONS.suppressed });
    expect(skipped.lastError).toMatchObject({ code: 'SKIPPED', message: '수신 거부 목록 global' });
    expect((await h.ledger.readEntry(campaignId, runId, 1, 100)).record).toMatchObject({ state: 'pending', reason: REASONS['quiet-hours'] });

    // Not due yet: a claim does not take a deferred recipient; deferring again does not count it twice.
    expect(await h.ledger.claim(ref, 'A', LEASE, claims(1))).toEqual({ kind: 'ok', claimed: [], msLeft: null });
    await h.ledger.claim(ref, 'A', LEASE, [{ index: 1, op: 'defer', until: Date.now() }]);
    expect((await h.runs.getRun(campaignId, runId))!.deferred).toBe(2);
    // Due now: claimed, and no longer deferred. A skip of a recipient in flight changes nothing.
    expect(await h.ledger.claim(ref, 'A', LEASE, [...claims(1), { index: 0, op: 'skip', reason: REASONS.suppressed, detail: 'late' }])).toEqual({
      kind: 'ok',
      claimed: [{ index: 1, attempt: 1 }],
      msLeft: null,
    });
    run = (await h.runs.getRun(campaignId, runId))!;
    expect(run.deferred).toBe(1);
    expect(run.counts).toMatchObject({ pending: 4, inflight: 2, skipped: 2 });
    // The page is parked until index 2 is due, not reported as due now.
    await h.ledger.confirm(ref, 'A', LEASE, confirmPolicy(5), [sent(0), sent(1)]);
    await h.ledger.claim(ref, 'A', LEASE, [{ index: 5, op: 'defer', until: Date.now() + 45_000 }]);
    const left = await h.ledger.releasePage(ref, 'A', 6, settlePolicy());
    expect(left.pending).toBe(2);
    expect(left.nextDueIn).toBeGreaterThan(25_000);
    expect(await h.redis.zscore(h.keys.campaign(campaignId).run(runId).parked, '0')).not.toBeNull();
  });

  it('remembers a recipient was counted against a frequency cap through requeues, retries and deferrals', async () => {
    const { h, campaignId, runId, ref } = await runningPage(2);
    await h.ledger.acquirePage(ref, 'A', acquireOptions(LEASE, 'report'));
    await h.ledger.claim(ref, 'A', LEASE, [
      { index: 0, op: 'claim', counted: true },
      { index: 1, op: 'claim' },
    ]);
    const entry = async (index: number) => (await h.ledger.readEntry(campaignId, runId, index, 100)).record;
    expect(await entry(0)).toMatchObject({ state: 'inflight', counted: true, reason: 0 });
    expect(await entry(1)).toMatchObject({ state: 'inflight', counted: false });
    // A 429 gives the attempt back: the record still says counted.
    await h.ledger.confirm(ref, 'A', LEASE, confirmPolicy(5), [{ index: 0, attempt: 1, outcome: 'requeue', delayMs: 0, code: 'HTTP_429', message: '' }]);
    expect(await entry(0)).toMatchObject({ state: 'pending', attempts: 0, counted: true });
    await h.ledger.claim(ref, 'A', LEASE, [{ index: 0, op: 'defer', until: Date.now() }]);
    expect(await entry(0)).toMatchObject({ state: 'pending', reason: REASONS['quiet-hours'], counted: true });
    await h.ledger.claim(ref, 'A', LEASE, claims(0));
    expect(await entry(0)).toMatchObject({ state: 'inflight', attempts: 1, reason: 0, counted: true });
    expect((await h.runs.getRun(campaignId, runId))!.deferred).toBe(0);
  });

  it('settles deferred recipients as skipped (cancelled) when the campaign is cancelled', async () => {
    const { h, campaignId, runId, ref } = await runningPage(3);
    await h.ledger.acquirePage(ref, 'A', acquireOptions(LEASE, 'report'));
    await h.ledger.claim(ref, 'A', LEASE, [
      { index: 0, op: 'defer', until: Date.now() + 60_000 },
      { index: 1, op: 'skip', reason: REASONS.suppressed, detail: 'x' },
    ]);
    const { RedisLifecycle } = await import('../../src/adapters/redis/redis-lifecycle.js');
    expect(await new RedisLifecycle(h.keys, h.scripts).cancel(campaignId, runId)).toMatchObject({ ok: true });
    const run = (await h.runs.getRun(campaignId, runId))!;
    expect(run.counts).toMatchObject({ pending: 0, skipped: 3 });
    expect(run.deferred).toBe(0);
    expect(run.deferredUntil).toBeNull();
    expect(run.skippedBy).toEqual({ suppressed: 1, cancelled: 2 });
  });
});

describe('release and the fan-out cursor', () => {
  it('reports what is left of a page and frees its window slot', async () => {
    const h = harness();
    const campaignId = await h.createCampaign(ids(250));
    const runId = await h.startRun(campaignId);
    expect(await h.runs.advanceCursor(campaignId, runId, 0, 2)).toBe('ok');
    expect(await h.runs.advanceCursor(campaignId, runId, 0, 2)).toBe('moved');
    expect(await h.runs.pageCounts(campaignId, runId)).toEqual({ open: 2, held: 0, waiting: 2 });
    const ref = { campaignId, runId, page: 1 };
    await h.ledger.acquirePage(ref, 'A', acquireOptions(LEASE, 'report'));
    await h.ledger.claim(ref, 'A', LEASE, claims(0, 1));
    await h.ledger.confirm(ref, 'A', LEASE, confirmPolicy(5), [
      sent(0),
      { index: 1, attempt: 1, outcome: 'requeue', delayMs: 5000, code: 'HTTP_429', message: '' },
    ]);
    const left = await h.ledger.releasePage(ref, 'A', 100, settlePolicy());
    expect(left.pending).toBe(99);
    expect(left.inflight).toBe(0);
    expect(left.nextDueIn).toBe(0);
    expect(await h.runs.pageCounts(campaignId, runId)).toEqual({ open: 1, held: 0, waiting: 1 });
    expect(await h.redis.sismember(h.keys.campaign(campaignId).run(runId).unfinished, '1')).toBe(1);
  });
});

describe('counts under random transitions', () => {
  it('stay conserved and equal to a recount of the records after every step', async () => {
    const h = harness();
    const size = 40;
    const campaignId = await h.createCampaign(ids(size), size);
    const runId = await h.startRun(campaignId);
    const ref = { campaignId, runId, page: 0 };
    let seed = 42;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
    let holder = 'T0';
    await h.ledger.acquirePage(ref, holder, acquireOptions(LEASE, 'report'));
    for (let step = 0; step < 300; step += 1) {
      const action = random();
      const token = random() < 0.9 ? holder : 'stranger';
      const indexes = Array.from({ length: 1 + Math.floor(random() * 5) }, () => Math.floor(random() * size));
      if (action < 0.45) {
        const directives = indexes.map((index): ClaimDirective => {
          const kind = random();
          if (kind < 0.7) return { index, op: 'claim' };
          if (kind < 0.85) return { index, op: 'defer', until: Date.now() + (random() < 0.5 ? 0 : 10_000) };
          return { index, op: 'skip', reason: pick([2, 3, 4]), detail: 'random' };
        });
        await h.ledger.claim(ref, token, LEASE, directives);
      } else if (action < 0.9) {
        const outcome = pick(['sent', 'failed', 'retry', 'requeue', 'unclaim', 'unknown'] as const);
        const raw = (await h.redis.getBuffer(h.keys.campaign(campaignId).run(runId).records(0))) ?? Buffer.alloc(0);
        // The attempt as claimed; now and then one more than the record says: a claim a failover lost.
        const entries = indexes.map((index) => ({
          index,
          attempt: decodeRecord(raw, index).attempts + (random() < 0.2 ? 1 : 0),
          outcome,
          delayMs: 0,
          code: 'C',
          message: 'm',
        }));
        await h.ledger.confirm(ref, token, LEASE, confirmPolicy(3, 2), entries);
      } else {
        // The holder "dies": its lease is cut short and another worker takes over.
        await h.abandonLease(ref);
        holder = `T${step}`;
        await h.ledger.acquirePage(ref, holder, acquireOptions(LEASE, 'report'));
      }
      const run = (await h.runs.getRun(campaignId, runId))!;
      expect(countsAreConserved(run.counts), JSON.stringify(run.counts)).toBe(true);
      const recount = { pending: 0, inflight: 0, sent: 0, failed: 0, unknown: 0, skipped: 0 };
      for (const state of await states(h, ref, size)) {
        if (state === 'inflight') recount.pending += 1;
        recount[state] += 1;
      }
      expect(run.counts).toEqual({ total: size, ...recount });
      const raw = (await h.redis.getBuffer(h.keys.campaign(campaignId).run(runId).records(0))) ?? Buffer.alloc(0);
      const records = Array.from({ length: size }, (_, i) => decodeRecord(raw, i));
      expect(run.deferred).toBe(records.filter((r) => r.state === 'pending' && r.reason === REASONS['quiet-hours']).length);
      expect(Object.values(run.skippedBy).reduce((a, b) => a + b, 0)).toBe(run.counts.skipped);
    }
  });
});
