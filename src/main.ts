import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DelayedError, WaitingError, Worker, type Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { CampaignQueries } from './app/campaign-queries.js';
import { CreateCampaign } from './app/create-campaign.js';
import { AppEvents, type Logger } from './app/events.js';
import { LaunchCampaign } from './app/launch-campaign.js';
import { ProviderQueries } from './app/provider-queries.js';
import { RunPump } from './app/pump.js';
import { Semaphore } from './app/semaphore.js';
import { SendPage, type PageResult } from './app/send-page.js';
import { Supervisor } from './app/supervisor.js';
import { createHttpApp } from './adapters/http/app.js';
import { createMetrics } from './adapters/http/metrics.js';
import { Providers } from './adapters/push/registry.js';
import { RedisCampaignStore } from './adapters/redis/campaign-store.js';
import { checkRedis, connect, createApiRedis, createWorkerRedis, RedisStartupError, safeUrl } from './adapters/redis/connection.js';
import { startRedisIfAbsent } from './adapters/redis/embedded.js';
import { Keys } from './adapters/redis/keys.js';
import { RedisPermitLimiter } from './adapters/redis/permit-limiter.js';
import { BullPageQueue, createSendQueue, jobBackoff, JOBS, QUEUES } from './adapters/redis/queues.js';
import { RedisLedger } from './adapters/redis/redis-ledger.js';
import { Scripts } from './adapters/redis/scripts.js';
import { ConfigError, DEFAULT_REDIS_URL, loadConfig, requireAdminToken, type Config } from './config.js';
import { createLogger } from './logger.js';

/**
 * Wiring: builds the adapters from the configuration and hands them to the
 * use cases. Entry points in workers/ choose the roles of the process.
 */
export interface Roles {
  api: boolean;
  worker: boolean;
  /** The one-machine default may start its own redis-server (npm start only). */
  embeddedRedis: boolean;
}

export interface RunningProcess {
  config: Config;
  /** Where the API listens, when this process serves it. */
  url: string | null;
  adminToken: string | null;
  events: AppEvents;
  /** Graceful: stop taking work, finish and record what is in flight, close. */
  stop(): Promise<void>;
}

/** Adapters over one Redis connection. */
function storage(redis: Redis, config: Config) {
  const keys = new Keys(config.prefix);
  const scripts = new Scripts(redis);
  const ledger = new RedisLedger(redis, keys, scripts);
  const store = new RedisCampaignStore(redis, keys);
  const queue = createSendQueue(redis, config.prefix);
  const pump = new RunPump(ledger, new BullPageQueue(queue), config.runWindow);
  return { keys, scripts, ledger, store, queue, pageQueue: new BullPageQueue(queue), pump };
}

async function openRedis(config: Config, create: (url: string) => Redis, log: Logger): Promise<Redis> {
  const redis = create(config.redisUrl);
  await connect(redis, config.redisUrl);
  let reported = false;
  redis.on('error', (err: Error) => {
    if (!reported) log.warn({ err: err.message, redis: safeUrl(config.redisUrl) }, 'Redis connection trouble; reconnecting');
    reported = true;
  });
  redis.on('ready', () => {
    if (reported) log.info({ redis: safeUrl(config.redisUrl) }, 'Redis connection back');
    reported = false;
  });
  return redis;
}

export async function start(roles: Roles, env: NodeJS.ProcessEnv = process.env): Promise<RunningProcess> {
  const config = loadConfig(env);
  if (roles.api) requireAdminToken(config);
  const log = createLogger(config.logLevel, { role: [roles.api && 'api', roles.worker && 'worker'].filter(Boolean).join('+') });
  const closers: Array<() => Promise<unknown>> = [];
  let stopWorker: (() => Promise<void>) | null = null;
  const closeAll = async () => {
    for (const close of closers.reverse()) await close().catch((err) => log.warn({ err: (err as Error).message }, 'error while closing'));
  };

  try {
    const embedded = roles.embeddedRedis
      ? await startRedisIfAbsent({ urlDefaulted: config.redisUrlDefaulted, defaultUrl: DEFAULT_REDIS_URL, dataDir: 'data' })
      : null;
    if (embedded) {
      closers.push(() => embedded.stop());
      log.info({ redis: embedded.url, dataDir: embedded.dataDir }, `no Redis answered at ${DEFAULT_REDIS_URL}: started redis-server (appendonly, noeviction, data in ${embedded.dataDir}); it stops when this process stops`);
    }

    const events = new AppEvents();
    const providers = new Providers(config.providers);
    closers.push(() => providers.close());

    // Each role has its own connection: request handlers fail fast, workers wait Redis out.
    const workerRedis = roles.worker ? await openRedis(config, createWorkerRedis, log) : null;
    if (workerRedis) closers.push(() => workerRedis.quit());
    const apiRedis = roles.api ? await openRedis(config, createApiRedis, log) : null;
    if (apiRedis) closers.push(() => apiRedis.quit());
    const { warning } = await checkRedis((workerRedis ?? apiRedis)!, config.redisUrl);
    if (warning) log.warn({ redis: safeUrl(config.redisUrl) }, warning);
    // Reading provider state needs no lease loop: any limiter over any connection will do.
    const stateRedis = (apiRedis ?? workerRedis)!;
    const providerQueries = new ProviderQueries(providers, new RedisPermitLimiter(stateRedis, new Keys(config.prefix), new Scripts(stateRedis)));
    const metrics = createMetrics(events, () => providerQueries.list());

    let url: string | null = null;
    let adminToken: string | null = null;

    if (workerRedis) {
      const s = storage(workerRedis, config);
      closers.push(() => s.queue.close());
      const limiter = new RedisPermitLimiter(workerRedis, s.keys, s.scripts);
      closers.push(() => limiter.close());
      const stopping = new AbortController();
      const sendPage = new SendPage({
        campaigns: s.store,
        ledger: s.ledger,
        limiter,
        providers,
        pump: s.pump,
        sendSlots: new Semaphore(config.sendConcurrency),
        events,
        log,
        options: { leaseMs: config.leaseMs, claimBatch: 64, confirmBatch: 128, confirmDelayMs: 10 },
      });
      const worker = new Worker(
        QUEUES.send,
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
          name: `${hostname()}:${process.pid}`,
          connection: workerRedis,
          prefix: config.prefix,
          concurrency: config.workerConcurrency,
          lockDuration: config.stalledIntervalMs,
          stalledInterval: config.stalledIntervalMs,
          // A stalled page is picked up again however often its workers die: the ledger makes that safe.
          maxStalledCount: 1_000_000,
          settings: { backoffStrategy: jobBackoff },
        },
      );
      worker.on('failed', (job, err) => log.warn({ jobId: job?.id, err: err.message }, 'send job failed; it will be retried'));
      worker.on('error', (err) => log.warn({ err: err.message }, 'send worker error'));
      const supervisor = new Supervisor(s.ledger, s.pageQueue, s.pump, events, log, {
        intervalMs: config.supervisorIntervalMs,
        stallMs: config.stallMs,
      });
      supervisor.start();
      stopWorker = async () => {
        stopping.abort();
        await Promise.all([worker.close(), supervisor.stop()]);
        log.info({ limiterCalls: limiter.stats.calls, permitsGranted: limiter.stats.granted }, 'limiter totals');
      };
      log.info({ concurrency: config.workerConcurrency, sendConcurrency: config.sendConcurrency, providers: providers.names() }, 'worker started');
    }

    let server: Server | null = null;
    if (apiRedis) {
      const s = storage(apiRedis, config);
      closers.push(() => s.queue.close());
      adminToken = config.adminToken ?? randomBytes(24).toString('base64url');
      if (!config.adminToken) {
        process.stdout.write(`ADMIN_TOKEN is not set; generated one for this process (set ADMIN_TOKEN to keep it): ${adminToken}\n`);
      }
      const queues: Queue[] = [s.queue];
      const app = createHttpApp({
        adminToken,
        queues,
        metrics,
        ping: () => apiRedis.ping(),
        log,
        maxBodyBytes: config.maxBodyBytes,
        createCampaign: new CreateCampaign(s.store, providers, config.pageSize),
        launchCampaign: new LaunchCampaign(s.store, s.ledger, s.pump, events),
        queries: new CampaignQueries(s.store, s.ledger),
        providers: providerQueries,
      });
      const srv = createServer(app);
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(config.port, config.host, () => {
          srv.off('error', reject);
          resolve();
        });
      });
      server = srv;
      const address = server.address() as AddressInfo;
      url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${address.port}`;
      log.info({ url, board: `${url}/admin/queues` }, 'API listening');
    }

    let stopped: Promise<void> | null = null;
    return {
      config,
      url,
      adminToken,
      events,
      stop() {
        stopped ??= (async () => {
          log.info({}, 'stopping: no new work; finishing what is in flight');
          const closing = server ? new Promise<void>((resolve) => server!.close(() => resolve())) : Promise.resolve();
          server?.closeIdleConnections();
          await stopWorker?.();
          await closing;
          await closeAll();
          log.info({}, 'stopped');
        })();
        return stopped;
      },
    };
  } catch (err) {
    await stopWorker?.();
    await closeAll();
    throw err;
  }
}

/**
 * Runs a process until SIGTERM/SIGINT. Startup problems are one line on
 * stderr and a non-zero exit; a second signal or the shutdown deadline forces
 * the exit.
 */
export async function runMain(roles: Roles): Promise<void> {
  let running: RunningProcess;
  try {
    running = await start(roles);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`pushq: invalid configuration: ${err.message}\n`);
      process.exit(2);
    }
    const message = err instanceof RedisStartupError ? err.message : `cannot start: ${(err as Error).message}`;
    process.stderr.write(`pushq: ${message}\n`);
    process.exit(1);
  }
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals += 1;
    if (signals > 1) {
      process.stderr.write(`pushq: ${signal} again: exiting now\n`);
      process.exit(1);
    }
    const deadline = setTimeout(() => {
      process.stderr.write(`pushq: shutdown took longer than ${running.config.shutdownTimeoutMs} ms: exiting now\n`);
      process.exit(1);
    }, running.config.shutdownTimeoutMs);
    deadline.unref();
    running.stop().then(
      () => process.exit(0),
      (err) => {
        process.stderr.write(`pushq: error while stopping: ${(err as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}
