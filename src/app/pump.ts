import type { PageQueue, Runs } from './ports.js';

/**
 * A paced run keeps as many pages in their first pass as its pace sends in
 * about this long (at least two, at most RUN_WINDOW): its pages share the
 * pace, so each lasts about this long, and the moment a new page waits for a
 * free worker slot (other campaigns' pages hold them) is a small part of it.
 * Fewer would leave the pace unused between pages; more would hold worker
 * slots for nothing.
 */
export const PACED_PAGE_SECONDS = 10;

/** The fan-out window of a run: RUN_WINDOW, or what its pace needs. */
export function runWindow(window: number, pace: number | null, pageSize: number): number {
  if (pace === null) return window;
  return Math.min(window, Math.max(2, Math.ceil((pace * PACED_PAGE_SECONDS) / Math.max(1, pageSize))));
}

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
    private readonly deps: {
      runs: Runs;
      queue: PageQueue;
      /** Most pages of one run in their first pass at once (RUN_WINDOW). */
      window: number;
      /** Most of them waiting in the queue, not yet taken by a worker. */
      maxWaiting?: number;
    },
  ) {}

  private get maxWaiting(): number {
    return this.deps.maxWaiting ?? 2;
  }

  /** How many pages of a run paced at `pace` share it in their first pass. */
  pagesSharing(pace: number, pageSize: number): number {
    return runWindow(this.deps.window, pace, pageSize);
  }

  /** Enqueues the pages the window has room for; returns how many. */
  async fill(campaignId: string, runId: string): Promise<number> {
    for (let attempt = 0; attempt < 5; attempt += 1) {
      const run = await this.deps.runs.getRun(campaignId, runId);
      if (!run || run.status !== 'running' || run.cursor >= run.pages) return 0;
      const { open, held, waiting } = await this.deps.runs.pageCounts(campaignId, runId);
      const window = runWindow(this.deps.window, run.pace, run.pageSize);
      // A paced run's pages near their end leave the first pass early (send-page.ts); all it holds stays bounded.
      const inPlay = run.pace === null ? 0 : held + waiting;
      const room = Math.min(window - open, this.maxWaiting - waiting, run.pace === null ? Infinity : 2 * window - inPlay);
      const from = run.cursor;
      const to = Math.min(run.pages, from + Math.max(0, room));
      if (to <= from) return 0;
      const jobs = [];
      for (let page = from; page < to; page += 1) jobs.push({ campaignId, runId, page, gen: run.gen });
      await this.deps.queue.enqueuePages(jobs, { priorityClass: run.priorityClass });
      const moved = await this.deps.runs.advanceCursor(campaignId, runId, from, to);
      if (moved === 'ok') return to - from;
      if (moved === 'inactive') return 0;
      // Another pump moved the cursor first: look again.
    }
    return 0;
  }
}
