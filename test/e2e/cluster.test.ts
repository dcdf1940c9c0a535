import { Cluster } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { onCleanup } from '../helpers/cleanup.js';
import { maxInWindow } from '../helpers/mock-provider.js';
import { redisClusterAvailable, startRedisCluster, type RedisCluster } from '../helpers/redis-cluster.js';
import { launchCampaign, range, stacksPerTest, waitForStatus, type Stack, type StackOptions } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';

/**
 * pushq on a real Redis Cluster (3 masters on local ports): the campaign end
 * to end, the provider cap, a SIGKILLed worker, pages spread over every
 * master, and a master killed mid-campaign with its replica taking over.
 */
const available = redisClusterAvailable();
if (!available) console.warn('Redis Cluster tests skipped: redis-server and redis-cli are needed on PATH (apt-get install redis-server)');

const SHARDS = 6;

describe.skipIf(!available)('on a Redis Cluster', () => {
  let cluster: RedisCluster | null = null;
  // Each test starts its cluster first: cleanups run last first, so its stacks stop before it.
  const start = stacksPerTest();
  const startCluster = async (options: Parameters<typeof startRedisCluster>[0]) => {
    const started = await startRedisCluster(options);
    onCleanup(() => started.stop());
    return started;
  };
  const setup = (options: StackOptions) => start({ ...options, redisUrl: cluster!.url, env: { SEND_SHARDS: String(SHARDS), ...options.env } });

  /** Completed send jobs per master port, from each shard queue's completed set. */
  async function completedByMaster(stack: Stack): Promise<Map<number, number>> {
    const client = new Cluster(cluster!.nodes.slice(0, 1));
    try {
      const perMaster = new Map<number, number>();
      for (let shard = 0; shard < SHARDS; shard++) {
        const key = `${stack.prefix}:{send-${shard}}:completed`;
        const done = await client.zcard(key);
        const port = (await cluster!.masterFor(key)).port;
        perMaster.set(port, (perMaster.get(port) ?? 0) + done);
      }
      return perMaster;
    } finally {
      client.disconnect();
    }
  }

  it('sends a campaign exactly once under the cap, through a SIGKILLed worker, with pages on every master', async () => {
    cluster = await startCluster({ masters: 3 });
    const stack = await setup({ workers: 3, mock: { latencyMs: 20 }, provider: { tps: 400 } });
    const { client, mock, workers } = stack;
    const id = await launchCampaign(client, range(4000, 'r'));
    await waitFor(() => mock.arrivals.length >= 1000, { timeoutMs: 30_000, what: 'a quarter of the campaign' });
    await workers[0]!.kill('SIGKILL');
    const done = await waitForStatus(client, id, 'completed', 90_000);

    expect(mock.duplicates()).toBe(0);
    expect(done.counts.sent + done.counts.unknown).toBe(4000);
    expect(done.counts.pending).toBe(0);
    expect(mock.deliveries().size).toBeGreaterThanOrEqual(done.counts.sent);
    // The cap, measured where the provider sees requests arrive.
    expect(maxInWindow(mock.arrivals.map((a) => a.at))).toBeLessThanOrEqual(400);
    // 40 pages over 6 shard queues on 3 masters: every master carried some.
    const perMaster = await completedByMaster(stack);
    expect([...perMaster.keys()].sort()).toEqual((await cluster.masters()).map((m) => m.port).sort());
    for (const n of perMaster.values()) expect(n).toBeGreaterThan(0);
    // The readiness check looked at every master.
    const ready = (await client.request('GET', '/readyz')).body;
    expect(ready.redis).toMatchObject({ clusterMasters: 3, maxmemoryPolicy: 'noeviction' });
  }, 180_000);

  it('carries on when a master dies mid-campaign and its replica takes over, sending nothing twice (strict WAIT: sending waits for the old master to rejoin as a replica)', async () => {
    cluster = await startCluster({ masters: 3, replicasPerMaster: 1, appendfsync: 'always' });
    const stack = await setup({ workers: 2, mock: { latencyMs: 20 }, provider: { tps: 500 }, env: { REDIS_WAIT_REPLICAS: '1' } });
    const { client, mock, prefix } = stack;
    const id = await launchCampaign(client, range(4000, 'f'));
    await waitFor(() => mock.arrivals.length >= 1000, { timeoutMs: 30_000, what: 'a quarter of the campaign' });
    // The master that holds this campaign's ledger.
    const victim = await cluster.masterFor(`${prefix}:{c:${id}}:meta`);
    await cluster.kill(victim.port);
    await waitFor(async () => (await cluster!.masterFor(`${prefix}:{c:${id}}:meta`)).port !== victim.port, {
      timeoutMs: 30_000,
      what: 'a replica to take over',
    });
    // The promoted master has no replica: under REDIS_WAIT_MODE=strict (the default) nothing of this campaign is
    // sent until one acknowledges claims again. The old master comes back and rejoins as its replica.
    const arrivalsAtFailover = mock.arrivals.length;
    await cluster.restart(victim.port);
    const done = await waitForStatus(client, id, 'completed', 60_000);
    expect(mock.arrivals.length).toBeGreaterThan(arrivalsAtFailover);
    console.info(
      `failover test: sent ${done.counts.sent}, unknown ${done.counts.unknown}, delivered ${mock.deliveries().size}, duplicates ${mock.duplicates()}`,
    );
    expect(mock.duplicates()).toBe(0);
    expect(done.counts.pending).toBe(0);
    expect(done.counts.sent + done.counts.unknown + done.counts.failed).toBe(4000);
    expect(mock.deliveries().size).toBeGreaterThanOrEqual(done.counts.sent);
  }, 180_000);
});
