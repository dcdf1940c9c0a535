import { DelayedError, WaitingError, Worker } from 'bullmq';
import type { RedisClient } from './adapters/redis/connection.js';
import type { AppEvents, Logger } from './app/events.js';
import { FireOccurrence } from './app/fire-occurrence.js';
import type { ProviderRegistry } from './app/ports.js';
import { RecipientGate } from './app/recipient-gate.js';
import { Semaphore } from './app/semaphore.js';
import { SendPage, type PageResult } from './app/send-page.js';
import { Supervisor } from './app/supervisor.js';
import type { Registry } from 'prom-client';
import { MetricsPusher } from './adapters/http/metrics.js';
import { RedisPermitLimiter } from './adapters/redis/permit-limiter.js';
import { jobBackoff, JOBS, repeatStrategy } from './adapters/redis/queues.js';
import type { Config } from './config.js';
import type { Storage } from './wiring.js';

/**
 * The worker role: send jobs (pages), schedule occurrences, and the
 * supervisor. Returns the graceful stop: no new work, in-flight sends finish
 * and are recorded, unfinished pages go back to the queue for other workers.
 */
export function startWorkerRole(deps: {
  redis: RedisClient;
  config: Config;
  storage: Storage;
  providers: ProviderRegistry;
  events: AppEvents;
  /** This process's metrics, pushed into Redis for the API to serve. */
  metrics: Registry;
  instance: string;
  log: Logger;
}): { stop(): Promise<void> } {
  const { redis, config, storage: s, providers, events, log } = deps;
  const pusher = new MetricsPusher(redis, s.keys, deps.metrics, deps.instance);
  pusher.start();
  const limiter = new RedisPermitLimiter(redis, s.keys, s.scripts);
  const stopping = new AbortController();
  const name = deps.instance;
  const sendPage = new SendPage({
    campaigns: s.store,
    ledger: s.ledger,
    limiter,
    providers,
    pump: s.pump,
    sendSlots: new Semaphore(config.sendConcurrency),
    gate: new RecipientGate(s.suppressions, s.frequencyCaps, config.frequencyCaps),
    caps: s.frequencyCaps,
    events,
    log,
    options: { leaseMs: config.leaseMs, claimBatch: 64, confirmBatch: 128, confirmDelayMs: 10 },
  });

  // One BullMQ worker per send shard; the process's page concurrency is shared out among them.
  const perShard = Math.max(1, Math.ceil(config.workerConcurrency / s.layout.send.length));
  const senders = s.layout.send.map((queueName) => new Worker(
    queueName,
    async (job, token) => {
      const result: PageResult = await sendPage.run(JOBS.sendPage.schema.parse(job.data), token!, stopping.signal);
      if (result.kind === 'later' || result.kind === 'busy') {
        await job.moveToDelayed(Date.now() + Math.max(result.kind === 'later' ? 50 : 100, result.delayMs), token);
        throw new DelayedError();
      }
      if (result.kind === 'stopped') {
        await job.moveToWait(token);
        throw new WaitingError();
      }
      return result;
    },
    {
      // Shown in Bull Board as the job's processedBy.
      name,
      connection: redis,
      prefix: config.prefix,
      concurrency: perShard,
      lockDuration: config.stalledIntervalMs,
      stalledInterval: config.stalledIntervalMs,
      // A stalled page is picked up again however often its workers die: the ledger makes that safe.
      maxStalledCount: 1_000_000,
      settings: { backoffStrategy: jobBackoff },
    },
  ));
  for (const sender of senders) {
    sender.on('failed', (job, err) => log.warn({ jobId: job?.id, err: err.message }, 'send job failed; it will be retried'));
    sender.on('error', (err) => log.warn({ err: err.message }, 'send worker error'));
  }

  const fire = new FireOccurrence(s.store, s.lifecycle, s.scheduler, s.starter, config.scheduleGraceMs, log);
  const scheduled = new Worker(
    s.layout.schedule,
    async (job) => {
      const data = JOBS.occurrence.schema.parse(job.data);
      // BullMQ's scheduler stamps each job with the occurrence it stands for.
      const occurrence = Number(job.opts.prevMillis ?? job.timestamp);
      return fire.execute(data.campaignId, data.version, occurrence);
    },
    { name, connection: redis, prefix: config.prefix, concurrency: 4, settings: { repeatStrategy, backoffStrategy: jobBackoff } },
  );
  scheduled.on('failed', (job, err) => log.warn({ jobId: job?.id, err: err.message }, 'schedule job failed; it will be retried'));
  scheduled.on('error', (err) => log.warn({ err: err.message }, 'schedule worker error'));

  const supervisor = new Supervisor(
    { ledger: s.ledger, store: s.store, providers, queue: s.pageQueue, pump: s.pump, events, log },
    { intervalMs: config.supervisorIntervalMs, stallMs: config.stallMs, stuckMs: config.stuckMs, stagingTtlMs: config.stagingTtlMs },
  );
  supervisor.start();
  log.info({ concurrency: config.workerConcurrency, sendConcurrency: config.sendConcurrency, providers: providers.names() }, 'worker started');

  return {
    async stop() {
      stopping.abort();
      await Promise.all([...senders.map((w) => w.close()), scheduled.close(), supervisor.stop()]);
      await limiter.close();
      await pusher.stop();
      log.info({ limiterCalls: limiter.stats.calls, permitsGranted: limiter.stats.granted }, 'limiter totals');
    },
  };
}
