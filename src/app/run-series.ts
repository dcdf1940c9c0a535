import { describeError } from '../domain/send-outcome.js';
import type { Logger, PageRef } from './ports.js';

/**
 * A run's per-second time series: what its sends came to at the provider
 * (sent, failed, unknown, retried, handed back), and who the gate skipped or
 * deferred, second by second — what the campaign page charts, without
 * reading the ledger. Workers count in memory and add their counts to Redis
 * once a second; a run keeps its last SERIES_WINDOW_S seconds (a ring of
 * slots, bounded whatever the run's length).
 */
export const SERIES_OUTCOMES = ['sent', 'failed', 'unknown', 'retry', 'requeue', 'skipped', 'deferred'] as const;
export type SeriesOutcome = (typeof SERIES_OUTCOMES)[number];

/** Seconds a run's series keeps (one slot each). */
export const SERIES_WINDOW_S = 3600;

export interface SeriesPoint {
  /** Epoch seconds. */
  at: number;
  counts: Record<SeriesOutcome, number>;
}

export interface RunSeriesStore {
  /** Adds counts to a run's slots (creating or recycling them). */
  add(campaignId: string, runId: string, points: readonly SeriesPoint[]): Promise<void>;
  /** The run's points of the last SERIES_WINDOW_S seconds, oldest first. */
  read(campaignId: string, runId: string): Promise<SeriesPoint[]>;
}

export function emptyCounts(): Record<SeriesOutcome, number> {
  return { sent: 0, failed: 0, unknown: 0, retry: 0, requeue: 0, skipped: 0, deferred: 0 };
}

/** A worker's counts, added to Redis once a second (best effort: a lost second only dents a chart). */
export class RunSeries {
  private pending = new Map<string, { campaignId: string; runId: string; points: Map<number, SeriesPoint> }>();
  private readonly timer: NodeJS.Timeout;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: RunSeriesStore,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.timer = setInterval(() => void this.flush(), 1000);
    this.timer.unref();
  }

  add(ref: Pick<PageRef, 'campaignId' | 'runId'>, outcome: SeriesOutcome, n = 1): void {
    const key = `${ref.campaignId}|${ref.runId}`;
    let run = this.pending.get(key);
    if (!run) this.pending.set(key, (run = { campaignId: ref.campaignId, runId: ref.runId, points: new Map() }));
    const at = Math.floor(this.now() / 1000);
    let point = run.points.get(at);
    if (!point) run.points.set(at, (point = { at, counts: emptyCounts() }));
    point.counts[outcome] += n;
  }

  flush(): Promise<void> {
    const batch = [...this.pending.values()];
    this.pending = new Map();
    this.flushing = this.flushing.then(async () => {
      for (const run of batch) {
        await this.store
          .add(run.campaignId, run.runId, [...run.points.values()])
          .catch((err) => this.log.debug({ err: describeError(err), campaignId: run.campaignId }, 'could not record the send series'));
      }
    });
    return this.flushing;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
