import fc from 'fast-check';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import type { ClaimDirective, ConfirmEntry, PageRef } from '../../src/app/ports.js';
import { RedisLedger } from '../../src/adapters/redis/redis-ledger.js';
import { RedisLifecycle } from '../../src/adapters/redis/redis-lifecycle.js';
import { decodeRecord } from '../../src/domain/ledger.js';
import { recipientEventsOf } from '../../src/domain/outbox.js';
import { REASONS } from '../../src/domain/respect.js';
import { EVENT_CODES } from '../../src/domain/webhooks.js';
import { onCleanup } from '../helpers/cleanup.js';
import { acquireOptions, confirmPolicy, ids, redisHarness, settlePolicy } from '../helpers/harness.js';
import { startOwnRedis } from '../helpers/redis-server.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
import { testRedis } from '../helpers/redis.js';

/**
 * Outbox atomicity at ledger level: whatever sequence of ledger steps runs —
 * claims, skips, confirms of every outcome, releases, workers dying, lease
 * expiry, failovers forgetting claims, providers' receipts before and after
 * the confirm, a cancel — and whatever goes wrong on
 * the way (a reply lost after the step ran, so the client runs it again; a
 * step Redis refuses for memory), the recipient events in the campaign's
 * outbox are one for each final outcome the ledger holds, and none else.
 */
const PAGES = 3;
const PAGE_SIZE = 10;
const LEASE = 60_000;
const OUTCOMES: Array<ConfirmEntry['outcome']> = ['sent', 'failed', 'retry', 'requeue', 'unclaim', 'unknown'];

/** A small deterministic generator, so a failing seed replays. */
function random(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

describe('recipient events in the outbox', () => {
  it('are one per final outcome the ledger applied, whatever was retried, lost or refused on the way', async () => {
    const server = await startOwnRedis();
    onCleanup(() => server.kill());
    const proxy = await startTcpProxy({ port: server.port });
    onCleanup(() => proxy.close());
    const admin = new Redis(server.url);
    onCleanup(() => admin.disconnect());
    const client = testRedis(proxy.url);
    onCleanup(() => client.disconnect());
    const h = redisHarness('outbox-atomic', { redis: client, prefix: 'outbox-atomic' });
    const masks = { maskFor: () => 'fuksdx' };
    const ledger = new RedisLedger(client, h.keys, h.scripts, undefined, masks);
    const lifecycle = new RedisLifecycle(h.keys, h.scripts, masks);

    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 2 ** 31 - 1 }), async (seed) => {
        const rnd = random(seed);
        const pick = <T>(items: readonly T[]): T => items[Math.floor(rnd() * items.length)]!;
        const campaignId = await h.createCampaign(ids(PAGES * PAGE_SIZE), PAGE_SIZE);
        const runId = await h.startRun(campaignId);
        await h.runs.advanceCursor(campaignId, runId, 0, PAGES);
        const holders: Array<string | null> = Array.from({ length: PAGES }, () => null);
        const claimed = Array.from({ length: PAGES }, () => new Map<number, number>());
        let tokens = 0;
        const runNo = (await h.runs.getRun(campaignId, runId))!.no!;
        /** Recipients a receipt turned from unknown to sent: their earlier unknown event stands. */
        const wasUnknown = new Set<number>();
        const recordAt = async (position: number) => {
          const raw =
            (await admin.getBuffer(
              h.keys
                .campaign(campaignId)
                .run(runId)
                .records(Math.floor(position / PAGE_SIZE)),
            )) ?? Buffer.alloc(0);
          return decodeRecord(raw, position % PAGE_SIZE);
        };

        const step = async () => {
          const page = Math.floor(rnd() * PAGES);
          const ref: PageRef = { campaignId, runId, page };
          const holder = holders[page];
          const policy = pick(['report', 'resend'] as const);
          const roll = rnd();
          if (!holder || roll < 0.1) {
            const token = `w${(tokens += 1)}`;
            const got = await ledger.acquirePage(ref, token, acquireOptions(LEASE, policy, 3));
            if (got.kind === 'ok') {
              holders[page] = token;
              claimed[page]!.clear();
            }
          } else if (roll < 0.4) {
            const directives: ClaimDirective[] = [];
            for (let index = 0; index < PAGE_SIZE; index += 1) {
              const r = rnd();
              if (r < 0.35) directives.push({ index, op: 'claim' });
              else if (r < 0.45) directives.push({ index, op: 'skip', reason: REASONS.suppressed, detail: 'on list global' });
              else if (r < 0.5) directives.push({ index, op: 'defer', until: Date.now() + 1 });
            }
            const result = await ledger.claim(ref, holder, LEASE, directives);
            if (result.kind === 'ok') for (const c of result.claimed) claimed[page]!.set(c.index, c.attempt);
            else if (result.kind === 'fenced') holders[page] = null;
          } else if (roll < 0.68) {
            const entries: ConfirmEntry[] = [...claimed[page]!]
              .filter(() => rnd() < 0.7)
              .map(([index, attempt]) => ({ index, attempt, outcome: pick(OUTCOMES), inDoubt: rnd() < 0.2, delayMs: 0, code: 'X', message: 'm' }));
            const result = await ledger.confirm(ref, holder, LEASE, confirmPolicy(3, 2), entries);
            if (result.kind === 'fenced') holders[page] = null;
            for (const e of entries) claimed[page]!.delete(e.index);
          } else if (roll < 0.74) {
            await ledger.releasePage(ref, holder, PAGE_SIZE, settlePolicy(policy, 3));
            holders[page] = null;
            claimed[page]!.clear();
          } else if (roll < 0.8) {
            // The worker dies; later the supervisor settles its lease.
            await h.abandonLease(ref);
            holders[page] = null;
            claimed[page]!.clear();
            if (rnd() < 0.5) await ledger.expireLeases(campaignId, runId, settlePolicy(policy, 3));
          } else if (roll < 0.85) {
            // Providers' receipts, one to four in a step, for anyone (in flight, sent, unknown, pending a retry, never tried, repeated).
            const positions = Array.from({ length: 1 + Math.floor(rnd() * 4) }, () => Math.floor(rnd() * PAGES * PAGE_SIZE));
            const cancelledRun = (await h.runs.getRun(campaignId, runId))!.status === 'cancelled';
            const before = await Promise.all(positions.map(recordAt));
            await ledger.receipts(
              campaignId,
              runId,
              runNo,
              PAGE_SIZE,
              positions.map((position) => ({ position, delivered: rnd() < 0.6, at: Date.now() })),
            );
            // (Its answer may be a lost reply's repeat, `already`: the record says what happened. A cancel counted a pending
            // recipient in doubt as unknown, its record left pending.)
            for (const [i, position] of positions.entries()) {
              const was = before[i]!;
              const countedUnknown = was.state === 'unknown' || (was.state === 'pending' && was.inDoubt && cancelledRun);
              if (countedUnknown && (await recordAt(position)).state === 'sent') wasUnknown.add(position);
            }
          } else if (roll < 0.9 && claimed[page]!.size > 0 && (await h.runs.getRun(campaignId, runId))!.status !== 'cancelled') {
            // A failover forgets a claim the holder already sent: its confirm must still land once. (Not after a cancel:
            // a failover loses the newest writes, so a replica without the claim has no later cancel either.)
            const [index] = [...claimed[page]!.keys()];
            const raw = (await admin.getBuffer(h.keys.campaign(campaignId).run(runId).records(page))) ?? Buffer.alloc(0);
            if (decodeRecord(raw, index!).state === 'inflight') await h.forgetClaim(ref, index!);
          } else if (roll > 0.995) {
            await lifecycle.cancel(campaignId, runId);
          }
        };

        for (let i = 0; i < 60; i += 1) {
          const fault = rnd();
          // The step runs, its reply is lost and the connection reset: the client runs it again.
          if (fault < 0.1) proxy.dropNextReplies(1);
          // Redis refuses every write for memory: the step is not applied at all.
          const oom = fault > 0.93;
          if (oom) await admin.config('SET', 'maxmemory', '1');
          try {
            await step();
          } catch (err) {
            if (!oom) throw err;
            expect((err as Error).message).toMatch(/OOM/);
          } finally {
            if (oom) await admin.config('SET', 'maxmemory', '0');
          }
        }

        // What the ledger holds, against what the outbox says.
        const run = (await h.runs.getRun(campaignId, runId))!;
        const cancelled = run.status === 'cancelled';
        const expected: string[] = [];
        for (let page = 0; page < PAGES; page += 1) {
          const raw = (await admin.getBuffer(h.keys.campaign(campaignId).run(runId).records(page))) ?? Buffer.alloc(0);
          for (let index = 0; index < PAGE_SIZE; index += 1) {
            const record = decodeRecord(raw, index);
            const position = page * PAGE_SIZE + index;
            if (record.state === 'sent') expected.push(`s${position}`);
            if (record.delivery === 'delivered') expected.push(`d${position}`);
            if (record.delivery === 'undelivered') expected.push(`x${position}`);
            if (wasUnknown.has(position)) expected.push(`u${position}`);
            if (record.state === 'failed') expected.push(`f${position}`);
            if (record.state === 'unknown') expected.push(`u${position}`);
            if (record.state === 'skipped' && record.reason !== REASONS.cancelled) expected.push(`k${position}:${record.reason}`);
            // A cancel settles a pending recipient in doubt as unknown, in its own step.
            if (record.state === 'pending' && cancelled && record.inDoubt) expected.push(`u${position}`);
          }
        }
        const stream = await h.store.events(campaignId, null, 10_000);
        const events = stream.filter((e) => e.type === 'recipients').flatMap((e) => recipientEventsOf(e));
        // A receipt's events carry its time; an undelivered one may come before the delivered one that settles it.
        const delivered = new Set(events.filter((r) => r.type === 'recipient.delivered').map((r) => r.position));
        const got = events
          .filter((r) => !(r.type === 'recipient.undelivered' && delivered.has(r.position)))
          .map((r) => `${EVENT_CODES[r.type]}${r.position}${r.detail && r.type === 'recipient.skipped' ? `:${r.detail}` : ''}`);
        for (const position of delivered)
          expect(events.filter((r) => r.type === 'recipient.undelivered' && r.position === position).length).toBeLessThanOrEqual(1);
        expect(got.sort(), `seed ${seed}`).toEqual(expected.sort());
        // And with the run's counts: every final outcome counted is an event (a cancel's skips are in run.cancelled).
        const count = (prefix: string) => got.filter((g) => g.startsWith(prefix)).length;
        expect(
          {
            sent: count('s'),
            failed: count('f'),
            unknown: count('u') - wasUnknown.size,
            skipped: count('k') + (run.skippedBy.cancelled ?? 0),
            delivered: count('d'),
            undelivered: count('x'),
          },
          `seed ${seed}`,
        ).toEqual({
          sent: run.counts.sent,
          failed: run.counts.failed,
          unknown: run.counts.unknown,
          skipped: run.counts.skipped,
          delivered: run.counts.delivered ?? 0,
          undelivered: run.counts.undelivered ?? 0,
        });
        expect(stream.filter((e) => e.type === 'run.cancelled')).toHaveLength(cancelled ? 1 : 0);
        expect(stream.filter((e) => e.type === 'run.completed')).toHaveLength(run.status === 'completed' ? 1 : 0);
      }),
      { numRuns: 25 },
    );
  }, 120_000);
});
