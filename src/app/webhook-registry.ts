import { eventMask, subscribesTo, type WebhookEndpoint } from '../domain/webhooks.js';
import { describeError } from '../domain/send-outcome.js';
import { TickLoop } from './tick-loop.js';
import type { Clock, EventMasks, Logger, OutboxReader, StoredWebhook, WebhookState, WebhookStore } from './ports.js';

/** An endpoint with what every process shares of it. */
export interface ResolvedWebhook extends WebhookEndpoint {
  state: WebhookState;
  /** API endpoints: when made and last changed. */
  createdAt: number | null;
  updatedAt: number | null;
}

/** How often a process looks whether an endpoint changed (one GET of a counter). */
export const WEBHOOK_REFRESH_MS = 1000;

/**
 * A new state for an endpoint that takes the events of steps from `now`
 * (Redis's clock, the one the steps' event times are on). Its recipient
 * events are written from the moment each process knows it: within
 * WEBHOOK_REFRESH_MS (an API endpoint; a file endpoint from its start).
 */
export function freshState(now: number): WebhookState {
  return { since: now, epoch: now, disabled: null };
}

/**
 * The webhook endpoints every process knows: those of WEBHOOKS_FILE and
 * those made through the API, with their shared state (since when they take
 * events, disabled), reloaded whenever any of it changes (a counter in
 * Redis, read every second). Ledger steps ask it which recipient events to
 * write (`maskFor`): an endpoint made or changed through the API takes
 * effect in every process within about a second.
 */
export class WebhookRegistry implements EventMasks {
  private resolved: ResolvedWebhook[] = [];
  private secrets = new Map<string, string>();
  private version = -1;
  private readonly loop: TickLoop;

  constructor(
    private readonly deps: { store: WebhookStore; clock: Clock; log: Logger },
    private readonly fileEndpoints: readonly WebhookEndpoint[],
  ) {
    this.loop = new TickLoop(
      () => this.refresh().catch((err) => deps.log.warn({ err: describeError(err) }, 'could not reload webhook endpoints')),
      WEBHOOK_REFRESH_MS,
    );
  }

  /** Loads now (at start: a process knows its endpoints before it runs a ledger step), then keeps them current. */
  async start(): Promise<void> {
    await this.refresh();
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  /** Reloads when anything changed since the last load (or `force`). */
  async refresh(force = false): Promise<void> {
    const { store } = this.deps;
    const version = await store.version();
    if (!force && version === this.version) return;
    const [stored, states] = await Promise.all([store.list(), store.states()]);
    const resolved: ResolvedWebhook[] = [];
    const secrets = new Map<string, string>();
    const add = async (endpoint: WebhookEndpoint, meta: Pick<StoredWebhook, 'createdAt' | 'updatedAt'> | null) => {
      const state = states.get(endpoint.name) ?? (await store.ensureState(endpoint.name, freshState(await this.deps.clock.serverTime())));
      resolved.push({ ...endpoint, state, createdAt: meta?.createdAt ?? null, updatedAt: meta?.updatedAt ?? null });
    };
    for (const endpoint of this.fileEndpoints) await add(endpoint, null);
    for (const endpoint of stored) {
      // A file endpoint of the same name wins (the API refuses to make one; this is a race with a new file).
      if (this.fileEndpoints.some((f) => f.name === endpoint.name)) continue;
      const { secret, createdAt, updatedAt, ...rest } = endpoint;
      secrets.set(endpoint.name, secret);
      await add(rest, { createdAt, updatedAt });
    }
    this.resolved = resolved;
    this.secrets = secrets;
    // What changed during the load (a state made above, too) moved the counter past this: the next tick loads again.
    this.version = version;
  }

  all(): readonly ResolvedWebhook[] {
    return this.resolved;
  }

  get(name: string): ResolvedWebhook | undefined {
    return this.resolved.find((e) => e.name === name);
  }

  /** Endpoints that take events now. */
  enabled(): ResolvedWebhook[] {
    return this.resolved.filter((e) => e.state.disabled === null);
  }

  /** Enabled endpoints that take a campaign's events. */
  forCampaign(campaignId: string): ResolvedWebhook[] {
    return this.enabled().filter((e) => subscribesTo(e, campaignId));
  }

  maskFor(campaignId: string): string {
    return eventMask(this.enabled(), campaignId);
  }

  /** The secret of an endpoint made through the API (a file endpoint's comes from its file or variable). */
  storedSecret(name: string): string | undefined {
    return this.secrets.get(name);
  }
}

/** An endpoint as the outbox scripts see it. */
export function outboxReader(endpoint: ResolvedWebhook): OutboxReader {
  return { name: endpoint.name, epoch: endpoint.state.epoch, start: `${endpoint.state.since}-0` };
}
