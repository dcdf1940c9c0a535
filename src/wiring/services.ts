import type { RedisClient } from '../adapters/redis/connection.js';
import type { AppEvents } from '../app/events.js';
import { RunPump } from '../app/pump.js';
import { RunStarter } from '../app/run-starter.js';
import { RedisCampaignStore } from '../adapters/redis/campaign-store.js';
import { Keys } from '../adapters/redis/keys.js';
import { BullPageQueue, BullScheduler, createScheduleQueue, createSendQueue, queueLayout } from '../adapters/redis/queues.js';
import { RedisLedger } from '../adapters/redis/redis-ledger.js';
import { RedisLifecycle } from '../adapters/redis/redis-lifecycle.js';
import { RedisMetricsBoard } from '../adapters/redis/redis-metrics.js';
import { RedisFrequencyCaps, RedisSuppressions } from '../adapters/redis/redis-respect.js';
import { leaseClockStep, RedisLocks, RedisRuns } from '../adapters/redis/redis-runs.js';
import { RedisDeletions, RedisMemoryProbe, RedisRetention } from '../adapters/redis/redis-retention.js';
import { Scripts } from '../adapters/redis/scripts.js';
import { RedisOutbox } from '../adapters/redis/redis-outbox.js';
import { RedisWebhooks } from '../adapters/redis/redis-webhooks.js';
import { endpointOf } from '../adapters/webhooks/webhook-config.js';
import { WebhookRegistry } from '../app/webhook-registry.js';
import type { Logger } from '../app/ports.js';
import { createLogger } from '../logger.js';
import type { Config } from '../config.js';

/**
 * Every role's services over one Redis connection: the Redis adapters (store,
 * ledger, runs, locks, queues, recipient respect) and the two services built
 * on them that every role needs (the run pump and the run starter).
 * `claimRedis`: the connection claims and their WAIT go through (workers with
 * REDIS_WAIT_REPLICAS; see RedisLedger).
 */
export function buildServices(redis: RedisClient, config: Config, events: AppEvents, options: { claimRedis?: RedisClient; log?: Logger } = {}) {
  const log = options.log ?? createLogger('silent');
  const keys = new Keys(config.queuePrefix);
  const scripts = new Scripts(redis);
  const webhookStore = new RedisWebhooks(redis, keys);
  // Which recipient events the ledger steps write: what the endpoints subscribe to (started, and kept current, by the roles).
  const locks = new RedisLocks(redis, keys, scripts);
  const webhooks = new WebhookRegistry(
    { store: webhookStore, clock: locks, log },
    config.webhooks.map((entry) => endpointOf(entry, 'file')),
  );
  const ledger = new RedisLedger(
    redis,
    keys,
    scripts,
    {
      waitReplicas: config.redisWaitReplicas,
      waitMode: config.redisWaitMode,
      waitTimeoutMs: config.redisWaitTimeoutMs,
      ...(options.claimRedis ? { claimRedis: options.claimRedis } : {}),
    },
    webhooks,
  );
  const runs = new RedisRuns(redis, keys, scripts, leaseClockStep(config.supervisorIntervalMs));
  const store = new RedisCampaignStore(redis, keys, scripts);
  const lifecycle = new RedisLifecycle(keys, scripts, webhooks);
  const layout = queueLayout(config.sendShards, config.cluster);
  const sendQueues = layout.send.map((name) => createSendQueue(redis, config.queuePrefix, name));
  const scheduleQueue = createScheduleQueue(redis, config.queuePrefix, layout.schedule);
  const pageQueue = new BullPageQueue(sendQueues);
  const pump = new RunPump({ runs, queue: pageQueue, window: config.runWindow });
  return {
    keys,
    scripts,
    ledger,
    runs,
    locks,
    store,
    lifecycle,
    layout,
    sendQueues,
    scheduleQueue,
    pageQueue,
    pump,
    webhooks,
    webhookStore,
    outbox: new RedisOutbox(redis, keys, scripts),
    suppressions: new RedisSuppressions(redis, keys),
    metricsBoard: new RedisMetricsBoard(redis, keys),
    retention: new RedisRetention(redis, keys, scripts),
    deletions: new RedisDeletions(redis, keys, scripts),
    memory: new RedisMemoryProbe(redis, config.memoryLimitBytes),
    frequencyCaps: new RedisFrequencyCaps(keys, scripts),
    scheduler: new BullScheduler(scheduleQueue),
    starter: new RunStarter({ runs, pump, events }),
    async close() {
      await webhooks.stop();
      await Promise.all([...sendQueues.map((q) => q.close()), scheduleQueue.close()]);
    },
  };
}

export type Services = ReturnType<typeof buildServices>;
