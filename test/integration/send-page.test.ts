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
import { RunPaces } from '../../src/app/run-paces.js';
import { SendPage } from '../../src/app/send-page.js';
import type { SendOutcome } from '../../src/domain/send-outcome.js';
import { createLogger } from '../../src/logger.js';
import { testLimits } from '../helpers/fixtures.js';
import { acquireOptions, ids, redisHarness } from '../helpers/harness.js';
import { waitFor } from '../helpers/wait.js';
import { CompiledMessages } from '../../src/domain/template.js';
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

  /** How long a permit may start a request after it was granted. */
  usableForMs = Number.MAX_SAFE_INTEGER;
  /** Every permit handed out, and the outcome each came back with ('unused' for given back). */
  readonly returned: string[] = [];

  async acquire(limits: ProviderLimits, want: number): Promise<Permit[]> {
    return Array.from({ length: want }, () => {
      const id = String(this.next++);
      this.outstanding.add(id);
      return {
        provider: limits.name,
        id,
        pool: limits.name,
        notBefore: 0,
        usableUntil: Math.min(Number.MAX_SAFE_INTEGER, performance.now() + this.usableForMs),
      };
    });
  }

  private back(permit: Permit): void {
    if (!this.outstanding.delete(permit.id)) this.doubleReturns += 1;
  }

  complete(permit: Permit, outcome: PermitOutcome): void {
    this.returned.push(outcome);
    this.back(permit);
  }

  giveBack(permit: Permit): void {
    this.returned.push('unused');
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
  readonly limits = testLimits({ name: 'sim', tps: 1000, breaker: { failures: 100, coolDownMs: 1000, maxCoolDownMs: 1000 } });
  readonly retry = { maxAttempts: 5, maxRequeues: 50, baseMs: 10, maxMs: 10, inDoubt: 'report' as const, retryTimeouts: true };
  readonly sent: string[] = [];
  /** What it answers; a plain success by default. */
  answer: (request: SendRequest) => SendOutcome | Promise<SendOutcome> = () => ({ kind: 'sent' });

  async send(request: SendRequest): Promise<SendOutcome> {
    this.sent.push(request.recipient.id);
    return this.answer(request);
  }

  async close(): Promise<void> {}
}

/** Suppression lists whose lookups throw while `failing` (Redis out of memory, a script error, a failover). */
class FlakySuppressions implements Pick<Suppressions, 'find' | 'add'> {
  failing = false;

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
  const renewer = new LeaseRenewer({ ledger: h.ledger, log }, { leaseMs: 30_000, intervalMs: 7500 });
  onCleanup(() => renewer.stop());
  const sendPage = new SendPage({
    campaigns: h.store,
    ledger: h.ledger,
    runs: h.runs,
    budget: new SendBudget({ slots, limiter, events }),
    renewer,
    providers,
    pump: { fill: async () => 0, pagesSharing: () => 2 },
    gate: new RecipientGate({ suppressions: suppressions as unknown as Suppressions, caps: noCaps, configuredCaps: [] }),
    paces: new RunPaces({ runs: h.runs, log }),
    caps: noCaps,
    templates: new CompiledMessages(),
    events,
    log,
    options: { leaseMs: 30_000, claimBatch: 8, confirmBatch: 16, confirmDelayMs: 5 },
  });
  return { h, limiter, provider, suppressions, slots, sendPage };
}

async function onePage(h: ReturnType<typeof redisHarness>, size: number) {
  const campaignId = await h.createCampaign(ids(size), size);
  const runId = await h.startRun(campaignId);
  return { ref: { campaignId, runId, page: 0 }, job: { campaignId, runId, page: 0, gen: 1 } };
}

const states = async (h: ReturnType<typeof redisHarness>, ref: { campaignId: string; runId: string }) =>
  (await h.runs.getRun(ref.campaignId, ref.runId))!.counts;

describe('SendPage', () => {
  it('gives back every send slot and permit when a step throws mid-page, so the next pages still run', async () => {
    const { h, limiter, provider, suppressions, slots, sendPage } = setup();
    suppressions.failing = true;
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

  it('stops at the next step once the run is paused, and leaves the rest pending', async () => {
    const { h, provider, slots, limiter, sendPage } = setup();
    const { ref, job } = await onePage(h, 40);
    let released: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (released = resolve));
    provider.answer = async () => {
      // What was claimed is on the wire when the operator pauses (16 send slots: 16 of 40).
      await held;
      return { kind: 'sent' };
    };
    const running = sendPage.run(job, 'A', new AbortController().signal);
    await waitFor(() => provider.sent.length > 0, { what: 'the first send' });
    await h.setRunStatus(ref.campaignId, ref.runId, 'paused');
    released();
    expect(await running).toEqual({ kind: 'inactive', status: 'paused' });
    const counts = await states(h, ref);
    expect(counts.sent).toBeLessThan(40);
    expect(counts).toMatchObject({ total: 40, inflight: 0, pending: 40 - counts.sent });
    expect(slots.free).toBe(16);
    expect(limiter.outstanding.size).toBe(0);
  });

  it('hands the page back when the process stops, with nothing in flight and every permit returned', async () => {
    const { h, provider, slots, limiter, sendPage } = setup();
    const { ref, job } = await onePage(h, 40);
    const stop = new AbortController();
    provider.answer = () => {
      stop.abort();
      return { kind: 'sent' };
    };
    expect(await sendPage.run(job, 'A', stop.signal)).toEqual({ kind: 'stopped' });
    const counts = await states(h, ref);
    expect(counts).toMatchObject({ inflight: 0, failed: 0, unknown: 0 });
    expect(counts.sent).toBeGreaterThan(0);
    expect(counts.sent).toBeLessThan(40);
    expect(slots.free).toBe(16);
    expect(limiter.outstanding.size).toBe(0);
  });

  it('sends nothing more once another worker took the page over, and says so', async () => {
    const { h, provider, sendPage } = setup();
    const { ref, job } = await onePage(h, 40);
    let takeover: Promise<unknown> | null = null;
    provider.answer = async () => {
      // This worker froze with its first requests on the wire; its lease ran out and worker B took the page.
      takeover ??= h.abandonLease(ref).then(() => h.ledger.acquirePage(ref, 'B', acquireOptions(30_000)));
      await takeover;
      return { kind: 'sent' };
    };
    expect(await sendPage.run(job, 'A', new AbortController().signal)).toEqual({ kind: 'fenced' });
    // What was claimed before the takeover (16 send slots) went out; nothing was claimed after it.
    expect(provider.sent.length).toBeLessThanOrEqual(16);
    expect((await states(h, ref)).sent).toBe(0);
  });

  it('never starts a request on a permit that could expire while it is out: the recipient is handed back unsent, no attempt spent', async () => {
    const { h, provider, limiter, sendPage } = setup();
    const { ref, job } = await onePage(h, 5);
    // Permits usable for less than the provider's timeout (1 s).
    limiter.usableForMs = 500;
    expect(await sendPage.run(job, 'A', new AbortController().signal)).toMatchObject({ kind: 'later' });
    expect(provider.sent).toEqual([]);
    expect(limiter.returned.every((r) => r === 'unused')).toBe(true);
    expect(await states(h, ref)).toMatchObject({ pending: 5, inflight: 0 });
    expect((await h.ledger.readEntry(ref.campaignId, ref.runId, 0, 5)).record).toMatchObject({ state: 'pending', attempts: 0 });
  });

  it('records what each answer means and tells the limiter about the provider: a 429 requeues, a 5xx retries, a timeout is in doubt', async () => {
    const { h, provider, limiter, sendPage } = setup();
    const { ref, job } = await onePage(h, 4);
    provider.answer = (request) => {
      const n = Number(request.recipient.id.slice(1));
      if (n === 1) return { kind: 'rate-limited', scope: 'provider', code: 'HTTP_429', message: 'slow', retryAfterMs: 5000 };
      if (n === 2) return { kind: 'transient', code: 'HTTP_503', message: 'busy' };
      if (n === 3) return { kind: 'in-doubt', code: 'TIMEOUT', message: 'no answer' };
      return { kind: 'sent' };
    };
    expect(await sendPage.run(job, 'A', new AbortController().signal)).toMatchObject({ kind: 'later' });
    const entry = async (i: number) => (await h.ledger.readEntry(ref.campaignId, ref.runId, i, 4)).record;
    expect(await entry(0)).toMatchObject({ state: 'sent', attempts: 1 });
    expect(await entry(1)).toMatchObject({ state: 'pending', attempts: 0 });
    expect(await entry(2)).toMatchObject({ state: 'pending', attempts: 1, inDoubt: false });
    // Retried with the same key under retryTimeouts, and remembered as in doubt.
    expect(await entry(3)).toMatchObject({ state: 'pending', attempts: 1, inDoubt: true });
    expect([...limiter.returned].sort()).toEqual(['failed', 'failed', 'healthy', 'neutral']);
  });
});
