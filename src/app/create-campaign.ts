import { LIST_BYTES_PER_RECIPIENT, type MemoryGuard } from './memory-guard.js';
import { planLayout, type CampaignPriority, type Message, type RenderErrorPolicy } from '../domain/campaign.js';
import { DomainError, ErrorCodes } from '../domain/errors.js';
import { newId } from '../domain/ids.js';
import type { FallbackLeg } from '../domain/fallback.js';
import { FieldNames, invalidRecipients, RecipientCollector, type IngestSummary, type StoredRecipient } from '../domain/recipient.js';
import type { FrequencyCap, QuietHours } from '../domain/respect.js';
import { checkWindows, type WindowSettings } from '../domain/windows.js';
import { campaignView, type CampaignView } from './campaign-view.js';
import type { CampaignStore, ProviderRegistry } from './ports.js';

export interface CreateCampaignInput extends WindowSettings {
  name: string;
  provider: string;
  message: Message;
  priority: CampaignPriority;
  maxAttempts?: number;
  kind: string;
  quietHours: QuietHours | null;
  suppressionLists: string[];
  frequencyCap: FrequencyCap | null;
  onRenderError: RenderErrorPolicy;
  /** Providers tried next (domain/fallback.ts). */
  fallback?: FallbackLeg[];
  /** Inline recipients; without them the campaign waits in draft for an upload. */
  recipients?: readonly unknown[];
  /** What an unusable recipient does: skipped and reported, or the whole request refused. */
  invalid: 'skip' | 'reject';
}

export interface CreateCampaignResult {
  campaign: CampaignView;
  recipients: IngestSummary | null;
}

function fieldNamesOf(recipients: readonly StoredRecipient[]): string[] | null {
  const names = new FieldNames();
  for (const r of recipients) names.add(r);
  return names.list();
}

export class CreateCampaign {
  constructor(
    private readonly deps: {
      store: CampaignStore;
      providers: ProviderRegistry;
      /** Refuses new work while Redis is nearly full. */
      memory?: Pick<MemoryGuard, 'admit'>;
      pageSize: number;
    },
  ) {}

  async execute(input: CreateCampaignInput): Promise<CreateCampaignResult> {
    if (!this.deps.providers.get(input.provider)) {
      throw new DomainError(ErrorCodes.UNKNOWN_PROVIDER, `provider ${JSON.stringify(input.provider)} is not configured`, {
        path: ['provider'],
        known: this.deps.providers.names(),
      });
    }
    checkFallback(this.deps.providers, input.provider, input.fallback ?? []);
    checkWindows(input, Date.now());
    const collector = new RecipientCollector();
    for (const recipient of input.recipients ?? []) collector.add(recipient);
    const summary = collector.summary();
    if (input.invalid === 'reject' && summary.invalid > 0) throw invalidRecipients(summary, 'nothing was created');
    await this.deps.memory?.admit('create a campaign', collector.recipients.length * LIST_BYTES_PER_RECIPIENT);
    const createdAt = Date.now();
    const id = newId(createdAt);
    const layout = planLayout(collector.recipients.length, this.deps.pageSize);
    await this.deps.store.create(
      {
        id,
        name: input.name,
        provider: input.provider,
        message: input.message,
        priority: input.priority,
        maxAttempts: input.maxAttempts ?? null,
        kind: input.kind,
        quietHours: input.quietHours,
        suppressionLists: input.suppressionLists,
        frequencyCap: input.frequencyCap,
        onRenderError: input.onRenderError,
        deliverAt: input.deliverAt,
        pace: input.pace,
        expiresAt: input.expiresAt,
        expiresAfter: input.expiresAfter,
        fallback: input.fallback ?? [],
        listFields: input.recipients ? fieldNamesOf(collector.recipients) : null,
        templated: true,
        createdAt,
        layout,
      },
      collector.recipients,
    );
    const campaign = await this.deps.store.get(id);
    if (!campaign) throw new Error(`campaign ${id} vanished right after it was written`);
    return { campaign: campaignView(campaign, null), recipients: input.recipients ? summary : null };
  }
}

/**
 * A fallback chain names configured providers, none twice and none the
 * campaign's own (a second try on the same channel is what attempts are
 * for); refused with the leg's path otherwise.
 */
export function checkFallback(providers: Pick<ProviderRegistry, 'get' | 'names'>, main: string, legs: readonly FallbackLeg[]): void {
  const seen = new Set([main]);
  legs.forEach((leg, i) => {
    if (!providers.get(leg.provider)) {
      throw new DomainError(ErrorCodes.UNKNOWN_PROVIDER, `fallback provider ${JSON.stringify(leg.provider)} is not configured`, {
        path: ['fallback', i, 'provider'],
        known: providers.names(),
      });
    }
    if (seen.has(leg.provider)) {
      throw new DomainError(
        ErrorCodes.VALIDATION_FAILED,
        `fallback leg ${i + 1} repeats provider ${JSON.stringify(leg.provider)}: each leg must be another channel`,
        {
          path: ['fallback', i, 'provider'],
        },
      );
    }
    seen.add(leg.provider);
  });
}
