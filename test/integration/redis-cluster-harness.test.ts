import { afterEach, describe, expect, it } from 'vitest';
import { Cluster } from 'ioredis';
import { redisClusterAvailable, startRedisCluster, type RedisCluster } from '../helpers/redis-cluster.js';
import { waitFor } from '../helpers/wait.js';

const available = redisClusterAvailable();
if (!available) {
  console.warn('redis-cluster-harness: skipped, needs redis-server and redis-cli on PATH to start a local Redis Cluster');
}

const clusters: RedisCluster[] = [];
const clients: Cluster[] = [];
afterEach(async () => {
  clients.splice(0).forEach((c) => c.disconnect());
  await Promise.all(clusters.splice(0).map((c) => c.stop()));
});

async function start(options: Parameters<typeof startRedisCluster>[0]): Promise<RedisCluster> {
  const cluster = await startRedisCluster(options);
  clusters.push(cluster);
  return cluster;
}

function connect(cluster: RedisCluster): Cluster {
  const client = new Cluster(cluster.nodes, { redisOptions: { connectTimeout: 2_000 } });
  client.on('error', () => undefined);
  clients.push(client);
  return client;
}

describe.skipIf(!available)('Redis Cluster test harness', () => {
  it('starts a real three-master cluster that ioredis can use', async () => {
    const cluster = await start({ masters: 3 });
    expect(cluster.nodes).toHaveLength(3);
    expect(cluster.url).toMatch(/^redis-cluster:\/\/127\.0\.0\.1:\d+,127\.0\.0\.1:\d+,127\.0\.0\.1:\d+$/);
    expect(await cluster.masters()).toHaveLength(3);

    const client = connect(cluster);
    const keys = ['{a}x', '{b}x', '{c}x'];
    for (const key of keys) await client.set(key, `value of ${key}`);
    for (const key of keys) expect(await client.get(key)).toBe(`value of ${key}`);
    // The three hash tags land on three different masters.
    const owners = await Promise.all(keys.map((k) => cluster.masterFor(k)));
    expect(new Set(owners.map((o) => o.port)).size).toBe(3);

    const info = String(await client.call('CLUSTER', 'INFO'));
    expect(info).toContain('cluster_state:ok');
    expect(info).toContain('cluster_slots_ok:16384');

    await expect(client.eval("return redis.call('GET', KEYS[1])", 2, '{a}x', '{b}x')).rejects.toThrow(/CROSSSLOT/);
  });

  it('promotes a replica when a master is SIGKILLed and the client reads the data back', async () => {
    const cluster = await start({ masters: 3, replicasPerMaster: 1, appendfsync: 'always' });
    expect(cluster.nodes).toHaveLength(6);

    const client = connect(cluster);
    const keys = ['{a}x', '{b}x', '{c}x'];
    for (const key of keys) await client.set(key, `value of ${key}`);
    const owner = await cluster.masterFor('{a}x');
    // Replication is asynchronous: only kill once the replica has the writes.
    await cluster.waitForReplicaSync();

    await cluster.kill(owner.port);
    const killedAt = Date.now();
    const promoted = await waitFor(
      async () => {
        const now = await cluster.masterFor('{a}x');
        return now.port !== owner.port && now;
      },
      { timeoutMs: 20_000, intervalMs: 100, what: `a replica to take over from ${owner.port}` },
    );
    const failoverMs = Date.now() - killedAt;
    await cluster.waitForHealthy(20_000);
    console.info(`redis-cluster-harness: replica ${promoted.port} took over from ${owner.port} after ${failoverMs} ms`);

    expect(cluster.nodes.map((n) => n.port)).toContain(promoted.port);
    expect(await cluster.masters()).toHaveLength(3);
    for (const key of keys) {
      expect(await waitFor(async () => (await client.get(key)) ?? undefined, { timeoutMs: 15_000, intervalMs: 100, what: `client to read ${key} back` })).toBe(
        `value of ${key}`,
      );
    }
  });
});
