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
/** Receipts of one request applied at once (each one ledger step). */
const APPLY_CONCURRENCY = 64;

/** What one request's receipts share: each run looked up once, each campaign marked once. */
class Batch {
  private readonly runs = new Map<number, Promise<unknown>>();
  private readonly marked = new Map<string, Promise<void>>();

  run<T>(runNo: number, load: () => Promise<T>): Promise<T> {
    if (!this.runs.has(runNo)) this.runs.set(runNo, load());
    return this.runs.get(runNo) as Promise<T>;
  }

  once(campaignId: string, mark: () => Promise<void>): Promise<void> {
    if (!this.marked.has(campaignId)) this.marked.set(campaignId, mark());
    return this.marked.get(campaignId)!;
  }
}

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
    const batch = new Batch();
    // Different messages in parallel; receipts for the same message in their order (undelivered, then delivered).
    const byMessage = new Map<string, number[]>();
    receipts.forEach((r, i) => {
      const id = r.key ?? `m:${r.messageId}`;
      byMessage.set(id, [...(byMessage.get(id) ?? []), i]);
    });
    const outcomes: Array<ReceiptOutcome | 'unknown'> = [];
    const groups = [...byMessage.values()];
    for (let i = 0; i < groups.length; i += APPLY_CONCURRENCY) {
      await Promise.all(
        groups.slice(i, i + APPLY_CONCURRENCY).map(async (indexes) => {
          for (const index of indexes) outcomes[index] = await this.one(provider, receipts[index]!, batch);
        }),
      );
    }
    return receipts.map((r, i) => (r.key !== undefined ? { key: r.key, outcome: outcomes[i]! } : { messageId: r.messageId, outcome: outcomes[i]! }));
  }

  private async one(provider: string, receipt: Receipt, batch: Batch): Promise<ReceiptOutcome | 'unknown'> {
    const named = receipt.key !== undefined ? readReceiptKey(receipt.key) : await this.deps.messageIds.find(provider, receipt.messageId);
    if (!named) return 'unknown';
    const target = await batch.run(named.runNo, () => this.resolveRun(named.runNo));
    // Only the provider that sent it reports on it.
    if (!target || target.provider !== provider) return 'unknown';
    const { campaignId, runId, pageSize, version, total } = target;
    if (named.position >= total) return 'unknown';
    const ids = await this.page(campaignId, version, Math.floor(named.position / pageSize));
    const id = ids[named.position % pageSize];
    // A key must be that recipient's (its check bits); a message id was found by its own fingerprint.
    if (id === undefined || (receipt.key !== undefined && !isReceiptKeyOf(receipt.key, campaignId, runId, id))) return 'unknown';
    // Its event may go to a webhook after the run finished: the dispatchers look at the campaign again (once per batch).
    await batch.once(campaignId, () => this.deps.outbox.mark(campaignId));
    const outcome = await this.deps.ledger.receipt(campaignId, runId, named.runNo, named.position, pageSize, receipt);
    return outcome === 'missing' ? 'unknown' : outcome;
  }

  /** The run a number names, if it is in Redis with that number, and its campaign's provider. */
  private async resolveRun(
    runNo: number,
  ): Promise<{ campaignId: string; runId: string; provider: string; pageSize: number; version: number; total: number } | null> {
    const where = await this.deps.runs.runByNumber(runNo);
    if (!where) return null;
    const [run, campaign] = await Promise.all([this.deps.runs.getRun(where.campaignId, where.runId), this.deps.store.get(where.campaignId)]);
    if (!run || run.no !== runNo || run.archived || !campaign) return null;
    const { pageSize, version, total } = run.recipients;
    return { ...where, provider: campaign.provider, pageSize, version, total };
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
