import type { AppEvents } from './events.js';
import type { CreateRunOptions, CreateRunResult, Runs } from './ports.js';
import type { RunPump } from './pump.js';

/**
 * Starts a run: the state check and the run's creation are one atomic ledger
 * step (so concurrent starts make one run, and a run id that exists is never
 * made again), then its first pages are enqueued.
 */
export class RunStarter {
  constructor(
    private readonly deps: {
      runs: Runs;
      pump: RunPump;
      events: AppEvents;
    },
  ) {}

  async start(campaignId: string, runId: string, opts: CreateRunOptions): Promise<CreateRunResult> {
    // Listed as active before it exists, so the supervisor always finds a run
    // whose first pages could not be enqueued (it drops entries with no run).
    const listed = await this.deps.runs.markActive(campaignId, runId);
    const created = await this.deps.runs.createRun(campaignId, runId, opts);
    if (!created.ok) {
      // Unlist only what this call listed: a refused launch of a running campaign leaves its run watched.
      if (listed && created.reason !== 'exists') await this.deps.runs.markInactive(campaignId, runId);
      return created;
    }
    await this.deps.pump.fill(campaignId, runId);
    const run = await this.deps.runs.getRun(campaignId, runId);
    this.deps.events.emit('run:started', { campaignId, runId, total: run?.counts.total ?? 0 });
    return created;
  }
}
