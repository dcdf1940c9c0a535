import { createHash, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { redisTime, type RedisClient } from './connection.js';
import type { Clock, CreateRunOptions, PageCounts, PageRef, CreateRunResult, KickResult, Locks, Runs, RunState } from '../../app/ports.js';
import type { PriorityClass, RunStatus } from '../../domain/campaign.js';
import { reasonName, REASONS, type DeferReason, type ReasonName } from '../../domain/respect.js';
import type { Keys } from './keys.js';
import type { DeliverAt } from '../../domain/windows.js';
import { decode, type Reply } from './replies.js';
import type { Scripts } from './scripts.js';

/** Run numbers are 40 bits (src/domain/ids.ts receiptKey). */
const RUN_NUMBERS = 2 ** 40;

import { legCountsOf } from '../../domain/fallback.js';

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
      // Parts of sent, once a provider's receipt has come.
      ...(hash.delivered !== undefined || hash.undelivered !== undefined ? { delivered: num(hash.delivered), undelivered: num(hash.undelivered) } : {}),
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
    finishedAt: hash.completedAt ? num(hash.completedAt) : hash.cancelledAt ? num(hash.cancelledAt) : null,
    archived: hash.archived ? { kind: hash.archived, count: num(hash.archiveCount), at: num(hash.archivedAt) } : null,
    locales: hash.locales ? hash.locales.split(',') : [],
    no: hash.no ? num(hash.no) : null,
    startAt: hash.startAt ? num(hash.startAt) : num(hash.createdAt),
    expiresAt: hash.expiresAt ? num(hash.expiresAt) : null,
    pace: hash.pace ? num(hash.pace) : null,
    deliverAt: hash.deliverAt ? (JSON.parse(hash.deliverAt) as DeliverAt) : null,
    deferredBy: deferredBy(hash),
    byLeg: legCountsOf(hash, num(hash.total), num(hash.sent)),
    chain: hash.chain ? (JSON.parse(hash.chain) as string[]) : null,
  };
}

/** `deferred` by reason: claim.lua counts local-time ones in `defer:7` too; the rest wait for quiet hours. */
function deferredBy(hash: Record<string, string>): Partial<Record<DeferReason, number>> {
  const local = num(hash[`defer:${REASONS['local-time']}`]);
  const quiet = num(hash.deferred) - local;
  return { ...(quiet > 0 ? { 'quiet-hours': quiet } : {}), ...(local > 0 ? { 'local-time': local } : {}) };
}

/**
 * The largest step a run's lease clock takes from one touch to the next
 * (lua/includes/ledger.lua runClocks): a live run is touched every
 * supervisor tick, so this only ever clips a step of Redis's wall clock. A
 * healthy holder renews every quarter lease, so a step of this size leaves
 * its lease at least a renewal's worth of time.
 */
export function leaseClockStep(supervisorIntervalMs: number): number {
  return Math.max(1000, Math.ceil(supervisorIntervalMs * 1.25));
}

export class RedisRuns implements Runs {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly scripts: Scripts,
    private readonly clockStepMs = leaseClockStep(1000),
  ) {}

  async paces(runs: ReadonlyArray<{ campaignId: string; runId: string }>): Promise<Array<number | null>> {
    if (runs.length === 0) return [];
    const tx = this.redis.pipeline();
    for (const { campaignId, runId } of runs) tx.hget(this.keys.campaign(campaignId).run(runId).run, 'pace');
    const replies = (await tx.exec()) ?? [];
    return replies.map(([err, value]) => {
      if (err) throw err;
      return typeof value === 'string' && value !== '' ? Number(value) : null;
    });
  }

  async waves(campaignId: string, runId: string): Promise<Array<{ at: number; recipients: number }>> {
    const hash = await this.redis.hgetall(this.keys.campaign(campaignId).run(runId).waves);
    return Object.entries(hash)
      .map(([at, recipients]) => ({ at: Number(at), recipients: Number(recipients) }))
      .sort((a, b) => a.at - b.at);
  }

  async createRun(campaignId: string, runId: string, opts: CreateRunOptions): Promise<CreateRunResult> {
    const campaign = this.keys.campaign(campaignId);
    const list = opts.recipients;
    const { no, listed } = await this.numberFor(campaignId, runId);
    const reply = (await this.scripts.run(
      'create-run',
      [campaign.meta(), campaign.run(runId).run, campaign.runs()],
      [
        runId,
        opts.allowedFrom.join(','),
        opts.statusAfter ?? '',
        opts.trigger,
        this.clockStepMs,
        ...(list ? [list.version, list.total, list.pages, list.pageSize, list.buckets] : ['', '', '', '', '']),
        opts.aside ? '1' : '0',
        opts.unchangedSince ?? '',
        no,
        opts.startAt ?? '',
      ],
    )) as Reply;
    const result = decode.createRun(reply);
    // A refused start leaves nothing behind.
    if (!result.ok && listed) await this.redis.hdel(this.keys.runNumbers(), String(no));
    return result;
  }

  /**
   * The run's number: derived from its campaign and id (the same for every
   * attempt to make it), moved on past numbers another run in Redis holds,
   * and listed before the run exists — a receipt naming a number whose run
   * was never made finds none, and one whose run has another number is
   * refused. `listed`: this call listed it (to unlist when the run is refused).
   */
  private async numberFor(campaignId: string, runId: string): Promise<{ no: number; listed: boolean }> {
    const member = this.keys.runMember(campaignId, runId);
    const base = createHash('sha256').update(member).digest().readUIntBE(0, 5);
    for (let probe = 0; ; probe += 1) {
      const no = (base + probe) % RUN_NUMBERS || 1;
      if ((await this.redis.hsetnx(this.keys.runNumbers(), String(no), member)) === 1) return { no, listed: true };
      if ((await this.redis.hget(this.keys.runNumbers(), String(no))) === member) return { no, listed: false };
    }
  }

  async runByNumber(runNo: number): Promise<{ campaignId: string; runId: string } | null> {
    const member = await this.redis.hget(this.keys.runNumbers(), String(runNo));
    return member ? this.keys.parseRunMember(member) : null;
  }

  async getRun(campaignId: string, runId: string): Promise<RunState | null> {
    return parseRun(campaignId, await this.redis.hgetall(this.keys.campaign(campaignId).run(runId).run));
  }

  async advanceCursor(campaignId: string, runId: string, from: number, to: number): Promise<'ok' | 'moved' | 'inactive'> {
    const run = this.keys.campaign(campaignId).run(runId);
    return decode.advanceCursor((await this.scripts.run('advance-cursor', [run.run, run.open, run.unfinished], [from, to])) as Reply);
  }

  async leaveFirstPass(ref: PageRef): Promise<void> {
    await this.redis.srem(this.keys.campaign(ref.campaignId).run(ref.runId).open, String(ref.page));
  }

  async pageCounts(campaignId: string, runId: string): Promise<PageCounts> {
    const run = this.keys.campaign(campaignId).run(runId);
    const [open, held, both] = await Promise.all([
      this.redis.scard(run.open),
      this.redis.zcard(run.leases),
      this.redis.call('ZINTERCARD', 2, run.open, run.leases) as Promise<number>,
    ]);
    return { open, held, waiting: open - Number(both) };
  }

  async kickStalled(campaignId: string, runId: string, stallMs: number): Promise<KickResult> {
    const run = this.keys.campaign(campaignId).run(runId);
    return decode.kickRun((await this.scripts.run('kick-run', [run.run, run.unfinished, run.open, run.leases, run.parked], [stallMs])) as Reply);
  }

  async markStuck(campaignId: string, runId: string, stuck: boolean): Promise<void> {
    const campaign = this.keys.campaign(campaignId);
    await this.scripts.run('mark-stuck', [campaign.run(runId).run, campaign.meta()], [stuck ? '1' : '0', runId]);
  }

  async activeRuns(): Promise<Array<{ campaignId: string; runId: string }>> {
    return (await this.redis.smembers(this.keys.activeRuns())).map((member) => this.keys.parseRunMember(member));
  }

  async markActive(campaignId: string, runId: string): Promise<boolean> {
    return (await this.redis.sadd(this.keys.activeRuns(), this.keys.runMember(campaignId, runId))) === 1;
  }

  /**
   * A finished run (completed, or cancelled with nothing in flight) leaves
   * the worklist for the retention list, scored by when it finished, where
   * the janitor takes it once RUN_RETENTION_MS has passed. Noted first: a
   * crash in between leaves it on both, and the next check moves it again.
   */
  async markInactive(campaignId: string, runId: string): Promise<void> {
    const member = this.keys.runMember(campaignId, runId);
    const [status, inflight, completedAt, cancelledAt] = await this.redis.hmget(
      this.keys.campaign(campaignId).run(runId).run,
      'status',
      'inflight',
      'completedAt',
      'cancelledAt',
    );
    if (status === 'completed' || (status === 'cancelled' && Number(inflight ?? 0) === 0)) {
      await this.redis.zadd(this.keys.retention(), 'NX', Number(completedAt || cancelledAt || Date.now()), member);
    }
    // Its last events (run.completed, …) may not be delivered yet: the webhook dispatchers look at it until they are.
    if (status !== null) await this.redis.zincrby(this.keys.outboxCampaigns(), 1, campaignId);
    await this.redis.srem(this.keys.activeRuns(), member);
  }
}

/** Locks (one key each, with a time to live) and the shared clock, on Redis. */
export class RedisLocks implements Locks, Clock {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly scripts: Scripts,
  ) {}

  async tryLock(name: string, ttlMs: number): Promise<boolean> {
    return (await this.redis.set(this.keys.lock(name), '1', 'PX', ttlMs, 'NX')) === 'OK';
  }

  async lock(name: string, ttlMs: number, waitMs: number): Promise<string | null> {
    const token = randomUUID();
    const deadline = Date.now() + waitMs;
    for (;;) {
      if ((await this.redis.set(this.keys.lock(name), token, 'PX', ttlMs, 'NX')) === 'OK') return token;
      if (Date.now() > deadline) return null;
      await sleep(10 + Math.random() * 20);
    }
  }

  async unlock(name: string, token: string): Promise<void> {
    await this.scripts.run('unlock', [this.keys.lock(name)], [token]);
  }

  async extend(name: string, token: string, ttlMs: number): Promise<boolean> {
    return Number(await this.scripts.run('extend-lock', [this.keys.lock(name)], [token, ttlMs])) === 1;
  }

  serverTime(): Promise<number> {
    return redisTime(this.redis);
  }
}
