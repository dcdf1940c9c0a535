import { describeError } from '../domain/send-outcome.js';
import type { AppEvents, Logger } from './events.js';
import type { Ledger, PageQueue } from './ports.js';
import type { RunPump } from './pump.js';

/**
 * Housekeeping on a timer (like pg-boss's maintenance loop), run by every
 * worker process but by one at a time (a short Redis lock):
 * - forgets finished runs in the active list;
 * - tops up each running run's fan-out window (heals a launch whose first
 *   enqueue failed);
 * - re-enqueues the unfinished pages of a run that made no progress for
 *   `stallMs` (lost jobs, dead workers). Re-running a page is harmless: the
 *   ledger only lets pending recipients be claimed.
 */
export class Supervisor {
  private timer: NodeJS.Timeout | null = null;
  private ticking: Promise<void> | null = null;

  constructor(
    private readonly ledger: Ledger,
    private readonly queue: PageQueue,
    private readonly pump: RunPump,
    private readonly events: AppEvents,
    private readonly log: Logger,
    private readonly options: { intervalMs: number; stallMs: number },
  ) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      if (!this.ticking) this.ticking = this.tick().finally(() => (this.ticking = null));
    }, this.options.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.ticking;
  }

  async tick(): Promise<void> {
    try {
      if (!(await this.ledger.tryLock('supervisor', Math.max(100, this.options.intervalMs - 50)))) return;
      for (const { campaignId, runId } of await this.ledger.activeRuns()) {
        await this.checkRun(campaignId, runId);
      }
    } catch (err) {
      this.log.warn({ err: describeError(err) }, 'supervisor tick failed; will try again');
    }
  }

  private async checkRun(campaignId: string, runId: string): Promise<void> {
    const run = await this.ledger.getRun(campaignId, runId);
    if (!run || run.status === 'completed' || run.status === 'cancelled') {
      await this.ledger.markInactive(campaignId, runId);
      if (run?.status === 'completed') this.events.emit('run:completed', { campaignId, runId });
      return;
    }
    if (run.status !== 'running') return;
    const kicked = await this.ledger.kickStalled(campaignId, runId, this.options.stallMs);
    if (kicked && kicked.pages.length > 0) {
      this.log.warn({ campaignId, runId, pages: kicked.pages.length }, 'run made no progress; enqueueing its unfinished pages again');
      await this.queue.enqueuePages(
        kicked.pages.map((page) => ({ campaignId, runId, page, gen: kicked.gen })),
        { priorityClass: run.priorityClass },
      );
    }
    await this.pump.fill(campaignId, runId);
  }
}
