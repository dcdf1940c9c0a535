import { LIST_BYTES_PER_RECIPIENT, type MemoryGuard } from './memory-guard.js';
import {
  invalidState,
  planLayout,
  type Campaign,
  type CampaignPriority,
  type Message,
  type RecipientLayout,
  type RenderErrorPolicy,
} from '../domain/campaign.js';
import { campaignNotFound, DomainError, ErrorCodes } from '../domain/errors.js';
import { newId } from '../domain/ids.js';
import { invalidRecipients, RecipientCollector, type IngestSummary } from '../domain/recipient.js';
import { parseDuration, type FrequencyCap, type QuietHours } from '../domain/respect.js';
import { checkWindows, windowFields, type WindowSettings } from '../domain/windows.js';
import { nextOccurrence } from '../domain/schedule.js';
import { currentView, requireCampaign, type CampaignView } from './campaign-view.js';
import type { CampaignStore, Lifecycle, Logger, PageQueue, ProviderRegistry, Runs, Scheduler, Staging, Transition } from './ports.js';
import { fallbackFields, type FallbackLeg } from '../domain/fallback.js';
import { checkFallback } from './create-campaign.js';
import type { RunPump } from './pump.js';

export interface CampaignPatch extends Partial<WindowSettings> {
  name?: string;
  message?: Message;
  priority?: CampaignPriority;
  maxAttempts?: number;
  kind?: string;
  quietHours?: QuietHours | null;
  suppressionLists?: string[];
  frequencyCap?: FrequencyCap | null;
  onRenderError?: RenderErrorPolicy;
  fallback?: FallbackLeg[];
  /** Replaces the whole list (inline); the change is all or nothing. */
  recipients?: readonly unknown[];
  invalid: 'skip' | 'reject';
}

/**
 * Pause, resume, cancel, edit and clone. Each status change is one atomic
 * ledger step that checks the state it starts from, so racing calls and
 * workers can never half-apply one; what follows it (enqueueing the pages of
 * a resumed run, removing a schedule) is idempotent.
 */
export class CampaignLifecycle {
  constructor(
    private readonly deps: {
      store: CampaignStore;
      runs: Pick<Runs, 'getRun' | 'markActive'>;
      lifecycle: Lifecycle;
      scheduler: Scheduler;
      queue: PageQueue;
      pump: RunPump;
      pageSize: number;
      /** Where a fallback chain's providers are checked. */
      providers: Pick<ProviderRegistry, 'get' | 'names'>;
      /** Refuses new work while Redis is nearly full. */
      memory?: Pick<MemoryGuard, 'admit'>;
      log: Logger;
    },
  ) {}

  /** Runs a transition against the latest run, again if a run started in between. */
  private async apply<T>(id: string, action: string, step: (campaign: Campaign) => Promise<Transition<T>>): Promise<Transition<T> & { ok: true }> {
    for (let attempt = 0; attempt < 3; attempt += 1) {
      const campaign = await requireCampaign(this.deps.store, id);
      const result = await step(campaign);
      if (result.ok) return result;
      if (result.reason === 'missing') throw campaignNotFound(id);
      if (result.reason === 'state') throw invalidState(id, result.status ?? campaign.status, action, result.message);
    }
    throw new DomainError(ErrorCodes.INVALID_STATE, `campaign ${id} kept changing; try again`);
  }

  view(id: string): Promise<CampaignView> {
    return currentView(this.deps.store, this.deps.runs, id);
  }

  async pause(id: string): Promise<CampaignView> {
    await this.apply(id, 'pause', (c) => this.deps.lifecycle.pause(id, c.latestRunId));
    return this.view(id);
  }

  async resume(id: string): Promise<CampaignView> {
    let runId: string | null = null;
    const result = await this.apply(id, 'resume', (c) => {
      runId = c.latestRunId;
      const due = c.schedule !== null && nextOccurrence(c.schedule, Date.now()) !== null;
      return this.deps.lifecycle.resume(id, c.latestRunId, due ? 'scheduled' : 'draft');
    });
    if (runId && result.gen !== undefined) {
      // The paused run goes on: its unfinished pages again, under a new generation of job ids.
      const run = await this.deps.runs.getRun(id, runId);
      await this.deps.runs.markActive(id, runId);
      if (result.pages && result.pages.length > 0) {
        await this.deps.queue.enqueuePages(
          result.pages.map((page) => ({ campaignId: id, runId: runId!, page, gen: result.gen! })),
          { priorityClass: run?.priorityClass ?? 1 },
        );
      }
      await this.deps.pump.fill(id, runId);
    }
    return this.view(id);
  }

  async cancel(id: string): Promise<CampaignView> {
    await this.apply(id, 'cancel', (c) => this.deps.lifecycle.cancel(id, c.latestRunId));
    await this.deps.scheduler.remove(id).catch((err) => this.deps.log.warn({ campaignId: id, err: (err as Error).message }, 'could not remove the schedule'));
    return this.view(id);
  }

  async edit(id: string, patch: CampaignPatch): Promise<{ campaign: CampaignView; recipients: IngestSummary | null }> {
    const { pace, ...rest } = patch;
    const others = Object.entries(rest).some(([key, value]) => key !== 'invalid' && value !== undefined);
    if (pace !== undefined && !others) {
      // Pace alone: any state, and a run that sends takes it at once.
      const tps = pace && 'tps' in pace ? pace.tps : null;
      const spreadMs = pace && 'spreadOver' in pace ? parseDuration(pace.spreadOver) : null;
      await this.apply(id, 'change the pace of', (c) => this.deps.lifecycle.setPace(id, c.latestRunId, { tps, spreadMs }));
      return { campaign: await this.view(id), recipients: null };
    }
    checkWindows(patch, Date.now());
    const fields: Record<string, string> = windowFields({
      deliverAt: patch.deliverAt,
      pace,
      // One deadline at a time: setting one clears the other.
      expiresAt: patch.expiresAt !== undefined ? patch.expiresAt : patch.expiresAfter ? null : undefined,
      expiresAfter: patch.expiresAfter !== undefined ? patch.expiresAfter : patch.expiresAt ? null : undefined,
    });
    if (patch.name !== undefined) fields.name = patch.name;
    if (patch.message !== undefined) {
      fields.message = JSON.stringify(patch.message);
      // It passed the template check at the door: from now on it is rendered.
      fields.templated = '1';
    }
    if (patch.priority !== undefined) fields.priority = patch.priority;
    if (patch.maxAttempts !== undefined) fields.maxAttempts = String(patch.maxAttempts);
    if (patch.kind !== undefined) fields.kind = patch.kind;
    if (patch.quietHours !== undefined) fields.quietHours = patch.quietHours ? JSON.stringify(patch.quietHours) : '';
    if (patch.suppressionLists !== undefined) fields.suppressionLists = JSON.stringify(patch.suppressionLists);
    if (patch.frequencyCap !== undefined) fields.frequencyCap = patch.frequencyCap ? JSON.stringify(patch.frequencyCap) : '';
    if (patch.onRenderError !== undefined) fields.onRenderError = patch.onRenderError;
    if (patch.fallback !== undefined) {
      checkFallback(this.deps.providers, (await requireCampaign(this.deps.store, id)).provider, patch.fallback);
      Object.assign(fields, fallbackFields(patch.fallback));
    }
    let summary: IngestSummary | null = null;
    if (patch.recipients) {
      const collector = new RecipientCollector();
      for (const r of patch.recipients) collector.add(r);
      summary = collector.summary();
      if (patch.invalid === 'reject' && summary.invalid > 0) throw invalidRecipients(summary, 'nothing was changed');
      // Refuse early when the state forbids it, before writing a whole list for nothing.
      const campaign = await requireCampaign(this.deps.store, id);
      if (campaign.status !== 'draft' && campaign.status !== 'scheduled') throw invalidState(id, campaign.status, 'edit');
      // The list and the other fields change in one step: a launch racing the edit sees all of it or none.
      await this.replaceList(
        campaign,
        collector.recipients.length,
        async (staging) => {
          await staging.add(collector.recipients);
        },
        fields,
      );
    } else if (Object.keys(fields).length > 0) {
      await this.apply(id, 'edit', () => this.deps.lifecycle.edit(id, fields));
    }
    return { campaign: await this.view(id), recipients: summary };
  }

  /**
   * Stages a new list (`fill` adds its rows), then swaps it in as one Lua
   * step, with `fields` of the campaign if given — or drops it whole, if
   * filling failed or the state forbids it.
   */
  async replaceList(
    campaign: Campaign,
    expectedRows: number,
    fill: (staging: Staging) => Promise<void>,
    fields: Record<string, string> = {},
  ): Promise<RecipientLayout> {
    const staging = await this.deps.store.beginStaging(campaign.id, expectedRows, this.deps.pageSize);
    let live = false;
    try {
      await fill(staging);
      const layout = await staging.finish();
      const listFields = staging.fields();
      const withFields = { ...fields, listFields: listFields ? JSON.stringify(listFields) : '' };
      const result = await this.apply(campaign.id, 'upload', (c) => this.deps.lifecycle.swapRecipients(campaign.id, c.latestRunId, layout, withFields));
      live = true;
      await staging.commit();
      if (result.dropVersion !== null) await this.deps.store.dropRecipients(campaign.id, { ...campaign.recipients, version: result.dropVersion });
      return layout;
    } finally {
      if (!live) await staging.abort();
    }
  }

  /** A new draft with the same message, provider, priority and recipients: the honest way to send it again. */
  async clone(id: string, name?: string): Promise<CampaignView> {
    const source = await requireCampaign(this.deps.store, id);
    if (source.listArchived) {
      throw invalidState(
        id,
        source.status,
        'clone',
        'Its recipient list left Redis with its last run (RUN_RETENTION_MS); the results are in the archive. Create a campaign and upload the list.',
      );
    }
    await this.deps.memory?.admit('clone', source.recipients.total * LIST_BYTES_PER_RECIPIENT);
    const createdAt = Date.now();
    const cloneId = newId(createdAt);
    await this.deps.store.copyRecipients(source, cloneId);
    const layout = planLayout(source.recipients.total, source.recipients.pageSize);
    await this.deps.store.create(
      {
        id: cloneId,
        name: name ?? `${source.name} (copy)`,
        provider: source.provider,
        message: source.message,
        priority: source.priority,
        maxAttempts: source.maxAttempts,
        kind: source.kind,
        quietHours: source.quietHours,
        suppressionLists: source.suppressionLists,
        frequencyCap: source.frequencyCap,
        onRenderError: source.onRenderError,
        deliverAt: source.deliverAt,
        pace: source.pace,
        // A fixed deadline is the source's; a clone made after it passed has none (a launch would send to no one).
        expiresAt: source.expiresAt !== null && Date.parse(source.expiresAt) > createdAt ? source.expiresAt : null,
        expiresAfter: source.expiresAfter,
        fallback: source.fallback,
        listFields: source.listFields,
        templated: source.templated,
        createdAt,
        layout,
      },
      null,
    );
    return this.view(cloneId);
  }
}
