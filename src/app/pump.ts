import type { Ledger, PageQueue } from './ports.js';

/**
 * Feeds a run's pages to the send queue: a run keeps at most `maxWaiting`
 * pages waiting in the queue (and at most `window` in their first pass), and
 * tops up whenever one of its pages starts or ends its first pass. The queue
 * therefore holds a couple of jobs per run whatever the list size, so a run
 * launched behind a big one waits behind a few of its pages, not thousands,
 * and runs take turns page by page.
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
    private readonly maxWaiting = 2,
  ) {}

  /** Enqueues the pages the window has room for; returns how many. */
  async fill(campaignId: string, runId: string): Promise<number> {
    for (let attempt = 0; attempt < 5; attempt += 1) {
      const run = await this.ledger.getRun(campaignId, runId);
      if (!run || run.status !== 'running' || run.cursor >= run.pages) return 0;
      const { open, active } = await this.ledger.pageCounts(campaignId, runId);
      const room = Math.min(this.window - open, this.maxWaiting - Math.max(0, open - active));
      const from = run.cursor;
      const to = Math.min(run.pages, from + Math.max(0, room));
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
