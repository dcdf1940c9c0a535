import { Queue, type ConnectionOptions, type JobsOptions, type RepeatStrategy } from 'bullmq';
import { z } from 'zod';
import type { PageJob, PageQueue, PageQueueOptions, Scheduler } from '../../app/ports.js';
import { nextOccurrence, schedulerPattern, specFromPattern, type ScheduleSpec } from '../../domain/schedule.js';

/**
 * The job catalog: every queue, job name and payload schema in one place.
 * Producers and workers both go through it, so a payload change is one edit.
 * Jobs carry references (campaign, run, page), never recipient data: Bull
 * Board shows job data, and device tokens or phone numbers must not be there.
 *
 * BullMQ is only the delivery mechanism: a job may run twice (stalled-job
 * recovery is at-least-once); the ledger decides who may be sent.
 */
export const QUEUES = {
  send: 'send',
  schedule: 'schedule',
} as const;

export interface QueueLayout {
  /** Send queues; a page goes to one of them by `shardOf`. */
  send: string[];
  schedule: string;
}

/**
 * Queue names. BullMQ's keys are `<prefix>:<queue>:…` and its scripts touch
 * several keys of one queue, so on a Redis Cluster every queue name carries a
 * hash tag (`{send-0}`, `{schedule}`), and each send shard lands on a slot of
 * its own — on the cluster's masters in turn as shards are added. One
 * standalone shard keeps the plain names.
 */
export function queueLayout(shards: number, cluster: boolean): QueueLayout {
  if (shards === 1 && !cluster) return { send: [QUEUES.send], schedule: QUEUES.schedule };
  return { send: Array.from({ length: shards }, (_, i) => `{${QUEUES.send}-${i}}`), schedule: `{${QUEUES.schedule}}` };
}

/** The send shard of a page: a campaign's pages go round the shards from a place its id picks. */
export function shardOf(job: Pick<PageJob, 'campaignId' | 'page'>, shards: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < job.campaignId.length; i++) hash = Math.imul(hash ^ job.campaignId.charCodeAt(i), 0x01000193);
  return ((hash >>> 0) + job.page) % shards;
}

export const JOBS = {
  sendPage: {
    queue: QUEUES.send,
    name: 'send-page',
    schema: z.object({
      campaignId: z.string().min(1),
      runId: z.string().min(1),
      page: z.number().int().min(0),
      gen: z.number().int().min(1),
    }) satisfies z.ZodType<PageJob>,
  },
  /** Produced by a campaign's job scheduler at each occurrence; the occurrence is job.opts.prevMillis. */
  occurrence: {
    queue: QUEUES.schedule,
    name: 'occurrence',
    schema: z.object({
      campaignId: z.string().min(1),
      version: z.number().int().min(1),
    }),
  },
} as const;

/** BullMQ job ids may contain neither ':' nor be all digits; ours are neither. */
export function pageJobId(job: PageJob): string {
  return `${job.campaignId}.${job.runId}.p${job.page}.g${job.gen}`;
}

/** Backoff for a job whose processor threw (Redis trouble, a bug): capped exponential. */
export function jobBackoff(attemptsMade: number): number {
  return Math.min(30_000, 500 * 2 ** Math.min(attemptsMade, 10));
}

/** BullMQ's event stream of a queue (10,000 by default): nothing of pushq reads it, Bull Board does not need it. */
const EVENTS_MAX_LEN = 100;

const SEND_JOB_OPTIONS: JobsOptions = {
  // A processor that throws is retried for a long time: the ledger makes a
  // re-run harmless, and the supervisor re-enqueues whatever still fails.
  attempts: 1000,
  backoff: { type: 'pushq' },
  // Bounded (README, *Bounded keys*): the ledger, not the job, is the record of what was sent.
  removeOnComplete: { age: 3600, count: 50 },
  removeOnFail: { age: 7 * 24 * 3600, count: 10_000 },
};

export function createSendQueue(connection: ConnectionOptions, prefix: string, name: string = QUEUES.send): Queue {
  return new Queue(name, { connection, prefix, defaultJobOptions: SEND_JOB_OPTIONS, streams: { events: { maxLen: EVENTS_MAX_LEN } } });
}

export class BullPageQueue implements PageQueue {
  constructor(private readonly queues: readonly Queue[]) {}

  async enqueuePages(jobs: readonly PageJob[], options: PageQueueOptions): Promise<void> {
    if (jobs.length === 0) return;
    const byShard = new Map<number, PageJob[]>();
    for (const job of jobs) {
      const shard = shardOf(job, this.queues.length);
      byShard.set(shard, [...(byShard.get(shard) ?? []), job]);
    }
    await Promise.all(
      [...byShard].map(([shard, shardJobs]) =>
        this.queues[shard]!.addBulk(
          shardJobs.map((job) => ({
            name: JOBS.sendPage.name,
            data: JOBS.sendPage.schema.parse(job),
            // BullMQ: 1 is the highest priority; within one priority jobs stay in order.
            opts: { jobId: pageJobId(job), priority: options.priorityClass + 1 },
          })),
        ),
      ),
    );
  }
}

// ── schedules ───────────────────────────────────────────────────────────────

/**
 * Next occurrence of a BullMQ job scheduler: cron patterns through cron-parser
 * (the DST rule is in domain/schedule.ts), one-time `at` schedules by their
 * own pattern. Queue (first occurrence) and Worker (each next one) both use it.
 */
export const repeatStrategy: RepeatStrategy = (millis, opts) => nextOccurrence(specFromPattern(opts.pattern ?? '', opts.tz), millis) ?? undefined;

export function createScheduleQueue(connection: ConnectionOptions, prefix: string, name: string = QUEUES.schedule): Queue {
  return new Queue(name, {
    connection,
    prefix,
    settings: { repeatStrategy },
    streams: { events: { maxLen: EVENTS_MAX_LEN } },
    // Each occurrence is recorded on its campaign (the last 100); these are Bull Board's view of them.
    defaultJobOptions: { removeOnComplete: { age: 7 * 24 * 3600, count: 10 }, removeOnFail: { age: 7 * 24 * 3600, count: 1000 } },
  });
}

/** One BullMQ job scheduler per campaign, keyed by its id: an upsert replaces the old schedule in one step. */
export class BullScheduler implements Scheduler {
  constructor(private readonly queue: Queue) {}

  async set(campaignId: string, spec: ScheduleSpec, version: number): Promise<void> {
    await this.queue.upsertJobScheduler(
      campaignId,
      { ...schedulerPattern(spec), ...(spec.kind === 'at' ? { limit: 1 } : {}) },
      {
        name: JOBS.occurrence.name,
        data: JOBS.occurrence.schema.parse({ campaignId, version }),
        opts: { attempts: 20, backoff: { type: 'pushq' } },
      },
    );
  }

  async remove(campaignId: string): Promise<void> {
    await this.queue.removeJobScheduler(campaignId);
  }
}
