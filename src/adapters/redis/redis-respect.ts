import { createHash, randomUUID } from 'node:crypto';
import type { RedisClient } from './connection.js';
import type { CapReservation, FrequencyCaps, Suppressions } from '../../app/ports.js';
import { CAP_BUCKETS, capIdentity, parseDuration, type FrequencyCap } from '../../domain/respect.js';
import type { Keys } from './keys.js';
import type { Scripts } from './scripts.js';

/** Named suppression lists: one Redis set each, consulted at send time. */
export class RedisSuppressions implements Suppressions {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
  ) {}

  async find(lists: readonly string[], ids: readonly string[]): Promise<Array<string | undefined>> {
    const found: Array<string | undefined> = ids.map(() => undefined);
    if (ids.length === 0 || lists.length === 0) return found;
    // One command per list (not a pipeline): the lists may live on different cluster slots.
    const replies = await Promise.all(lists.map((list) => this.redis.smismember(this.keys.suppression(list), ...ids)));
    replies.forEach((flags, l) => {
      flags.forEach((flag, i) => {
        if (flag === 1 && found[i] === undefined) found[i] = lists[l];
      });
    });
    return found;
  }

  async add(list: string, ids: readonly string[]): Promise<number> {
    if (ids.length === 0) return 0;
    const added = await this.redis.sadd(this.keys.suppression(list), ...ids);
    await this.redis.sadd(this.keys.suppressionLists(), list);
    return added;
  }

  async remove(list: string, ids: readonly string[]): Promise<number> {
    return ids.length === 0 ? 0 : this.redis.srem(this.keys.suppression(list), ...ids);
  }

  async members(list: string, cursor: string, limit: number): Promise<{ ids: string[]; nextCursor: string | null }> {
    const [next, ids] = await this.redis.sscan(this.keys.suppression(list), cursor, 'COUNT', limit);
    return { ids, nextCursor: next === '0' ? null : next };
  }

  async lists(): Promise<Array<{ name: string; size: number }>> {
    const names = (await this.redis.smembers(this.keys.suppressionLists())).sort();
    const sizes = await Promise.all(names.map((name) => this.redis.scard(this.keys.suppression(name))));
    return names.map((name, i) => ({ name, size: sizes[i]! }));
  }

  async clear(list: string): Promise<void> {
    await this.redis.unlink(this.keys.suppression(list));
  }

  async replace(list: string, fill: (add: (ids: readonly string[]) => Promise<number>) => Promise<void>): Promise<number> {
    const key = this.keys.suppression(list);
    // Same hash tag as the list (RENAME needs one slot on a cluster).
    const staging = `${key}:staging:${randomUUID()}`;
    try {
      await fill(async (ids) => {
        if (ids.length === 0) return 0;
        // The staged set expires if this process dies before the finally below unlinks it.
        const [added] = await Promise.all([this.redis.sadd(staging, ...ids), this.redis.expire(staging, 3600)]);
        return added;
      });
      const size = await this.redis.scard(staging);
      // RENAME swaps the whole set in one step: no moment with an empty list.
      if (size > 0) await this.redis.rename(staging, key);
      else await this.redis.unlink(key);
      await this.redis.sadd(this.keys.suppressionLists(), list);
      return size;
    } finally {
      await this.redis.unlink(staging);
    }
  }
}

/** Frequency counters are spread over this many hash tags (Redis Cluster slots). */
const FREQUENCY_SHARDS = 16;

function frequencyShard(id: string): number {
  return createHash('sha1').update(id).digest().readUInt16BE(0) % FREQUENCY_SHARDS;
}

export class RedisFrequencyCaps implements FrequencyCaps {
  constructor(
    private readonly keys: Keys,
    private readonly scripts: Scripts,
  ) {}

  /** Runs the script once per shard of `ids` (a shard's counters share a hash tag); answers per id the bucket and whether it fit. */
  private async run(cap: FrequencyCap, mode: 'reserve' | 'release', ids: readonly string[], bucket = 0): Promise<Array<CapReservation | null>> {
    const window = parseDuration(cap.per)!;
    const identity = capIdentity(cap);
    const shards = new Map<number, number[]>();
    ids.forEach((id, i) => {
      const shard = frequencyShard(id);
      shards.set(shard, [...(shards.get(shard) ?? []), i]);
    });
    const out: Array<CapReservation | null> = ids.map(() => null);
    await Promise.all(
      [...shards].map(async ([shard, positions]) => {
        const prefix = this.keys.frequencyPrefix(shard, identity);
        const keys = positions.map((i) => prefix + ids[i]!);
        const [counted, fits] = (await this.scripts.run('frequency-cap', keys, [Math.ceil(window / CAP_BUCKETS), CAP_BUCKETS, cap.max, mode, bucket])) as [
          number,
          string,
        ];
        positions.forEach((position, j) => (out[position] = fits[j] === '1' ? { id: ids[position]!, bucket: Number(counted) } : null));
      }),
    );
    return out;
  }

  reserve(cap: FrequencyCap, ids: readonly string[]): Promise<Array<CapReservation | null>> {
    return this.run(cap, 'reserve', ids);
  }

  async release(cap: FrequencyCap, reservations: readonly CapReservation[]): Promise<void> {
    const byBucket = new Map<number, string[]>();
    for (const r of reservations) byBucket.set(r.bucket, [...(byBucket.get(r.bucket) ?? []), r.id]);
    await Promise.all([...byBucket].map(([bucket, ids]) => this.run(cap, 'release', ids, bucket)));
  }
}
