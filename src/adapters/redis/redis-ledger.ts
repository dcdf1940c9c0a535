import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { waitForReplicas, type RedisClient } from './connection.js';
import type {
  AcquireResult,
  ClaimDirective,
  ClaimResult,
  ConfirmEntry,
  ConfirmResult,
  CreateRunOptions,
  CreateRunResult,
  InDoubtPolicy,
  KickResult,
  Ledger,
  LedgerEntry,
  PageRef,
  ReleaseResult,
  RunState,
} from '../../app/ports.js';
import type { CampaignStatus, PriorityClass, RunStatus } from '../../domain/campaign.js';
import { decodeRecord, RECORD_BYTES } from '../../domain/ledger.js';
import { reasonName, type ReasonName } from '../../domain/respect.js';
import type { Keys } from './keys.js';
import type { Scripts } from './scripts.js';

type Reply = Array<string | number | Buffer | null>;

function text(value: unknown): string {
  return Buffer.isBuffer(value) ? value.toString('utf8') : String(value);
}

function num(value: string | undefined): number {
  return value === undefined ? 0 : Number(value);
}

/** The run's `skip:<code>` counters (claim.lua, cancel.lua), by reason name. */
function skippedBy(hash: Record<string, string>): Partial<Record<ReasonName, number>> {
  const out: Partial<Record<ReasonName, number>> = {};
  for (const [field, value] of Object.entries(hash)) {
    const name = field.startsWith('skip:') ? reasonName(Number(field.slice(5))) : null;
    if (name && num(value) > 0) out[name] = num(value);
  }
  return out;
}

export function parseRun(campaignId: string, hash: Record<string, string>): RunState | null {
  if (!hash.id) return null;
  return {
    id: hash.id,
    campaignId,
    status: hash.status as RunStatus,
    trigger: hash.trigger ?? 'launch',
    createdAt: num(hash.createdAt),
    completedAt: hash.completedAt ? num(hash.completedAt) : null,
    activeAt: num(hash.activeAt),
    counts: {
      total: num(hash.total),
      pending: num(hash.pending),
      inflight: num(hash.inflight),
      sent: num(hash.sent),
      failed: num(hash.failed),
      unknown: num(hash.unknown),
      skipped: num(hash.skipped),
    },
    pages: num(hash.pages),
    pageSize: num(hash.pageSize),
    cursor: num(hash.cursor),
    gen: num(hash.gen),
    priorityClass: num(hash.priorityClass) as PriorityClass,
    recipients: { total: num(hash.total), pageSize: num(hash.pageSize), pages: num(hash.pages), buckets: num(hash.buckets), version: num(hash.rv) },
    stuckSince: hash.stuckSince ? num(hash.stuckSince) : null,
    deferred: num(hash.deferred),
    deferredUntil: hash.deferredUntil && num(hash.deferred) > 0 ? num(hash.deferredUntil) : null,
    skippedBy: skippedBy(hash),
  };
}

export interface LedgerDurability {
  /** Replicas that must hold a claim before its recipients are sent (Redis WAIT); 0: none. */
  waitReplicas: number;
}

export class RedisLedger implements Ledger {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly scripts: Scripts,
    private readonly durability: LedgerDurability = { waitReplicas: 0 },
  ) {}

  /**
   * A claim is the promise that its recipients may be sent once. If the
   * master dies before a replica has it, the promoted replica would see them
   * pending and send them again; so, with replicas, nothing claimed is sent
   * until `waitReplicas` of the connected replicas acknowledged it. Answers
   * false when they did not within a third of the lease.
   */
  private async replicated(key: string, leaseMs: number): Promise<boolean> {
    const want = this.durability.waitReplicas;
    if (want === 0) return true;
    return waitForReplicas(this.redis, key, want, Math.max(100, Math.floor(leaseMs / 3)));
  }

  private pageKeys(ref: PageRef) {
    const campaign = this.keys.campaign(ref.campaignId);
    const run = campaign.run(ref.runId);
    return { campaign, run };
  }

  async createRun(campaignId: string, runId: string, opts: CreateRunOptions): Promise<CreateRunResult> {
    const campaign = this.keys.campaign(campaignId);
    const list = opts.recipients;
    const reply = (await this.scripts.run(
      'create-run',
      [campaign.meta(), campaign.run(runId).run, campaign.runs()],
      [
        runId,
        opts.allowedFrom.join(','),
        opts.statusAfter ?? '',
        opts.trigger,
        ...(list ? [list.version, list.total, list.pages, list.pageSize, list.buckets] : []),
      ],
    )) as string[];
    if (reply[0] === 'ok') return { ok: true, createdAt: Number(reply[1]) };
    return { ok: false, reason: reply[0] as 'missing' | 'state' | 'exists' | 'empty', status: reply[1] as CampaignStatus | undefined };
  }

  async getRun(campaignId: string, runId: string): Promise<RunState | null> {
    const hash = await this.redis.hgetall(this.keys.campaign(campaignId).run(runId).run);
    return parseRun(campaignId, hash);
  }

  async acquirePage(ref: PageRef, token: string, leaseMs: number, inDoubt: InDoubtPolicy): Promise<AcquireResult> {
    const { campaign, run } = this.pageKeys(ref);
    const reply = (await this.scripts.runBuffer(
      'acquire-page',
      [run.run, run.records(ref.page), run.lease(ref.page), run.leases, run.errors, run.bad, campaign.meta()],
      [ref.page, token, leaseMs, inDoubt],
    )) as Reply;
    const kind = text(reply[0]);
    switch (kind) {
      case 'ok':
        return {
          kind,
          records: reply[1] as Buffer,
          now: Number(text(reply[2])),
          runCreatedAt: Number(text(reply[3])),
          recipientsVersion: Number(text(reply[4])),
          markedUnknown: Number(reply[5]),
        };
      case 'busy':
        return { kind, delayMs: Number(reply[1]) };
      case 'inactive':
        return { kind, status: text(reply[1]), markedUnknown: Number(reply[2]) };
      default:
        return { kind: 'missing' };
    }
  }

  async expireLeases(campaignId: string, runId: string, inDoubt: InDoubtPolicy): Promise<{ pages: number; settled: number; completed: boolean }> {
    const campaign = this.keys.campaign(campaignId);
    const run = campaign.run(runId);
    const reply = (await this.scripts.run(
      'expire-leases',
      [run.run, run.leases, run.errors, run.bad, campaign.meta()],
      [inDoubt, run.recordsPrefix, run.leasePrefix],
    )) as number[];
    return { pages: Number(reply[0]), settled: Number(reply[1]), completed: Number(reply[2]) === 1 };
  }

  async claim(ref: PageRef, token: string, leaseMs: number, directives: readonly ClaimDirective[]): Promise<ClaimResult> {
    const { campaign, run } = this.pageKeys(ref);
    const args: Array<string | number> = [ref.page, token, leaseMs];
    for (const d of directives) {
      if (d.op === 'claim') args.push(d.index, 'c', d.counted ? 1 : 0, '');
      else if (d.op === 'defer') args.push(d.index, 'd', Math.round(d.until), '');
      else args.push(d.index, 'k', d.reason, d.detail);
    }
    const reply = (await this.scripts.run(
      'claim',
      [run.run, run.records(ref.page), run.lease(ref.page), run.leases, run.errors, campaign.meta()],
      args,
    )) as Reply;
    const kind = text(reply[0]);
    if (kind === 'fenced') return { kind };
    if (kind === 'inactive') return { kind, status: text(reply[1]) };
    const claimed: Array<{ index: number; attempts: number }> = [];
    for (let i = 1; i < reply.length; i += 2) claimed.push({ index: Number(reply[i]), attempts: Number(reply[i + 1]) });
    if (claimed.length > 0 && !(await this.replicated(run.run, leaseMs))) {
      // Not sent, and now known not to be: back to pending (if this write is lost too, the lease ends them unknown).
      await this.confirm(ref, token, leaseMs, Number.MAX_SAFE_INTEGER, claimed.map((c) => ({ index: c.index, op: 'r', delayMs: 1000, code: 'NOT_REPLICATED', message: 'no replica acknowledged the claim in time; not sent' })));
      return { kind: 'ok', claimed: [] };
    }
    return { kind: 'ok', claimed };
  }

  async confirm(ref: PageRef, token: string, leaseMs: number, maxAttempts: number, entries: readonly ConfirmEntry[]): Promise<ConfirmResult> {
    const { campaign, run } = this.pageKeys(ref);
    const args: Array<string | number> = [ref.page, token, leaseMs, maxAttempts];
    for (const e of entries) args.push(e.index, e.op, Math.max(0, Math.round(e.delayMs)), e.code, e.message);
    const reply = (await this.scripts.run(
      'confirm',
      [run.run, run.records(ref.page), run.lease(ref.page), run.leases, run.errors, run.bad, campaign.meta()],
      args,
    )) as Reply;
    if (text(reply[0]) === 'fenced') return { kind: 'fenced' };
    return { kind: 'ok', runCompleted: Number(reply[1]) === 1, applied: Number(reply[2]) };
  }

  async releasePage(ref: PageRef, token: string, size: number): Promise<ReleaseResult> {
    const { run } = this.pageKeys(ref);
    const reply = (await this.scripts.run(
      'release-page',
      [run.run, run.records(ref.page), run.lease(ref.page), run.leases, run.open, run.unfinished, run.parked],
      [ref.page, token, size],
    )) as number[];
    const nextDue = Number(reply[2]);
    return { pending: Number(reply[0]), inflight: Number(reply[1]), nextDueIn: nextDue < 0 ? null : nextDue };
  }

  async advanceCursor(campaignId: string, runId: string, from: number, to: number): Promise<'ok' | 'moved' | 'inactive'> {
    const run = this.keys.campaign(campaignId).run(runId);
    const reply = (await this.scripts.run('advance-cursor', [run.run, run.open, run.unfinished], [from, to])) as string[];
    return reply[0] as 'ok' | 'moved' | 'inactive';
  }

  async pageCounts(campaignId: string, runId: string): Promise<{ open: number; active: number }> {
    const run = this.keys.campaign(campaignId).run(runId);
    const [open, active] = await Promise.all([this.redis.scard(run.open), this.redis.zcard(run.leases)]);
    return { open, active };
  }

  async readEntry(campaignId: string, runId: string, position: number, pageSize: number): Promise<LedgerEntry> {
    const run = this.keys.campaign(campaignId).run(runId);
    const page = Math.floor(position / pageSize);
    const index = position % pageSize;
    const [raw, error] = await Promise.all([
      this.redis.getrangeBuffer(run.records(page), index * RECORD_BYTES, index * RECORD_BYTES + RECORD_BYTES - 1),
      this.redis.hget(run.errors, String(position)),
    ]);
    return { record: decodeRecord(raw, 0), lastError: error ? (JSON.parse(error) as LedgerEntry['lastError']) : null };
  }

  async listBad(campaignId: string, runId: string, afterPosition: number, limit: number): Promise<number[]> {
    const run = this.keys.campaign(campaignId).run(runId);
    const members = await this.redis.zrangebyscore(run.bad, `(${afterPosition}`, '+inf', 'LIMIT', 0, limit);
    return members.map(Number);
  }

  async kickStalled(campaignId: string, runId: string, stallMs: number): Promise<KickResult> {
    const run = this.keys.campaign(campaignId).run(runId);
    const reply = (await this.scripts.run('kick-run', [run.run, run.unfinished, run.open, run.leases, run.parked], [stallMs])) as Array<string | number>;
    if (reply[0] === 'kicked') return { kind: 'kicked', gen: Number(reply[1]), pages: reply.slice(2).map(Number) };
    if (reply[0] === 'parked') return { kind: 'parked', wakesIn: Number(reply[1]) };
    return { kind: reply[0] === 'fresh' ? 'fresh' : 'inactive' };
  }

  async tryLock(name: string, ttlMs: number): Promise<boolean> {
    return (await this.redis.set(`${this.keys.prefix}:lock:${name}`, '1', 'PX', ttlMs, 'NX')) === 'OK';
  }

  async lock(name: string, ttlMs: number, waitMs: number): Promise<string | null> {
    const token = randomUUID();
    const deadline = Date.now() + waitMs;
    for (;;) {
      if ((await this.redis.set(`${this.keys.prefix}:lock:${name}`, token, 'PX', ttlMs, 'NX')) === 'OK') return token;
      if (Date.now() > deadline) return null;
      await sleep(10 + Math.random() * 20);
    }
  }

  async unlock(name: string, token: string): Promise<void> {
    await this.scripts.run('unlock', [`${this.keys.prefix}:lock:${name}`], [token]);
  }

  async serverTime(): Promise<number> {
    const [seconds, micros] = await this.redis.time();
    return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  }

  async markStuck(campaignId: string, runId: string, stuck: boolean): Promise<void> {
    const key = this.keys.campaign(campaignId).run(runId).run;
    if (stuck) await this.redis.hset(key, 'stuckSince', await this.serverTime());
    else await this.redis.hdel(key, 'stuckSince');
  }

  async activeRuns(): Promise<Array<{ campaignId: string; runId: string }>> {
    const members = await this.redis.smembers(this.keys.activeRuns());
    return members.map((m) => {
      const sep = m.indexOf('|');
      return { campaignId: m.slice(0, sep), runId: m.slice(sep + 1) };
    });
  }

  async markActive(campaignId: string, runId: string): Promise<void> {
    await this.redis.sadd(this.keys.activeRuns(), `${campaignId}|${runId}`);
  }

  async markInactive(campaignId: string, runId: string): Promise<void> {
    await this.redis.srem(this.keys.activeRuns(), `${campaignId}|${runId}`);
  }
}
