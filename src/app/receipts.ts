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
  /** The provider re-sent it by SMS itself (nativeFallback) and this is how that went: the recipient is on its SMS leg now. */
  resent?: boolean;
};

export type ReceiptResult = { key?: string; messageId?: string; outcome: ReceiptOutcome | 'unknown' };

/** List pages read to check receipts against, kept a while: receipts come in bursts for the same pages. */
const PAGE_CACHE = 256;
/** Receipts resolved at once (each a few reads). */
const RESOLVE_CONCURRENCY = 64;
/** Receipts of one run applied in one ledger step at most. */
const STEP_SIZE = 500;

/** A run a receipt leads to, with what checking and applying it needs. */
interface Target {
  campaignId: string;
  runId: string;
  runNo: number;
  /** The providers of its legs, in order: the campaign's, then its fallback chain's (each leg its own provider). */
  chain: string[];
  pageSize: number;
  version: number;
  total: number;
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
      ledger: Pick<Ledger, 'receipts'>;
      outbox: Pick<Outbox, 'mark'>;
      messageIds: MessageIds;
    },
  ) {}

  async apply(provider: string, receipts: readonly Receipt[]): Promise<ReceiptResult[]> {
    const outcomes: Array<ReceiptOutcome | 'unknown'> = receipts.map(() => 'unknown');
    // Which recipient each receipt is about (runs looked up once per request).
    const runs = new Map<number, Promise<Target | null>>();
    const found: Array<{ index: number; target: Target; position: number; leg: number } | null> = [];
    for (let i = 0; i < receipts.length; i += RESOLVE_CONCURRENCY) {
      const chunk = receipts.slice(i, i + RESOLVE_CONCURRENCY);
      found.push(...(await Promise.all(chunk.map((r, j) => this.resolve(provider, r, runs).then((f) => (f ? { index: i + j, ...f } : null))))));
    }
    // Applied per run, in the order given (a message's undelivered, then delivered), a ledger step per batch.
    const byRun = new Map<number, Array<{ index: number; target: Target; position: number; leg: number }>>();
    for (const f of found) if (f) byRun.set(f.target.runNo, [...(byRun.get(f.target.runNo) ?? []), f]);
    for (const group of byRun.values()) {
      const { campaignId, runId, runNo, pageSize } = group[0]!.target;
      // Their events may go to a webhook after the run finished: the dispatchers look at the campaign again.
      await this.deps.outbox.mark(campaignId);
      for (let i = 0; i < group.length; i += STEP_SIZE) {
        const step = group.slice(i, i + STEP_SIZE);
        const applied = await this.deps.ledger.receipts(
          campaignId,
          runId,
          runNo,
          pageSize,
          step.map(({ index, position, leg }) => ({
            position,
            leg,
            delivered: receipts[index]!.delivered,
            at: receipts[index]!.at,
            resent: receipts[index]!.resent === true,
          })),
        );
        step.forEach(({ index }, j) => (outcomes[index] = applied[j] === 'missing' ? 'unknown' : applied[j]!));
      }
    }
    return receipts.map((r, i) => (r.key !== undefined ? { key: r.key, outcome: outcomes[i]! } : { messageId: r.messageId, outcome: outcomes[i]! }));
  }

  /** The run and position a receipt names, when it names a recipient this provider was sent (its key's check bits match). */
  private async resolve(
    provider: string,
    receipt: Receipt,
    runs: Map<number, Promise<Target | null>>,
  ): Promise<{ target: Target; position: number; leg: number } | null> {
    const named = receipt.key !== undefined ? readReceiptKey(receipt.key) : await this.deps.messageIds.find(provider, receipt.messageId);
    if (!named) return null;
    if (!runs.has(named.runNo)) runs.set(named.runNo, this.target(named.runNo));
    const target = await runs.get(named.runNo)!;
    // Only a provider that sent it reports on it: the campaign's, or a fallback leg's (which says which leg).
    const leg = target ? target.chain.indexOf(provider) : -1;
    if (!target || leg < 0 || named.position >= target.total) return null;
    const ids = await this.page(target.campaignId, target.version, Math.floor(named.position / target.pageSize));
    const id = ids[named.position % target.pageSize];
    // A key must be that recipient's (its check bits); a message id was found by its own fingerprint.
    if (id === undefined || (receipt.key !== undefined && !isReceiptKeyOf(receipt.key, target.campaignId, target.runId, id, leg))) return null;
    return { target, position: named.position, leg };
  }

  /** The run a number names, if it is in Redis with that number, and its campaign's provider. */
  private async target(runNo: number): Promise<Target | null> {
    const where = await this.deps.runs.runByNumber(runNo);
    if (!where) return null;
    const [run, campaign] = await Promise.all([this.deps.runs.getRun(where.campaignId, where.runId), this.deps.store.get(where.campaignId)]);
    if (!run || run.no !== runNo || run.archived || !campaign) return null;
    const { pageSize, version, total } = run.recipients;
    return { ...where, runNo, chain: [campaign.provider, ...campaign.fallback.map((leg) => leg.provider)], pageSize, version, total };
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
