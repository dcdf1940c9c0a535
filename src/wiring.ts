import type { Redis } from 'ioredis';
import type { AppEvents } from './app/events.js';
import { RunPump } from './app/pump.js';
import { RunStarter } from './app/run-starter.js';
import { RedisCampaignStore } from './adapters/redis/campaign-store.js';
import { Keys } from './adapters/redis/keys.js';
import { BullPageQueue, BullScheduler, createScheduleQueue, createSendQueue } from './adapters/redis/queues.js';
import { RedisLedger } from './adapters/redis/redis-ledger.js';
import { RedisLifecycle } from './adapters/redis/redis-lifecycle.js';
import { RedisFrequencyCaps, RedisSuppressions } from './adapters/redis/redis-respect.js';
import { Scripts } from './adapters/redis/scripts.js';
import type { Config } from './config.js';

/** The Redis adapters over one connection, and the services every role builds on them. */
export function storage(redis: Redis, config: Config, events: AppEvents) {
  const keys = new Keys(config.prefix);
  const scripts = new Scripts(redis);
  const ledger = new RedisLedger(redis, keys, scripts);
  const store = new RedisCampaignStore(redis, keys, scripts);
  const lifecycle = new RedisLifecycle(keys, scripts);
  const sendQueue = createSendQueue(redis, config.prefix);
  const scheduleQueue = createScheduleQueue(redis, config.prefix);
  const pageQueue = new BullPageQueue(sendQueue);
  const pump = new RunPump(ledger, pageQueue, config.runWindow);
  return {
    keys,
    scripts,
    ledger,
    store,
    lifecycle,
    sendQueue,
    scheduleQueue,
    pageQueue,
    pump,
    suppressions: new RedisSuppressions(redis, keys),
    frequencyCaps: new RedisFrequencyCaps(keys, scripts),
    scheduler: new BullScheduler(scheduleQueue),
    starter: new RunStarter(ledger, pump, events),
    async close() {
      await Promise.all([sendQueue.close(), scheduleQueue.close()]);
    },
  };
}

export type Storage = ReturnType<typeof storage>;
