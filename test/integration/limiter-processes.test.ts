import { spawn } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { startMockProvider } from '../helpers/mock-provider.js';
import { PushqProcess, REPO_ROOT } from '../helpers/processes.js';
import { deletePrefix, TEST_REDIS_URL, testRedis, uniquePrefix } from '../helpers/redis.js';

const prefix = uniquePrefix('limproc');
afterAll(async () => {
  const redis = testRedis();
  await deletePrefix(redis, prefix);
  redis.disconnect();
});

describe('the limiter across processes', () => {
  it('keeps every sliding second at the provider within the cap, with several processes on one provider', async () => {
    const tps = 150;
    const mock = await startMockProvider({ cap: tps });
    try {
      const clients = Array.from(
        { length: 3 },
        () =>
          new PushqProcess(
            spawn(process.execPath, ['--import', 'tsx', 'test/helpers/limiter-client.ts'], {
              cwd: REPO_ROOT,
              env: { ...process.env, REDIS_URL: TEST_REDIS_URL, QUEUE_PREFIX: prefix, TPS: String(tps), TARGET_URL: mock.url, COUNT: '150', CONCURRENCY: '10' },
              stdio: ['ignore', 'pipe', 'pipe'],
            }),
          ),
      );
      const exits = await Promise.all(clients.map((c) => c.exited));
      for (const [i, exit] of exits.entries()) expect(exit.code, clients[i]!.output).toBe(0);
      expect(mock.arrivals).toHaveLength(450);
      // Judged where the provider sees requests arrive: a strict sliding second.
      expect(mock.maxWindow(1000)).toBeLessThanOrEqual(tps);
      expect(mock.count(429)).toBe(0);
      // 450 requests at 150/s take well over two seconds; the cap was reached, not avoided.
      expect(mock.maxWindow(1000)).toBeGreaterThan(tps / 2);
    } finally {
      await mock.close();
    }
  });
});
