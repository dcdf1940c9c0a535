import { describeError } from '../domain/send-outcome.js';
import { ledgerRows } from './campaign-queries.js';
import type { AppEvents } from './events.js';
import { TickLoop } from './tick-loop.js';
import type {
  ArchivedRunSummary,
  CampaignStore,
  Clock,
  Deletions,
  Ledger,
  Locks,
  Logger,
  ResultRow,
  ResultsArchive,
  Retention,
  Runs,
  RunState,
} from './ports.js';

export interface JanitorOptions {
  intervalMs: number;
  /** A finished run is archived this long after it finished. */
  retentionMs: number;
  /** How long the janitor's lock outlives a holder that died (renewed while it works). */
  lockTtlMs: number;
  /** Runs archived per tick at most (the next tick goes on). */
  batch: number;
}

export const DEFAULT_JANITOR_LOCK_TTL_MS = 30_000;

/** Run summaries a campaign keeps in Redis (the newest; older ones are in the archive): a daily cron for years stays small. */
export const RUN_SUMMARIES_KEPT = 100;

/**
 * Keeps Redis bounded, on a timer in every worker process, one process at a
 * time (a lock it renews while it works):
 * - archives finished runs (completed, or cancelled with nothing in flight)
 *   once `retentionMs` has passed since they finished: their rows are written
 *   to the archive and read back whole, the run is marked archived in one
 *   step, then its ledger — and a one-off campaign's list with its last run,
 *   and a retry run's own list — leaves Redis; only the run's summary stays.
 *   A crash anywhere leaves the run in Redis (written again next time,
 *   replacing the copy) or marked archived with its removal to finish.
 * - removes campaigns marked deleting, in bounded steps.
 */
export class Janitor {
  private readonly loop: TickLoop;
  private backfilled = false;

  constructor(
    private readonly deps: {
      retention: Retention;
      deletions: Deletions;
      archive: ResultsArchive;
      runs: Pick<Runs, 'getRun'>;
      store: Pick<CampaignStore, 'get' | 'readPage' | 'runIds' | 'dropRecipients'>;
      ledger: Pick<Ledger, 'readPageEntries'>;
      locks: Pick<Locks, 'lock' | 'unlock' | 'extend'>;
      clock: Clock;
      events: AppEvents;
      log: Logger;
    },
    private readonly options: JanitorOptions,
  ) {
    this.loop = new TickLoop(() => this.tick(), options.intervalMs);
  }

  start(): void {
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  async tick(): Promise<void> {
    const { locks, log } = this.deps;
    let token: string | null = null;
    try {
      token = await locks.lock('janitor', this.options.lockTtlMs, 0);
      if (!token) return;
      const held = this.holder(token);
      if (!this.backfilled) {
        const noted = await this.deps.retention.backfill();
        if (noted > 0) log.info({ runs: noted }, 'noted finished runs from before retention for archiving');
        this.backfilled = true;
      }
      for (const { campaignId, purgeArchive } of await this.deps.deletions.list(10)) {
        await held.check();
        await this.removeCampaign(campaignId, purgeArchive).catch((err) =>
          log.warn({ campaignId, err: describeError(err) }, 'could not remove a deleted campaign yet'),
        );
      }
      const before = (await this.deps.clock.serverTime()) - this.options.retentionMs;
      for (const { campaignId, runId } of await this.deps.retention.due(before, this.options.batch)) {
        await held.check();
        await this.archiveRun(campaignId, runId, held).catch((err) => {
          log.warn({ campaignId, runId, err: describeError(err) }, 'could not archive a run; it stays in Redis and is tried again');
          this.deps.events.emit('archive:failed', { campaignId, runId });
        });
      }
    } catch (err) {
      log.warn({ err: describeError(err) }, 'janitor tick failed; will try again');
    } finally {
      if (token) await locks.unlock('janitor', token).catch(() => undefined);
    }
  }

  /** Renews the lock as work goes on (a third of its time to live at a time); throws once it is lost. */
  private holder(token: string) {
    let renewedAt = Date.now();
    return {
      check: async () => {
        if (Date.now() - renewedAt < this.options.lockTtlMs / 3) return;
        if (!(await this.deps.locks.extend('janitor', token, this.options.lockTtlMs))) throw new Error('lost the janitor lock');
        renewedAt = Date.now();
      },
    };
  }

  private async removeCampaign(campaignId: string, purgeArchive: boolean): Promise<void> {
    const purged = purgeArchive ? await this.deps.archive.purge(campaignId) : 0;
    await this.deps.deletions.remove(campaignId);
    this.deps.log.info({ campaignId, purgedRuns: purged }, 'deleted campaign removed from Redis');
    this.deps.events.emit('campaign:deleted', { campaignId, purgedRuns: purged });
  }

  /** Archives one finished run (see the class comment); idempotent, and safe to resume after a crash at any point. */
  async archiveRun(campaignId: string, runId: string, held: { check(): Promise<void> } = { check: async () => undefined }): Promise<void> {
    const { retention, archive, store, log } = this.deps;
    const started = Date.now();
    const [campaign, run] = await Promise.all([store.get(campaignId), this.deps.runs.getRun(campaignId, runId)]);
    if (!campaign || !run) return retention.forget(campaignId, runId);
    const finished = run.status === 'completed' || (run.status === 'cancelled' && run.counts.inflight === 0);
    if (!finished) return retention.forget(campaignId, runId);
    const others = await this.otherRuns(campaign.id, runId);
    // A one-off campaign's list goes with its last run: nothing can send to it again (retry-failed needs the ledger).
    const oneOff = campaign.schedule === null || campaign.schedule.kind === 'at';
    const dropList =
      oneOff &&
      campaign.latestRunId === runId &&
      (campaign.status === 'completed' || campaign.status === 'cancelled') &&
      // A test send's run reads a list of its own: it does not hold the campaign's.
      others.every((r) => r.archived !== null || r.trigger === 'test-send');
    if (!run.archived) {
      let rows: AsyncIterable<ResultRow> = ledgerRows(store, this.deps.ledger, run);
      rows = renewing(rows, held);
      const manifest = await archive.write(summaryOf(run), rows);
      if (manifest.count !== run.recipients.total) {
        throw new Error(`archive of run ${runId} holds ${manifest.count} rows, but the run has ${run.recipients.total} recipients`);
      }
      if (!(await retention.markArchived(campaignId, runId, manifest, archive.kind, dropList))) {
        log.warn({ campaignId, runId }, 'run changed while it was archived; left in Redis');
        return;
      }
    } else if (!(await archive.manifest(campaignId, runId))) {
      // Marked archived, yet the archive does not have it: a different archive than the one that took it. Never delete then.
      throw new Error(`run ${runId} is marked archived (${run.archived.kind}) but this process's archive (${archive.kind}) does not hold it`);
    }
    await retention.dropRunData(campaignId, runId, run.pages);
    // The run's own list (a retry run's), when nothing else reads it; the campaign's list with its last run.
    const inUse = new Set(others.filter((r) => r.archived === null).map((r) => r.recipients.version));
    const listGoes = dropList || (await store.get(campaignId))?.listArchived === true;
    if (!listGoes) inUse.add(campaign.recipients.version);
    if (!inUse.has(run.recipients.version)) await store.dropRecipients(campaignId, run.recipients);
    if (listGoes && !inUse.has(campaign.recipients.version) && campaign.recipients.version !== run.recipients.version) {
      await store.dropRecipients(campaignId, campaign.recipients);
    }
    await retention.trimSummaries(campaignId, RUN_SUMMARIES_KEPT);
    await retention.forget(campaignId, runId);
    const ms = Date.now() - started;
    log.info({ campaignId, runId, kind: archive.kind, count: run.recipients.total, ms, listArchived: listGoes }, 'run archived');
    this.deps.events.emit('run:archived', { campaignId, runId, kind: archive.kind, count: run.recipients.total, ms });
  }

  private async otherRuns(campaignId: string, runId: string): Promise<RunState[]> {
    const ids = (await this.deps.store.runIds(campaignId, 10_000)).filter((id) => id !== runId);
    const runs = await Promise.all(ids.map((id) => this.deps.runs.getRun(campaignId, id)));
    return runs.filter((r): r is RunState => r !== null);
  }
}

/** Renews the janitor's lock every few thousand rows while a run is read. */
async function* renewing(rows: AsyncIterable<ResultRow>, held: { check(): Promise<void> }): AsyncGenerator<ResultRow> {
  let n = 0;
  for await (const row of rows) {
    if ((n += 1) % 5000 === 0) await held.check();
    yield row;
  }
}

function summaryOf(run: RunState): ArchivedRunSummary {
  return {
    campaignId: run.campaignId,
    runId: run.id,
    status: run.status,
    trigger: run.trigger,
    createdAt: run.createdAt,
    finishedAt: run.finishedAt ?? run.activeAt,
    counts: run.counts,
    skippedBy: run.skippedBy,
  };
}
