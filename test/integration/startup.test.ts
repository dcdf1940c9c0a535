import { mkdtempSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { startEmbeddedRedis, startRedisIfAbsent } from '../../src/adapters/redis/embedded.js';
import { ApiClient } from '../helpers/api-client.js';
import { spawnPushq, startApiProcess } from '../helpers/processes.js';
import { freePort, startOwnRedis, type OwnRedis } from '../helpers/redis-server.js';
import { deletePrefix, TEST_REDIS_URL, testRedis, uniquePrefix } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';

const servers: OwnRedis[] = [];
const prefixes: string[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.kill()));
});

/** Runs an entry point to its exit and returns what it printed. */
async function runToExit(entry: 'start' | 'api' | 'worker', env: Record<string, string | undefined>) {
  const proc = spawnPushq(entry, env);
  const exit = await Promise.race([
    proc.exited,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`still running: ${proc.output}`)), 20_000)),
  ]);
  return { ...exit, output: proc.output.trim() };
}

describe('process start', () => {
  it('exits non-zero with one clear line when Redis cannot be reached', async () => {
    const port = await freePort();
    const { code, output } = await runToExit('worker', { REDIS_URL: `redis://:s3cret@127.0.0.1:${port}` });
    expect(code).toBe(1);
    expect(output.split('\n')).toHaveLength(1);
    expect(output).toMatch(new RegExp(`^pushq: cannot reach Redis at redis://:\\*\\*\\*@127\\.0\\.0\\.1:${port} .*redis-server`));
    expect(output).not.toContain('s3cret');
  });

  it('exits with one line naming a bad variable', async () => {
    const { code, output } = await runToExit('api', { PORT: 'eighty' });
    expect(code).toBe(2);
    expect(output).toMatch(/^pushq: invalid configuration: PORT .*"eighty"/);
    expect(output.split('\n')).toHaveLength(1);
    const prod = await runToExit('api', { NODE_ENV: 'production', ADMIN_TOKEN: undefined });
    expect(prod.code).toBe(2);
    expect(prod.output).toBe('pushq: invalid configuration: ADMIN_TOKEN must be set when NODE_ENV=production');
  });

  it('refuses a Redis that may evict keys', async () => {
    const lru = await startOwnRedis(['--maxmemory-policy', 'allkeys-lru']);
    servers.push(lru);
    const { code, output } = await runToExit('worker', { REDIS_URL: lru.url });
    expect(code).toBe(1);
    expect(output).toMatch(/^pushq: Redis at .* has maxmemory-policy allkeys-lru; pushq needs noeviction/);
  });

  it('generates and prints an admin token when none is set, outside production', async () => {
    const prefix = uniquePrefix('token');
    prefixes.push(prefix);
    const proc = spawnPushq('api', { REDIS_URL: TEST_REDIS_URL, QUEUE_PREFIX: prefix, PORT: '0', ADMIN_TOKEN: undefined, NODE_ENV: 'development' });
    try {
      const [, token] = await proc.waitForOutput(/generated one for this process[^:]*: (\S+)\n/);
      const [, url] = await proc.waitForOutput(/"url":"(http:[^"]+)"/);
      const client = new ApiClient(url!, token!);
      expect((await client.request('GET', '/api/campaigns')).status).toBe(200);
      expect((await new ApiClient(url!, 'guess').request('GET', '/api/campaigns')).status).toBe(401);
      expect(proc.output.match(new RegExp(token!, 'g'))).toHaveLength(1);
    } finally {
      await proc.kill('SIGTERM');
    }
    expect((await proc.exited).code).toBe(0);
  });
});

describe('the one-machine default Redis', () => {
  it('starts a persistent, non-evicting redis-server under the data directory and stops it', async () => {
    const port = await freePort();
    const dataDir = join(mkdtempSync(join(tmpdir(), 'pushq-data-')), 'data');
    const embedded = await startEmbeddedRedis({ port, dataDir });
    const redis = new Redis(embedded.url);
    try {
      expect(await redis.config('GET', 'appendonly')).toEqual(['appendonly', 'yes']);
      expect(await redis.config('GET', 'maxmemory-policy')).toEqual(['maxmemory-policy', 'noeviction']);
      expect(await redis.config('GET', 'dir')).toEqual(['dir', dataDir]);
      await redis.set('k', 'v');
    } finally {
      redis.disconnect();
      await embedded.stop();
    }
    expect(() => process.kill(embedded.pid, 0)).toThrow();
    expect(existsSync(join(dataDir, 'appendonlydir'))).toBe(true);
  });

  it('is started only when REDIS_URL is unset and nothing answers', async () => {
    const port = await freePort();
    const dataDir = mkdtempSync(join(tmpdir(), 'pushq-data-'));
    expect(await startRedisIfAbsent({ urlDefaulted: false, defaultUrl: `redis://127.0.0.1:${port}`, dataDir })).toBeNull();
    expect(await startRedisIfAbsent({ urlDefaulted: true, defaultUrl: TEST_REDIS_URL, dataDir })).toBeNull();
    const started = await startRedisIfAbsent({ urlDefaulted: true, defaultUrl: `redis://127.0.0.1:${port}`, dataDir });
    expect(started?.url).toBe(`redis://127.0.0.1:${port}`);
    await started?.stop();
  });
});

describe('losing Redis while running', () => {
  it('answers 503 and changes nothing while Redis is away, then carries on by itself', async () => {
    const own = await startOwnRedis(['--appendonly', 'yes', '--appendfsync', 'always']);
    servers.push(own);
    const { process: proc, url: base } = await startApiProcess({ REDIS_URL: own.url, ADMIN_TOKEN: 'tok-lost-redis' });
    try {
      const client = new ApiClient(base, 'tok-lost-redis');
      await client.createCampaign({ provider: 'sim', recipients: ['a'] });
      await own.kill();
      const down = await waitFor(async () => {
        const res = await client.request('POST', '/api/campaigns', { name: 'x', provider: 'sim', message: { title: 't', body: 'b' }, recipients: ['b'] });
        return res.status === 503 ? res : undefined;
      });
      expect(down.body.error.code).toBe('STORE_UNAVAILABLE');
      expect(down.body.error.message).not.toMatch(/at .*\.ts/);
      expect((await fetch(`${base}/readyz`)).status).toBe(503);
      await own.start();
      await waitFor(async () => (await fetch(`${base}/readyz`)).status === 200, { timeoutMs: 15_000, what: 'readyz back to 200' });
      const list = await client.request('GET', '/api/campaigns');
      expect(list.status).toBe(200);
      expect(list.body.items).toHaveLength(1);
    } finally {
      await proc.kill('SIGKILL');
    }
  });
});

afterAll(async () => {
  const redis = testRedis();
  for (const prefix of prefixes) await deletePrefix(redis, prefix);
  redis.disconnect();
});
