import { BoundedCache } from '../domain/bounded-cache.js';
import { isReceiptKeyOf, readReceiptKey } from '../domain/ids.js';
import { recipientId } from '../domain/recipient.js';
import type { CampaignStore, Ledger, MessageIds, Outbox, ReceiptOutcome, Runs } from './ports.js';

/** One receipt as a provider's format says it, whatever the format: which message, and what became of it. */
export type Receipt = (
  | {
      /** The idempotency key pushq sent the message under (an `http` body's `idempotencyKey`, an alimtalk `recipientGroupingKey`). */
      key: string;
      messageId?: undefined;
    }
  | {
      /** The provider's own id for the message (an `http` provider's `messageId` in its answer). */
      messageId: string;
      key?: undefined;
    }
) & {
  delivered: boolean;
  /** When the provider says it happened (epoch ms). */
  at: number;
};

export type ReceiptResult = { key?: string; messageId?: string; outcome: ReceiptOutcome | 'unknown' };

/** List pages read to check receipts against, kept a while: receipts come in bursts for the same pages. */
const PAGE_CACHE = 256;

/**
 * Receipts in: a provider's later word on a message (delivered, or not),
 * recorded in the ledger as one more atomic step (lua/receipt.lua) with its
 * counts and its `recipient.delivered` / `recipient.undelivered` event. The
 * idempotency key names the run (its number) and the recipient's position,
 * and carries check bits of the recipient's id: nothing is stored per
 * recipient to find it, and a key that does not match the recipient at that
 * position — forged, or of a run that left Redis — is unknown.
 */
export class Receipts {
  private readonly pages = new BoundedCache<string, Promise<string[]>>(PAGE_CACHE);

  constructor(
    private readonly deps: {
      runs: Pick<Runs, 'getRun' | 'runByNumber'>;
      store: Pick<CampaignStore, 'get' | 'readPage'>;
      ledger: Pick<Ledger, 'receipt'>;
      outbox: Pick<Outbox, 'mark'>;
      messageIds: MessageIds;
    },
  ) {}

  async apply(provider: string, receipts: readonly Receipt[]): Promise<ReceiptResult[]> {
    const out: ReceiptResult[] = [];
    for (const receipt of receipts) {
      const outcome = await this.one(provider, receipt);
      out.push(receipt.key !== undefined ? { key: receipt.key, outcome } : { messageId: receipt.messageId, outcome });
    }
    return out;
  }

  private async one(provider: string, receipt: Receipt): Promise<ReceiptOutcome | 'unknown'> {
    const named = receipt.key !== undefined ? readReceiptKey(receipt.key) : await this.deps.messageIds.find(provider, receipt.messageId);
    if (!named) return 'unknown';
    const where = await this.deps.runs.runByNumber(named.runNo);
    if (!where) return 'unknown';
    const [run, campaign] = await Promise.all([this.deps.runs.getRun(where.campaignId, where.runId), this.deps.store.get(where.campaignId)]);
    // Only the provider that sent it reports on it.
    if (!run || run.no !== named.runNo || run.archived || !campaign || campaign.provider !== provider) return 'unknown';
    const { pageSize, version, total } = run.recipients;
    if (named.position >= total) return 'unknown';
    const page = Math.floor(named.position / pageSize);
    const ids = await this.page(where.campaignId, version, page);
    const id = ids[named.position % pageSize];
    // A key must be that recipient's (its check bits); a message id was found by its own fingerprint.
    if (id === undefined || (receipt.key !== undefined && !isReceiptKeyOf(receipt.key, where.campaignId, where.runId, id))) return 'unknown';
    // Its event may go to a webhook after the run finished: the dispatchers look at the campaign again.
    await this.deps.outbox.mark(where.campaignId);
    const outcome = await this.deps.ledger.receipt(where.campaignId, where.runId, named.runNo, named.position, pageSize, receipt);
    return outcome === 'missing' ? 'unknown' : outcome;
  }

  private page(campaignId: string, version: number, page: number): Promise<string[]> {
    // A version of a list never changes (a new list is a new version): its pages can be kept.
    const key = `${campaignId}|${version}|${page}`;
    return this.pages.get(key, () => {
      const ids = this.deps.store.readPage(campaignId, version, page).then((rows) => rows.map(recipientId));
      ids.catch(() => this.pages.forget(key));
      return ids;
    });
  }
}
