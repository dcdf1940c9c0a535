import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { Keys } from '../../src/adapters/redis/keys.js';
import { TEST_TOKEN } from '../helpers/fixtures.js';
import { testConnection } from '../helpers/redis.js';
import { createCampaign, stacksPerTest } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Numbers a client sends, against real processes: a count or a length in a
 * header sizes nothing, so no header can exhaust the process's memory, and a
 * record that would make the supervisor's sweep do unbounded work (as one
 * left behind by an older version could) is dropped in bounded steps.
 */
const stack = stacksPerTest();

describe('client-supplied numbers', () => {
  it('answers a refused upload announcing 2^53-1 rows with 4xx, and the process stays up', async () => {
    const { client, api, workers } = await stack({ workers: 1 });
    const id = await createCampaign(client, []);
    for (const headers of [{ 'x-recipient-count': '9007199254740991' }, { 'x-recipient-count': '90071992547409' }, { 'x-recipient-count': '1e300' }]) {
      const res = await request(`${client.baseUrl}/api/campaigns/${id}/recipients`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'text/csv', ...headers },
        body: 'id\na\n',
        headersTimeout: 20_000,
        bodyTimeout: 20_000,
      });
      expect(res.statusCode, JSON.stringify(headers)).toBeGreaterThanOrEqual(400);
      expect(res.statusCode).toBeLessThan(500);
      await res.body.dump();
    }
    expect(api.alive && workers[0]!.alive).toBe(true);
    expect((await client.campaign(id)).recipientCount).toBe(0);
    expect((await request(`${client.baseUrl}/healthz`)).statusCode).toBe(200);
  });

  it('drops an abandoned upload whose record claims 2^53-1 index buckets without the supervisor dying on it', async () => {
    const { client, prefix, workers } = await stack({ workers: 1 });
    const id = await createCampaign(client, []);
    const redis = testConnection();
    const keys = new Keys(prefix);
    const k = keys.campaign(id);
    // What an upload refused by an older version left: its staging record, two index buckets, idle for an hour.
    const version = 7;
    await redis.hset(k.staging(version), { accepted: 2, pages: 0, buckets: '9007199254740991', pageSize: 1000, startedAt: Date.now() - 3_600_000 });
    await redis.hset(k.bucket(version, 12345678901), 'a', 0);
    await redis.hset(k.bucket(version, 3), 'b', 1);
    await redis.zadd(keys.stagings(), Date.now() - 3_600_000, `${id}|${version}`);

    await waitFor(async () => ((await redis.zcard(keys.stagings())) === 0 ? true : undefined), {
      timeoutMs: 20_000,
      what: 'the supervisor to drop the staging',
    });
    expect(await redis.exists(k.staging(version), k.bucket(version, 12345678901), k.bucket(version, 3))).toBe(0);
    expect(workers[0]!.alive).toBe(true);
    // Logged right after the drop: wait for the line rather than race it.
    await waitFor(() => /dropped recipient uploads abandoned half-way/.test(workers[0]!.output), { timeoutMs: 5000, what: 'the log line' });
  });
});
