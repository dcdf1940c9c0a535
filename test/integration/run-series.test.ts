import { describe, expect, it } from 'vitest';
import { RedisRunSeries } from '../../src/adapters/redis/redis-series.js';
import { emptyCounts, RunSeries, SERIES_WINDOW_S, type SeriesPoint } from '../../src/app/run-series.js';
import { createLogger } from '../../src/logger.js';
import { redisHarness } from '../helpers/harness.js';

const point = (at: number, sent: number, failed = 0): SeriesPoint => ({ at, counts: { ...emptyCounts(), sent, failed } });

describe("a run's per-second series", () => {
  it('adds what several workers counted in the same second, and keeps only the last window, in a bounded ring', async () => {
    const h = redisHarness('series');
    let now = 1_800_000_000_000;
    const store = new RedisRunSeries(h.redis, h.keys, h.scripts, () => now);
    const sec = now / 1000;
    await store.add('c1', 'main', [point(sec - 2, 3), point(sec - 1, 5, 1)]);
    await store.add('c1', 'main', [point(sec - 1, 2)]);
    expect(await store.read('c1', 'main')).toEqual([point(sec - 2, 3), point(sec - 1, 7, 1)]);

    // A whole window later: the same slots are recycled, the old seconds gone.
    now += SERIES_WINDOW_S * 1000;
    await store.add('c1', 'main', [point(sec - 1 + SERIES_WINDOW_S, 4)]);
    expect(await store.read('c1', 'main')).toEqual([point(sec - 1 + SERIES_WINDOW_S, 4)]);
    // A worker whose clock is a window behind does not overwrite the newer second in its slot.
    await store.add('c1', 'main', [point(sec - 1, 9)]);
    expect(await store.read('c1', 'main')).toEqual([point(sec - 1 + SERIES_WINDOW_S, 4)]);
    // Gone a window after the last count.
    expect(await h.redis.ttl(h.keys.campaign('c1').run('main').series)).toBeGreaterThan(SERIES_WINDOW_S);
    for (let i = 0; i < 3 * SERIES_WINDOW_S; i += 97) await store.add('c1', 'main', [point(sec + i, 1)]);
    expect(await h.redis.hlen(h.keys.campaign('c1').run('main').series)).toBeLessThanOrEqual(SERIES_WINDOW_S);
  });

  it("is what a worker's buffer counted, flushed once a second", async () => {
    const h = redisHarness('series');
    const store = new RedisRunSeries(h.redis, h.keys, h.scripts);
    const series = new RunSeries(store, createLogger('silent'));
    for (let i = 0; i < 25; i += 1) series.add({ campaignId: 'c2', runId: 'main' }, 'sent');
    series.add({ campaignId: 'c2', runId: 'main' }, 'skipped', 4);
    await series.close();
    const points = await store.read('c2', 'main');
    expect(points.reduce((n, p) => n + p.counts.sent, 0)).toBe(25);
    expect(points.reduce((n, p) => n + p.counts.skipped, 0)).toBe(4);
  });
});
