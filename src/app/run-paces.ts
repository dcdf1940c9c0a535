import type { FlowPace, Logger, Runs } from './ports.js';
import { describeError } from '../domain/send-outcome.js';

/** How often the paces of the runs this process sends are read again: a PATCH of pace takes effect within a second. */
export const PACE_REFRESH_MS = 500;

/**
 * The pace of each run this process is sending (domain/windows.ts), kept
 * current: a page holds its run's entry while it sends (starting from what
 * the page's acquire read), and every PACE_REFRESH_MS the paces of all runs
 * held are read again in one round trip. The limiter gets it with every
 * permit request, so a new pace reaches it within a second.
 */
export class RunPaces {
  private readonly held = new Map<string, { campaignId: string; runId: string; tps: number | null; holders: number }>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly deps: { runs: Pick<Runs, 'paces'>; log: Logger },
    private readonly refreshMs = PACE_REFRESH_MS,
  ) {}

  /** Holds a run's pace while a page of it sends; returns the release. */
  hold(campaignId: string, runId: string, tps: number | null): () => void {
    const member = `${campaignId}|${runId}`;
    const entry = this.held.get(member) ?? { campaignId, runId, tps, holders: 0 };
    entry.holders += 1;
    this.held.set(member, entry);
    this.timer ??= setInterval(() => void this.refresh(), this.refreshMs).unref();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      entry.holders -= 1;
      if (entry.holders === 0) this.held.delete(member);
      if (this.held.size === 0 && this.timer) {
        clearInterval(this.timer);
        this.timer = null;
      }
    };
  }

  /** The run's pace as the limiter takes it (keyed by campaign: a pace caps the campaign), or null. */
  paceOf(campaignId: string, runId: string): FlowPace | null {
    const tps = this.held.get(`${campaignId}|${runId}`)?.tps ?? null;
    return tps === null || !(tps > 0) ? null : { key: campaignId, tps };
  }

  private async refresh(): Promise<void> {
    const entries = [...this.held.values()];
    try {
      const paces = await this.deps.runs.paces(entries);
      entries.forEach((entry, i) => (entry.tps = paces[i] ?? null));
    } catch (err) {
      // The last pace read stays in force until a read succeeds.
      this.deps.log.warn({ err: describeError(err) }, 'could not read the paces of the runs being sent');
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
