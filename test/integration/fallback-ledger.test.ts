import { describe, expect, it } from 'vitest';
import { newId } from '../../src/domain/ids.js';
import { planLayout } from '../../src/domain/campaign.js';
import { decodeRecord } from '../../src/domain/ledger.js';
import { decodeLegs, type FallbackLeg } from '../../src/domain/fallback.js';
import { REASONS } from '../../src/domain/respect.js';
import type { ConfirmEntry, PageRef } from '../../src/app/ports.js';
import { acquireOptions, confirmPolicy, draftRecord, ids, redisHarness } from '../helpers/harness.js';

/**
 * The ledger's side of channel fallback (domain/fallback.ts, lua
 * includes/ledger.lua fallBack): a recipient moves to the next leg in the
 * step that records its leg's outcome, exactly once, and only for the
 * outcomes the chain lists.
 */
const LEASE = 30_000;

const leg = (over: Partial<FallbackLeg> = {}): FallbackLeg => ({
  provider: 'sms',
  on: ['failed', 'token-invalid', 'no-token'],
  onUnknown: false,
  message: null,
  maxMessages: null,
  ...over,
});

async function running(size: number, fallback: FallbackLeg[]) {
  const h = redisHarness('fallback');
  const campaignId = newId();
  await h.store.create({ ...draftRecord(campaignId, planLayout(size, 100)), fallback }, ids(size));
  const runId = await h.startRun(campaignId);
  const ref: PageRef = { campaignId, runId, page: 0 };
  const acquired = await h.ledger.acquirePage(ref, 'A', acquireOptions(LEASE, 'report', 3));
  expect(acquired.kind).toBe('ok');
  const run = h.keys.campaign(campaignId).run(runId);
  const entry = async (index: number) => {
    const [records, legs] = await Promise.all([h.redis.getBuffer(run.records(0)), h.redis.getBuffer(run.legs(0))]);
    return { ...decodeRecord(records ?? Buffer.alloc(0), index), ...decodeLegs(legs?.[index] ?? 0) };
  };
  return { h, campaignId, runId, ref, entry };
}

const outcome = (index: number, o: Partial<ConfirmEntry>): ConfirmEntry => ({
  index,
  attempt: 1,
  outcome: 'failed',
  delayMs: 0,
  code: 'X',
  message: 'x',
  ...o,
});

describe('fallback in the ledger', () => {
  it('moves a failed, a dead-token and a token-less recipient on to the next leg, pending with no attempts; sent and unknown stay', async () => {
    const { h, campaignId, runId, ref, entry } = await running(5, [leg()]);
    await h.ledger.claim(
      ref,
      'A',
      LEASE,
      [0, 1, 2, 3, 4].map((index) => ({ index, op: 'claim' as const })),
    );
    const result = await h.ledger.confirm(ref, 'A', LEASE, confirmPolicy(3), [
      outcome(0, {}),
      outcome(1, { dead: 'token-invalid' }),
      outcome(2, { dead: 'no-token' }),
      outcome(3, { outcome: 'sent' }),
      outcome(4, { outcome: 'unknown' }),
    ]);
    expect(result).toMatchObject({ kind: 'ok', runCompleted: false, applied: 5 });
    expect(await entry(0)).toMatchObject({ state: 'pending', attempts: 0, leg: 1, left: ['failed'] });
    expect(await entry(1)).toMatchObject({ state: 'pending', attempts: 0, leg: 1, left: ['token-invalid'] });
    expect(await entry(2)).toMatchObject({ state: 'pending', attempts: 0, leg: 1, left: ['no-token'] });
    expect(await entry(3)).toMatchObject({ state: 'sent', leg: 0 });
    expect(await entry(4)).toMatchObject({ state: 'unknown', leg: 0 });
    const run = await h.runs.getRun(campaignId, runId);
    expect(run?.counts).toMatchObject({ total: 5, pending: 3, inflight: 0, sent: 1, failed: 0, unknown: 1 });
    expect(run?.byLeg).toEqual([
      { leg: 0, entered: 5, sent: 1, movedOn: 3 },
      { leg: 1, entered: 3, sent: 0, movedOn: 0 },
    ]);

    // Leg 1: claims on leg 0 touch nobody now; on leg 1 they do, and the last leg's failure is final.
    expect(await h.ledger.claim(ref, 'A', LEASE, [{ index: 0, op: 'claim' }])).toMatchObject({ kind: 'ok', claimed: [] });
    expect(
      await h.ledger.claim(
        ref,
        'A',
        LEASE,
        [0, 1, 2].map((index) => ({ index, op: 'claim' as const })),
        0,
        1,
      ),
    ).toMatchObject({
      claimed: [0, 1, 2].map((index) => ({ index, attempt: 1 })),
    });
    const done = await h.ledger.confirm(ref, 'A', LEASE, { ...confirmPolicy(3), leg: 1 }, [
      outcome(0, { outcome: 'sent' }),
      outcome(1, { outcome: 'sent' }),
      outcome(2, { dead: 'no-token' }),
    ]);
    expect(done).toMatchObject({ kind: 'ok', runCompleted: true });
    expect(await entry(2)).toMatchObject({ state: 'failed', leg: 1, left: ['no-token'] });
    const after = await h.runs.getRun(campaignId, runId);
    expect(after?.counts).toMatchObject({ total: 5, pending: 0, sent: 3, failed: 1, unknown: 1 });
    expect(after?.byLeg).toEqual([
      { leg: 0, entered: 5, sent: 1, movedOn: 3 },
      { leg: 1, entered: 3, sent: 2, movedOn: 0 },
    ]);
  });

  it('never applies a confirm of a leg the recipient has left (a resent confirm after a lost reply)', async () => {
    const { h, ref, entry } = await running(1, [leg()]);
    await h.ledger.claim(ref, 'A', LEASE, [{ index: 0, op: 'claim' }]);
    const failed = [outcome(0, {})];
    await h.ledger.confirm(ref, 'A', LEASE, confirmPolicy(3), failed);
    // The same confirm again: without the leg check it would read as a lost claim of attempt 1 and move the recipient on twice.
    expect(await h.ledger.confirm(ref, 'A', LEASE, confirmPolicy(3), failed)).toMatchObject({ applied: 0 });
    expect(await entry(0)).toMatchObject({ state: 'pending', leg: 1, left: ['failed'] });
  });

  it('moves on only for the listed outcomes; an answer in doubt never, unless the leg says onUnknown', async () => {
    const only = await running(2, [leg({ on: ['no-token'] })]);
    await only.h.ledger.claim(
      only.ref,
      'A',
      LEASE,
      [0, 1].map((index) => ({ index, op: 'claim' as const })),
    );
    await only.h.ledger.confirm(only.ref, 'A', LEASE, confirmPolicy(3), [outcome(0, {}), outcome(1, { dead: 'no-token' })]);
    expect(await only.entry(0)).toMatchObject({ state: 'failed', leg: 0 });
    expect(await only.entry(1)).toMatchObject({ state: 'pending', leg: 1 });

    // A timeout retried (in doubt) then failing is unknown: it may have been delivered on this channel.
    const doubt = await running(1, [leg()]);
    await doubt.h.ledger.claim(doubt.ref, 'A', LEASE, [{ index: 0, op: 'claim' }]);
    await doubt.h.ledger.confirm(doubt.ref, 'A', LEASE, confirmPolicy(3), [outcome(0, { outcome: 'retry', inDoubt: true })]);
    await doubt.h.ledger.claim(doubt.ref, 'A', LEASE, [{ index: 0, op: 'claim' }]);
    await doubt.h.ledger.confirm(doubt.ref, 'A', LEASE, confirmPolicy(3), [outcome(0, { attempt: 2 })]);
    expect(await doubt.entry(0)).toMatchObject({ state: 'unknown', leg: 0 });

    const risky = await running(1, [leg({ onUnknown: true })]);
    await risky.h.ledger.claim(risky.ref, 'A', LEASE, [{ index: 0, op: 'claim' }]);
    await risky.h.ledger.confirm(risky.ref, 'A', LEASE, confirmPolicy(3), [outcome(0, { outcome: 'unknown' })]);
    expect(await risky.entry(0)).toMatchObject({ state: 'pending', leg: 1, left: ['unknown'] });
  });

  it('moves a recipient on the invalid-token list on at the claim, keeping its frequency-cap mark', async () => {
    const { h, ref, entry } = await running(1, [leg()]);
    await h.ledger.claim(ref, 'A', LEASE, [{ index: 0, op: 'skip', reason: REASONS['token-invalid'], detail: 'on the list' }]);
    expect(await entry(0)).toMatchObject({ state: 'pending', leg: 1, left: ['token-invalid'] });
    // Another skip reason is final.
    const other = await running(1, [leg()]);
    await other.h.ledger.claim(other.ref, 'A', LEASE, [{ index: 0, op: 'skip', reason: REASONS.suppressed, detail: 'on a list' }]);
    expect(await other.entry(0)).toMatchObject({ state: 'skipped', leg: 0 });

    const capped = await running(1, [leg()]);
    await capped.h.ledger.claim(capped.ref, 'A', LEASE, [{ index: 0, op: 'claim', counted: true }]);
    await capped.h.ledger.confirm(capped.ref, 'A', LEASE, confirmPolicy(3), [outcome(0, {})]);
    expect(await capped.entry(0)).toMatchObject({ state: 'pending', leg: 1, counted: true });
  });

  it('stops a leg at exactly its message budget; a recipient handed back unsent gives its message back', async () => {
    const { h, campaignId, runId, ref, entry } = await running(6, [leg({ maxMessages: 3 })]);
    await h.ledger.claim(
      ref,
      'A',
      LEASE,
      [0, 1, 2, 3, 4, 5].map((index) => ({ index, op: 'claim' as const })),
    );
    await h.ledger.confirm(
      ref,
      'A',
      LEASE,
      confirmPolicy(3),
      [0, 1, 2, 3, 4, 5].map((index) => outcome(index, {})),
    );
    const claimed = await h.ledger.claim(
      ref,
      'A',
      LEASE,
      [0, 1].map((index) => ({ index, op: 'claim' as const })),
      0,
      1,
    );
    expect(claimed).toMatchObject({ claimed: [{ index: 0 }, { index: 1 }] });
    // One of them never left this process: back, its message not spent.
    await h.ledger.confirm(ref, 'A', LEASE, { ...confirmPolicy(3), leg: 1 }, [outcome(1, { outcome: 'unclaim' })]);
    const rest = await h.ledger.claim(
      ref,
      'A',
      LEASE,
      [1, 2, 3, 4, 5].map((index) => ({ index, op: 'claim' as const })),
      0,
      1,
    );
    expect(rest).toMatchObject({ claimed: [{ index: 1 }, { index: 2 }] });
    for (const index of [3, 4, 5]) expect(await entry(index)).toMatchObject({ state: 'skipped', reason: REASONS['fallback-budget'], leg: 1 });
    const run = await h.runs.getRun(campaignId, runId);
    expect(run?.byLeg?.[1]).toMatchObject({ entered: 6, messages: 3 });
    expect(run?.skippedBy).toEqual({ 'fallback-budget': 3 });
  });

  it('does not move on when a leg ends by spent attempts (server errors): one of those requests may have been taken', async () => {
    const { h, ref, entry } = await running(1, [leg()]);
    await h.ledger.claim(ref, 'A', LEASE, [{ index: 0, op: 'claim' }]);
    await h.ledger.confirm(ref, 'A', LEASE, confirmPolicy(1), [outcome(0, { outcome: 'retry', code: 'HTTP_502' })]);
    expect(await entry(0)).toMatchObject({ state: 'failed', leg: 0 });
  });

  it("gives a leg's message budget back for a recipient it never sent (no address: refused before any request)", async () => {
    const { h, ref, entry } = await running(3, [leg({ maxMessages: 1 })]);
    await h.ledger.claim(
      ref,
      'A',
      LEASE,
      [0, 1, 2].map((index) => ({ index, op: 'claim' as const })),
    );
    await h.ledger.confirm(
      ref,
      'A',
      LEASE,
      confirmPolicy(3),
      [0, 1, 2].map((index) => outcome(index, {})),
    );
    await h.ledger.claim(ref, 'A', LEASE, [{ index: 0, op: 'claim' }], 0, 1);
    await h.ledger.confirm(ref, 'A', LEASE, { ...confirmPolicy(3), leg: 1 }, [outcome(0, { dead: 'no-token' })]);
    expect(
      await h.ledger.claim(
        ref,
        'A',
        LEASE,
        [1, 2].map((index) => ({ index, op: 'claim' as const })),
        0,
        1,
      ),
    ).toMatchObject({ claimed: [{ index: 1 }] });
    expect(await entry(2)).toMatchObject({ state: 'skipped', reason: REASONS['fallback-budget'] });
  });

  it('starts each leg with its own requeue count and no error of the leg before', async () => {
    const { h, campaignId, runId, ref, entry } = await running(1, [leg()]);
    for (let i = 0; i < 3; i += 1) {
      await h.ledger.claim(ref, 'A', LEASE, [{ index: 0, op: 'claim' }]);
      await h.ledger.confirm(ref, 'A', LEASE, confirmPolicy(3, 3), [outcome(0, { outcome: 'requeue', code: 'HTTP_429' })]);
    }
    await h.ledger.claim(ref, 'A', LEASE, [{ index: 0, op: 'claim' }]);
    await h.ledger.confirm(ref, 'A', LEASE, confirmPolicy(3, 3), [outcome(0, {})]);
    expect((await h.ledger.readEntry(campaignId, runId, 0, 100)).lastError).toBeNull();
    await h.ledger.claim(ref, 'A', LEASE, [{ index: 0, op: 'claim' }], 0, 1);
    await h.ledger.confirm(ref, 'A', LEASE, { ...confirmPolicy(3, 3), leg: 1 }, [outcome(0, { outcome: 'requeue', code: 'HTTP_429' })]);
    expect(await entry(0)).toMatchObject({ state: 'pending', leg: 1 });
  });

  it("keeps a leg's budget exact through a claim lost in a failover", async () => {
    const { h, campaignId, runId, ref } = await running(1, [leg({ maxMessages: 5 })]);
    await h.ledger.claim(ref, 'A', LEASE, [{ index: 0, op: 'claim' }]);
    await h.ledger.confirm(ref, 'A', LEASE, confirmPolicy(3), [outcome(0, {})]);
    await h.ledger.claim(ref, 'A', LEASE, [{ index: 0, op: 'claim' }], 0, 1);
    // The promoted replica never saw the claim, nor its count.
    await h.forgetClaim(ref, 0);
    await h.redis.hincrby(h.keys.campaign(campaignId).run(runId).run, 'leg:1:msgs', -1);
    await h.ledger.confirm(ref, 'A', LEASE, { ...confirmPolicy(3), leg: 1 }, [outcome(0, { outcome: 'unclaim' })]);
    expect((await h.runs.getRun(campaignId, runId))?.byLeg?.[1]).toMatchObject({ messages: 0 });
    await h.ledger.claim(ref, 'A', LEASE, [{ index: 0, op: 'claim' }], 0, 1);
    await h.forgetClaim(ref, 0);
    await h.redis.hincrby(h.keys.campaign(campaignId).run(runId).run, 'leg:1:msgs', -1);
    await h.ledger.confirm(ref, 'A', LEASE, { ...confirmPolicy(3), leg: 1 }, [outcome(0, { outcome: 'sent' })]);
    expect((await h.runs.getRun(campaignId, runId))?.byLeg?.[1]).toMatchObject({ messages: 1, sent: 1 });
  });

  it("takes receipts on the leg they are about: an earlier leg's is a conflict, but its proof of delivery stops a fallback not yet sent", async () => {
    const { h, campaignId, runId, ref, entry } = await running(2, [leg({ onUnknown: true })]);
    const runNo = (await h.runs.getRun(campaignId, runId))!.no!;
    await h.ledger.claim(
      ref,
      'A',
      LEASE,
      [0, 1].map((index) => ({ index, op: 'claim' as const })),
    );
    await h.ledger.confirm(ref, 'A', LEASE, confirmPolicy(3), [outcome(0, {}), outcome(1, { outcome: 'unknown' })]);
    // 0 failed on leg 0 and is on leg 1: leg 0's provider has nothing to say about it now.
    expect(await h.ledger.receipts(campaignId, runId, runNo, 100, [{ position: 0, leg: 0, delivered: false, at: Date.now() }])).toEqual(['conflict']);
    // 1 was unknown on leg 0 and waits for leg 1: leg 0's provider says it was delivered after all — sent, and no SMS.
    expect(await h.ledger.receipts(campaignId, runId, runNo, 100, [{ position: 1, leg: 0, delivered: true, at: Date.now() }])).toEqual(['applied']);
    expect(await entry(1)).toMatchObject({ state: 'sent', delivery: 'delivered', leg: 0 });
    expect(await h.ledger.claim(ref, 'A', LEASE, [{ index: 1, op: 'claim' }], 0, 1)).toMatchObject({ claimed: [] });
    const run = await h.runs.getRun(campaignId, runId);
    expect(run?.counts).toMatchObject({ pending: 1, sent: 1, unknown: 0, delivered: 1 });
    expect(run?.byLeg).toEqual([
      { leg: 0, entered: 2, sent: 1, movedOn: 1 },
      { leg: 1, entered: 1, sent: 0, movedOn: 0 },
    ]);
  });
});
