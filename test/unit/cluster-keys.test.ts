import calculateSlot from 'cluster-key-slot';
import { describe, expect, it } from 'vitest';
import { clusterTarget, safeUrl } from '../../src/adapters/redis/connection.js';
import { Keys } from '../../src/adapters/redis/keys.js';
import { queueLayout, shardOf } from '../../src/adapters/redis/queues.js';
import { assertOneSlot } from '../../src/adapters/redis/scripts.js';
import { loadConfig } from '../../src/config.js';

describe('Redis Cluster addressing', () => {
  it('reads redis-cluster:// URLs and hides their password', () => {
    expect(clusterTarget('redis://127.0.0.1:6379')).toBeNull();
    expect(clusterTarget('redis-cluster://10.0.0.1:7000,10.0.0.2:7001,node3')).toEqual({
      nodes: [
        { host: '10.0.0.1', port: 7000 },
        { host: '10.0.0.2', port: 7001 },
        { host: 'node3', port: 6379 },
      ],
      tls: false,
    });
    expect(clusterTarget('rediss-cluster://app:s%40cret@h1:7000')).toEqual({
      nodes: [{ host: 'h1', port: 7000 }],
      username: 'app',
      password: 's@cret',
      tls: true,
    });
    expect(safeUrl('redis-cluster://app:secret@h1:7000,h2:7000')).toBe('redis-cluster://app:***@h1:7000,h2:7000');
    expect(() => clusterTarget('redis-cluster://h1:notaport')).toThrow(/host:port/);
    expect(loadConfig({ REDIS_URL: 'redis-cluster://h1:7000', SEND_SHARDS: '6' })).toMatchObject({ cluster: true, sendShards: 6 });
    expect(loadConfig({ REDIS_URL: 'redis://h1:7000' })).toMatchObject({ cluster: false, sendShards: 1, redisWaitReplicas: 0 });
  });

  it('refuses a script call whose keys span slots, before Redis would (CROSSSLOT)', () => {
    const keys = new Keys('pushq');
    const a = keys.campaign('01HZCAMPAIGNA');
    const run = a.run('main');
    expect(() => assertOneSlot('claim', [run.run, run.records(3), run.lease(3), run.leases, run.errors, a.meta()])).not.toThrow();
    const b = keys.campaign('01HZCAMPAIGNB');
    expect(() => assertOneSlot('claim', [run.run, b.meta()])).toThrow(/several cluster slots/);
    const limiter = keys.limiter('kakao');
    expect(() => assertOneSlot('permit-lease', [limiter.free, limiter.held, limiter.config])).not.toThrow();
  });

  it('gives every queue a hash tag on a cluster, spreads shards over slots, and pages over shards', () => {
    expect(queueLayout(1, false)).toEqual({ send: ['send'], schedule: 'schedule' });
    const layout = queueLayout(6, true);
    expect(layout.schedule).toBe('{schedule}');
    const slots = new Set(layout.send.map((q) => calculateSlot(`pushq:${q}:wait`)));
    expect(slots.size).toBe(6);
    // BullMQ's keys of one queue share its slot.
    for (const q of layout.send) expect(calculateSlot(`pushq:${q}:wait`)).toBe(calculateSlot(`pushq:${q}:meta`));
    // A campaign's consecutive pages go round every shard.
    const shards = Array.from({ length: 12 }, (_, page) => shardOf({ campaignId: '01HZCAMPAIGNA', page }, 6));
    expect(new Set(shards).size).toBe(6);
    expect(shardOf({ campaignId: '01HZCAMPAIGNA', page: 5 }, 6)).toBe(shards[5]);
  });
});
