import type { RedisClient } from './connection.js';
import type { Keys } from './keys.js';
import type { Scripts } from './scripts.js';
import { emptyCounts, SERIES_OUTCOMES, SERIES_WINDOW_S, type RunSeriesStore, type SeriesPoint } from '../../app/run-series.js';

/** A run's per-second series in one hash beside the run (same hash tag): see lua/series-add.lua. */
export class RedisRunSeries implements RunSeriesStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly scripts: Scripts,
    private readonly now: () => number = Date.now,
  ) {}

  async add(campaignId: string, runId: string, points: readonly SeriesPoint[]): Promise<void> {
    if (points.length === 0) return;
    const args: number[] = [SERIES_WINDOW_S, SERIES_OUTCOMES.length];
    for (const p of points) args.push(p.at, ...SERIES_OUTCOMES.map((o) => p.counts[o]));
    await this.scripts.run('series-add', [this.keys.campaign(campaignId).run(runId).series], args);
  }

  async read(campaignId: string, runId: string): Promise<SeriesPoint[]> {
    const slots = await this.redis.hvals(this.keys.campaign(campaignId).run(runId).series);
    const since = Math.floor(this.now() / 1000) - SERIES_WINDOW_S;
    const points: SeriesPoint[] = [];
    for (const slot of slots) {
      const [at, ...values] = slot.split(',').map(Number);
      if (at === undefined || at <= since) continue;
      const counts = emptyCounts();
      SERIES_OUTCOMES.forEach((o, k) => (counts[o] = values[k] ?? 0));
      points.push({ at, counts });
    }
    return points.sort((a, b) => a.at - b.at);
  }
}
