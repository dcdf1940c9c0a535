import type { Ledger, PageQueue } from './ports.js';

/**
 * Feeds a run's pages to the send queue a window at a time: at most `window`
 * pages of a run are in their first pass at once, and every page that ends
 * its first pass lets the next one in. Runs sharing a queue therefore take
 * turns page by page instead of the first big run starving the rest, and the
 * queue holds a few jobs per run whatever the list size.
 *
 * Resumable and idempotent: pages are enqueued under deterministic job ids
 * before the cursor moves (compare-and-set), so a crash in between re-adds the
 * same jobs and never skips a page.
 */
export class RunPump {
  constructor(
    private readonly ledger: Ledger,
    private readonly queue: PageQueue,
    private readonly window: number,
  ) {}

  /** Enqueues the pages the window has room for; returns how many. */
  async fill(campaignId: string, runId: string): Promise<number> {
    for (let attempt = 0; attempt < 5; attempt += 1) {
      const run = await this.ledger.getRun(campaignId, runId);
      if (!run || run.status !== 'running' || run.cursor >= run.pages) return 0;
      const open = await this.ledger.openPageCount(campaignId, runId);
      const from = run.cursor;
      const to = Math.min(run.pages, from + Math.max(0, this.window - open));
      if (to <= from) return 0;
      const jobs = [];
      for (let page = from; page < to; page += 1) jobs.push({ campaignId, runId, page, gen: run.gen });
      await this.queue.enqueuePages(jobs, { priorityClass: run.priorityClass });
      const moved = await this.ledger.advanceCursor(campaignId, runId, from, to);
      if (moved === 'ok') return to - from;
      if (moved === 'inactive') return 0;
      // Another pump moved the cursor first: look again.
    }
    return 0;
  }
}
