import { DelayedError, WaitingError, Worker } from 'bullmq';
import type { Logger } from '../../app/events.js';
import type { PageJob } from '../../app/ports.js';
import type { PageResult } from '../../app/send-page.js';
import type { RedisClient } from './connection.js';
import { jobBackoff, JOBS, repeatStrategy, type QueueLayout } from './queues.js';

/**
 * BullMQ's side of the worker role: the Workers that take page jobs and
 * schedule occurrences off their queues, and the one translation of a page's
 * result into what BullMQ does with its job next. BullMQ only delivers the
 * jobs; the ledger decides who may be sent.
 */
export interface PageWorkersOptions {
  redis: RedisClient;
  prefix: string;
  layout: QueueLayout;
  /** Shown in Bull Board as the job's processedBy. */
  name: string;
  /** Pages this process works on at once, shared out among the send shards. */
  concurrency: number;
  /** BullMQ lock duration and stalled-job check interval of page jobs. */
  lockMs: number;
  log: Logger;
}

/** Delay before a page that is waiting for retries, or held by another worker, is tried again. */
const MIN_LATER_MS = 50;
const MIN_BUSY_MS = 100;

export function startPageWorkers(options: PageWorkersOptions, sendPage: (job: PageJob, token: string) => Promise<PageResult>): Worker[] {
  const { redis, prefix, layout, name, log } = options;
  const perShard = Math.max(1, Math.ceil(options.concurrency / layout.send.length));
  const workers = layout.send.map(
    (queueName) =>
      new Worker(
        queueName,
        async (job, token) => {
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
        },
        {
          name,
          connection: redis,
          prefix,
          concurrency: perShard,
          lockDuration: options.lockMs,
          stalledInterval: options.lockMs,
          // A stalled page is picked up again however often its workers die: the ledger makes that safe.
          maxStalledCount: 1_000_000,
          settings: { backoffStrategy: jobBackoff },
        },
      ),
  );
  for (const worker of workers) {
    worker.on('failed', (job, err) => log.warn({ jobId: job?.id, err: err.message }, 'send job failed; it will be retried'));
    worker.on('error', (err) => log.warn({ err: err.message }, 'send worker error'));
  }
  return workers;
}

/** The schedule queue's Worker: each job is one occurrence of a campaign's schedule. */
export function startOccurrenceWorker(
  options: Pick<PageWorkersOptions, 'redis' | 'prefix' | 'layout' | 'name' | 'log'>,
  fire: (campaignId: string, version: number, occurrence: number) => Promise<unknown>,
): Worker {
  const { redis, prefix, layout, name, log } = options;
  const worker = new Worker(
    layout.schedule,
    async (job) => {
      const data = JOBS.occurrence.schema.parse(job.data);
      // BullMQ's scheduler stamps each job with the occurrence it stands for.
      return fire(data.campaignId, data.version, Number(job.opts.prevMillis ?? job.timestamp));
    },
    { name, connection: redis, prefix, concurrency: 4, settings: { repeatStrategy, backoffStrategy: jobBackoff } },
  );
  worker.on('failed', (job, err) => log.warn({ jobId: job?.id, err: err.message }, 'schedule job failed; it will be retried'));
  worker.on('error', (err) => log.warn({ err: err.message }, 'schedule worker error'));
  return worker;
}
