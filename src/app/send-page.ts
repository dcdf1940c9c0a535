import { performance } from 'node:perf_hooks';
import { fullJitterBackoff } from '../domain/backoff.js';
import { idempotencyKey } from '../domain/ids.js';
import { decodeRecord } from '../domain/ledger.js';
import { recipientRecord, type StoredRecipient } from '../domain/recipient.js';
import { reasonName } from '../domain/respect.js';
import { describeError, type SendOutcome } from '../domain/send-outcome.js';
import { priorityClass, type Campaign } from '../domain/campaign.js';
import { ConfirmBuffer, type ConfirmBufferOptions } from './confirm-buffer.js';
import type { AppEvents, Logger } from './events.js';
import { sleepUntil, StopRequested, unlessStopped } from './waiting.js';
import type { RunPump } from './pump.js';
import type { RecipientGate } from './recipient-gate.js';
import type { Semaphore } from './semaphore.js';
import type {
  CampaignStore,
  ClaimDirective,
  ConfirmEntry,
  FrequencyCaps,
  Ledger,
  PageJob,
  PageRef,
  Permit,
  PermitOutcome,
  ProviderRegistry,
  PushProvider,
  SendRequest,
  RateLimiter,
  RetryPolicy,
} from './ports.js';

export type PageResult =
  /** Every recipient of the page is final. */
  | { kind: 'done' }
  /** Some wait for a retry: run the page again in `delayMs`. */
  | { kind: 'later'; delayMs: number }
  /** Another worker holds the page for `delayMs` more at most. */
  | { kind: 'busy'; delayMs: number }
  /** The run is not running (paused, cancelled, completed, gone). */
  | { kind: 'inactive'; status: string }
  /** This process is stopping: hand the page to another worker. */
  | { kind: 'stopped' }
  /** The page lease was lost mid-way: another worker owns the page now. */
  | { kind: 'fenced' };

export interface SendPageOptions extends ConfirmBufferOptions {
  /** Most recipients claimed by one ledger call. */
  claimBatch: number;
}

export interface SendPageDeps {
  campaigns: CampaignStore;
  ledger: Ledger;
  limiter: RateLimiter;
  providers: ProviderRegistry;
  pump: RunPump;
  /** Requests this process may have in flight, shared by all pages. */
  sendSlots: Semaphore;
  /** Quiet hours, suppression lists, frequency caps. */
  gate: RecipientGate;
  caps: FrequencyCaps;
  events: AppEvents;
  log: Logger;
  options: SendPageOptions;
}

/** How long before a permit's start time its recipient is claimed (covers the claim's round trip). */
const CLAIM_AHEAD_MS = 5;

/**
 * Longest a batching provider's request waits for its batch to fill with
 * permits (less when the cap fills a batch sooner). Waiting holds permits
 * unused, which costs a little of the cap; bigger batches save requests.
 */
const MAX_BATCH_LINGER_MS = 100;

/** Recipients deferred per ledger call when a page starts inside quiet hours. */
const PARK_BATCH = 1000;

const TRANSITION = { s: 'sent', f: 'failed', t: 'retry', r: 'requeued', u: 'unknown' } as const;

/** What the ledger records for an answer: the one place outcomes become ledger operations. */
export function confirmEntry(index: number, attempts: number, outcome: SendOutcome, retry: RetryPolicy): ConfirmEntry {
  switch (outcome.kind) {
    case 'sent':
      return { index, op: 's', delayMs: 0, code: '', message: '' };
    case 'permanent':
      return { index, op: 'f', delayMs: 0, code: outcome.code, message: outcome.message };
    case 'transient':
      return { index, op: 't', delayMs: fullJitterBackoff(attempts, retry.baseMs, retry.maxMs), code: outcome.code, message: outcome.message };
    case 'in-doubt':
      if (!outcome.final && (retry.retryTimeouts || retry.inDoubt === 'resend')) {
        return { index, op: 't', delayMs: fullJitterBackoff(attempts, retry.baseMs, retry.maxMs), code: outcome.code, message: outcome.message };
      }
      return { index, op: 'u', delayMs: 0, code: outcome.code, message: outcome.message };
    case 'rate-limited':
      return { index, op: 'r', delayMs: outcome.retryAfterMs ?? 1000, code: outcome.code, message: outcome.message };
    case 'not-sent':
      return { index, op: 'r', delayMs: 0, code: outcome.code, message: outcome.message };
    default: {
      const never: never = outcome;
      throw new Error(`unhandled send outcome ${JSON.stringify(never)}`);
    }
  }
}

/** What an answer says about the provider's health, for its circuit breaker. */
function permitOutcome(outcome: SendOutcome): PermitOutcome {
  if (outcome.kind === 'sent' || outcome.kind === 'permanent') return 'healthy';
  if (outcome.kind === 'transient' || outcome.kind === 'in-doubt') return 'failed';
  return 'neutral';
}

/** The same for a request that carried several recipients. */
function requestOutcome(outcomes: readonly SendOutcome[]): PermitOutcome {
  const each = outcomes.map(permitOutcome);
  if (each.includes('failed')) return 'failed';
  return each.includes('healthy') ? 'healthy' : 'neutral';
}

/** One page being sent: what every step of it needs. */
interface PageWork {
  ref: PageRef;
  token: string;
  campaign: Campaign;
  provider: PushProvider;
  recipients: StoredRecipient[];
  /** Whether a recipient was counted against a frequency cap in this run already (its ledger record says). */
  countedOf(index: number): boolean;
  confirms: ConfirmBuffer;
  /** Recipients whose token the provider reported invalid, for its token-invalid list. */
  invalidTokens: string[];
  log: Logger;
}

/**
 * Sends one page of a run: the heart of a worker.
 *
 * 1. take the page lease (fencing token = the BullMQ job token);
 * 2. repeatedly: wait for send slots and rate-limit permits, then claim that
 *    many due recipients in one ledger call, and send them concurrently;
 * 3. record outcomes in batches, each checked against the lease;
 * 4. release the page, report what is left, and let the next page of the run in.
 *
 * A recipient is claimed (in flight) only once its permit is in hand, so a
 * worker that dies while waiting for the limiter leaves nothing in doubt.
 */
export class SendPage {
  constructor(private readonly deps: SendPageDeps) {}

  async run(job: PageJob, token: string, stop: AbortSignal): Promise<PageResult> {
    const { ledger, campaigns, providers, events, options } = this.deps;
    const ref: PageRef = { campaignId: job.campaignId, runId: job.runId, page: job.page };
    const log = this.deps.log.child({ campaignId: ref.campaignId, runId: ref.runId, page: ref.page });

    const campaign = await campaigns.get(ref.campaignId);
    const provider = campaign ? providers.get(campaign.provider) : undefined;
    if (!campaign || !provider) {
      // Leave the page alone (its lease, if any, runs out by itself); retried with backoff, loudly.
      throw new Error(`campaign ${ref.campaignId} uses provider ${JSON.stringify(campaign?.provider)}, which is not configured in this worker`);
    }
    const acquired = await ledger.acquirePage(ref, token, options.leaseMs, provider.retry.inDoubt);
    if (acquired.kind !== 'ok') {
      if (acquired.kind === 'inactive' && acquired.markedUnknown > 0) {
        events.emit('recipients:unknown', { ...ref, count: acquired.markedUnknown });
      }
      if (acquired.kind === 'missing') return { kind: 'inactive', status: 'missing' };
      if (acquired.kind === 'busy') return { kind: 'busy', delayMs: acquired.delayMs };
      return { kind: 'inactive', status: acquired.status };
    }
    if (acquired.markedUnknown > 0) {
      log.warn({ count: acquired.markedUnknown }, 'took over a page from a lost worker; its in-flight recipients are now unknown');
      events.emit('recipients:unknown', { ...ref, count: acquired.markedUnknown });
    }
    // This page left the queue: let the run's next one in line.
    this.deps.pump.fill(ref.campaignId, ref.runId).catch((err) => log.warn({ err: describeError(err) }, 'could not enqueue the next page'));

    const recipients = await campaigns.readPage(ref.campaignId, acquired.recipientsVersion, ref.page);

    const elapsed = acquired.now - acquired.runCreatedAt;
    const due: number[] = [];
    for (let index = 0; index < recipients.length; index += 1) {
      const record = decodeRecord(acquired.records, index);
      if (record.state === 'pending' && record.at <= elapsed) due.push(index);
    }

    const parked = await this.parkQuiet(ref, token, campaign, recipients, due);

    const work: PageWork = {
      ref,
      token,
      campaign,
      provider,
      recipients,
      countedOf: (index) => decodeRecord(acquired.records, index).counted,
      confirms: new ConfirmBuffer(ledger, ref, token, campaign.maxAttempts ?? provider.retry.maxAttempts, options),
      invalidTokens: [],
      log,
    };
    const halted = parked ?? (await this.sendDue(work, due, stop));
    const { confirms } = work;
    await confirms.flush();
    if (work.invalidTokens.length > 0) {
      // Later campaigns skip them (reason token-invalid); losing this on a crash only costs one more refused send.
      await this.deps.gate.markTokensInvalid(provider.name, work.invalidTokens).catch((err) => log.warn({ err: describeError(err) }, 'could not record invalid tokens'));
    }
    if (confirms.failure) throw confirms.failure;

    const left = await ledger.releasePage(ref, token, recipients.length);
    events.emit('page:released', { ...ref, pending: left.pending });
    if (confirms.runCompleted) {
      await ledger.markInactive(ref.campaignId, ref.runId);
      events.emit('run:completed', { campaignId: ref.campaignId, runId: ref.runId });
      log.info({}, 'run completed');
    }
    if (confirms.fenced || halted === 'fenced') {
      events.emit('lease:fenced', ref);
      log.warn({}, 'lost the page lease; another worker owns the page now');
      return { kind: 'fenced' };
    }
    if (halted !== null && halted !== 'stopped') return { kind: 'inactive', status: halted };
    await this.deps.pump.fill(ref.campaignId, ref.runId);
    if (left.pending === 0) return { kind: 'done' };
    if (halted === 'stopped' || stop.aborted) return { kind: 'stopped' };
    return { kind: 'later', delayMs: left.nextDueIn ?? 0 };
  }

  /**
   * Defers, before any rate-limit permit is asked for, the due recipients
   * inside their quiet hours (their records wait for the window's end, and
   * the page is parked until the earliest of them); removes them from `due`.
   * Returns like sendDue why the page must stop, or null.
   */
  private async parkQuiet(ref: PageRef, token: string, campaign: Campaign, recipients: StoredRecipient[], due: number[]): Promise<string | null> {
    const { deferred, open } = this.deps.gate.quietHours(campaign, recipients, due, Date.now());
    if (deferred.length === 0) return null;
    for (let i = 0; i < deferred.length; i += PARK_BATCH) {
      const claim = await this.deps.ledger.claim(ref, token, this.deps.options.leaseMs, deferred.slice(i, i + PARK_BATCH));
      if (claim.kind !== 'ok') return claim.kind === 'fenced' ? 'fenced' : claim.status;
    }
    this.countGated(deferred);
    due.splice(0, due.length, ...open);
    return null;
  }

  /** Returns why sending stopped early ('fenced', a run status, 'stopped'), or null when all due ones were sent. */
  private async sendDue(work: PageWork, due: number[], stop: AbortSignal): Promise<string | null> {
    const { ledger, limiter, sendSlots, options } = this.deps;
    const { ref, token, campaign, provider, recipients, confirms, log } = work;
    // Recipients per request, and whether the limiter counts requests or messages.
    const perRequest = provider.batch?.size ?? 1;
    const permitPerMessage = !provider.batch || provider.batch.countBy === 'message';
    const inflight = new Set<Promise<void>>();
    let halted: string | null = null;
    const heartbeat = setInterval(() => {
      ledger.claim(ref, token, options.leaseMs, []).then(
        (r) => {
          if (r.kind === 'fenced') halted ??= 'fenced';
          else if (r.kind === 'inactive') halted ??= r.status;
        },
        (err) => log.warn({ err: describeError(err) }, 'page lease renewal failed'),
      );
    }, Math.max(250, Math.floor(options.leaseMs / 3)));

    try {
      let next = 0;
      while (next < due.length && halted === null && !confirms.fenced) {
        const want = Math.min(due.length - next, Math.max(options.claimBatch, perRequest));
        let slots: number;
        let permits: Permit[];
        try {
          // Send slots count requests in flight; permits count what the provider's cap counts.
          slots = await unlessStopped(sendSlots.acquire(Math.ceil(want / perRequest)), stop, (n) => sendSlots.release(n));
          const waitStarted = performance.now();
          try {
            const wanted = permitPerMessage ? Math.min(want, slots * perRequest) : slots;
            permits = await unlessStopped(limiter.acquire(provider.limits, wanted, priorityClass(campaign.priority), `${ref.campaignId}|${ref.runId}`), stop, (ps) =>
              ps.forEach((p) => limiter.giveBack(p)),
            );
          } catch (err) {
            sendSlots.release(slots);
            throw err;
          }
          if (perRequest > 1 && permitPerMessage) permits = await this.fillBatch(work, permits, Math.min(want, perRequest), stop);
          this.deps.events.emit('limiter:waited', { provider: provider.name, ms: performance.now() - waitStarted });
        } catch (err) {
          if (err instanceof StopRequested) {
            halted = 'stopped';
            break;
          }
          throw err;
        }
        const capacity = Math.min(due.length - next, permitPerMessage ? permits.length : permits.length * perRequest);
        const requests = Math.ceil(capacity / perRequest);
        if (slots > requests) sendSlots.release(slots - requests);
        // Permits may come a little ahead of their time: claim just before the
        // first may be used, so recipients are in flight as briefly as possible.
        await sleepUntil(Math.min(...permits.map((p) => p.notBefore)) - CLAIM_AHEAD_MS);
        const batch = due.slice(next, next + capacity);
        next += batch.length;
        const gate = await this.deps.gate.decide(campaign, provider, recipients, batch, work.countedOf, Date.now());
        const claim = await ledger.claim(ref, token, options.leaseMs, gate.directives);
        this.countGated(gate.directives);
        if (gate.cap && gate.reserved.size > 0) {
          const taken = new Set(claim.kind === 'ok' ? claim.claimed.map((c) => c.index) : []);
          const unused = [...gate.reserved].filter(([index]) => !taken.has(index)).map(([, id]) => id);
          if (unused.length > 0) await this.deps.caps.release(gate.cap, unused);
        }
        if (claim.kind !== 'ok') {
          permits.forEach((p) => limiter.giveBack(p));
          sendSlots.release(requests);
          halted = claim.kind === 'fenced' ? 'fenced' : claim.status;
          break;
        }
        if (claim.claimed.length > 0) this.deps.events.emit('ledger:transitions', { to: 'claimed', count: claim.claimed.length });
        const groups: Array<typeof claim.claimed> = [];
        for (let i = 0; i < claim.claimed.length; i += perRequest) groups.push(claim.claimed.slice(i, i + perRequest));
        const used = permitPerMessage ? claim.claimed.length : groups.length;
        for (const p of permits.slice(used)) limiter.giveBack(p);
        sendSlots.release(requests - groups.length);
        let offset = 0;
        for (const group of groups) {
          const share = permitPerMessage ? permits.slice(offset, offset + group.length) : [permits[offset]!];
          offset += share.length;
          const task = this.sendGroup(work, group, share).finally(() => {
            inflight.delete(task);
            sendSlots.release(1);
          });
          inflight.add(task);
        }
      }
      await Promise.all(inflight);
    } finally {
      clearInterval(heartbeat);
    }
    return halted;
  }

  /**
   * A batching provider that counts messages: permits come as the window
   * frees them, a few at a time. Waits about as long as the cap takes to
   * fill a batch (at most MAX_BATCH_LINGER_MS), so requests carry many
   * recipients rather than a handful each.
   */
  private async fillBatch(work: PageWork, permits: Permit[], target: number, stop: AbortSignal): Promise<Permit[]> {
    const { limiter } = this.deps;
    const { provider, campaign, ref } = work;
    const lingerMs = Math.min(MAX_BATCH_LINGER_MS, Math.ceil((target * 1000) / provider.limits.tps));
    const linger = AbortSignal.any([stop, AbortSignal.timeout(lingerMs)]);
    const giveBack = (ps: Permit[]) => ps.forEach((p) => limiter.giveBack(p));
    while (permits.length < target && !linger.aborted) {
      try {
        permits.push(...(await unlessStopped(limiter.acquire(provider.limits, target - permits.length, priorityClass(campaign.priority), `${ref.campaignId}|${ref.runId}`), linger, giveBack)));
      } catch (err) {
        if (err instanceof StopRequested) break;
        giveBack(permits);
        throw err;
      }
    }
    return permits;
  }

  private countGated(directives: readonly ClaimDirective[]): void {
    const held = new Map<string, number>();
    for (const d of directives) {
      if (d.op === 'claim') continue;
      const key = d.op === 'skip' ? `skipped|${reasonName(d.reason)}` : 'deferred|quiet-hours';
      held.set(key, (held.get(key) ?? 0) + 1);
    }
    for (const [key, count] of held) {
      const [outcome, reason] = key.split('|') as ['skipped' | 'deferred', string];
      this.deps.events.emit('ledger:transitions', { to: outcome, count });
      this.deps.events.emit('recipients:held', { outcome, reason, count });
    }
  }

  /**
   * One request to the provider for `group` (one recipient, or several for a
   * batching provider) on its permits (one per recipient, or one for the
   * request), then one ledger entry per recipient.
   */
  private async sendGroup(work: PageWork, group: ReadonlyArray<{ index: number; attempts: number }>, permits: Permit[]): Promise<void> {
    const { limiter, events, log } = this.deps;
    const { ref, campaign, provider, recipients, confirms } = work;
    const requests: SendRequest[] = group.map(({ index }) => {
      const recipient = recipientRecord(recipients[index]!);
      return { idempotencyKey: idempotencyKey(ref.campaignId, ref.runId, recipient.id), campaignId: ref.campaignId, runId: ref.runId, recipient, message: campaign.message };
    });
    let outcomes: SendOutcome[];
    // A permit may be handed out a few ms before it is free: the request waits for the last of its permits.
    await sleepUntil(Math.max(...permits.map((p) => p.notBefore)));
    const started = performance.now();
    if (started + provider.limits.timeoutMs > Math.min(...permits.map((p) => p.usableUntil))) {
      // A permit could expire while the request is out: never send on it.
      permits.forEach((p) => limiter.giveBack(p));
      outcomes = requests.map(() => ({ kind: 'not-sent', code: 'PERMIT_EXPIRED', message: 'rate-limit permit too close to expiry; not sent' }));
    } else {
      try {
        outcomes = requests.length > 1 && provider.sendBatch ? await provider.sendBatch(requests) : [await provider.send(requests[0]!)];
        if (outcomes.length !== requests.length) throw new Error(`provider ${provider.name} answered ${outcomes.length} outcomes for ${requests.length} recipients`);
      } catch (err) {
        // A provider adapter that throws has a bug; the request may have gone out, so retry with the same key.
        outcomes = requests.map(() => ({ kind: 'transient', code: 'PROVIDER_ERROR', message: describeError(err) }));
      }
      if (permits.length === outcomes.length) permits.forEach((p, i) => limiter.complete(p, permitOutcome(outcomes[i]!)));
      else limiter.complete(permits[0]!, requestOutcome(outcomes));
    }
    const durationMs = performance.now() - started;
    let pauseFor: number | null = null;
    group.forEach(({ index, attempts }, i) => {
      const outcome = outcomes[i]!;
      events.emit('send:done', { provider: provider.name, outcome: outcome.kind, code: outcome.kind === 'sent' ? undefined : outcome.code, durationMs });
      if (outcome.kind !== 'sent') {
        // Debug only, one line per answer that was not a plain success; the logger redacts tokens and phone numbers.
        log.debug({ campaignId: ref.campaignId, runId: ref.runId, page: ref.page, recipient: requests[i]!.recipient, outcome }, 'provider did not accept a send');
      }
      if (outcome.kind === 'rate-limited') pauseFor = Math.max(pauseFor ?? 0, outcome.retryAfterMs ?? 1000);
      if (outcome.kind === 'permanent' && outcome.tokenInvalid) {
        const address = provider.address?.(requests[i]!.recipient);
        if (address) work.invalidTokens.push(address);
      }
      const entry = confirmEntry(index, attempts, outcome, provider.retry);
      confirms.add(entry);
      events.emit('ledger:transitions', { to: TRANSITION[entry.op], count: 1 });
    });
    if (pauseFor !== null) {
      limiter.pause(provider.name, pauseFor).catch((err) => log.warn({ err: describeError(err) }, 'could not pause the provider'));
    }
  }
}
