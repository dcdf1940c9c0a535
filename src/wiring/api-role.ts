import { RedisRunSeries } from '../adapters/redis/redis-series.js';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { RedisClient } from '../adapters/redis/connection.js';
import type { Registry } from 'prom-client';
import { CampaignLifecycle } from '../app/campaign-lifecycle.js';
import { CampaignQueries } from '../app/campaign-queries.js';
import { CreateCampaign } from '../app/create-campaign.js';
import type { Logger } from '../app/ports.js';
import { LaunchCampaign } from '../app/launch-campaign.js';
import { DryRun } from '../app/dry-run.js';
import { Preview } from '../app/preview.js';
import { TestSend } from '../app/test-send.js';
import type { ProviderRegistry, ResultsArchive } from '../app/ports.js';
import { DeleteCampaign } from '../app/delete-campaign.js';
import { MEMORY_WARN_RATIO, MemoryGuard } from '../app/memory-guard.js';
import { ProviderQueries } from '../app/provider-queries.js';
import { RetryFailed } from '../app/retry-failed.js';
import { ScheduleCampaign } from '../app/schedule-campaign.js';
import { SuppressionLists } from '../app/suppression-lists.js';
import { UploadRecipients } from '../app/upload-recipients.js';
import { Webhooks } from '../app/webhooks.js';
import { Receipts } from '../app/receipts.js';
import { receiptSecret } from '../adapters/push/provider-config.js';
import type { ReceiptSource } from '../adapters/http/receipts.js';
import { RedisMessageIds } from '../adapters/redis/redis-message-ids.js';
import { ConfigError } from '../config.js';
import { WEBHOOK_SECRET_PATTERN } from '../domain/webhooks.js';
import { createHttpApp } from '../adapters/http/app.js';
import { answerBelowExpress } from '../adapters/http/errors.js';
import { createSharedMetrics, recentWorkers, renderMetrics } from '../adapters/http/metrics.js';
import { RedisPermitLimiter } from '../adapters/redis/permit-limiter.js';
import { weakestFacts } from '../adapters/redis/connection.js';
import type { Config } from '../config.js';
import type { Services } from './services.js';

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** The providers that send delivery receipts, with the secret each is checked with. */
function receiptSourcesOf(config: Config): Map<string, ReceiptSource> {
  const sources = new Map<string, ReceiptSource>();
  for (const provider of config.providers) {
    const secret = receiptSecret(provider);
    if (secret === null || (provider.type !== 'http' && provider.type !== 'alimtalk')) continue;
    if (provider.type === 'http' && !WEBHOOK_SECRET_PATTERN.test(secret)) {
      throw new ConfigError(`provider ${provider.name}: its receipts secret is not a Standard Webhooks secret (whsec_ and the base64 of 24 to 64 bytes)`);
    }
    sources.set(provider.name, { type: provider.type, secret });
  }
  return sources;
}

/** The API role: REST, Bull Board, metrics and health on one HTTP server. */
export async function startApiRole(deps: {
  redis: RedisClient;
  config: Config;
  services: Services;
  providers: ProviderRegistry;
  /** What this process counts (in a process that is also a worker, its sends too). */
  metrics: Registry;
  /** This process, as workers are named in Redis. */
  instance: string;
  log: Logger;
  archive: ResultsArchive;
}): Promise<{ url: string; adminToken: string; stop(): Promise<void> }> {
  const { redis, config, services: s, providers, log } = deps;
  // First: a receipts secret that cannot be read stops the API before it starts anything.
  const receiptSources = receiptSourcesOf(config);
  // Reading provider state needs no lease loop: a limiter over this connection will do.
  const providerQueries = new ProviderQueries({ providers, limiter: new RedisPermitLimiter(redis, s.keys, s.scripts) });
  const memory = new MemoryGuard(s.memory, config.memoryHighWatermark);
  const dryRun = new DryRun({ store: s.store, providers });
  const webhooks = new Webhooks({ registry: s.webhooks, store: s.webhookStore, clock: s.locks });
  const shared = createSharedMetrics({
    webhooks: async () => (await webhooks.list()).items,
    memory: () => memory.state(),
    providerStates: () => providerQueries.list(),
    activeRuns: async () => {
      const runs = await Promise.all((await s.runs.activeRuns()).map((r) => s.runs.getRun(r.campaignId, r.runId)));
      return runs.filter((r): r is NonNullable<typeof r> => r !== null);
    },
    queues: [...s.sendQueues, s.scheduleQueue],
  });
  const adminToken = config.adminToken ?? randomBytes(24).toString('base64url');
  if (!config.adminToken) {
    process.stdout.write(`ADMIN_TOKEN is not set; generated one for this process (set ADMIN_TOKEN to keep it): ${adminToken}\n`);
  }
  const lifecycle = new CampaignLifecycle({
    store: s.store,
    runs: s.runs,
    lifecycle: s.lifecycle,
    scheduler: s.scheduler,
    queue: s.pageQueue,
    pump: s.pump,
    pageSize: config.pageSize,
    providers,
    memory,
    log,
  });
  const app = createHttpApp({
    trustProxy: config.trustProxy,
    adminToken,
    queues: [...s.sendQueues, s.scheduleQueue],
    metrics: () => renderMetrics(deps.metrics, shared, s.metricsBoard, deps.instance),
    viewerToken: config.viewerToken,
    version: VERSION,
    readiness: async () => {
      const [facts, workers, mem] = await Promise.all([weakestFacts(redis), recentWorkers(s.metricsBoard), memory.state()]);
      const warnings: string[] = [];
      if (mem.ratio === null) {
        warnings.push('Redis has no maxmemory and MEMORY_LIMIT_BYTES is not set: the memory guard is off, and a full Redis stops every write');
      } else if (mem.ratio > MEMORY_WARN_RATIO) {
        const over =
          mem.ratio > config.memoryHighWatermark
            ? `; above MEMORY_HIGH_WATERMARK (${config.memoryHighWatermark}) new campaigns, uploads and launches are refused`
            : '';
        warnings.push(`Redis memory is ${(mem.ratio * 100).toFixed(0)}% used${over}: archive sooner (RUN_RETENTION_MS), delete old campaigns, or add memory`);
      }
      if (workers.length === 0) warnings.push('no worker process seen in the last 30 s: nothing is being sent');
      if (!facts.aof && !facts.rdb) warnings.push('Redis persists nothing: a Redis restart loses every ledger');
      const evicts = facts.maxmemoryPolicy !== 'noeviction';
      if (evicts) warnings.push(`maxmemory-policy is ${facts.maxmemoryPolicy}: evicted ledger keys mean duplicate sends`);
      return {
        ready: !evicts,
        details: {
          redis: {
            reachable: true,
            ...(facts.masters > 1 ? { clusterMasters: facts.masters } : {}),
            version: facts.version,
            maxmemoryPolicy: facts.maxmemoryPolicy,
            persistence: { aof: facts.aof, rdb: facts.rdb },
            memory: { usedBytes: mem.used, limitBytes: mem.limit, ratio: mem.ratio === null ? null : Number(mem.ratio.toFixed(4)), limitFrom: mem.source },
          },
          workers: { seen: workers.length },
          warnings,
        },
      };
    },
    log,
    maxBodyBytes: config.maxBodyBytes,
    maxUploadBytes: config.maxUploadBytes,
    createCampaign: new CreateCampaign({ store: s.store, providers, pageSize: config.pageSize, memory }),
    launchCampaign: new LaunchCampaign({
      store: s.store,
      runs: s.runs,
      starter: s.starter,
      lifecycle: s.lifecycle,
      scheduler: s.scheduler,
      memory,
      renders: dryRun,
      log,
    }),
    dryRun,
    preview: new Preview({ store: s.store, providers }),
    testSend: new TestSend({
      store: s.store,
      runs: s.runs,
      ledger: s.ledger,
      starter: s.starter,
      pageSize: config.pageSize,
      memory,
      workersSeen: async () => (await recentWorkers(s.metricsBoard)).length,
    }),
    deleteCampaign: new DeleteCampaign({ store: s.store, deletions: s.deletions, scheduler: s.scheduler, log }),
    scheduleCampaign: new ScheduleCampaign({
      store: s.store,
      runs: s.runs,
      locks: s.locks,
      lifecycle: s.lifecycle,
      scheduler: s.scheduler,
      minIntervalMs: config.minScheduleIntervalMs,
      memory,
      renders: dryRun,
      log,
    }),
    lifecycle,
    queries: new CampaignQueries({
      store: s.store,
      runs: s.runs,
      ledger: s.ledger,
      archive: deps.archive,
      series: new RedisRunSeries(redis, s.keys, s.scripts),
    }),
    retryFailed: new RetryFailed({ store: s.store, runs: s.runs, ledger: s.ledger, starter: s.starter, pageSize: config.pageSize, memory }),
    upload: new UploadRecipients({ store: s.store, runs: s.runs, lifecycle, memory }),
    providers: providerQueries,
    suppressions: new SuppressionLists({ suppressions: s.suppressions }),
    webhooks,
    receipts: new Receipts({
      runs: s.runs,
      store: s.store,
      ledger: s.ledger,
      outbox: s.outbox,
      messageIds: new RedisMessageIds(redis, s.keys, s.scripts, config.receiptWindowMs),
    }),
    receiptSources,
  });
  const server: Server = createServer(app);
  answerBelowExpress(server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${address.port}`;
  log.info({ url, board: `${url}/admin/queues` }, 'API listening');
  return {
    url,
    adminToken,
    stop() {
      const closing = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      return closing;
    },
  };
}
