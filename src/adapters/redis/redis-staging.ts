import { unlinkMatching, type RedisClient } from './connection.js';
import type { Staging } from '../../app/ports.js';
import { indexBuckets, MAX_INDEX_BUCKETS, type RecipientLayout } from '../../domain/campaign.js';
import { campaignNotFound } from '../../domain/errors.js';
import { FieldNames, recipientId, type StoredRecipient } from '../../domain/recipient.js';
import type { CampaignKeys, Keys } from './keys.js';
import { bucketOf, encodePage } from './page-codec.js';
import type { Scripts } from './scripts.js';

/** Most pages a staged list can have: the most rows an upload can hold at the smallest page size. */
const MAX_PAGES = 1 << 30;

/**
 * A recipient list being written beside the current one, chunk by chunk, with
 * memory bounded by one page: ids are deduplicated in Redis (the staged index
 * itself), full pages are written as they fill. Invisible until a Lua swap
 * makes it current; dropped whole if anything goes wrong, and by the
 * supervisor if its writer vanished.
 */
export class RedisStaging implements Staging {
  private page: StoredRecipient[] = [];
  private pagesWritten = 0;
  private total = 0;
  private readonly names = new FieldNames();
  private readonly k: CampaignKeys;

  private constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly scripts: Scripts,
    private readonly campaignId: string,
    readonly version: number,
    readonly buckets: number,
    private readonly pageSize: number,
  ) {
    this.k = keys.campaign(campaignId);
  }

  /** `expectedRows` sizes the index (about 64 ids per bucket); a guess is fine. */
  static async begin(redis: RedisClient, keys: Keys, scripts: Scripts, campaignId: string, expectedRows: number, pageSize: number): Promise<RedisStaging> {
    const k = keys.campaign(campaignId);
    const version = Number(await scripts.run('campaign-counter', [k.meta()], ['rvSeq']));
    if (version < 0) throw campaignNotFound(campaignId);
    const buckets = indexBuckets(expectedRows);
    await redis.hset(k.staging(version), { accepted: 0, pages: 0, buckets, pageSize, startedAt: Date.now() });
    await redis.zadd(keys.stagings(), Date.now(), `${campaignId}|${version}`);
    return new RedisStaging(redis, keys, scripts, campaignId, version, buckets, pageSize);
  }

  async add(rows: readonly StoredRecipient[]): Promise<boolean[]> {
    if (rows.length === 0) return [];
    const args: Array<string | number> = [this.k.bucketPrefix(this.version)];
    for (const row of rows) {
      const id = recipientId(row);
      args.push(bucketOf(id, this.buckets), id);
    }
    const flags = String(await this.scripts.run('stage-rows', [this.k.staging(this.version)], args));
    const fresh = rows.map((_, i) => flags[i] === '1');
    for (const [i, row] of rows.entries()) {
      if (!fresh[i]) continue;
      this.names.add(row);
      this.page.push(row);
      this.total += 1;
      if (this.page.length === this.pageSize) await this.flushPage();
    }
    return fresh;
  }

  private async flushPage(): Promise<void> {
    if (this.page.length === 0) return;
    const page = this.pagesWritten;
    await this.redis
      .multi()
      .set(this.k.page(this.version, page), encodePage(this.page))
      .hset(this.k.staging(this.version), 'pages', page + 1)
      .exec();
    // Still alive: the supervisor drops only stagings idle for a while.
    await this.redis.zadd(this.keys.stagings(), Date.now(), `${this.campaignId}|${this.version}`);
    this.pagesWritten += 1;
    this.page = [];
  }

  async finish(): Promise<RecipientLayout> {
    await this.flushPage();
    return { total: this.total, pageSize: this.pageSize, pages: this.pagesWritten, buckets: this.buckets, version: this.version };
  }

  fields(): string[] | null {
    return this.names.list();
  }

  /** The list is in use (swapped in, or a run reads it): stop tracking it as an upload. */
  async commit(): Promise<void> {
    await this.redis.del(this.k.staging(this.version));
    await this.redis.zrem(this.keys.stagings(), `${this.campaignId}|${this.version}`);
  }

  async abort(): Promise<void> {
    await dropStaged(this.redis, this.keys, this.campaignId, this.version);
  }
}

/** Counts read back from Redis: a whole number in [0, max], else null (the record is not one this version wrote). */
function countOf(value: string | undefined, max: number): number | null {
  const n = Number(value ?? 0);
  return Number.isSafeInteger(n) && n >= 0 && n <= max ? n : null;
}

/** Unlinks keys a thousand at a time, never holding more names than that. */
async function unlinkEach(redis: RedisClient, count: number, name: (i: number) => string): Promise<void> {
  for (let from = 0; from < count; from += 1000) {
    const names = Array.from({ length: Math.min(1000, count - from) }, (_, i) => name(from + i));
    await redis.unlink(...names);
  }
}

/**
 * Deletes a staged list (as far as it got) and its bookkeeping, in bounded
 * steps: by number when its record's counts are ones this version writes,
 * else (a record from an older version, or damaged) by scanning for its keys.
 */
export async function dropStaged(redis: RedisClient, keys: Keys, campaignId: string, version: number): Promise<void> {
  const k = keys.campaign(campaignId);
  const state = await redis.hgetall(k.staging(version));
  const buckets = countOf(state.buckets, MAX_INDEX_BUCKETS);
  const pages = countOf(state.pages, MAX_PAGES);
  if (pages === null) await unlinkMatching(redis, k.page(version, 0), k.pagePrefix(version));
  else await unlinkEach(redis, pages, (page) => k.page(version, page));
  if (buckets === null) await unlinkMatching(redis, k.bucket(version, 0), k.bucketPrefix(version));
  else await unlinkEach(redis, buckets, (bucket) => k.bucket(version, bucket));
  await redis.unlink(k.staging(version));
  await redis.zrem(keys.stagings(), `${campaignId}|${version}`);
}

/**
 * Drops uploads whose writer vanished (nothing written for `olderThanMs`, never
 * committed), unless the list is in use after all (a swap that ran but
 * whose bookkeeping did not). Returns how many were dropped.
 */
export async function dropAbandonedStagings(redis: RedisClient, keys: Keys, olderThanMs: number): Promise<number> {
  const stale = await redis.zrangebyscore(keys.stagings(), '-inf', Date.now() - olderThanMs, 'LIMIT', 0, 100);
  let dropped = 0;
  for (const member of stale) {
    const [campaignId, v] = member.split('|') as [string, string];
    const version = Number(v);
    const k = keys.campaign(campaignId);
    const [current, latestRun] = await redis.hmget(k.meta(), 'rv', 'latestRun');
    const runVersion = latestRun ? await redis.hget(k.run(latestRun).run, 'rv') : null;
    if (Number(current) === version || Number(runVersion) === version) {
      await redis.del(k.staging(version));
      await redis.zrem(keys.stagings(), member);
      continue;
    }
    await dropStaged(redis, keys, campaignId, version);
    dropped += 1;
  }
  return dropped;
}
