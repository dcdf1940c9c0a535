import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { ApiClient } from '../helpers/api-client.js';
import { onCleanup, testPrefix } from '../helpers/cleanup.js';
import { providersFile, TEST_TOKEN } from '../helpers/fixtures.js';
import { startInProcess } from '../helpers/in-process.js';
import { startOwnRedis } from '../helpers/redis-server.js';
import { range } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The memory guard, on a Redis of the test's own (so its memory is this
 * test's alone): nothing new is accepted once Redis is nearly full, a launch
 * whose ledger would take it past the watermark is refused, and a campaign
 * already running goes on sending.
 */
async function ownRedis() {
  const server = await startOwnRedis();
  onCleanup(() => server.kill());
  const redis = new Redis(server.url);
  onCleanup(() => redis.disconnect());
  const used = async () => Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
  return { server, redis, used };
}

async function pushq(url: string, env: Record<string, string> = {}, worker = false, prefix = testPrefix('mem')) {
  const running = await startInProcess(
    prefix,
    {
      REDIS_URL: url,
      PROVIDERS_FILE: providersFile([
        { name: 'sim', type: 'sim', tps: 20_000, latencyMs: 0 },
        { name: 'slow', type: 'sim', tps: 1000, latencyMs: 0 },
      ]),
      ...env,
    },
    { worker },
  );
  onCleanup(() => running.stop());
  return new ApiClient(running.url!, TEST_TOKEN);
}

const campaign = (n: number) => ({ name: 'mem', provider: 'sim', message: { title: 't', body: 'b' }, recipients: range(n, 'm') });

describe('the memory guard', () => {
  it('is off, and /readyz says so, when neither Redis maxmemory nor MEMORY_LIMIT_BYTES gives a limit', async () => {
    const { server } = await ownRedis();
    const client = await pushq(server.url);
    expect((await client.request('POST', '/api/campaigns', campaign(10))).status).toBe(201);
    const ready = await client.request('GET', '/readyz');
    expect(ready.body.warnings).toContain(
      'Redis has no maxmemory and MEMORY_LIMIT_BYTES is not set: the memory guard is off, and a full Redis stops every write',
    );
    expect(ready.body.redis.memory).toMatchObject({ limitBytes: null, ratio: null });
  });

  it('refuses a launch whose ledger would pass MEMORY_HIGH_WATERMARK of MEMORY_LIMIT_BYTES, naming the figures, and still takes small work', async () => {
    const { server, used } = await ownRedis();
    // A list of 50,000 written while nothing limits, then a limit that puts Redis at 80 %.
    const prefix = testPrefix('mem');
    const open = await pushq(server.url, {}, false, prefix);
    const big = (await open.request('POST', '/api/campaigns', campaign(50_000))).body.id as string;
    const limit = Math.round((await used()) / 0.8);
    const client = await pushq(server.url, { MEMORY_LIMIT_BYTES: String(limit) }, false, prefix);
    const refused = await client.request('POST', `/api/campaigns/${big}/launch`);
    expect(refused.status).toBe(507);
    expect(refused.body.error.code).toBe('REDIS_MEMORY_HIGH');
    expect(refused.body.error.message).toMatch(
      /Redis is 8\d% full .* MEMORY_LIMIT_BYTES\); this launch needs about 0\.8 MB more, which would take it to \d+%.*MEMORY_HIGH_WATERMARK \(0\.85\)/,
    );
    expect(refused.body.error.message).toMatch(/RUN_RETENTION_MS.*DELETE \/api\/campaigns\/:id.*more memory/);
    expect(refused.body.error.details).toMatchObject({ limitBytes: limit, highWatermark: 0.85, needBytes: 800_000 });
    expect((await client.request('GET', `/api/campaigns/${big}`)).body.status).toBe('draft');
    // Small work still fits, and /readyz warns above 70 %.
    expect((await client.request('POST', '/api/campaigns', campaign(10))).status).toBe(201);
    const ready = await client.request('GET', '/readyz');
    expect(ready.body.warnings.some((w: string) => /^Redis memory is 8\d% used: archive sooner/.test(w))).toBe(true);
    const metrics = await fetch(`${client.baseUrl}/metrics`, { headers: { authorization: `Bearer ${TEST_TOKEN}` } }).then((r) => r.text());
    const ratio = Number(/^pushq_redis_memory_ratio (\S+)$/m.exec(metrics)![1]);
    expect(ratio).toBeGreaterThan(0.75);
    expect(ratio).toBeLessThan(0.85);
  });

  it('above the watermark of Redis maxmemory refuses creates, uploads, launches and cron occurrences, while a running campaign goes on sending', async () => {
    const { server, redis, used } = await ownRedis();
    // A watermark of 0.5 leaves real headroom below maxmemory for what keeps running: in a Redis of a few MB,
    // used_memory swings by a megabyte or two under load (client buffers), which 10 % did not absorb (CI saw 150 %).
    // The default watermark is covered by the MEMORY_LIMIT_BYTES test above.
    const client = await pushq(server.url, { MIN_SCHEDULE_INTERVAL_MS: '1000', MEMORY_HIGH_WATERMARK: '0.5' }, true);
    // A list of 50,000 first: a Redis big enough that what keeps running fits in the headroom.
    expect((await client.request('POST', '/api/campaigns', campaign(50_000))).status).toBe(201);
    const cron = (await client.request('POST', '/api/campaigns', campaign(5))).body.id as string;
    expect((await client.request('POST', `/api/campaigns/${cron}/schedule`, { cron: '* * * * * *' })).status).toBe(200);
    const sending = (await client.request('POST', '/api/campaigns', { ...campaign(3000), provider: 'slow' })).body.id as string;
    const waiting = (await client.request('POST', '/api/campaigns', campaign(100))).body.id as string;
    expect((await client.request('POST', `/api/campaigns/${sending}/launch`)).status).toBe(200);
    // Redis at ~65 % of its maxmemory, above the watermark (noeviction: writes still fit below 100 %).
    await redis.config('SET', 'maxmemory', String(Math.round((await used()) / 0.65)));
    // Waiting with a read, not with creates: each create accepted before the guard's next reading was more memory used.
    await waitFor(async () => ((await client.request('GET', '/readyz')).body.redis?.memory?.ratio ?? 0) > 0.5, { what: 'the guard to see the new limit' });
    const create = await client.request('POST', '/api/campaigns', campaign(1));
    expect(create.body.error.message).toMatch(
      /^cannot create a campaign: Redis is ([5-9]\d)% full \(.* maxmemory\)[^,]*, above MEMORY_HIGH_WATERMARK \(0\.5\)/,
    );
    expect((await client.request('POST', `/api/campaigns/${waiting}/launch`)).status).toBe(507);
    const upload = await fetch(`${client.baseUrl}/api/campaigns/${waiting}/recipients`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/x-ndjson' },
      body: '{"id":"a"}\n',
    });
    expect(upload.status).toBe(507);
    // A cron occurrence is a launch too: skipped and recorded, not run.
    await waitFor(
      async () =>
        ((await client.request('GET', `/api/campaigns/${cron}/runs`)).body.occurrences as Array<{ outcome: string; reason?: string }>).some(
          (o) => o.outcome === 'skipped' && o.reason === 'memory-high',
        ),
      { timeoutMs: 10_000, what: 'an occurrence skipped for memory-high' },
    );
    // The campaign already running was counted when it launched: it finishes.
    await waitFor(async () => (await client.request('GET', `/api/campaigns/${sending}`)).body.status === 'completed', {
      timeoutMs: 30_000,
      what: 'the running campaign to finish',
    });
    const counts = (await client.request('GET', `/api/campaigns/${sending}`)).body.counts;
    expect(counts, JSON.stringify(counts)).toMatchObject({ total: 3000, sent: 3000 });
  });
});
