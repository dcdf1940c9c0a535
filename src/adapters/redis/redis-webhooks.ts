import type { DeadLetter, StoredWebhook, WebhookState, WebhookStore } from '../../app/ports.js';
import type { RedisClient } from './connection.js';
import type { Keys } from './keys.js';

/**
 * Webhook endpoints made through the API, every endpoint's shared state, and
 * their dead letters (keys.ts: `webhooks`, `webhook-state`, `dl:{wh:<name>}`).
 */
/** Dead letters one filtered page reads at most. */
const DEAD_LETTER_SCAN = 2000;

export class RedisWebhooks implements WebhookStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
  ) {}

  async list(): Promise<StoredWebhook[]> {
    const all = await this.redis.hgetall(this.keys.webhooks());
    return Object.values(all)
      .map((json) => JSON.parse(json) as StoredWebhook)
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  async version(): Promise<number> {
    return Number((await this.redis.get(this.keys.webhooksVersion())) ?? 0);
  }

  private async bump(): Promise<void> {
    await this.redis.incr(this.keys.webhooksVersion());
  }

  async save(endpoint: StoredWebhook, create: boolean): Promise<boolean> {
    const json = JSON.stringify(endpoint);
    const written = create
      ? await this.redis.hsetnx(this.keys.webhooks(), endpoint.name, json)
      : await this.redis.hset(this.keys.webhooks(), endpoint.name, json);
    if (create && written === 0) return false;
    await this.bump();
    return true;
  }

  async remove(name: string): Promise<boolean> {
    const removed = await this.redis.hdel(this.keys.webhooks(), name);
    await this.bump();
    return removed === 1;
  }

  async states(): Promise<Map<string, WebhookState>> {
    const all = await this.redis.hgetall(this.keys.webhookState());
    return new Map(Object.entries(all).map(([name, json]) => [name, JSON.parse(json) as WebhookState]));
  }

  async ensureState(name: string, fresh: WebhookState): Promise<WebhookState> {
    if ((await this.redis.hsetnx(this.keys.webhookState(), name, JSON.stringify(fresh))) === 1) {
      await this.bump();
      return fresh;
    }
    return JSON.parse((await this.redis.hget(this.keys.webhookState(), name))!) as WebhookState;
  }

  async setState(name: string, state: WebhookState): Promise<void> {
    await this.redis.hset(this.keys.webhookState(), name, JSON.stringify(state));
    await this.bump();
  }

  async forget(name: string): Promise<void> {
    const dl = this.keys.deadLetters(name);
    await this.redis.hdel(this.keys.webhookState(), name);
    await this.redis.del(dl.letters, dl.order, dl.replay);
    await this.bump();
  }

  async addDeadLetter(letter: DeadLetter, max: number): Promise<number> {
    const dl = this.keys.deadLetters(letter.endpoint);
    await this.redis.multi().hset(dl.letters, letter.id, JSON.stringify(letter)).zadd(dl.order, letter.deadAt, letter.id).zrem(dl.replay, letter.id).exec();
    const over = (await this.redis.zcard(dl.order)) - max;
    if (over <= 0) return 0;
    const oldest = await this.redis.zrange(dl.order, 0, over - 1);
    if (oldest.length === 0) return 0;
    await this.redis
      .multi()
      .hdel(dl.letters, ...oldest)
      .zrem(dl.order, ...oldest)
      .zrem(dl.replay, ...oldest)
      .exec();
    return oldest.length;
  }

  async deadLetters(endpoint: string, limit: number, cursor?: string, campaignId?: string): Promise<{ items: DeadLetter[]; nextCursor: string | null }> {
    if (campaignId !== undefined) return this.deadLettersOf(endpoint, campaignId, limit, cursor);
    const dl = this.keys.deadLetters(endpoint);
    const start = cursor === undefined ? 0 : Number(cursor);
    const ids = await this.redis.zrevrange(dl.order, start, start + limit);
    const shown = ids.slice(0, limit);
    const items = shown.length > 0 ? await this.redis.hmget(dl.letters, ...shown) : [];
    return {
      items: items.filter((json): json is string => json !== null).map((json) => JSON.parse(json) as DeadLetter),
      nextCursor: ids.length > limit ? String(start + limit) : null,
    };
  }

  /** One campaign's dead letters: the list scanned newest first, at most DEAD_LETTER_SCAN per call (the cursor goes on from there). */
  private async deadLettersOf(
    endpoint: string,
    campaignId: string,
    limit: number,
    cursor?: string,
  ): Promise<{ items: DeadLetter[]; nextCursor: string | null }> {
    const dl = this.keys.deadLetters(endpoint);
    const items: DeadLetter[] = [];
    let at = cursor === undefined ? 0 : Number(cursor);
    const end = at + DEAD_LETTER_SCAN;
    while (items.length < limit && at < end) {
      const ids = await this.redis.zrevrange(dl.order, at, at + 199);
      if (ids.length === 0) return { items, nextCursor: null };
      const letters = await this.redis.hmget(dl.letters, ...ids);
      for (const [i, json] of letters.entries()) {
        const letter = json === null ? null : (JSON.parse(json) as DeadLetter);
        if (letter?.campaignId === campaignId) items.push(letter);
        if (items.length === limit) return { items, nextCursor: String(at + i + 1) };
      }
      at += ids.length;
    }
    return { items, nextCursor: (await this.redis.zcard(dl.order)) > at ? String(at) : null };
  }

  deadLetterCount(endpoint: string): Promise<number> {
    return this.redis.zcard(this.keys.deadLetters(endpoint).order);
  }

  async replay(endpoint: string, ids: readonly string[] | null, at: number): Promise<number> {
    const dl = this.keys.deadLetters(endpoint);
    const chosen = ids === null ? await this.redis.zrange(dl.order, 0, -1) : ids;
    if (chosen.length === 0) return 0;
    const found = await this.redis.hmget(dl.letters, ...chosen);
    let count = 0;
    const tx = this.redis.multi();
    found.forEach((json) => {
      if (json === null) return;
      const letter = JSON.parse(json) as DeadLetter;
      letter.replay = { attempts: 0, nextAt: at, firstAt: at };
      tx.hset(dl.letters, letter.id, JSON.stringify(letter)).zadd(dl.replay, at, letter.id);
      count += 1;
    });
    if (count > 0) await tx.exec();
    return count;
  }

  async replayDue(endpoint: string, now: number, limit: number): Promise<DeadLetter[]> {
    const dl = this.keys.deadLetters(endpoint);
    const ids = await this.redis.zrangebyscore(dl.replay, '-inf', now, 'LIMIT', 0, limit);
    if (ids.length === 0) return [];
    const found = await this.redis.hmget(dl.letters, ...ids);
    return found.filter((json): json is string => json !== null).map((json) => JSON.parse(json) as DeadLetter);
  }

  async updateDeadLetter(letter: DeadLetter): Promise<void> {
    const dl = this.keys.deadLetters(letter.endpoint);
    // Dropped meanwhile (past the limit, or the endpoint removed): not brought back.
    if ((await this.redis.zscore(dl.order, letter.id)) === null) return;
    const tx = this.redis.multi().hset(dl.letters, letter.id, JSON.stringify(letter));
    if (letter.replay) tx.zadd(dl.replay, letter.replay.nextAt, letter.id);
    else tx.zrem(dl.replay, letter.id);
    await tx.exec();
  }

  async removeDeadLetter(endpoint: string, id: string): Promise<void> {
    const dl = this.keys.deadLetters(endpoint);
    await this.redis.multi().hdel(dl.letters, id).zrem(dl.order, id).zrem(dl.replay, id).exec();
  }
}
