import type { LegCounts } from '../domain/fallback.js';
import type { Campaign, CampaignSettings } from '../domain/campaign.js';
import { scheduleView, type ScheduleView } from '../domain/schedule.js';
import { emptyCounts, type RunCounts } from '../domain/ledger.js';
import type { DeferReason, ReasonName } from '../domain/respect.js';
import { campaignNotFound } from '../domain/errors.js';
import { templateWarnings } from '../domain/template.js';
import type { CampaignStore, Runs, RunState } from './ports.js';

/** The campaign with id `id`, or CAMPAIGN_NOT_FOUND. */
export async function requireCampaign(store: Pick<CampaignStore, 'get'>, id: string): Promise<Campaign> {
  const campaign = await store.get(id);
  if (!campaign) throw campaignNotFound(id);
  return campaign;
}

/** The campaign's latest run, when it has one. */
export function latestRun(ledger: Pick<Runs, 'getRun'>, campaign: Campaign): Promise<RunState | null> {
  return campaign.latestRunId ? ledger.getRun(campaign.id, campaign.latestRunId) : Promise.resolve(null);
}

/** A campaign as the API shows it, read now. */
export async function currentView(store: Pick<CampaignStore, 'get'>, ledger: Pick<Runs, 'getRun'>, id: string): Promise<CampaignView> {
  const campaign = await requireCampaign(store, id);
  return campaignView(campaign, await latestRun(ledger, campaign));
}

/** A campaign as the API shows it: with its latest run and that run's counts. */
export interface CampaignView extends CampaignSettings, Pick<Campaign, 'id' | 'status' | 'createdAt' | 'updatedAt'> {
  recipientCount: number;
  /** What may go wrong at send time and is worth a look now: template fields no recipient of the list has. */
  warnings: string[];
  counts: CountsView;
  latestRun: RunView | null;
  schedule: ScheduleView | null;
}

export interface RunView {
  id: string;
  status: string;
  trigger: string;
  createdAt: string;
  completedAt: string | null;
  /** The stuck-run alarm: recipients pending and no progress for a long time. */
  stuck: boolean;
  /** Its results left Redis for the archive (RUN_RETENTION_MS): they are read from there. */
  archived?: true;
  /** When it was due (a scheduled occurrence's own time): local times and expiresAfter count from it. */
  startAt: string;
  /** Nothing is sent after this; null: no deadline. */
  expiresAt: string | null;
  /** With `deliverAt`: its recipients' local-time waves, earliest first (`due`: that instant has come). */
  waves?: WaveView[];
}

export interface WaveView {
  at: string;
  recipients: number;
  due: boolean;
}

/**
 * A run's counts as the API shows them: the ledger's, plus how many pending
 * recipients wait for their quiet hours to end (and until when at the latest),
 * and `skipped` broken down by reason.
 */
export interface CountsView extends RunCounts {
  deferred: number;
  /** `deferred` by what they wait for: `quiet-hours`, `local-time`. */
  deferredBy: Partial<Record<DeferReason, number>>;
  deferredUntil: string | null;
  skippedBy: Partial<Record<ReasonName, number>>;
  /** Of `skipped`: not sent before the run's deadline. */
  expired: number;
  /** The run's pace at the provider now, recipients a second (a `spreadOver` worked out); null: none of its own. */
  pace: number | null;
  /** A run with a fallback chain: per leg, who reached it, was sent on it, moved on from it (domain/fallback.ts). */
  byLeg?: LegCounts[];
}

export function countsView(run: RunState): CountsView {
  return {
    ...run.counts,
    deferred: run.deferred,
    deferredBy: run.deferredBy,
    deferredUntil: run.deferredUntil === null ? null : iso(run.deferredUntil),
    skippedBy: run.skippedBy,
    expired: run.skippedBy.expired ?? 0,
    pace: run.pace === null ? null : Math.round(run.pace * 1000) / 1000,
    ...(run.byLeg ? { byLeg: run.byLeg } : {}),
  };
}

function noCounts(total: number): CountsView {
  return { ...emptyCounts(total), deferred: 0, deferredBy: {}, deferredUntil: null, skippedBy: {}, expired: 0, pace: null };
}

export function iso(ms: number): string {
  return new Date(ms).toISOString();
}

export function runView(run: RunState, waves?: ReadonlyArray<{ at: number; recipients: number }>, now = Date.now()): RunView {
  return {
    id: run.id,
    status: run.status,
    trigger: run.trigger,
    createdAt: iso(run.createdAt),
    completedAt: run.completedAt === null ? null : iso(run.completedAt),
    stuck: run.stuckSince !== null && run.status === 'running',
    ...(run.archived ? { archived: true as const } : {}),
    startAt: iso(run.startAt),
    expiresAt: run.expiresAt === null ? null : iso(run.expiresAt),
    ...(waves ? { waves: waves.map((w) => ({ at: iso(w.at), recipients: w.recipients, due: w.at <= now })) } : {}),
  };
}

export function campaignView(campaign: Campaign, run: RunState | null, waves?: ReadonlyArray<{ at: number; recipients: number }>): CampaignView {
  return {
    id: campaign.id,
    name: campaign.name,
    provider: campaign.provider,
    message: campaign.message,
    priority: campaign.priority,
    maxAttempts: campaign.maxAttempts,
    kind: campaign.kind,
    quietHours: campaign.quietHours,
    suppressionLists: campaign.suppressionLists,
    frequencyCap: campaign.frequencyCap,
    onRenderError: campaign.onRenderError,
    deliverAt: campaign.deliverAt,
    pace: campaign.pace,
    expiresAt: campaign.expiresAt,
    expiresAfter: campaign.expiresAfter,
    fallback: campaign.fallback,
    status: campaign.status,
    createdAt: campaign.createdAt,
    updatedAt: campaign.updatedAt,
    recipientCount: campaign.recipients.total,
    warnings: templateWarnings(campaign, campaign.listFields, campaign.recipients.total),
    counts: run ? countsView(run) : noCounts(campaign.recipients.total),
    latestRun: run ? runView(run, waves) : null,
    schedule: campaign.schedule ? scheduleView(campaign.schedule, Date.now()) : null,
  };
}
