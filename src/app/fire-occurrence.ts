import { ONE_OFF_RUN_ID } from '../domain/campaign.js';
import { nextOccurrence, occurrencesBetween, runIdForOccurrence } from '../domain/schedule.js';
import type { CampaignStore, Lifecycle, Logger, OccurrenceEntry, Scheduler } from './ports.js';
import type { RunStarter } from './run-starter.js';
import { DomainError, ErrorCodes } from '../domain/errors.js';
import { LEDGER_BYTES_PER_RECIPIENT, type MemoryGuard } from './memory-guard.js';

export type OccurrenceOutcome = 'ran' | 'skipped' | 'stale' | 'duplicate' | 'gone';

/**
 * What a worker does when a campaign's schedule fires (a job of its BullMQ
 * job scheduler), possibly late because every process was down:
 * - an occurrence that is not one of the current schedule (rescheduled since)
 *   is ignored; one that is (rescheduled to the same times) runs;
 * - occurrences missed by more than the grace period are recorded as skipped
 *   (misfire); of the missed ones, the latest within the grace period runs;
 * - a cron occurrence makes the run keyed by its time, so the same occurrence
 *   fired twice (two workers, a restart, a clock step) makes one run;
 * - an occurrence while the previous run still sends, or while the campaign
 *   is paused, is skipped and recorded: runs never overlap;
 * - an occurrence whose ledger Redis has no room for (the memory guard) is
 *   skipped and recorded (`memory-high`): like a launch, it is refused
 *   rather than fill Redis under the campaigns already sending.
 */
export class FireOccurrence {
  constructor(
    private readonly deps: {
      store: CampaignStore;
      lifecycle: Lifecycle;
      scheduler: Scheduler;
      starter: RunStarter;
      graceMs: number;
      /** Refuses a run whose ledger would take Redis past the watermark. */
      memory?: Pick<MemoryGuard, 'admit'>;
      log: Logger;
    },
  ) {}

  async execute(campaignId: string, version: number, occurrence: number, now: number = Date.now()): Promise<OccurrenceOutcome> {
    const campaign = await this.deps.store.get(campaignId);
    if (!campaign || campaign.status === 'cancelled') {
      await this.deps.scheduler.remove(campaignId);
      return 'gone';
    }
    const spec = campaign.schedule;
    if (!spec || nextOccurrence(spec, occurrence - 1) !== occurrence) {
      this.deps.log.info({ campaignId, version, current: campaign.scheduleVersion }, 'occurrence of an older schedule: ignored');
      return 'stale';
    }
    const record = (at: number, outcome: OccurrenceEntry['outcome'], extra: { reason?: string; runId?: string } = {}) =>
      this.deps.store.recordOccurrence(campaignId, { at: new Date(at).toISOString(), outcome, ...extra, handledAt: new Date(now).toISOString() });

    const missed = spec.kind === 'cron' ? [occurrence, ...occurrencesBetween(spec, occurrence, now)] : [occurrence];
    const latest = missed[missed.length - 1]!;
    for (const at of missed) {
      if (at !== latest || now - at > this.deps.graceMs) await record(at, 'skipped', { reason: 'misfire' });
    }
    if (now - latest > this.deps.graceMs) {
      this.deps.log.warn({ campaignId, occurrences: missed.length }, 'missed the occurrence by more than the grace period: skipped');
      if (spec.kind === 'at') await this.deps.lifecycle.setSchedule(campaignId, null, campaign.scheduleVersion);
      return 'skipped';
    }

    try {
      await this.deps.memory?.admit('run a scheduled occurrence', campaign.recipients.total * LEDGER_BYTES_PER_RECIPIENT);
    } catch (err) {
      if (!(err instanceof DomainError) || err.code !== ErrorCodes.REDIS_MEMORY_HIGH) throw err;
      await record(latest, 'skipped', { reason: 'memory-high' });
      this.deps.log.error({ campaignId, err: err.message }, 'occurrence skipped: Redis is too full for its ledger');
      return 'skipped';
    }
    const runId = spec.kind === 'at' ? ONE_OFF_RUN_ID : runIdForOccurrence(latest);
    const created = await this.deps.starter.start(campaignId, runId, {
      allowedFrom: ['scheduled'],
      statusAfter: spec.kind === 'at' ? 'completed' : 'scheduled',
      trigger: 'schedule',
      // Its deadline and local times count from when it was due, however late it fires.
      startAt: latest,
    });
    if (created.ok) {
      await record(latest, 'ran', { runId });
      this.deps.log.info({ campaignId, runId }, 'scheduled run started');
      return 'ran';
    }
    if (created.reason === 'exists') return 'duplicate';
    if (created.reason === 'expired') {
      // Every worker missed it until its deadline: nothing of it is worth sending any more.
      await record(latest, 'skipped', { reason: 'expired' });
      this.deps.log.warn(
        { campaignId, occurrence: new Date(latest).toISOString(), deadline: new Date(created.deadline ?? 0).toISOString() },
        'occurrence skipped whole: its deadline passed before it could start',
      );
      if (spec.kind === 'at') await this.deps.lifecycle.setSchedule(campaignId, null, campaign.scheduleVersion);
      return 'skipped';
    }
    const reason =
      created.reason === 'empty'
        ? 'no-recipients'
        : created.status === 'paused'
          ? 'paused'
          : created.status === 'running'
            ? 'previous-run-active'
            : `campaign-${created.status ?? created.reason}`;
    await record(latest, 'skipped', { reason });
    this.deps.log.info({ campaignId, reason }, 'occurrence skipped');
    return 'skipped';
  }
}
