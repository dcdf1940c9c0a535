import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { Keys } from '../../src/adapters/redis/keys.js';
import { onCleanup } from '../helpers/cleanup.js';
import { TEST_TOKEN } from '../helpers/fixtures.js';
import { testRedis } from '../helpers/redis.js';
import { createCampaign, range, stacksPerTest } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Redis stays bounded for years of campaigns: a cron campaign fired again
 * and again (every second here, with retention of a couple of seconds, as
 * a daily one over months with the default 30 days), its finished runs
 * archived as they age, holds no more Redis memory after its 60th run than
 * after its 5th — and every run's results are still there, from the archive.
 */
const start = stacksPerTest();
const RUNS = 60;
const RECIPIENTS = 1000;
/** Recipients carry fields (names, locales, segments) as real lists do: the list's size in Redis is what retention is measured against. */
const recipients = range(RECIPIENTS, 'u').map((id, i) => ({ id, name: `Customer ${i}`, segment: `${'loyal-'.repeat(340)}${i % 7}` }));

/** Bytes Redis holds for every key of a prefix (MEMORY USAGE, summed). */
async function prefixBytes(redis: Redis, prefix: string): Promise<{ bytes: number; keys: number; byKind: Record<string, number> }> {
  let bytes = 0;
  let keys = 0;
  const byKind: Record<string, number> = {};
  let cursor = '0';
  do {
    const [next, names] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    const sizes = await Promise.all(names.map((n) => redis.memory('USAGE', n, 'SAMPLES', 0)));
    names.forEach((name, i) => {
      const kind = name
        .slice(prefix.length + 1)
        .replace(/\{c:[^}]+\}/, '{c}')
        .replace(/[0-9a-z]{26}/g, '<id>')
        .replace(/\d+/g, 'N')
        .split(':')
        .slice(0, 3)
        .join(':');
      byKind[kind] = (byKind[kind] ?? 0) + Number(sizes[i] ?? 0);
      bytes += Number(sizes[i] ?? 0);
    });
    keys += names.length;
  } while (cursor !== '0');
  return { bytes, keys, byKind };
}

describe('retention over many runs', () => {
  it(`keeps Redis memory flat over ${RUNS} runs of a cron campaign, and every run exportable from the archive`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pushq-retention-'));
    onCleanup(() => rmSync(dir, { recursive: true, force: true }));
    const { client, prefix } = await start({
      workers: 1,
      providers: [{ name: 'fast', type: 'sim', tps: 50_000, latencyMs: 0 }],
      env: { RUN_RETENTION_MS: '2000', ARCHIVE_DIR: dir, MIN_SCHEDULE_INTERVAL_MS: '1000' },
    });
    const redis = testRedis();
    onCleanup(() => redis.disconnect());
    const keys = new Keys(prefix);
    const id = await createCampaign(client, recipients, { provider: 'fast' });
    expect((await client.request('POST', `/api/campaigns/${id}/schedule`, { cron: '* * * * * *', timezone: 'UTC' })).status).toBe(200);

    const ran = async () => ((await client.request('GET', `/api/campaigns/${id}/runs?limit=100`)).body as { items: unknown[] }).items.length;
    /** Paused between two runs, every finished run archived: the campaign's resting footprint. */
    const atRest = async (runs: number) => {
      await waitFor(async () => (await ran()) >= runs, { timeoutMs: RUNS * 3000, intervalMs: 200, what: `${runs} runs` });
      await waitFor(
        async () => {
          const c = (await client.request('GET', `/api/campaigns/${id}`)).body;
          if (c.status !== 'scheduled') return false;
          await client.request('POST', `/api/campaigns/${id}/pause`);
          const paused = (await client.request('GET', `/api/campaigns/${id}`)).body;
          // Paused a run that had just begun: let it go on, and try again between runs.
          if (paused.latestRun?.status === 'paused') await client.request('POST', `/api/campaigns/${id}/resume`);
          return paused.latestRun?.status !== 'paused';
        },
        { timeoutMs: 30_000, intervalMs: 50, what: 'a pause between runs' },
      );
      await waitFor(async () => (await redis.zcard(keys.retention())) === 0 && (await redis.scard(keys.activeRuns())) === 0, {
        timeoutMs: 30_000,
        what: 'every finished run archived',
      });
      const measured = await prefixBytes(redis, prefix);
      expect((await client.request('POST', `/api/campaigns/${id}/resume`)).status).toBe(200);
      return measured;
    };

    const early = await atRest(5);
    const late = await atRest(RUNS);
    // The limiter's slots are one entry per TPS of the provider — a fixed size set by configuration (the
    // 50,000 TPS test provider here: ~5 MB), which would make any growth look small: compared without them.
    const limiter = (m: typeof early) => Object.entries(m.byKind).reduce((sum, [k, v]) => (k.startsWith('{lim:') ? sum + v : sum), 0);
    const [before, after] = [early.bytes - limiter(early), late.bytes - limiter(late)];
    const kinds = [...new Set([...Object.keys(early.byKind), ...Object.keys(late.byKind)])].sort();
    const table = kinds.map((k) => `${k}: ${early.byKind[k] ?? 0} → ${late.byKind[k] ?? 0}`).join('\n');
    console.log(`after 5 runs ${before} B (${early.keys} keys); after ${RUNS}: ${after} B (${late.keys} keys), limiter aside\n${table}`);
    expect(after, table).toBeLessThanOrEqual(before * 1.1);

    // Every run is still there, whole, from the archive.
    const runs = (await client.request('GET', `/api/campaigns/${id}/runs?limit=100`)).body.items as Array<{ id: string; archived?: boolean; status: string }>;
    expect(runs.length).toBeGreaterThanOrEqual(RUNS);
    for (const run of runs.filter((r) => r.archived)) {
      const res = await request(`${client.baseUrl}/api/campaigns/${id}/runs/${run.id}/results`, { headers: { authorization: `Bearer ${TEST_TOKEN}` } });
      const body = await res.body.text();
      const lines = body.trimEnd().split('\n');
      const summary = JSON.parse(lines.at(-1)!).summary as { count: number; sha256: string; archived: boolean };
      expect(summary.count).toBe(RECIPIENTS);
      expect(summary.sha256).toBe(
        createHash('sha256')
          .update(body.slice(0, body.length - lines.at(-1)!.length - 1))
          .digest('hex'),
      );
      expect(summary.archived).toBe(true);
    }
    expect(runs.filter((r) => r.archived).length).toBeGreaterThanOrEqual(RUNS - 2);
  }, 400_000);
});
