import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { compareIds, deliveryId, formatCursor, nextWindow, windowParts, type Cursor, type Window } from '../domain/outbox.js';
import { describeError } from '../domain/send-outcome.js';
import { nextAttemptAt, wantsRecipientEvents, type EventType } from '../domain/webhooks.js';
import type { AppEvents } from './events.js';
import type { RecipientEventSources } from './recipient-events.js';
import {
  deliveryBody,
  healthOf,
  missed,
  newDelivery,
  OVERFLOW_EVENT,
  PAIR_LEASE_MS,
  PairLease,
  READ_COUNT,
  rebuildWindow,
  webhookLimits,
  type Delivery,
} from './webhook-delivery.js';
import { TickLoop } from './tick-loop.js';
import { StopRequested, unlessStopped } from './waiting.js';
import { outboxReader, type ResolvedWebhook, type WebhookRegistry } from './webhook-registry.js';
import type { DeadLetter, Locks, Logger, Outbox, Permit, RateLimiter, WebhookAnswer, WebhookClient, WebhookStore } from './ports.js';

export interface WebhookDispatcherOptions {
  intervalMs: number;
  /** Endpoint-and-campaign pairs this process delivers at once. */
  concurrency: number;
  /** Dead letters kept per endpoint (WEBHOOK_DEAD_LETTER_LIMIT). */
  deadLetterLimit: number;
}

export interface WebhookDispatcherDeps {
  registry: WebhookRegistry;
  outbox: Outbox;
  store: WebhookStore;
  client: WebhookClient;
  limiter: RateLimiter;
  locks: Pick<Locks, 'tryLock'>;
  sources: RecipientEventSources;
  /** An endpoint's secret (file endpoints: read from their file or variable; API ones: stored). */
  secretOf(endpoint: ResolvedWebhook): string;
  events: AppEvents;
  log: Logger;
}

/** Longest a delivery waits for a permit before it lets the pair go (a slow cap, an open circuit): it comes back at a later tick. */
const PERMIT_WAIT_MS = 5000;
/** How long one pair keeps delivering before it lets others in (it is picked up again at the next tick). */
const TURN_MS = 10_000;
/** A delivery due within this long is waited for; one due later is left for a later tick. */
const WAIT_INLINE_MS = 1000;
/** How often a campaign's outbox is trimmed at most, and how old a recipient entry must be (an endpoint made since may not be known everywhere yet). */
const TRIM_EVERY_MS = 1000;
const TRIM_AGE_MS = 10_000;
/** With no endpoint enabled, how often the campaigns marked for delivery are forgotten. */
const CLEAR_MARKS_EVERY_MS = 60_000;

function sameCursor(a: Cursor, b: Cursor): boolean {
  return a.id === b.id && a.off === b.off;
}

/**
 * Delivers every campaign's outbox to the webhook endpoints that take it,
 * from every worker process: for each endpoint and campaign one deliverer at
 * a time (a lease in Redis), so each endpoint gets a campaign's events in
 * the order they happened, at least once, signed. A failed delivery is
 * retried with exponential backoff and jitter (the endpoint's `retry`), and
 * holds back what follows it for that endpoint and campaign; one that
 * exhausts its attempts becomes a dead letter, to be replayed, and the next
 * goes. A 410 disables the endpoint. Deliveries take permits of the
 * endpoint's own `tps` from the global limiter.
 */
export class WebhookDispatcher {
  private readonly loop: TickLoop;
  private readonly busy = new Set<string>();
  private readonly tasks = new Set<Promise<void>>();
  private readonly trimmedAt = new Map<string, number>();
  private readonly stopping = new AbortController();
  private marksClearedAt = 0;

  constructor(
    private readonly deps: WebhookDispatcherDeps,
    private readonly options: WebhookDispatcherOptions,
  ) {
    this.loop = new TickLoop(() => this.tick(), options.intervalMs);
  }

  start(): void {
    this.loop.start();
  }

  /** Stops taking pairs; waits for the deliveries under way (each at most its endpoint's timeout). */
  async stop(): Promise<void> {
    this.stopping.abort();
    await this.loop.stop();
    await Promise.allSettled([...this.tasks]);
  }

  async tick(): Promise<void> {
    const { registry, outbox, log } = this.deps;
    try {
      if (registry.enabled().length === 0) {
        // Nobody to deliver to: the marks would only pile up (an endpoint made later starts from its own creation).
        if (Date.now() - this.marksClearedAt > CLEAR_MARKS_EVERY_MS) {
          this.marksClearedAt = Date.now();
          await outbox.clearMarks();
        }
        return;
      }
      for (const { campaignId, mark } of await outbox.campaigns(1000)) {
        if (this.stopping.signal.aborted) return;
        await this.visit(campaignId, mark).catch((err) => log.warn({ campaignId, err: describeError(err) }, 'could not look at a campaign outbox'));
      }
      await this.replays();
    } catch (err) {
      log.warn({ err: describeError(err) }, 'webhook dispatcher tick failed; will try again');
    }
  }

  /** Starts a deliverer for each endpoint with something due in the campaign; unmarks a campaign every endpoint has read. */
  private async visit(campaignId: string, mark: number | null): Promise<void> {
    const { registry, outbox } = this.deps;
    const endpoints = registry.forCampaign(campaignId);
    const scan = endpoints.length > 0 ? await outbox.due(campaignId, endpoints.map(outboxReader)) : { due: [] as string[], pending: false };
    for (const name of scan.due) {
      const endpoint = endpoints.find((e) => e.name === name);
      if (endpoint) this.startPair(endpoint, campaignId);
    }
    // A campaign every endpoint has read is forgotten once its recipient entries are trimmed too.
    const drained = mark !== null && !scan.pending && ![...this.busy].some((key) => key.endsWith(`|${campaignId}`));
    const now = Date.now();
    if (!drained && now - (this.trimmedAt.get(campaignId) ?? 0) < TRIM_EVERY_MS) return;
    this.trimmedAt.set(campaignId, now);
    if (this.trimmedAt.size > 10_000) this.trimmedAt.clear();
    const readers = endpoints.filter(wantsRecipientEvents).map(outboxReader);
    const { left } = await outbox.trim(campaignId, readers, now - TRIM_AGE_MS);
    if (drained && !left) await outbox.unmark(campaignId, mark);
  }

  private startPair(endpoint: ResolvedWebhook, campaignId: string): void {
    const key = `${endpoint.name}|${campaignId}`;
    if (this.busy.has(key) || this.busy.size >= this.options.concurrency || this.stopping.signal.aborted) return;
    this.busy.add(key);
    const task: Promise<void> = this.deliverPair(endpoint, campaignId)
      .catch((err) => this.deps.log.warn({ endpoint: endpoint.name, campaignId, err: describeError(err) }, 'webhook delivery interrupted; it goes on later'))
      .finally(() => {
        this.busy.delete(key);
        this.tasks.delete(task);
      });
    this.tasks.add(task);
  }

  /** One endpoint's turn in one campaign's outbox, under its lease (renewed while the turn lasts). */
  private async deliverPair(endpoint: ResolvedWebhook, campaignId: string): Promise<void> {
    const { outbox } = this.deps;
    const token = randomUUID();
    const took = await outbox.take(campaignId, endpoint.name, token, PAIR_LEASE_MS);
    if (took.kind !== 'ok') return;
    const lease = new PairLease(outbox, campaignId, endpoint.name, token, this.stopping.signal);
    try {
      const { epoch, since } = endpoint.state;
      let cursor: Cursor = took.cursor?.epoch === epoch ? took.cursor.cursor : { id: `${since}-0`, off: 0 };
      let delivery = took.delivery ? (JSON.parse(took.delivery) as Delivery) : null;
      if (delivery?.epoch !== epoch) delivery = null;
      // An endpoint that takes no recipient event missed nothing when only recipient entries were pushed out.
      const wantsRecipients = wantsRecipientEvents(endpoint);
      const lostFor = (read: { lost: string | null; lostRun: string | null }) => (wantsRecipients ? read.lost : read.lostRun);
      const turnEnds = performance.now() + TURN_MS;
      while (!lease.signal.aborted && performance.now() < turnEnds) {
        let window: Window | null = null;
        let gap: { from: Cursor; lost: string } | null = null;
        if (!delivery) {
          const read = await outbox.read(campaignId, cursor, READ_COUNT);
          const lost = lostFor(read);
          if (lost && missed(lost, cursor)) {
            gap = { from: cursor, lost };
          } else {
            const next = nextWindow(read.entries, cursor, new Set(endpoint.events));
            if (!next.window) {
              if (sameCursor(next.skipTo, cursor) || !(await lease.advance(epoch, next.skipTo))) return;
              cursor = next.skipTo;
              continue;
            }
            window = next.window;
            delivery = newDelivery(
              epoch,
              window.from,
              window.to,
              windowParts(window).map((p) => p.type),
            );
            if (!(await lease.save(delivery))) return;
          }
        } else if (delivery.parts[0] !== OVERFLOW_EVENT) {
          const rebuilt = await rebuildWindow(outbox, campaignId, delivery, lostFor);
          // The window's own entries were pushed out before it was delivered: the endpoint is told instead.
          if (!rebuilt.window) gap = { from: delivery.from, lost: rebuilt.lost ?? delivery.to.id };
          else window = rebuilt.window;
        }
        if (gap) {
          delivery = newDelivery(epoch, gap.from, { id: compareIds(gap.lost, gap.from.id) >= 0 ? gap.lost : gap.from.id, off: 0 }, [OVERFLOW_EVENT]);
          if (!(await lease.save(delivery))) return;
          this.deps.events.emit('webhook:lost', { endpoint: endpoint.name, campaignId });
          this.deps.log.error(
            { endpoint: endpoint.name, campaignId, from: formatCursor(gap.from), to: gap.lost },
            'webhook endpoint fell so far behind that the outbox bound pushed out events it was not sent; it is told (outbox.overflowed), the results export has them',
          );
        }
        const wait = delivery!.nextAt - Date.now();
        if (wait > WAIT_INLINE_MS) return;
        if (wait > 0) await sleep(wait);
        const result = await this.attempt(endpoint, campaignId, window, delivery!, lease.signal);
        if (result === 'stop') return;
        if (result === 'next') {
          delivery!.part += 1;
          delivery!.attempt = 0;
          delivery!.firstAt = 0;
          delivery!.nextAt = Date.now();
        }
        if (delivery!.part >= delivery!.parts.length) {
          if (!(await lease.advance(epoch, delivery!.to))) return;
          cursor = delivery!.to;
          delivery = null;
        } else if (!(await lease.save(delivery!))) {
          return;
        }
      }
    } finally {
      await lease.release();
    }
  }

  /**
   * One attempt at the delivery's current part. `next`: delivered, or a
   * dead letter now (the caller moves on); `retry`: its next attempt is
   * scheduled in `delivery`; `stop`: this pair stops here (the endpoint was
   * disabled, this process is stopping, or its lease is in doubt).
   */
  private async attempt(
    endpoint: ResolvedWebhook,
    campaignId: string,
    window: Window | null,
    delivery: Delivery,
    signal: AbortSignal,
  ): Promise<'next' | 'retry' | 'stop'> {
    const type = delivery.parts[delivery.part]!;
    const id = deliveryId(campaignId, delivery, type);
    const { body, runId, count } = await deliveryBody(this.deps.sources, campaignId, window, delivery, type);
    const answer = await this.send(endpoint, id, body, campaignId, signal);
    if (answer === null) return 'stop';
    const now = Date.now();
    delivery.firstAt ||= now;
    delivery.attempt += 1;
    delivery.lastStatus = answer.status;
    delivery.lastError = answer.error ?? '';
    if (answer.status !== null && answer.status >= 200 && answer.status < 300) {
      this.deps.events.emit('webhook:attempt', { endpoint: endpoint.name, outcome: 'delivered', events: count });
      return 'next';
    }
    if (answer.status === 410) {
      this.deps.events.emit('webhook:attempt', { endpoint: endpoint.name, outcome: 'gone', events: count });
      await this.disable(endpoint, `the endpoint answered 410 Gone to ${id}`);
      return 'stop';
    }
    const nextAt = nextAttemptAt(endpoint.retry, delivery.attempt, delivery.firstAt, now);
    if (nextAt !== null) {
      this.deps.events.emit('webhook:attempt', { endpoint: endpoint.name, outcome: 'failed', events: count });
      delivery.nextAt = nextAt;
      return 'retry';
    }
    this.deps.events.emit('webhook:attempt', { endpoint: endpoint.name, outcome: 'dead', events: count });
    const letter: DeadLetter = {
      id,
      endpoint: endpoint.name,
      campaignId,
      runId,
      type: type as EventType,
      count,
      body,
      attempts: delivery.attempt,
      lastStatus: answer.status,
      lastError: delivery.lastError,
      firstAttemptAt: delivery.firstAt,
      deadAt: now,
      replay: null,
    };
    await this.keepDeadLetter(letter);
    return 'next';
  }

  private async keepDeadLetter(letter: DeadLetter): Promise<void> {
    const dropped = await this.deps.store.addDeadLetter(letter, this.options.deadLetterLimit);
    this.deps.log.error(
      {
        endpoint: letter.endpoint,
        campaignId: letter.campaignId,
        id: letter.id,
        attempts: letter.attempts,
        lastStatus: letter.lastStatus,
        lastError: letter.lastError,
      },
      'webhook delivery exhausted its attempts: kept as a dead letter (replay with POST /api/webhooks/:name/dead-letters/replay)',
    );
    if (dropped > 0) {
      this.deps.events.emit('webhook:dead-letters-dropped', { endpoint: letter.endpoint, count: dropped });
      this.deps.log.error({ endpoint: letter.endpoint, dropped }, 'dead letters past WEBHOOK_DEAD_LETTER_LIMIT: the oldest were dropped');
    }
  }

  /**
   * Sends one attempt on a permit of the endpoint's own cap. Null when it
   * was not made, or abandoned before an answer: this process is stopping,
   * the pair's lease was lost, or no permit came in time.
   */
  private async send(endpoint: ResolvedWebhook, id: string, body: string, flow: string, signal: AbortSignal): Promise<WebhookAnswer | null> {
    const { limiter, client } = this.deps;
    let permit: Permit | undefined;
    try {
      const wait = AbortSignal.any([signal, AbortSignal.timeout(PERMIT_WAIT_MS)]);
      [permit] = await unlessStopped(limiter.acquire(webhookLimits(endpoint), 1, 1, flow), wait, (late) => late.forEach((p) => limiter.giveBack(p)));
    } catch (err) {
      if (err instanceof StopRequested) return null;
      throw err;
    }
    const ready = permit!;
    let answer: WebhookAnswer | null = null;
    try {
      while (performance.now() < ready.notBefore) await sleep(Math.ceil(ready.notBefore - performance.now()));
      if (performance.now() + endpoint.timeoutMs > ready.usableUntil || signal.aborted) return null;
      answer = await client.deliver({ url: endpoint.url, id, body, secret: this.deps.secretOf(endpoint), timeoutMs: endpoint.timeoutMs, signal });
      return answer.aborted ? null : answer;
    } finally {
      if (answer && !answer.aborted) limiter.complete(ready, healthOf(answer));
      else limiter.giveBack(ready);
    }
  }

  private async disable(endpoint: ResolvedWebhook, reason: string): Promise<void> {
    const { registry, store, log } = this.deps;
    // As it is now: an operator may have enabled it again (a new epoch) since this deliverer looked.
    const current = (await store.states()).get(endpoint.name);
    if (!current || current.epoch !== endpoint.state.epoch || current.disabled) return;
    await store.setState(endpoint.name, { ...current, disabled: { at: Date.now(), reason } });
    await registry.refresh(true);
    log.error(
      { endpoint: endpoint.name, reason },
      'webhook endpoint disabled: nothing is sent to it until it is enabled again (PATCH /api/webhooks/:name {"enabled": true})',
    );
  }

  /** Dead letters being replayed, per endpoint, one replayer at a time. */
  private async replays(): Promise<void> {
    const { registry, store, locks } = this.deps;
    for (const endpoint of registry.enabled()) {
      if (this.stopping.signal.aborted) return;
      const key = `${endpoint.name}|replay`;
      if (this.busy.has(key)) continue;
      const due = await store.replayDue(endpoint.name, Date.now(), 20);
      // Held for as long as the batch may take: each letter waits for a permit, then for its answer.
      if (due.length === 0 || !(await locks.tryLock(`webhook-replay:${endpoint.name}`, (endpoint.timeoutMs + PERMIT_WAIT_MS) * due.length + 5000))) continue;
      this.busy.add(key);
      const task: Promise<void> = this.replay(endpoint, due)
        .catch((err) => this.deps.log.warn({ endpoint: endpoint.name, err: describeError(err) }, 'dead-letter replay interrupted; it goes on later'))
        .finally(() => {
          this.busy.delete(key);
          this.tasks.delete(task);
        });
      this.tasks.add(task);
    }
  }

  private async replay(endpoint: ResolvedWebhook, letters: DeadLetter[]): Promise<void> {
    const { store, events } = this.deps;
    for (const letter of letters) {
      if (this.stopping.signal.aborted || !letter.replay) return;
      const answer = await this.send(endpoint, letter.id, letter.body, 'replay', this.stopping.signal);
      if (answer === null) return;
      const now = Date.now();
      if (answer.status !== null && answer.status >= 200 && answer.status < 300) {
        await store.removeDeadLetter(endpoint.name, letter.id);
        events.emit('webhook:attempt', { endpoint: endpoint.name, outcome: 'delivered', events: letter.count });
        continue;
      }
      if (answer.status === 410) {
        await this.disable(endpoint, `the endpoint answered 410 Gone to ${letter.id}`);
        return;
      }
      events.emit('webhook:attempt', { endpoint: endpoint.name, outcome: 'failed', events: letter.count });
      const attempts = letter.replay.attempts + 1;
      const nextAt = nextAttemptAt(endpoint.retry, attempts, letter.replay.firstAt, now);
      await store.updateDeadLetter({
        ...letter,
        attempts: letter.attempts + 1,
        lastStatus: answer.status,
        lastError: answer.error ?? '',
        replay: nextAt === null ? null : { attempts, nextAt, firstAt: letter.replay.firstAt },
      });
    }
  }
}
