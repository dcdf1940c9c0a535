import { countsAreConserved } from '../domain/ledger.js';
import { describeError } from '../domain/send-outcome.js';
import { settlePolicyOf } from '../domain/send-rules.js';
import type { AppEvents } from './events.js';
import { TickLoop } from './tick-loop.js';
import type { CampaignStore, Clock, Ledger, Locks, Logger, PageQueue, ProviderRegistry, Runs, RunState, SettlePolicy } from './ports.js';
import type { RunPump } from './pump.js';

/** Pages one step of a deadline's sweep covers (a few thousand records: a short script). */
const EXPIRE_PAGES_PER_CALL = 16;

export interface SupervisorOptions {
  intervalMs: number;
  /** A running run with no ledger change for this long gets its unfinished pages enqueued again. */
  stallMs: number;
  /** … and for this long is reported stuck (log, metric, API). */
  stuckMs: number;
  /** A recipient list being uploaded with nothing written for this long is dropped (its writer is gone). */
  stagingTtlMs: number;
}

/**
 * Reconciliation on a timer (like pg-boss's maintenance loop), run by every
 * worker process but by one at a time (a short Redis lock). For each run that
 * is not finished:
 * - settles pages whose worker lease ran out (in-flight recipients become
 *   `unknown`, or pending again with `inDoubt: resend` while attempts are
 *   left) and, while the run is running, enqueues those pages again at once
 *   under a new generation, so a dead worker's pages go on within a lease
 *   period; completes the run once nothing is pending or in flight — never
 *   before; a cancelled run is watched until its last request in flight is
 *   settled;
 * - checks that its counts add up, and says so loudly when they do not;
 * - tops up its fan-out window (heals a launch whose first enqueue failed);
 * - re-enqueues its unfinished pages after `stallMs` without progress (lost
 *   jobs): re-running a page is harmless, the ledger only lets pending
 *   recipients be claimed; a page parked until its recipients are due
 *   (quiet hours, retry backoff) is left alone until then;
 * - raises the stuck-run alarm after `stuckMs` without progress, unless all
 *   it waits for is parked recipients.
 * It also drops recipient lists whose upload was abandoned half-way.
 */
/** Quiet a slow paced run may keep as a matter of course: two of the gaps its pace puts between sends. */
function paceGapMs(run: RunState): number {
  return run.pace === null ? 0 : Math.ceil((2 * 1000) / run.pace);
}

export class Supervisor {
  private readonly loop: TickLoop;

  constructor(
    private readonly deps: {
      ledger: Pick<Ledger, 'expireLeases' | 'expirePages'>;
      runs: Runs;
      locks: Pick<Locks, 'tryLock'>;
      clock: Clock;
      store: Pick<CampaignStore, 'get' | 'dropAbandonedStagings'>;
      providers: ProviderRegistry;
      queue: PageQueue;
      pump: Pick<RunPump, 'fill'>;
      events: AppEvents;
      log: Logger;
    },
    private readonly options: SupervisorOptions,
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
    const { runs, locks, log } = this.deps;
    try {
      if (!(await locks.tryLock('supervisor', Math.max(100, this.options.intervalMs - 50)))) return;
      for (const { campaignId, runId } of await runs.activeRuns()) {
        await this.checkRun(campaignId, runId).catch((err) => log.warn({ campaignId, runId, err: describeError(err) }, 'supervisor could not check a run'));
      }
      const dropped = await this.deps.store.dropAbandonedStagings(this.options.stagingTtlMs);
      if (dropped > 0) log.warn({ dropped }, 'dropped recipient uploads abandoned half-way');
    } catch (err) {
      log.warn({ err: describeError(err) }, 'supervisor tick failed; will try again');
    }
  }

  /** The in-doubt policy and attempt limit of a run's campaign and provider. */
  private async settlePolicy(campaignId: string): Promise<SettlePolicy> {
    const campaign = await this.deps.store.get(campaignId);
    const provider = campaign ? this.deps.providers.get(campaign.provider) : undefined;
    return settlePolicyOf(campaign?.maxAttempts, provider?.retry);
  }

  /** Enqueues `pages` of `run` again, as generation `gen` (older jobs for them are superseded). */
  private requeue(run: RunState, gen: number, pages: readonly number[]): Promise<unknown> {
    const { campaignId, id: runId, priorityClass } = run;
    return this.deps.queue.enqueuePages(
      pages.map((page) => ({ campaignId, runId, page, gen })),
      { priorityClass },
    );
  }

  private async checkRun(campaignId: string, runId: string): Promise<void> {
    const { ledger, runs, pump, events, log } = this.deps;
    let run = await runs.getRun(campaignId, runId);
    const settling = run && (run.status === 'running' || run.status === 'paused' || (run.status === 'cancelled' && run.counts.inflight > 0));
    if (run && settling) {
      const settle = await this.settlePolicy(campaignId);
      const expired = await ledger.expireLeases(campaignId, runId, settle);
      if (expired.pages.length > 0) {
        log.warn(
          { campaignId, runId, pages: expired.pages.length, unknown: expired.unknown, resent: expired.resent, inDoubt: settle.inDoubt },
          'settled pages whose worker stopped renewing its lease',
        );
        events.emit('lease:expired', { campaignId, runId, pages: expired.pages.length });
        if (expired.unknown > 0) events.emit('recipients:unknown', { campaignId, runId, page: -1, count: expired.unknown });
      }
      if (expired.requeue) await this.requeue(run, expired.requeue.gen, expired.requeue.pages);
      if (expired.pages.length > 0 || expired.completed) run = await runs.getRun(campaignId, runId);
    }
    if (!run || run.status === 'completed' || (run.status === 'cancelled' && run.counts.inflight === 0)) {
      await runs.markInactive(campaignId, runId);
      if (run?.status === 'completed') events.emit('run:completed', { campaignId, runId });
      return;
    }
    if (run.expiresAt !== null && run.counts.pending > run.counts.inflight && (await this.expire(run))) {
      run = await runs.getRun(campaignId, runId);
      if (!run || run.status === 'completed') return this.checkRun(campaignId, runId);
    }
    this.checkCounts(run);
    if (run.status !== 'running') return;
    const kicked = await runs.kickStalled(campaignId, runId, this.options.stallMs + paceGapMs(run));
    if (kicked.kind === 'kicked' && kicked.pages.length > 0) {
      log.warn({ campaignId, runId, pages: kicked.pages.length }, 'run made no progress; enqueueing its unfinished pages again');
      await this.requeue(run, kicked.gen, kicked.pages);
    }
    await pump.fill(campaignId, runId);
    await this.checkProgress(run, kicked.kind === 'parked');
  }

  /**
   * A run past its deadline: what is still pending on any page — opened or
   * not, deferred, parked, paused — is expired. True when it changed anything.
   */
  private async expire(run: RunState): Promise<boolean> {
    if ((await this.deps.clock.serverTime()) < run.expiresAt!) return false;
    let expired = 0;
    let unknown = 0;
    for (let from = 0; from < run.pages; from += EXPIRE_PAGES_PER_CALL) {
      const step = await this.deps.ledger.expirePages(run.campaignId, run.id, from, Math.min(run.pages, from + EXPIRE_PAGES_PER_CALL));
      if (step.early) return false;
      expired += step.expired;
      unknown += step.unknown;
      if (step.completed) break;
    }
    if (expired + unknown === 0) return false;
    this.deps.log.info({ campaignId: run.campaignId, runId: run.id, expired, unknown }, "deadline passed: the run's pending recipients expired");
    this.deps.events.emit('ledger:transitions', { to: 'skipped', count: expired });
    this.deps.events.emit('recipients:held', { outcome: 'skipped', reason: 'expired', count: expired });
    if (unknown > 0) this.deps.events.emit('recipients:unknown', { campaignId: run.campaignId, runId: run.id, page: -1, count: unknown });
    return true;
  }

  private checkCounts(run: RunState): void {
    if (countsAreConserved(run.counts)) return;
    this.deps.log.error({ campaignId: run.campaignId, runId: run.id, counts: run.counts }, 'ledger counts of a run do not add up');
    this.deps.events.emit('run:counts-mismatch', { campaignId: run.campaignId, runId: run.id });
  }

  /** `parked`: every recipient left waits for its time (quiet hours, backoff); quiet is not stuck then. */
  private async checkProgress(run: RunState, parked: boolean): Promise<void> {
    const idle = (await this.deps.clock.serverTime()) - run.activeAt;
    const stuck = run.counts.pending > 0 && idle > this.options.stuckMs + paceGapMs(run) && !parked;
    if (stuck === (run.stuckSince !== null)) return;
    await this.deps.runs.markStuck(run.campaignId, run.id, stuck);
    if (stuck) {
      this.deps.log.error(
        { campaignId: run.campaignId, runId: run.id, idleMs: idle, pending: run.counts.pending },
        'stuck run: recipients are pending but nothing has changed for a long time (workers down? provider circuit open? claims not replicated?)',
      );
    }
  }
}
