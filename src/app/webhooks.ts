import { randomBytes } from 'node:crypto';
import { DomainError, ErrorCodes } from '../domain/errors.js';
import type { WebhookEndpoint, WebhookRetry } from '../domain/webhooks.js';
import type { Clock, DeadLetter, StoredWebhook, WebhookStore } from './ports.js';
import { freshState, type ResolvedWebhook, type WebhookRegistry } from './webhook-registry.js';

/** An endpoint's retry settings, as the API and WEBHOOKS_FILE name them. */
interface RetryFields {
  maxAttempts: number;
  retryBaseMs: number;
  retryMaxMs: number;
  retryForMs: number;
}

/** An endpoint as the API shows it: never its secret. */
export interface WebhookView extends RetryFields {
  name: string;
  url: string;
  events: string[];
  campaigns: string[] | null;
  tps: number;
  timeoutMs: number;
  /** `file`: from WEBHOOKS_FILE (change the file to change it); `api`: made here. */
  source: 'file' | 'api';
  enabled: boolean;
  /** Why and since when it is disabled (a 410 from the endpoint, or an operator). */
  disabled: { at: string; reason: string } | null;
  /** It takes the events of steps from this instant on. */
  since: string;
  createdAt: string | null;
  updatedAt: string | null;
  deadLetters: number;
}

/** What a new endpoint, or a change to one, may say (the API's schemas check the values). */
export interface WebhookInput extends RetryFields {
  url: string;
  events: WebhookEndpoint['events'];
  campaigns?: string[] | null;
  tps: number;
  timeoutMs: number;
  secret?: string;
}

export type DeadLetterView = Omit<DeadLetter, 'body' | 'firstAttemptAt' | 'deadAt' | 'replay'> & {
  firstAttemptAt: string;
  deadAt: string;
  replay: { attempts: number; nextAt: string } | null;
  /** The body as sent (in the listing only when asked for). */
  payload?: unknown;
};

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function retryOf(input: RetryFields): WebhookRetry {
  return { maxAttempts: input.maxAttempts, baseMs: input.retryBaseMs, maxMs: Math.max(input.retryBaseMs, input.retryMaxMs), forMs: input.retryForMs };
}

export function deadLetterView(letter: DeadLetter, withBody: boolean): DeadLetterView {
  const { body, firstAttemptAt, deadAt, replay, ...rest } = letter;
  return {
    ...rest,
    firstAttemptAt: iso(firstAttemptAt),
    deadAt: iso(deadAt),
    replay: replay ? { attempts: replay.attempts, nextAt: iso(replay.nextAt) } : null,
    ...(withBody ? { payload: JSON.parse(body) as unknown } : {}),
  };
}

/**
 * Webhook endpoints through the API: made, changed, enabled again, removed;
 * their dead letters listed and replayed. Secrets are write-only: made (or
 * given) at creation and shown in that answer only.
 */
export class Webhooks {
  constructor(private readonly deps: { registry: WebhookRegistry; store: WebhookStore; clock: Clock }) {}

  private async view(endpoint: ResolvedWebhook): Promise<WebhookView> {
    const { state, retry } = endpoint;
    return {
      name: endpoint.name,
      url: endpoint.url,
      events: endpoint.events,
      campaigns: endpoint.campaigns,
      tps: endpoint.tps,
      timeoutMs: endpoint.timeoutMs,
      ...retryInputOf(retry),
      source: endpoint.source,
      enabled: state.disabled === null,
      disabled: state.disabled ? { at: iso(state.disabled.at), reason: state.disabled.reason } : null,
      since: iso(state.since),
      createdAt: endpoint.createdAt === null ? null : iso(endpoint.createdAt),
      updatedAt: endpoint.updatedAt === null ? null : iso(endpoint.updatedAt),
      deadLetters: await this.deps.store.deadLetterCount(endpoint.name),
    };
  }

  private async find(name: string): Promise<ResolvedWebhook> {
    await this.deps.registry.refresh();
    const endpoint = this.deps.registry.get(name);
    if (!endpoint) throw new DomainError(ErrorCodes.WEBHOOK_NOT_FOUND, `webhook ${JSON.stringify(name)} does not exist`);
    return endpoint;
  }

  async list(): Promise<{ items: WebhookView[] }> {
    await this.deps.registry.refresh();
    return { items: await Promise.all(this.deps.registry.all().map((e) => this.view(e))) };
  }

  async get(name: string): Promise<WebhookView> {
    return this.view(await this.find(name));
  }

  /** Makes an endpoint; answers it with its secret (given, or made here), the one time the secret is shown. */
  async create(name: string, input: WebhookInput): Promise<WebhookView & { secret: string }> {
    const { registry, store } = this.deps;
    await registry.refresh();
    const taken = () => new DomainError(ErrorCodes.WEBHOOK_EXISTS, `a webhook named ${JSON.stringify(name)} exists already`);
    if (registry.get(name)) throw taken();
    const now = Date.now();
    const secret = input.secret ?? `whsec_${randomBytes(32).toString('base64')}`;
    const endpoint: StoredWebhook = {
      name,
      url: input.url,
      events: input.events,
      campaigns: input.campaigns ?? null,
      tps: input.tps,
      timeoutMs: input.timeoutMs,
      retry: retryOf(input),
      source: 'api',
      secret,
      createdAt: now,
      updatedAt: now,
    };
    if (!(await store.save(endpoint, true))) throw taken();
    // Whatever state an earlier endpoint of this name left is not this one's (the epoch is a time: new).
    await store.setState(name, freshState(await this.deps.clock.serverTime()));
    await registry.refresh(true);
    return { ...(await this.get(name)), secret };
  }

  /**
   * Changes an endpoint. `enabled: true` enables one that was disabled: it
   * takes events from then on (what happened while it was disabled is not
   * kept for it). New `events` or `campaigns` take effect within a second,
   * its place in each outbox kept. A file endpoint can only be enabled or
   * disabled here.
   */
  async update(name: string, patch: Partial<WebhookInput> & { enabled?: boolean }): Promise<WebhookView> {
    const { registry, store } = this.deps;
    const endpoint = await this.find(name);
    const { enabled, ...fields } = patch;
    if (endpoint.source === 'file' && Object.keys(fields).length > 0) {
      throw new DomainError(ErrorCodes.INVALID_STATE, `webhook ${name} is defined in WEBHOOKS_FILE: change it there (here it can only be enabled or disabled)`);
    }
    const now = Date.now();
    let state = endpoint.state;
    if (enabled === true && state.disabled !== null) state = freshState(await this.deps.clock.serverTime());
    if (enabled === false && state.disabled === null) state = { ...state, disabled: { at: now, reason: 'disabled through the API' } };
    if (endpoint.source === 'api' && Object.keys(fields).length > 0) {
      const stored = (await store.list()).find((e) => e.name === name);
      if (!stored) throw new DomainError(ErrorCodes.WEBHOOK_NOT_FOUND, `webhook ${JSON.stringify(name)} does not exist`);
      const merged = { ...retryInputOf(stored.retry), ...fields };
      await store.save(
        {
          ...stored,
          url: merged.url ?? stored.url,
          events: merged.events ?? stored.events,
          campaigns: merged.campaigns === undefined ? stored.campaigns : merged.campaigns,
          tps: merged.tps ?? stored.tps,
          timeoutMs: merged.timeoutMs ?? stored.timeoutMs,
          retry: retryOf(merged),
          secret: merged.secret ?? stored.secret,
          updatedAt: now,
        },
        false,
      );
    }
    if (state !== endpoint.state) await store.setState(name, state);
    await registry.refresh(true);
    return this.get(name);
  }

  async remove(name: string): Promise<{ name: string; removed: true }> {
    const endpoint = await this.find(name);
    if (endpoint.source === 'file') throw new DomainError(ErrorCodes.INVALID_STATE, `webhook ${name} is defined in WEBHOOKS_FILE: remove it there`);
    await this.deps.store.remove(name);
    await this.deps.store.forget(name);
    await this.deps.registry.refresh(true);
    return { name, removed: true };
  }

  async deadLetters(
    name: string,
    limit: number,
    cursor: string | undefined,
    withPayload: boolean,
    campaignId?: string,
  ): Promise<{ items: DeadLetterView[]; nextCursor: string | null; total: number }> {
    await this.find(name);
    if (cursor !== undefined && !/^\d{1,9}$/.test(cursor)) {
      throw new DomainError(ErrorCodes.VALIDATION_FAILED, 'cursor is not one this API returned', { path: ['cursor'] });
    }
    const page = await this.deps.store.deadLetters(name, limit, cursor, campaignId);
    return { items: page.items.map((l) => deadLetterView(l, withPayload)), nextCursor: page.nextCursor, total: await this.deps.store.deadLetterCount(name) };
  }

  /** Sends dead letters again (`ids`, or all of them), from now, under their own ids; one delivered leaves the list. */
  async replay(name: string, ids: readonly string[] | null): Promise<{ replaying: number }> {
    const endpoint = await this.find(name);
    if (endpoint.state.disabled)
      throw new DomainError(ErrorCodes.INVALID_STATE, `webhook ${name} is disabled (${endpoint.state.disabled.reason}): enable it first`);
    return { replaying: await this.deps.store.replay(name, ids, Date.now()) };
  }
}

function retryInputOf(retry: WebhookRetry): RetryFields {
  return { maxAttempts: retry.maxAttempts, retryBaseMs: retry.baseMs, retryMaxMs: retry.maxMs, retryForMs: retry.forMs };
}
