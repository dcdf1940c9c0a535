import { RunSeries } from '../app/run-series.js';
import { RedisRunSeries } from '../adapters/redis/redis-series.js';
import type { RedisClient } from '../adapters/redis/connection.js';
import type { AppEvents } from '../app/events.js';
import type { Logger } from '../app/ports.js';
import { FireOccurrence } from '../app/fire-occurrence.js';
import { LeaseRenewer } from '../app/lease-renewer.js';
import type { ProviderRegistry, ResultsArchive } from '../app/ports.js';
import { DEFAULT_JANITOR_LOCK_TTL_MS, Janitor, type JanitorOptions } from '../app/janitor.js';
import { MemoryGuard } from '../app/memory-guard.js';
import { RecipientGate } from '../app/recipient-gate.js';
import { Semaphore } from '../app/semaphore.js';
import { SendBudget } from '../app/send-budget.js';
import { RunPaces } from '../app/run-paces.js';
import { SendPage } from '../app/send-page.js';
import { Supervisor } from '../app/supervisor.js';
import type { Registry } from 'prom-client';
import { MetricsPusher } from '../adapters/http/metrics.js';
import { startOccurrenceWorker, startPageWorkers } from '../adapters/redis/page-workers.js';
import { RedisPermitLimiter } from '../adapters/redis/permit-limiter.js';
import type { Config } from '../config.js';
import type { Services } from './services.js';
import { CompiledMessages } from '../domain/template.js';
import { WebhookDispatcher } from '../app/webhook-dispatcher.js';
import { HttpWebhookClient } from '../adapters/webhooks/webhook-client.js';
import { readWebhookSecret } from '../adapters/webhooks/webhook-config.js';
import type { ResolvedWebhook } from '../app/webhook-registry.js';
import { MessageIdBuffer } from '../app/message-id-buffer.js';
import { RedisMessageIds } from '../adapters/redis/redis-message-ids.js';

/** The janitor over a role's services (archive and delete; see app/janitor.ts). */
export function createJanitor(
  s: Services,
  archive: ResultsArchive,
  events: AppEvents,
  log: Logger,
  options: Pick<JanitorOptions, 'intervalMs' | 'retentionMs'>,
): Janitor {
  return new Janitor(
    { retention: s.retention, deletions: s.deletions, archive, runs: s.runs, store: s.store, ledger: s.ledger, locks: s.locks, clock: s.locks, events, log },
    { lockTtlMs: DEFAULT_JANITOR_LOCK_TTL_MS, batch: 10, ...options },
  );
}

/**
 * Webhook secrets: a file endpoint's read at start from its file or variable
 * (a missing one stops the worker, naming it), an API endpoint's as stored.
 */
function webhookSecrets(config: Config, registry: Services['webhooks']): (endpoint: ResolvedWebhook) => string {
  const fromFiles = new Map(config.webhooks.map((entry) => [entry.name, readWebhookSecret(entry)]));
  return (endpoint) => {
    const secret = endpoint.source === 'file' ? fromFiles.get(endpoint.name) : registry.storedSecret(endpoint.name);
    if (secret) return secret;
    throw new Error(`webhook ${endpoint.name} has no secret in this process`);
  };
}

/**
 * The worker role: send jobs (pages), schedule occurrences, webhook
 * deliveries, and the supervisor. Returns the graceful stop: no new work, in-flight sends finish
 * and are recorded, unfinished pages go back to the queue for other workers.
 */
export function startWorkerRole(deps: {
  redis: RedisClient;
  config: Config;
  services: Services;
  providers: ProviderRegistry;
  events: AppEvents;
  /** This process's metrics, pushed into Redis for the API to serve. */
  metrics: Registry;
  instance: string;
  log: Logger;
  archive: ResultsArchive;
}): { stop(): Promise<void> } {
  const { redis, config, services: s, providers, events, log, instance } = deps;
  // First: a webhook secret that cannot be read stops the worker before it starts anything.
  const secretOf = webhookSecrets(config, s.webhooks);
  const pusher = new MetricsPusher(s.metricsBoard, deps.metrics, instance);
  pusher.start();
  const limiter = new RedisPermitLimiter(redis, s.keys, s.scripts, { onRest: (provider, from) => events.emit('permit:rested', { provider, from }) });
  const renewer = new LeaseRenewer({ ledger: s.ledger, log }, { leaseMs: config.leaseMs, intervalMs: Math.max(100, Math.floor(config.leaseMs / 4)) });
  const stopping = new AbortController();
  const messageIds = new MessageIdBuffer(new RedisMessageIds(redis, s.keys, s.scripts, config.receiptWindowMs), log);
  const series = new RunSeries(new RedisRunSeries(redis, s.keys, s.scripts), log);
  const paces = new RunPaces({ runs: s.runs, log });
  const sendPage = new SendPage({
    campaigns: s.store,
    ledger: s.ledger,
    runs: s.runs,
    budget: new SendBudget({ slots: new Semaphore(config.sendConcurrency), limiter, events }),
    renewer,
    providers,
    pump: s.pump,
    gate: new RecipientGate({ suppressions: s.suppressions, caps: s.frequencyCaps, configuredCaps: config.frequencyCaps }),
    paces,
    caps: s.frequencyCaps,
    templates: new CompiledMessages(),
    messageIds,
    series,
    events,
    log,
    options: { leaseMs: config.leaseMs, claimBatch: 256, confirmBatch: 256, confirmDelayMs: 10 },
  });
  const bull = { redis, prefix: config.queuePrefix, layout: s.layout, name: instance, log };
  const senders = startPageWorkers({ ...bull, concurrency: config.workerConcurrency, lockMs: config.stalledIntervalMs, queues: s.sendQueues }, (job, token) =>
    sendPage.run(job, token, stopping.signal),
  );
  const memory = new MemoryGuard(s.memory, config.memoryHighWatermark);
  const fire = new FireOccurrence({
    store: s.store,
    lifecycle: s.lifecycle,
    scheduler: s.scheduler,
    starter: s.starter,
    graceMs: config.scheduleGraceMs,
    memory,
    log,
  });
  const scheduled = startOccurrenceWorker({ ...bull, queue: s.scheduleQueue }, (campaignId, version, occurrence) =>
    fire.execute(campaignId, version, occurrence),
  );

  const supervisor = new Supervisor(
    { ledger: s.ledger, runs: s.runs, locks: s.locks, clock: s.locks, store: s.store, providers, queue: s.pageQueue, pump: s.pump, events, log },
    { intervalMs: config.supervisorIntervalMs, stallMs: config.stallMs, stuckMs: config.stuckMs, stagingTtlMs: config.stagingTtlMs },
  );
  supervisor.start();
  const janitor = createJanitor(s, deps.archive, events, log, { intervalMs: config.supervisorIntervalMs, retentionMs: config.runRetentionMs });
  janitor.start();
  const webhookClient = new HttpWebhookClient();
  const dispatcher = new WebhookDispatcher(
    {
      registry: s.webhooks,
      outbox: s.outbox,
      store: s.webhookStore,
      client: webhookClient,
      limiter,
      locks: s.locks,
      sources: { store: s.store, runs: s.runs, ledger: s.ledger },
      secretOf,
      events,
      log,
    },
    { intervalMs: 250, concurrency: 32, deadLetterLimit: config.webhookDeadLetterLimit },
  );
  dispatcher.start();
  events.emit('worker:start', { instance });
  log.info(
    { concurrency: config.workerConcurrency, sendConcurrency: config.sendConcurrency, providers: providers.names(), leaseMs: config.leaseMs },
    'worker started',
  );

  return {
    async stop() {
      events.emit('shutdown:begin', { instance });
      stopping.abort();
      await Promise.all([senders.close(), scheduled.close(), supervisor.stop(), janitor.stop(), dispatcher.stop()]);
      await messageIds.flush();
      await series.close();
      await webhookClient.close();
      renewer.stop();
      paces.stop();
      await limiter.close();
      await pusher.stop();
      log.info({ limiterCalls: limiter.stats.calls, permitsGranted: limiter.stats.granted }, 'limiter totals');
      events.emit('worker:stop', { instance });
      events.emit('shutdown:done', { instance });
    },
  };
}
