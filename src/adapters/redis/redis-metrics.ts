import type { MetricsBoard } from '../../app/ports.js';
import type { RedisClient } from './connection.js';
import type { Keys } from './keys.js';

/** Worker processes' metric snapshots in Redis (one key each, with a time to live) and who was seen when. */
export class RedisMetricsBoard implements MetricsBoard {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
  ) {}

  async publish(instance: string, snapshot: string, ttlMs: number): Promise<void> {
    await this.redis.set(this.keys.metricsSnapshot(instance), snapshot, 'PX', ttlMs);
    await this.redis.zadd(this.keys.workers(), Date.now(), instance);
  }

  async recent(withinMs: number): Promise<string[]> {
    // Who has not been seen for ten times that long is forgotten.
    await this.redis.zremrangebyscore(this.keys.workers(), '-inf', Date.now() - 10 * withinMs);
    return this.redis.zrangebyscore(this.keys.workers(), Date.now() - withinMs, '+inf');
  }

  async snapshots(instances: readonly string[]): Promise<Array<string | null>> {
    // One GET each: on a cluster the snapshots live in different slots.
    return Promise.all(instances.map((instance) => this.redis.get(this.keys.metricsSnapshot(instance))));
  }
}
