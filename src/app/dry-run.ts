import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Campaign } from '../domain/campaign.js';
import { DomainError, ErrorCodes } from '../domain/errors.js';
import { sizeProblem } from '../domain/message-limits.js';
import { recipientRecord } from '../domain/recipient.js';
import { compileCampaignMessage, renderContext, templateProblems, type CompiledMessage } from '../domain/template.js';
import { RENDER_SLICE_MS, TimeSlice } from './waiting.js';
import { requireCampaign } from './campaign-view.js';
import { legCampaign } from '../domain/fallback.js';
import type { CampaignStore, ProviderRegistry } from './ports.js';

/** Ids named per outcome: enough to find the pattern, never the list. */
export const DRY_RUN_EXAMPLES = 20;

/** Distinct error texts kept apart; the rest are counted together. */
const MAX_GROUPS = 50;

export interface OutcomeGroup {
  count: number;
  /** Up to DRY_RUN_EXAMPLES recipient ids. */
  examples: string[];
}

export interface DryRunReport {
  campaignId: string;
  /** The list version rendered (a later upload makes a new one). */
  listVersion: number;
  recipients: number;
  rendered: number;
  /** Recipients whose message would not render or not fit: a launch refuses unless `onRenderError` is `skip`. */
  failed: number;
  /** True when every recipient renders and fits. */
  ok: boolean;
  /** The message has no template at all: every recipient gets the same text (nothing was rendered per recipient). */
  fixed: boolean;
  /** By variable name: recipients without it. */
  missingVariables: Array<OutcomeGroup & { variable: string }>;
  /** Other render errors (a limit reached), by message. */
  errors: Array<OutcomeGroup & { error: string }>;
  /** Rendered, but larger than the provider takes. */
  tooLong: Array<OutcomeGroup & { limit: string; example: string }>;
  /** Per locale variant chosen (`default` for the default message). */
  locales: Record<string, { recipients: number; rendered: number; failed: number }>;
  durationMs: number;
  /** A campaign with a fallback chain: the same for each leg's message on its provider (any recipient may reach any leg). */
  fallback?: Array<DryRunReport & { leg: number; provider: string }>;
}

/** One recipient whose message would not render or not fit (the dry run's full listing, NDJSON). */
export type DryRunFailure = { id: string; locale: string | null; /** A fallback leg's message (1…), not the main one. */ leg?: number } & (
  { outcome: 'missing-variable'; variable: string } | { outcome: 'error'; error: string } | { outcome: 'too-long'; limit: string; detail: string }
);

class Groups {
  private readonly groups = new Map<string, OutcomeGroup & { first: string }>();

  add(key: string, id: string, detail: string): void {
    let group = this.groups.get(key);
    if (!group) {
      if (this.groups.size >= MAX_GROUPS) key = 'other';
      group = this.groups.get(key) ?? { count: 0, examples: [], first: detail };
      this.groups.set(key, group);
    }
    group.count += 1;
    if (group.examples.length < DRY_RUN_EXAMPLES) group.examples.push(id);
  }

  entries(): Array<[string, OutcomeGroup & { first: string }]> {
    return [...this.groups.entries()].sort((a, b) => b[1].count - a[1].count);
  }
}

/** How long a clean dry run spares a launch from rendering the list again (the same message, provider and list version). */
export const CLEAN_DRY_RUN_TTL_MS = 3_600_000;

/**
 * Renders the message for every recipient of a campaign's list, page by page
 * (constant memory), and reports who would not get a whole message: a
 * missing variable (by name, with example ids), a render limit, a message
 * too long for the provider; per locale. Launch and schedule run it too, and
 * refuse when anyone would fail, unless the campaign says `onRenderError:
 * skip`.
 */
export class DryRun {
  constructor(
    private readonly deps: {
      store: Pick<CampaignStore, 'get' | 'readPage' | 'rememberCleanDryRun' | 'lastCleanDryRun'>;
      providers: Pick<ProviderRegistry, 'get'>;
    },
  ) {}

  /** The campaign's provider type, whose size limits apply ('' for a provider not configured here: no limit). */
  private typeOf(campaign: Campaign): string {
    return this.deps.providers.get(campaign.provider)?.type ?? '';
  }

  /** The campaign's message compiled, or the 422 naming what does not parse. */
  private compiled(campaign: Campaign): CompiledMessage {
    const compiled = compileCampaignMessage(campaign);
    if (!compiled.ok) throw templateProblems(compiled.problems);
    return compiled.compiled;
  }

  /** What a dry run's answer depends on: the message, the provider's type and the list version, and the same of each fallback leg. */
  private fingerprint(campaign: Campaign): string {
    const legs = fallbackLegs(campaign).map((leg) => [leg.message, leg.provider, this.typeOf(leg)]);
    return createHash('sha256')
      .update(JSON.stringify([campaign.message, campaign.provider, this.typeOf(campaign), campaign.recipients.version, campaign.recipients.total, legs]))
      .digest('base64url');
  }

  /**
   * `onFailure`: called for every recipient who would fail, in list order
   * (awaited: a slow reader slows the run); on a fallback leg, after the
   * main message's, with the leg named in `locale`'s place (`leg 1 (sms)`).
   */
  async execute(campaignId: string, onFailure?: (failure: DryRunFailure) => Promise<void>): Promise<DryRunReport> {
    const campaign = await requireCampaign(this.deps.store, campaignId);
    const main = await this.report(campaign, onFailure, this.compiled(campaign), false);
    const legs = fallbackLegs(campaign);
    if (legs.length > 0) {
      main.fallback = [];
      for (const [i, leg] of legs.entries()) {
        const report = await this.report(leg, onFailure && ((f) => onFailure({ ...f, leg: i + 1 })), this.compiled(leg), false);
        main.fallback.push({ leg: i + 1, provider: leg.provider, ...report });
      }
    }
    if (main.ok && (main.fallback ?? []).every((r) => r.ok)) await this.remember(campaign);
    return main;
  }

  /** Only a whole clean answer is remembered; losing it costs one more dry run. */
  private async remember(campaign: Campaign): Promise<void> {
    await this.deps.store.rememberCleanDryRun(campaign.id, this.fingerprint(campaign), CLEAN_DRY_RUN_TTL_MS).catch(() => undefined);
  }

  async report(
    campaign: Campaign,
    onFailure?: (failure: DryRunFailure) => Promise<void>,
    template: CompiledMessage = this.compiled(campaign),
    remember = true,
  ): Promise<DryRunReport> {
    if (campaign.listArchived) throw listArchived(campaign.id, 'render it');
    const started = performance.now();
    const type = this.typeOf(campaign);
    const { version, pages, total } = campaign.recipients;
    const report: DryRunReport = {
      campaignId: campaign.id,
      listVersion: version,
      recipients: total,
      rendered: 0,
      failed: 0,
      ok: true,
      fixed: template.fixed,
      missingVariables: [],
      errors: [],
      tooLong: [],
      // No prototype: a tag such as toString is a key like any other.
      locales: Object.create(null) as DryRunReport['locales'],
      durationMs: 0,
    };
    const missing = new Groups();
    const errors = new Groups();
    const tooLong = new Groups();
    const context = renderContext(campaign, campaign.latestRunId ?? 'dry-run', Date.now());
    // A fixed text is the same for everyone: one render says whether it fits.
    const fixedProblem = template.fixed ? sizeProblem(type, campaign.message) : null;
    let next = pages > 0 ? this.deps.store.readPage(campaign.id, version, 0) : null;
    // A slow template does not hold the API's event loop for long: other requests get in.
    const slice = new TimeSlice(RENDER_SLICE_MS);
    for (let page = 0; page < pages; page += 1) {
      const recipients = await next!;
      // One page ahead: reading the next while this one renders.
      next = page + 1 < pages ? this.deps.store.readPage(campaign.id, version, page + 1) : null;
      for (const stored of recipients) {
        await slice.yieldIfDue();
        const recipient = recipientRecord(stored);
        let locale: string | null;
        let failed = false;
        if (template.fixed) {
          locale = template.localeFor(recipient);
          if (fixedProblem) {
            tooLong.add(type, recipient.id, fixedProblem);
            failed = true;
            await onFailure?.({ id: recipient.id, locale, outcome: 'too-long', limit: type, detail: fixedProblem });
          }
        } else {
          const result = template.render(recipient, context);
          locale = result.locale;
          if (!result.ok) {
            failed = true;
            if (result.variable !== null) {
              missing.add(result.variable, recipient.id, result.error);
              await onFailure?.({ id: recipient.id, locale, outcome: 'missing-variable', variable: result.variable });
            } else {
              errors.add(result.error, recipient.id, result.error);
              await onFailure?.({ id: recipient.id, locale, outcome: 'error', error: result.error });
            }
          } else {
            const problem = sizeProblem(type, result.message);
            if (problem) {
              tooLong.add(type, recipient.id, problem);
              failed = true;
              await onFailure?.({ id: recipient.id, locale, outcome: 'too-long', limit: type, detail: problem });
            }
          }
        }
        const key = locale ?? 'default';
        const byLocale = Object.prototype.hasOwnProperty.call(report.locales, key)
          ? report.locales[key]!
          : (report.locales[key] = { recipients: 0, rendered: 0, failed: 0 });
        byLocale.recipients += 1;
        if (failed) {
          byLocale.failed += 1;
          report.failed += 1;
        } else {
          byLocale.rendered += 1;
          report.rendered += 1;
        }
      }
    }
    report.missingVariables = missing.entries().map(([variable, g]) => ({ variable, count: g.count, examples: g.examples }));
    report.errors = errors.entries().map(([error, g]) => ({ error, count: g.count, examples: g.examples }));
    report.tooLong = tooLong.entries().map(([limit, g]) => ({ limit, example: g.first, count: g.count, examples: g.examples }));
    report.ok = report.failed === 0;
    report.durationMs = Math.round(performance.now() - started);
    if (report.ok && remember) await this.remember(campaign);
    return report;
  }

  /** Refuses `action` (launch, schedule) when anyone would not get a whole message, unless the campaign skips them. */
  async assertRenders(campaign: Campaign, action: string): Promise<DryRunReport | null> {
    if (campaign.onRenderError === 'skip') return null;
    const legs = fallbackLegs(campaign);
    const templates = [campaign, ...legs].map((c) => this.compiled(c));
    // A fixed text that fits is the same answer for everyone: no list to read.
    const fits = (c: Campaign, i: number) => templates[i]!.fixed && !sizeProblem(this.typeOf(c), c.message);
    if ([campaign, ...legs].every(fits)) return null;
    // A clean dry run of these very messages, providers and list within the hour: the same answer.
    if ((await this.deps.store.lastCleanDryRun(campaign.id)) === this.fingerprint(campaign)) return null;
    let main: DryRunReport | null = null;
    for (const [i, c] of [campaign, ...legs].entries()) {
      if (fits(c, i)) continue;
      const report = await this.report(c, undefined, templates[i], false);
      if (!report.ok) throw renderFailed(report, action, i === 0 ? undefined : `fallback leg ${i} (${c.provider})`);
      if (i === 0) main = report;
    }
    await this.remember(campaign);
    return main;
  }
}

/** Each fallback leg as the campaign it renders like. */
function fallbackLegs(campaign: Campaign): Campaign[] {
  return campaign.fallback.map((_, i) => legCampaign(campaign, i + 1));
}

export function listArchived(campaignId: string, what: string): DomainError {
  return new DomainError(ErrorCodes.INVALID_STATE, `campaign ${campaignId}: its recipient list was archived with its last run; cannot ${what}`, {
    listArchived: true,
  });
}

export function renderFailed(report: DryRunReport, action: string, leg?: string): DomainError {
  const parts: string[] = [];
  for (const m of report.missingVariables.slice(0, 3)) parts.push(`${m.count} without ${m.variable} (first: ${m.examples[0]})`);
  for (const t of report.tooLong.slice(0, 2)) parts.push(`${t.count} too long for ${t.limit} (${t.example})`);
  for (const e of report.errors.slice(0, 2)) parts.push(`${e.count}: ${e.error}`);
  return new DomainError(
    ErrorCodes.RENDER_FAILED,
    `cannot ${action} campaign ${report.campaignId}: the message${leg ? ` of its ${leg}` : ''} would not render for ${report.failed} of ${report.recipients} recipient(s): ${parts.join('; ')}. ` +
      'Fix the template or the list (POST …/dry-run shows who), give the field a default ({{ name | default: "there" }}), or set "onRenderError": "skip" to skip them (reason render-error). Nothing was changed.',
    report,
  );
}
