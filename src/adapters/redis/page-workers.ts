import { performance } from 'node:perf_hooks';
import { DelayedError, WaitingError, Worker, type Processor, type Queue, type WorkerOptions } from 'bullmq';
import type { Logger, PageJob } from '../../app/ports.js';
import type { PageResult } from '../../app/send-page.js';
import type { RedisClient } from './connection.js';
import { jobBackoff, JOBS, repeatStrategy, type QueueLayout } from './queues.js';

/**
 * BullMQ's side of the worker role: the Workers that take page jobs and
 * schedule occurrences off their queues, the one translation of a page's
 * result into what BullMQ does with its job next, and a watchdog for
 * BullMQ's known wedge (its blocking connection never recovers after some
 * failovers and reconnects: taskforcesh/bullmq#3088, #4138): a Worker with
 * room to spare that has taken nothing for a while although its queue has
 * jobs waiting is closed and started again. BullMQ only delivers the jobs;
 * the ledger decides who may be sent.
 */
export interface PageWorkersOptions {
  redis: RedisClient;
  prefix: string;
  layout: QueueLayout;
  /** Shown in Bull Board as the job's processedBy. */
  name: string;
  log: Logger;
}

/** Delay before a page that is waiting for retries, or held by another worker, is tried again. */
const MIN_LATER_MS = 50;
const MIN_BUSY_MS = 100;
/** A Worker that has taken nothing for this long, with room and jobs waiting, is wedged. */
const WEDGED_AFTER_MS = 15_000;
const WATCH_EVERY_MS = 5_000;

/** One BullMQ Worker that can be replaced while the process runs. */
class WatchedWorker {
  worker: Worker;
  inflight = 0;
  lastTaken = performance.now();
  private replacing: Promise<void> | null = null;

  constructor(
    readonly queueName: string,
    private readonly queue: Queue | undefined,
    private readonly processor: Processor,
    private readonly options: WorkerOptions,
    private readonly log: Logger,
    private readonly what: string,
  ) {
    this.worker = this.create();
  }

  private create(): Worker {
    const worker = new Worker(
      this.queueName,
      async (job, token) => {
        this.inflight += 1;
        this.lastTaken = performance.now();
        try {
          return await this.processor(job, token);
        } finally {
          this.inflight -= 1;
        }
      },
      this.options,
    );
    worker.on('failed', (job, err) => this.log.warn({ jobId: job?.id, err: err.message }, `${this.what} job failed; it will be retried`));
    worker.on('error', (err) => this.log.warn({ err: err.message }, `${this.what} worker error`));
    return worker;
  }

  /** Replaces the Worker when it looks wedged (see the module comment). */
  async watch(): Promise<void> {
    if (!this.queue || this.replacing || this.worker.closing) return;
    const concurrency = this.options.concurrency ?? 1;
    if (this.inflight >= concurrency || performance.now() - this.lastTaken < WEDGED_AFTER_MS) return;
    const counts = await this.queue.getJobCounts('wait', 'prioritized');
    if ((counts.wait ?? 0) + (counts.prioritized ?? 0) === 0) return;
    this.log.warn(
      { queue: this.queueName, waiting: counts },
      `${this.what} worker took nothing for ${WEDGED_AFTER_MS / 1000} s although jobs wait; starting it again`,
    );
    this.replacing = (async () => {
      const old = this.worker;
      this.worker = this.create();
      this.lastTaken = performance.now();
      // Its active jobs (if any) are taken up again by stalled-job recovery; the ledger makes that safe.
      await old.close(true).catch(() => undefined);
    })().finally(() => (this.replacing = null));
    await this.replacing;
  }

  close(): Promise<void> {
    return this.worker.close();
  }
}

export interface PageWorkers {
  close(): Promise<void>;
}

function watched(workers: WatchedWorker[], log: Logger): PageWorkers {
  const timer = setInterval(() => {
    for (const w of workers) void w.watch().catch((err) => log.warn({ err: (err as Error).message, queue: w.queueName }, 'could not check a worker'));
  }, WATCH_EVERY_MS);
  timer.unref();
  return {
    async close() {
      clearInterval(timer);
      await Promise.all(workers.map((w) => w.close()));
    },
  };
}

/**
 * One Worker per send shard; the process's page concurrency is shared out among them.
 * `queues`: the shards' Queues (same order as the layout), for the watchdog's counts.
 */
export function startPageWorkers(
  options: PageWorkersOptions & { concurrency: number; lockMs: number; queues: readonly Queue[] },
  sendPage: (job: PageJob, token: string) => Promise<PageResult>,
): PageWorkers {
  const { redis, prefix, layout, name, log } = options;
  const perShard = Math.max(1, Math.ceil(options.concurrency / layout.send.length));
  const processor: Processor = async (job, token) => {
    const result = await sendPage(JOBS.sendPage.schema.parse(job.data), token!);
    if (result.kind === 'later' || result.kind === 'busy') {
      await job.moveToDelayed(Date.now() + Math.max(result.kind === 'later' ? MIN_LATER_MS : MIN_BUSY_MS, result.delayMs), token);
      throw new DelayedError();
    }
    if (result.kind === 'stopped') {
      await job.moveToWait(token);
      throw new WaitingError();
    }
    return result;
  };
  const workerOptions: WorkerOptions = {
    name,
    connection: redis,
    prefix,
    concurrency: perShard,
    lockDuration: options.lockMs,
    stalledInterval: options.lockMs,
    // A stalled page is picked up again however often its workers die: the ledger makes that safe.
    maxStalledCount: 1_000_000,
    settings: { backoffStrategy: jobBackoff },
  };
  return watched(
    layout.send.map((queueName, i) => new WatchedWorker(queueName, options.queues[i], processor, workerOptions, log, 'send')),
    log,
  );
}

/** The schedule queue's Worker: each job is one occurrence of a campaign's schedule. */
export function startOccurrenceWorker(
  options: PageWorkersOptions & { queue: Queue },
  fire: (campaignId: string, version: number, occurrence: number) => Promise<unknown>,
): PageWorkers {
  const { redis, prefix, layout, name, log } = options;
  const processor: Processor = async (job) => {
    const data = JOBS.occurrence.schema.parse(job.data);
    // BullMQ's scheduler stamps each job with the occurrence it stands for.
    return fire(data.campaignId, data.version, Number(job.opts.prevMillis ?? job.timestamp));
  };
  const workerOptions: WorkerOptions = { name, connection: redis, prefix, concurrency: 4, settings: { repeatStrategy, backoffStrategy: jobBackoff } };
  return watched([new WatchedWorker(layout.schedule, options.queue, processor, workerOptions, log, 'schedule')], log);
}
