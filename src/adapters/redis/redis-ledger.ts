import { waitForReplicas, type RedisClient } from './connection.js';
import type {
  AcquireResult,
  ClaimDirective,
  ClaimResult,
  ConfirmEntry,
  ConfirmPolicy,
  ConfirmResult,
  EventMasks,
  ExpireResult,
  HeldLease,
  Ledger,
  LedgerEntry,
  LeaseRenewal,
  PageRef,
  ReceiptOutcome,
  ReleaseResult,
  SettlePolicy,
} from '../../app/ports.js';
import { decodeRecord, RECORD_BYTES } from '../../domain/ledger.js';
import type { Keys } from './keys.js';
import { decodeLegs } from '../../domain/fallback.js';
import { decode, packDirectives, packEntries, type Reply } from './replies.js';
import { Scripts } from './scripts.js';

export interface LedgerDurability {
  /** Replicas that must hold a claim before its recipients are sent (Redis WAIT); 0: none. */
  waitReplicas: number;
  /**
   * `strict`: a claim is sent only when `waitReplicas` replicas acknowledged it, so sending stops
   * while fewer are in sync. `available`: only as many as are connected (none after a failover
   * until one rejoins), so sending goes on, unprotected, meanwhile.
   */
  waitMode: 'strict' | 'available';
  /** Longest a claim waits for its replicas before its recipients go back to pending, unsent. */
  waitTimeoutMs: number;
  /**
   * The connection claims (and their WAIT) go through: WAIT blocks the connection it runs on,
   * so it must not be the one the lease renewals and confirms share.
   */
  claimRedis?: RedisClient;
}

const NO_REPLICAS: LedgerDurability = { waitReplicas: 0, waitMode: 'strict', waitTimeoutMs: 500 };

/** No webhook endpoint: the ledger steps write no recipient event. */
export const NO_EVENTS: EventMasks = { maskFor: () => '' };

export class RedisLedger implements Ledger {
  private readonly claimScripts: Scripts;
  private readonly claimRedis: RedisClient;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly scripts: Scripts,
    private readonly durability: LedgerDurability = NO_REPLICAS,
    /** Which recipient events each step writes to the campaign's outbox (the webhook endpoints' subscriptions). */
    private readonly masks: EventMasks = NO_EVENTS,
  ) {
    this.claimRedis = durability.claimRedis ?? redis;
    this.claimScripts = durability.claimRedis ? new Scripts(durability.claimRedis) : scripts;
  }

  private run(ref: { campaignId: string; runId: string }) {
    const campaign = this.keys.campaign(ref.campaignId);
    return { campaign, run: campaign.run(ref.runId) };
  }

  async acquirePage(ref: PageRef, token: string, options: { leaseMs: number; gen: number; settle: SettlePolicy }): Promise<AcquireResult> {
    const { campaign, run } = this.run(ref);
    const reply = (await this.scripts.runBuffer(
      'acquire-page',
      [run.run, run.records(ref.page), run.lease(ref.page), run.leases, run.errors, run.bad, campaign.meta()],
      [ref.page, token, options.leaseMs, options.settle.inDoubt, options.settle.maxAttempts, options.gen, this.masks.maskFor(ref.campaignId)],
    )) as Reply;
    return decode.acquirePage(reply);
  }

  async claim(ref: PageRef, token: string, leaseMs: number, directives: readonly ClaimDirective[], deadlineGuardMs = 0, leg = 0): Promise<ClaimResult> {
    const { campaign, run } = this.run(ref);
    const args: Array<string | number | Buffer> = [
      ref.page,
      token,
      leaseMs,
      this.masks.maskFor(ref.campaignId),
      Math.max(0, Math.round(deadlineGuardMs)),
      leg,
      packDirectives(directives),
    ];
    const result = decode.claim(
      (await this.claimScripts.run(
        'claim',
        [run.run, run.records(ref.page), run.lease(ref.page), run.leases, run.errors, campaign.meta(), run.bad],
        args,
      )) as Reply,
    );
    if (result.kind !== 'ok' || result.claimed.length === 0 || (await this.replicated(run.run))) return result;
    // Not sent, and now known not to be: back to pending, the attempt not spent (if this write is
    // lost too, the page's next holder settles them by the in-doubt policy).
    const back = result.claimed.map((c): ConfirmEntry => ({ ...c, outcome: 'unclaim', delayMs: 1000, code: '', message: '' }));
    await this.confirm(ref, token, leaseMs, { maxAttempts: 255, maxRequeues: 255, leg }, back);
    return { kind: 'unreplicated', count: result.claimed.length };
  }

  /**
   * A claim is the promise that its recipients may be sent once. If the
   * master dies before a replica has it, the promoted replica would see them
   * pending and send them again; so, with replicas, nothing claimed is sent
   * until they acknowledged it (WAIT, on the claim connection).
   */
  private async replicated(key: string): Promise<boolean> {
    const { waitReplicas, waitMode, waitTimeoutMs } = this.durability;
    if (waitReplicas === 0) return true;
    return waitForReplicas(this.claimRedis, key, waitReplicas, waitTimeoutMs, waitMode === 'available');
  }

  async confirm(ref: PageRef, token: string, leaseMs: number, policy: ConfirmPolicy, entries: readonly ConfirmEntry[]): Promise<ConfirmResult> {
    const { campaign, run } = this.run(ref);
    const args: Array<string | number | Buffer> = [
      ref.page,
      token,
      leaseMs,
      policy.maxAttempts,
      policy.maxRequeues,
      this.masks.maskFor(ref.campaignId),
      policy.leg ?? 0,
      packEntries(entries),
    ];
    const reply = (await this.scripts.run(
      'confirm',
      [run.run, run.records(ref.page), run.lease(ref.page), run.leases, run.errors, run.bad, campaign.meta()],
      args,
    )) as Reply;
    return decode.confirm(reply);
  }

  async renewLeases(leases: readonly HeldLease[], leaseMs: number): Promise<LeaseRenewal[]> {
    // One call per run: a run's keys share one hash tag (one cluster slot).
    const byRun = new Map<string, number[]>();
    leases.forEach(({ ref }, i) => {
      const key = this.keys.runMember(ref.campaignId, ref.runId);
      byRun.set(key, [...(byRun.get(key) ?? []), i]);
    });
    const out: LeaseRenewal[] = leases.map(() => ({ kind: 'fenced' }));
    await Promise.all(
      [...byRun.values()].map(async (positions) => {
        const { run } = this.run(leases[positions[0]!]!.ref);
        const args: Array<string | number> = [leaseMs];
        for (const i of positions) args.push(leases[i]!.ref.page, leases[i]!.token);
        const reply = (await this.scripts.run('renew-leases', [run.run, run.leases, ...positions.map((i) => run.lease(leases[i]!.ref.page))], args)) as Reply;
        const renewed = decode.renewLeases(reply);
        positions.forEach((position, j) => (out[position] = renewed[j] ?? { kind: 'inactive', status: 'missing' }));
      }),
    );
    return out;
  }

  async releasePage(ref: PageRef, token: string, size: number, settle: SettlePolicy): Promise<ReleaseResult> {
    const { campaign, run } = this.run(ref);
    const reply = (await this.scripts.run(
      'release-page',
      [run.run, run.records(ref.page), run.lease(ref.page), run.leases, run.open, run.unfinished, run.parked, run.errors, run.bad, campaign.meta()],
      [ref.page, token, size, settle.inDoubt, settle.maxAttempts, this.masks.maskFor(ref.campaignId)],
    )) as Reply;
    return decode.releasePage(reply);
  }

  async expireLeases(campaignId: string, runId: string, settle: SettlePolicy): Promise<ExpireResult> {
    const { campaign, run } = this.run({ campaignId, runId });
    const reply = (await this.scripts.run(
      'expire-leases',
      [run.run, run.leases, run.errors, run.bad, campaign.meta()],
      [settle.inDoubt, run.recordsPrefix, run.leasePrefix, settle.maxAttempts, this.masks.maskFor(campaignId)],
    )) as Reply;
    return decode.expireLeases(reply);
  }

  async expirePages(
    campaignId: string,
    runId: string,
    from: number,
    to: number,
  ): Promise<{ expired: number; unknown: number; completed: boolean; early: boolean }> {
    const { campaign, run } = this.run({ campaignId, runId });
    const reply = (await this.scripts.run(
      'expire-pages',
      [run.run, campaign.meta(), run.bad, run.unfinished, run.parked, run.errors],
      [run.recordsPrefix, this.masks.maskFor(campaignId), from, to],
    )) as Reply;
    return { expired: Number(reply[0]), unknown: Number(reply[1]), completed: Number(reply[2]) === 1, early: reply[3] !== undefined };
  }

  async readEntry(campaignId: string, runId: string, position: number, pageSize: number): Promise<LedgerEntry> {
    const { run } = this.run({ campaignId, runId });
    const page = Math.floor(position / pageSize);
    const index = position % pageSize;
    const [raw, error, legs] = await Promise.all([
      this.redis.getrangeBuffer(run.records(page), index * RECORD_BYTES, index * RECORD_BYTES + RECORD_BYTES - 1),
      this.redis.hget(run.errors, String(position)),
      this.redis.getrangeBuffer(run.legs(page), index, index),
    ]);
    return {
      record: decodeRecord(raw, 0),
      legs: decodeLegs(legs.length > 0 ? legs[0]! : 0),
      lastError: error ? (JSON.parse(error) as LedgerEntry['lastError']) : null,
    };
  }

  async presetLegs(campaignId: string, runId: string, page: number, legs: Buffer): Promise<void> {
    await this.redis.set(this.run({ campaignId, runId }).run.legs(page), legs, 'NX');
  }

  async countPresetLegs(campaignId: string, runId: string, legs: readonly number[]): Promise<void> {
    const counts = new Map<number, number>();
    for (const leg of legs) counts.set(leg, (counts.get(leg) ?? 0) + 1);
    const key = this.run({ campaignId, runId }).run.run;
    for (const [leg, n] of counts) await this.redis.hincrby(key, `leg:${leg}:in`, n);
  }

  async dropLegs(campaignId: string, runId: string, pages: number): Promise<void> {
    const { run } = this.run({ campaignId, runId });
    for (let page = 0; page < pages; page += 1000) {
      await this.redis.unlink(...Array.from({ length: Math.min(1000, pages - page) }, (_, i) => run.legs(page + i)));
    }
  }

  async readPageEntries(campaignId: string, runId: string, page: number, pageSize: number, size: number): Promise<LedgerEntry[]> {
    const { run } = this.run({ campaignId, runId });
    const [raw, legs] = await Promise.all([run.records(page), run.legs(page)].map(async (key) => (await this.redis.getBuffer(key)) ?? Buffer.alloc(0)));
    const entries: LedgerEntry[] = Array.from({ length: size }, (_, i) => ({
      record: decodeRecord(raw!, i),
      legs: decodeLegs(i < legs!.length ? legs![i]! : 0),
      lastError: null,
    }));
    // Only a recipient that was tried or held can have an error recorded.
    const asked = entries.flatMap(({ record }, i) => (record.attempts > 0 || record.reason !== 0 ? [i] : []));
    if (asked.length === 0) return entries;
    const errors = await this.redis.hmget(run.errors, ...asked.map((i) => String(page * pageSize + i)));
    asked.forEach((i, n) => {
      const error = errors[n];
      if (error) entries[i]!.lastError = JSON.parse(error) as LedgerEntry['lastError'];
    });
    return entries;
  }

  async receipts(
    campaignId: string,
    runId: string,
    runNo: number,
    pageSize: number,
    receipts: ReadonlyArray<{ position: number; delivered: boolean; at: number; leg?: number; resent?: boolean }>,
  ): Promise<ReceiptOutcome[]> {
    if (receipts.length === 0) return [];
    const { campaign, run } = this.run({ campaignId, runId });
    const keys = [run.run, run.bad, campaign.meta(), ...receipts.map((r) => run.records(Math.floor(r.position / pageSize)))];
    const args: Array<string | number> = [this.masks.maskFor(campaignId), runNo];
    for (const r of receipts) args.push(r.position % pageSize, r.position, r.delivered ? 'd' : 'x', Math.round(r.at), r.leg ?? 0, r.resent ? 1 : 0);
    return ((await this.scripts.run('receipt', keys, args)) as string[]).map((o) => o as ReceiptOutcome);
  }

  async listBad(campaignId: string, runId: string, afterPosition: number, limit: number): Promise<number[]> {
    const { run } = this.run({ campaignId, runId });
    const members = await this.redis.zrangebyscore(run.bad, `(${afterPosition}`, '+inf', 'LIMIT', 0, limit);
    return members.map(Number);
  }
}
