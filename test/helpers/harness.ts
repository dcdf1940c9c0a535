import type { WindowSettings } from '../../src/domain/windows.js';
import type { Redis } from 'ioredis';
import { RedisCampaignStore } from '../../src/adapters/redis/campaign-store.js';
import { Keys } from '../../src/adapters/redis/keys.js';
import { RedisLedger } from '../../src/adapters/redis/redis-ledger.js';
import { RedisLocks, RedisRuns } from '../../src/adapters/redis/redis-runs.js';
import { Scripts } from '../../src/adapters/redis/scripts.js';
import { planLayout, sourceStatesFor, type RecipientLayout } from '../../src/domain/campaign.js';
import { newId } from '../../src/domain/ids.js';
import type { StoredRecipient } from '../../src/domain/recipient.js';
import { decodeRecord, encodeRecord, RECORD_BYTES } from '../../src/domain/ledger.js';
import { AppEvents } from '../../src/app/events.js';
import type { PageRef, ProviderRegistry } from '../../src/app/ports.js';
import { RunPump } from '../../src/app/pump.js';
import { Supervisor } from '../../src/app/supervisor.js';
import { BullPageQueue, createSendQueue } from '../../src/adapters/redis/queues.js';
import { createLogger } from '../../src/logger.js';
import type { FallbackLeg } from '../../src/domain/fallback.js';
import { onCleanup, testPrefix } from './cleanup.js';
import { deletePrefix, testRedis } from './redis.js';

/** A draft campaign's stored record with test defaults (everything a store's `create` needs). */
export function draftRecord(
  id: string,
  layout: RecipientLayout,
  over: { name?: string; provider?: string; fallback?: FallbackLeg[] } & Partial<WindowSettings> = {},
) {
  return {
    id,
    name: over.name ?? 'n',
    provider: over.provider ?? 'sim',
    message: { title: 't', body: 'b', data: {} },
    priority: 'normal' as const,
    maxAttempts: null,
    kind: 'transactional',
    quietHours: null,
    suppressionLists: ['global'],
    frequencyCap: null,
    onRenderError: 'refuse' as const,
    listFields: null,
    templated: true,
    deliverAt: over.deliverAt ?? null,
    pace: over.pace ?? null,
    expiresAt: over.expiresAt ?? null,
    expiresAfter: over.expiresAfter ?? null,
    fallback: over.fallback ?? [],
    createdAt: Date.now(),
    layout,
  };
}

/**
 * Real Redis adapters under a fresh prefix (named after the test), for
 * integration tests; its keys and connection go away after the test. With
 * `prefix`, it shares another harness's keys (that one cleans them up).
 */
export function redisHarness(label: string, options: { redis?: Redis; prefix?: string } = {}) {
  const redis = options.redis ?? testRedis();
  const prefix = options.prefix ?? testPrefix(label);
  onCleanup(async () => {
    if (!options.prefix) await deletePrefix(redis, prefix);
    if (!options.redis) redis.disconnect();
  });
  const keys = new Keys(prefix);
  const scripts = new Scripts(redis);
  const ledger = new RedisLedger(redis, keys, scripts);
  const runs = new RedisRuns(redis, keys, scripts);
  const locks = new RedisLocks(redis, keys, scripts);
  const store = new RedisCampaignStore(redis, keys, scripts);

  async function createCampaign(recipients: StoredRecipient[], pageSize = 100, provider = 'sim') {
    const id = newId();
    const layout = planLayout(recipients.length, pageSize);
    await store.create(draftRecord(id, layout, { provider }), recipients);
    return id;
  }

  async function startRun(campaignId: string, runId = 'main') {
    const result = await runs.createRun(campaignId, runId, { allowedFrom: sourceStatesFor('launch'), statusAfter: 'completed', trigger: 'test' });
    if (!result.ok) throw new Error(`createRun: ${result.reason}`);
    return runId;
  }

  /**
   * The state a failover leaves when the promoted replica never got a claim:
   * the record is pending again with its attempt not spent, the run's
   * in-flight count as before the claim; the lease still names the holder.
   */
  async function forgetClaim(ref: PageRef, index: number) {
    const run = keys.campaign(ref.campaignId).run(ref.runId);
    const raw = await redis.getrangeBuffer(run.records(ref.page), index * RECORD_BYTES, index * RECORD_BYTES + RECORD_BYTES - 1);
    const record = decodeRecord(raw, 0);
    if (record.state !== 'inflight') throw new Error(`forgetClaim: record ${index} is ${record.state}, not inflight`);
    await redis.setrange(run.records(ref.page), index * RECORD_BYTES, encodeRecord({ ...record, state: 'pending', attempts: record.attempts - 1 }));
    await redis.hincrby(run.run, 'inflight', -1);
    // The claim took a recipient in doubt off the run's doubt index: the replica never saw that either.
    if (record.inDoubt) {
      const pageSize = Number(await redis.hget(run.run, 'pageSize'));
      await redis.zadd(run.doubt, ref.page * pageSize + index, ref.page * pageSize + index);
    }
  }

  /** The page's holder died: its lease ended long ago (the state a SIGKILL leaves once the lease runs out). */
  async function abandonLease(ref: PageRef) {
    const run = keys.campaign(ref.campaignId).run(ref.runId);
    const lease = await redis.get(run.lease(ref.page));
    if (!lease) return;
    await redis.set(run.lease(ref.page), `${lease.slice(0, lease.indexOf('|'))}|1`);
    await redis.zadd(run.leases, 1, String(ref.page));
  }

  /** The run made no progress for `idleMs` (and was last kicked `kickedAgoMs` ago), by the Redis clock. */
  async function ageRun(campaignId: string, runId: string, idleMs: number, kickedAgoMs = idleMs) {
    const now = await locks.serverTime();
    await redis.hset(keys.campaign(campaignId).run(runId).run, 'activeAt', now - idleMs, 'kickedAt', now - kickedAgoMs);
  }

  /** The run's status as another process's lifecycle step would leave it (without the campaign's). */
  async function setRunStatus(campaignId: string, runId: string, status: string) {
    await redis.hset(keys.campaign(campaignId).run(runId).run, 'status', status);
  }

  /** A parked page's wake-up time passed long ago and nothing ran it (its delayed job was lost). */
  async function oversleep(ref: PageRef) {
    await redis.zadd(keys.campaign(ref.campaignId).run(ref.runId).parked, 1, String(ref.page));
  }

  return { redis, prefix, keys, scripts, ledger, runs, locks, store, createCampaign, startRun, forgetClaim, abandonLease, ageRun, setRunStatus, oversleep };
}

export function ids(n: number, label = 'r'): string[] {
  return Array.from({ length: n }, (_, i) => `${label}${i}`);
}

/** acquirePage's options as a test usually wants them. */
export function acquireOptions(leaseMs: number, inDoubt: 'report' | 'resend' = 'report', maxAttempts = 5, gen = 1) {
  return { leaseMs, gen, settle: { inDoubt, maxAttempts } };
}

/** The settle policy of releasePage and expireLeases. */
export function settlePolicy(inDoubt: 'report' | 'resend' = 'report', maxAttempts = 5) {
  return { inDoubt, maxAttempts };
}

/** confirm's policy: `maxAttempts`, and requeues bounded far away unless told. */
export function confirmPolicy(maxAttempts = 5, maxRequeues = 50) {
  return { maxAttempts, maxRequeues };
}

/**
 * A Supervisor over a fresh harness, its one provider settling in-doubt
 * recipients by `inDoubt` with `maxAttempts`; the queue closes after the test.
 */
export function supervisorHarness(label: string, options: { inDoubt: 'report' | 'resend'; maxAttempts?: number; intervalMs: number; stuckMs: number }) {
  const h = redisHarness(label);
  const queue = createSendQueue(h.redis, h.prefix);
  onCleanup(() => queue.close());
  const pageQueue = new BullPageQueue([queue]);
  const pump = new RunPump({ runs: h.runs, queue: pageQueue, window: 4 });
  const events = new AppEvents();
  const retry = { inDoubt: options.inDoubt, maxAttempts: options.maxAttempts ?? 5 };
  const providers = { get: () => ({ retry }), names: () => ['sim'] } as unknown as ProviderRegistry;
  const supervisor = new Supervisor(
    { ledger: h.ledger, runs: h.runs, locks: h.locks, clock: h.locks, store: h.store, providers, queue: pageQueue, pump, events, log: createLogger('silent') },
    { intervalMs: options.intervalMs, stallMs: 60_000, stuckMs: options.stuckMs, stagingTtlMs: 60_000 },
  );
  return { h, supervisor, events };
}
