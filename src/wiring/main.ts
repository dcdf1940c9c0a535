import type { RedisClient } from '../adapters/redis/connection.js';
import { AppEvents } from '../app/events.js';
import type { Logger } from '../app/ports.js';
import { hostname } from 'node:os';
import { createProcessMetrics } from '../adapters/http/metrics.js';
import { Providers } from '../adapters/push/registry.js';
import { checkRedis, connect, createApiRedis, createWorkerRedis, RedisStartupError, safeUrl } from '../adapters/redis/connection.js';
import { startRedisIfAbsent } from '../adapters/redis/embedded.js';
import { createArchive } from '../adapters/archive/create-archive.js';
import { startApiRole } from './api-role.js';
import { ConfigError, DEFAULT_REDIS_URL, loadConfig, requireAdminToken, type Config } from '../config.js';
import { createLogger } from '../logger.js';
import { buildServices } from './services.js';
import { startWorkerRole } from './worker-role.js';

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

async function openRedis(config: Config, create: (url: string) => RedisClient, log: Logger): Promise<RedisClient> {
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
  const log = createLogger(config.logLevel, { role: [roles.api && 'api', roles.worker && 'worker'].filter(Boolean).join('+') }, config.logRedactFields);
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
      log.info(
        { redis: embedded.url, dataDir: embedded.dataDir },
        `no Redis answered at ${DEFAULT_REDIS_URL}: started redis-server (appendonly, noeviction, data in ${embedded.dataDir}); it stops when this process stops`,
      );
    }

    const events = new AppEvents((event, err) =>
      log.error({ event, err: (err as Error)?.message ?? String(err) }, 'an event listener threw; the work it listened to went on'),
    );
    const providers = new Providers(config.providers, { connect: roles.worker, connections: config.sendConcurrency });
    closers.push(() => providers.close());

    // Each role has its own connection: request handlers fail fast, workers wait Redis out.
    const workerRedis = roles.worker ? await openRedis(config, createWorkerRedis, log) : null;
    if (workerRedis) closers.push(() => workerRedis.quit());
    // WAIT blocks the connection it runs on: claims that wait for replicas get one of their own.
    const claimRedis = workerRedis && config.redisWaitReplicas > 0 ? await openRedis(config, createWorkerRedis, log) : null;
    if (claimRedis) closers.push(() => claimRedis.quit());
    const apiRedis = roles.api ? await openRedis(config, createApiRedis, log) : null;
    if (apiRedis) closers.push(() => apiRedis.quit());
    const { warning } = await checkRedis((workerRedis ?? apiRedis)!, config.redisUrl);
    if (warning) log.warn({ redis: safeUrl(config.redisUrl) }, warning);
    const archive = await createArchive(config);
    closers.push(() => archive.close());
    const metrics = createProcessMetrics(events);
    const instance = `${hostname()}:${process.pid}`;

    let url: string | null = null;
    let adminToken: string | null = null;
    if (workerRedis) {
      const s = buildServices(workerRedis, config, events, { log, ...(claimRedis ? { claimRedis } : {}) });
      closers.push(() => s.close());
      await s.webhooks.start();
      const worker = startWorkerRole({ redis: workerRedis, config, services: s, providers, events, metrics, instance, log, archive });
      stopWorker = () => worker.stop();
    }
    let stopApi: (() => Promise<void>) | null = null;
    if (apiRedis) {
      const s = buildServices(apiRedis, config, events, { log });
      closers.push(() => s.close());
      await s.webhooks.start();
      const api = await startApiRole({ redis: apiRedis, config, services: s, providers, metrics, instance, log, archive });
      url = api.url;
      adminToken = api.adminToken;
      stopApi = () => api.stop();
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
          const closing = stopApi?.();
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
