import { DomainError, ErrorCodes } from '../domain/errors.js';
import { listArchived } from './dry-run.js';
import { idempotencyKey } from '../domain/ids.js';
import { sizeProblem } from '../domain/message-limits.js';
import { checkRecipient, recipientRecord, type RecipientRecord } from '../domain/recipient.js';
import { compileCampaignMessage, renderContext, templateProblems } from '../domain/template.js';
import type { Message } from '../domain/campaign.js';
import { requireCampaign } from './campaign-view.js';
import type { CampaignStore, ProviderRegistry, ProviderRequestPreview } from './ports.js';

/** The run id previews render with (`{{ run.id }}`). */
export const PREVIEW_RUN_ID = 'preview';

export interface PreviewView {
  recipient: RecipientRecord;
  /** The locale variant chosen; null: the default message. */
  locale: string | null;
  rendered: boolean;
  /** The rendered message (when it rendered). */
  message?: Message;
  /** Why it did not render: the missing variable, or the error. */
  error?: string;
  variable?: string | null;
  /** Too long for the campaign's provider, when it is. */
  tooLong?: string;
  /** The request the campaign's provider would make, secrets redacted. */
  request?: ProviderRequestPreview;
  /** The request each configured provider would make for it, by provider name (what the same message is on another channel). */
  requests?: Record<string, ProviderRequestPreview & { type: string }>;
}

/**
 * Renders a campaign's message for one recipient — one of its list, or one
 * typed in — and shows the exact request each provider would send for it.
 * Changes nothing, sends nothing.
 */
export class Preview {
  constructor(private readonly deps: { store: Pick<CampaignStore, 'get' | 'readPage' | 'findPosition'>; providers: ProviderRegistry }) {}

  async execute(campaignId: string, input: { recipientId?: string; recipient?: unknown }): Promise<PreviewView> {
    const campaign = await requireCampaign(this.deps.store, campaignId);
    const recipient = await this.recipientOf(campaign.id, { ...campaign.recipients, archived: campaign.listArchived }, input);
    const compiled = compileCampaignMessage(campaign);
    if (!compiled.ok) throw templateProblems(compiled.problems);
    const result = compiled.compiled.render(recipient, renderContext(campaign, PREVIEW_RUN_ID, Date.now()));
    if (!result.ok) return { recipient, locale: result.locale, rendered: false, error: result.error, variable: result.variable };
    const request = {
      idempotencyKey: idempotencyKey(campaign.id, PREVIEW_RUN_ID, recipient.id),
      campaignId: campaign.id,
      runId: PREVIEW_RUN_ID,
      recipient,
      message: result.message,
      kind: campaign.kind,
    };
    const { providers } = this.deps;
    const own = providers.get(campaign.provider);
    const requests: NonNullable<PreviewView['requests']> = {};
    for (const name of providers.names()) {
      const preview = providers.preview?.(name, request);
      if (preview) requests[name] = { type: providers.get(name)!.type, ...preview };
    }
    // The campaign's own provider's request is one of those (without the type the list adds).
    const mine = requests[campaign.provider];
    const ownRequest: ProviderRequestPreview | undefined = mine && { method: mine.method, url: mine.url, headers: mine.headers, body: mine.body };
    const tooLong = own ? sizeProblem(own.type, result.message) : null;
    return {
      recipient,
      locale: result.locale,
      rendered: true,
      message: result.message,
      ...(tooLong ? { tooLong } : {}),
      ...(ownRequest ? { request: ownRequest } : {}),
      requests,
    };
  }

  private async recipientOf(
    campaignId: string,
    layout: Parameters<CampaignStore['findPosition']>[1] & { archived: boolean },
    input: { recipientId?: string; recipient?: unknown },
  ): Promise<RecipientRecord> {
    if ((input.recipientId === undefined) === (input.recipient === undefined)) {
      throw new DomainError(ErrorCodes.VALIDATION_FAILED, 'give either recipientId (one of the list) or recipient (a record typed in), not both', {
        issues: [{ path: [], message: 'recipientId or recipient' }],
      });
    }
    if (input.recipient !== undefined) {
      const check = checkRecipient(input.recipient);
      if (!check.ok) {
        throw new DomainError(ErrorCodes.VALIDATION_FAILED, `recipient: ${check.reason}`, { issues: [{ path: ['recipient'], message: check.reason }] });
      }
      return recipientRecord(check.recipient);
    }
    const id = input.recipientId!;
    if (layout.archived) throw listArchived(campaignId, 'preview a recipient of it (give the record as recipient instead)');
    const position = await this.deps.store.findPosition(campaignId, layout, id);
    if (position === null) {
      throw new DomainError(ErrorCodes.RECIPIENT_NOT_FOUND, `recipient ${JSON.stringify(id)} is not in the list of campaign ${campaignId}`);
    }
    const page = await this.deps.store.readPage(campaignId, layout.version, Math.floor(position / layout.pageSize));
    const stored = page[position % layout.pageSize];
    if (stored === undefined) throw new Error(`recipient ${id} is indexed at ${position} but its page does not hold it`);
    return recipientRecord(stored);
  }
}
