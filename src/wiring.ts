import type { RedisClient } from './adapters/redis/connection.js';
import type { AppEvents } from './app/events.js';
import { RunPump } from './app/pump.js';
import { RunStarter } from './app/run-starter.js';
import { RedisCampaignStore } from './adapters/redis/campaign-store.js';
import { Keys } from './adapters/redis/keys.js';
import { BullPageQueue, BullScheduler, createScheduleQueue, createSendQueue, queueLayout } from './adapters/redis/queues.js';
import { RedisLedger } from './adapters/redis/redis-ledger.js';
import { RedisLifecycle } from './adapters/redis/redis-lifecycle.js';
import { RedisFrequencyCaps, RedisSuppressions } from './adapters/redis/redis-respect.js';
import { Scripts } from './adapters/redis/scripts.js';
import type { Config } from './config.js';

/** The Redis adapters over one connection, and the services every role builds on them. */
export function storage(redis: RedisClient, config: Config, events: AppEvents) {
  const keys = new Keys(config.prefix);
  const scripts = new Scripts(redis);
  const ledger = new RedisLedger(redis, keys, scripts, { waitReplicas: config.waitReplicas });
  const store = new RedisCampaignStore(redis, keys, scripts);
  const lifecycle = new RedisLifecycle(keys, scripts);
  const layout = queueLayout(config.sendShards, config.cluster);
  const sendQueues = layout.send.map((name) => createSendQueue(redis, config.prefix, name));
  const scheduleQueue = createScheduleQueue(redis, config.prefix, layout.schedule);
  const pageQueue = new BullPageQueue(sendQueues);
  const pump = new RunPump(ledger, pageQueue, config.runWindow);
  return {
    keys,
    scripts,
    ledger,
    store,
    lifecycle,
    layout,
    sendQueues,
    scheduleQueue,
    pageQueue,
    pump,
    suppressions: new RedisSuppressions(redis, keys),
    frequencyCaps: new RedisFrequencyCaps(keys, scripts),
    scheduler: new BullScheduler(scheduleQueue),
    starter: new RunStarter(ledger, pump, events),
    async close() {
      await Promise.all([...sendQueues.map((q) => q.close()), scheduleQueue.close()]);
    },
  };
}

export type Storage = ReturnType<typeof storage>;
