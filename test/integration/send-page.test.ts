import { describe, expect, it } from 'vitest';
import { AppEvents } from '../../src/app/events.js';
import type {
  FrequencyCaps,
  Permit,
  PermitOutcome,
  ProviderLimits,
  ProviderRegistry,
  ProviderState,
  PushProvider,
  RateLimiter,
  SendRequest,
  Suppressions,
} from '../../src/app/ports.js';
import { RecipientGate } from '../../src/app/recipient-gate.js';
import { Semaphore } from '../../src/app/semaphore.js';
import { LeaseRenewer } from '../../src/app/lease-renewer.js';
import { SendBudget } from '../../src/app/send-budget.js';
import { SendPage } from '../../src/app/send-page.js';
import type { SendOutcome } from '../../src/domain/send-outcome.js';
import { createLogger } from '../../src/logger.js';
import { ids, redisHarness } from '../helpers/harness.js';
import { onCleanup } from '../helpers/cleanup.js';

/**
 * SendPage against the real ledger on Redis, with in-memory stand-ins for
 * the ports around it (limiter, provider, suppression lists), so a test can
 * make any of them fail at a chosen moment and see what the page leaves
 * behind.
 */

/** Hands out permits at once and keeps count of every one not returned yet. */
class CountingLimiter implements RateLimiter {
  private next = 0;
  readonly outstanding = new Set<string>();
  doubleReturns = 0;

  async acquire(limits: ProviderLimits, want: number): Promise<Permit[]> {
    return Array.from({ length: want }, () => {
      const id = String(this.next++);
      this.outstanding.add(id);
      return { provider: limits.name, id, pool: limits.name, notBefore: 0, usableUntil: Number.MAX_SAFE_INTEGER };
    });
  }

  private back(permit: Permit): void {
    if (!this.outstanding.delete(permit.id)) this.doubleReturns += 1;
  }

  complete(permit: Permit, _outcome: PermitOutcome): void {
    this.back(permit);
  }

  giveBack(permit: Permit): void {
    this.back(permit);
  }

  async pause(): Promise<void> {}

  async state(limits: ProviderLimits): Promise<ProviderState> {
    return { name: limits.name, tps: limits.tps, rate: 1, pausedUntil: null, breaker: 'closed', openUntil: null, consecutiveFailures: 0 };
  }

  async close(): Promise<void> {}
}

class InstantProvider implements PushProvider {
  readonly name = 'sim';
  readonly type = 'test';
  readonly limits: ProviderLimits = { name: 'sim', tps: 1000, timeoutMs: 1000, breaker: { failures: 100, coolDownMs: 1000, maxCoolDownMs: 1000 } };
  readonly retry = { maxAttempts: 5, maxRequeues: 50, baseMs: 10, maxMs: 10, inDoubt: 'report' as const, retryTimeouts: true };
  readonly sent: string[] = [];

  async send(request: SendRequest): Promise<SendOutcome> {
    this.sent.push(request.recipient.id);
    return { kind: 'sent' };
  }

  async close(): Promise<void> {}
}

/** Suppression lists whose lookups throw while `failing` (Redis out of memory, a script error, a failover). */
class FlakySuppressions implements Pick<Suppressions, 'find' | 'add'> {
  failing = true;

  async find(_lists: readonly string[], ids: readonly string[]): Promise<Array<string | undefined>> {
    if (this.failing) throw new Error('OOM command not allowed when used memory > maxmemory');
    return ids.map(() => undefined);
  }

  async add(): Promise<number> {
    return 0;
  }
}

const noCaps: FrequencyCaps = { reserve: async (_cap, ids) => ids.map((id) => ({ id, bucket: 0 })), release: async () => undefined };

function setup() {
  const h = redisHarness('sendpage');
  const limiter = new CountingLimiter();
  const provider = new InstantProvider();
  const suppressions = new FlakySuppressions();
  const slots = new Semaphore(16);
  const providers: ProviderRegistry = { get: () => provider, names: () => ['sim'] };
  const events = new AppEvents();
  const log = createLogger('silent');
  const renewer = new LeaseRenewer(h.ledger, { leaseMs: 30_000, intervalMs: 7500 }, log);
  onCleanup(() => renewer.stop());
  const sendPage = new SendPage({
    campaigns: h.store,
    ledger: h.ledger,
    runs: h.runs,
    budget: new SendBudget(slots, limiter, events),
    renewer,
    providers,
    pump: { fill: async () => 0 },
    gate: new RecipientGate(suppressions as unknown as Suppressions, noCaps, []),
    caps: noCaps,
    events,
    log,
    options: { leaseMs: 30_000, claimBatch: 8, confirmBatch: 16, confirmDelayMs: 5 },
  });
  return { h, limiter, provider, suppressions, slots, sendPage };
}

describe('SendPage', () => {
  it('gives back every send slot and permit when a step throws mid-page, so the next pages still run', async () => {
    const { h, limiter, provider, suppressions, slots, sendPage } = setup();
    const campaignId = await h.createCampaign(ids(40), 40);
    const runId = await h.startRun(campaignId);
    const job = { campaignId, runId, page: 0, gen: 1 };
    const stop = new AbortController().signal;
    // Three passes meet a failing Redis (each throws, as a BullMQ job would be retried).
    for (let attempt = 0; attempt < 3; attempt += 1) {
      // The failed pass's lease ran out; the job's retry takes the page again.
      await h.abandonLease({ campaignId, runId, page: 0 });
      await expect(sendPage.run(job, `token-${attempt}`, stop)).rejects.toThrow(/OOM/);
      expect(slots.free, `send slots free after failed pass ${attempt}`).toBe(16);
      expect(limiter.outstanding.size, `permits not returned after failed pass ${attempt}`).toBe(0);
    }
    // Redis is fine again: the page goes out whole, on the same process.
    suppressions.failing = false;
    await h.abandonLease({ campaignId, runId, page: 0 });
    const result = await sendPage.run(job, 'token-ok', stop);
    expect(result).toEqual({ kind: 'done' });
    expect(new Set(provider.sent).size).toBe(40);
    expect(limiter.doubleReturns).toBe(0);
  });
});
