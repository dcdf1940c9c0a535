import { performance } from 'node:perf_hooks';
import type { ProviderHealth } from '../domain/send-rules.js';
import type { PriorityClass } from '../domain/campaign.js';
import type { AppEvents } from './events.js';
import type { FlowPace, Permit, PushProvider, RateLimiter } from './ports.js';
import type { Semaphore } from './semaphore.js';
import { StopRequested, unlessStopped } from './waiting.js';

/**
 * Longest a batching provider's request waits for its batch to fill with
 * permits (less when the cap fills a batch sooner). Waiting holds permits
 * unused, which costs a little of the cap; bigger batches save requests.
 */
const MAX_BATCH_LINGER_MS = 100;

/**
 * A paced run asks for what its pace grants in about this long at a time:
 * a slow campaign must not hold many send slots idle while it waits for its
 * next permit.
 */
const PACED_ALLOT_MS = 250;

/**
 * One request's share of an allotment: one send slot and its permits (one
 * per recipient, or one for the request when the provider's cap counts
 * requests). Returned exactly once: completed with what the answer said
 * about the provider, or given back unused.
 */
export class RequestShare {
  private returned = false;

  constructor(
    private readonly budget: SendBudget,
    readonly permits: readonly Permit[],
  ) {}

  /** performance.now() before which the request must not start (its last permit is still resting). */
  get notBefore(): number {
    return Math.max(...this.permits.map((p) => p.notBefore));
  }

  /** performance.now() after which none of its permits may start a request. */
  get usableUntil(): number {
    return Math.min(...this.permits.map((p) => p.usableUntil));
  }

  /**
   * The request went out (at `departedAt`, when the provider could tell) and
   * was answered: per permit (one per recipient) or one answer for all.
   */
  complete(health: ProviderHealth | readonly ProviderHealth[], departedAt?: number): void {
    if (this.returned) return;
    this.returned = true;
    this.permits.forEach((p, i) => this.budget.limiter.complete(p, typeof health === 'string' ? health : health[i]!, departedAt));
    this.budget.slots.release(1);
  }

  /** The request never went out. */
  giveBack(): void {
    if (this.returned) return;
    this.returned = true;
    this.permits.forEach((p) => this.budget.limiter.giveBack(p));
    this.budget.slots.release(1);
  }
}

/**
 * Send slots (requests this process has in flight) and rate-limit permits
 * taken for one round of a page: handed out to requests, and whatever is
 * left returned by `release` — called once, in a finally, whatever threw.
 */
export class Allotment {
  private released = false;

  constructor(
    private readonly budget: SendBudget,
    private slots: number,
    private permits: Permit[],
    /** Recipients one request carries. */
    readonly perRequest: number,
    /** Whether each recipient needs a permit of its own. */
    private readonly permitPerMessage: boolean,
  ) {}

  /** Recipients this allotment can carry. */
  get recipients(): number {
    return Math.min(this.slots * this.perRequest, this.permitPerMessage ? this.permits.length : this.permits.length * this.perRequest);
  }

  /** The earliest start of its permits. */
  get firstStart(): number {
    return Math.min(...this.permits.map((p) => p.notBefore));
  }

  /** The share of one request carrying `recipients` recipients. */
  take(recipients: number): RequestShare {
    if (this.released) throw new Error('allotment already released');
    const count = this.permitPerMessage ? recipients : 1;
    if (this.slots < 1 || this.permits.length < count)
      throw new Error(`allotment has ${this.slots} slots and ${this.permits.length} permits, asked for ${count}`);
    this.slots -= 1;
    return new RequestShare(this.budget, this.permits.splice(0, count));
  }

  /** Returns every slot and permit not taken. Safe to call more than once. */
  release(): void {
    if (this.released) return;
    this.released = true;
    for (const p of this.permits.splice(0)) this.budget.limiter.giveBack(p);
    if (this.slots > 0) this.budget.slots.release(this.slots);
    this.slots = 0;
  }
}

/**
 * What a page may spend on sending: this process's send slots and the
 * provider's global permits. The one place both are taken; every path that
 * takes them returns them (an Allotment or a RequestShare owns them).
 */
export class SendBudget {
  readonly slots: Semaphore;
  readonly limiter: RateLimiter;
  private readonly events: AppEvents;

  constructor(deps: { slots: Semaphore; limiter: RateLimiter; events: AppEvents }) {
    ({ slots: this.slots, limiter: this.limiter, events: this.events } = deps);
  }

  /**
   * Waits for slots and permits for up to `want` recipients of `flow` (a
   * run) on `provider`, within the run's `pace` when it has one. Throws
   * StopRequested when `stop` fires first, having returned whatever it took.
   */
  async allot(
    provider: PushProvider,
    priorityClass: PriorityClass,
    flow: string,
    want: number,
    stop: AbortSignal,
    pace: FlowPace | null = null,
  ): Promise<Allotment> {
    const perRequest = provider.batch?.size ?? 1;
    const permitPerMessage = !provider.batch || provider.batch.countBy === 'message';
    if (pace) want = Math.min(want, Math.max(perRequest, Math.ceil((pace.tps * PACED_ALLOT_MS) / 1000)));
    const slots = await unlessStopped(this.slots.acquire(Math.ceil(want / perRequest)), stop, (n) => this.slots.release(n));
    const permits: Permit[] = [];
    // Owns the slots from here on, and every permit as it arrives.
    const owned = new Allotment(this, slots, permits, perRequest, permitPerMessage);
    try {
      const started = performance.now();
      const wanted = permitPerMessage ? Math.min(want, slots * perRequest) : slots;
      permits.push(...(await this.acquire(provider, wanted, priorityClass, flow, stop, pace)));
      if (perRequest > 1 && permitPerMessage) await this.linger(provider, permits, Math.min(want, perRequest), priorityClass, flow, stop, pace);
      this.events.emit('limiter:waited', { provider: provider.name, ms: performance.now() - started });
      return owned;
    } catch (err) {
      owned.release();
      throw err;
    }
  }

  private acquire(
    provider: PushProvider,
    want: number,
    priorityClass: PriorityClass,
    flow: string,
    stop: AbortSignal,
    pace: FlowPace | null,
  ): Promise<Permit[]> {
    return unlessStopped(this.limiter.acquire(provider.limits, want, priorityClass, flow, pace), stop, (late) => late.forEach((p) => this.limiter.giveBack(p)));
  }

  /**
   * A batching provider that counts messages: permits come as the window
   * frees them, a few at a time. Waits about as long as the cap takes to
   * fill a batch (at most MAX_BATCH_LINGER_MS), so requests carry many
   * recipients rather than a handful each.
   */
  private async linger(
    provider: PushProvider,
    permits: Permit[],
    target: number,
    priorityClass: PriorityClass,
    flow: string,
    stop: AbortSignal,
    pace: FlowPace | null,
  ): Promise<void> {
    const lingerMs = Math.min(MAX_BATCH_LINGER_MS, Math.ceil((target * 1000) / (pace ? Math.min(pace.tps, provider.limits.tps) : provider.limits.tps)));
    const linger = AbortSignal.any([stop, AbortSignal.timeout(lingerMs)]);
    while (permits.length < target && !linger.aborted) {
      try {
        permits.push(...(await this.acquire(provider, target - permits.length, priorityClass, flow, linger, pace)));
      } catch (err) {
        if (err instanceof StopRequested) break;
        throw err;
      }
    }
  }
}
