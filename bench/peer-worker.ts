/**
 * A worker process of a peer design, for comparison in `npm run bench`.
 * One BullMQ job per recipient, sent with global fetch, rate limited by:
 *   naive          each process paces itself at cap / processes (a local timer)
 *   bullmq         BullMQ's built-in (global, fixed-window) limiter
 *   bottleneck     Bottleneck clustered on Redis (ioredis), minTime mode
 *   reservoir      Bottleneck clustered on Redis (ioredis), reservoir mode
 *   none           no limit at all (the uncapped baseline)
 * No ledger: a non-2xx answer is counted at the provider and not retried.
 */
import Bottleneck from 'bottleneck';
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';

const mode = process.env.PEER_MODE ?? 'naive';
const cap = Number(process.env.PEER_CAP ?? 1000);
const processes = Number(process.env.PEER_PROCESSES ?? 1);
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const mockUrl = process.env.MOCK_URL!;
const queueName = process.env.PEER_QUEUE ?? 'peer';

const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });

async function post(data: { campaignId: string; recipientId: string }): Promise<void> {
  const key = `${data.campaignId}-${data.recipientId}`;
  const res = await fetch(mockUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': key },
    body: JSON.stringify({
      idempotencyKey: key,
      campaignId: data.campaignId,
      runId: 'main',
      recipient: { id: data.recipientId },
      message: { title: 't', body: 'b', data: {} },
    }),
  });
  await res.arrayBuffer();
}

let limited: (data: { campaignId: string; recipientId: string }) => Promise<void> = post;

if (mode === 'naive') {
  // The classic: each process sleeps 1/(cap/processes) s between sends.
  const interval = (1000 * processes) / cap;
  let next = Date.now();
  limited = async (data) => {
    const at = Math.max(Date.now(), next);
    next = at + interval;
    if (at > Date.now()) await new Promise((r) => setTimeout(r, at - Date.now()));
    await post(data);
  };
} else if (mode === 'bottleneck' || mode === 'reservoir') {
  const options: Bottleneck.ConstructorOptions =
    mode === 'bottleneck' ? { minTime: 1000 / cap } : { reservoir: cap, reservoirRefreshAmount: cap, reservoirRefreshInterval: 1000 };
  const bottleneck = new Bottleneck({
    id: `bench-${queueName}`,
    datastore: 'ioredis',
    clearDatastore: false,
    clientOptions: { host: new URL(redisUrl).hostname, port: Number(new URL(redisUrl).port) },
    ...options,
  });
  limited = (data) => bottleneck.schedule(() => post(data));
}

const worker = new Worker(queueName, async (job) => limited(job.data), {
  connection,
  concurrency: 200,
  ...(mode === 'bullmq' ? { limiter: { max: cap, duration: 1000 } } : {}),
  removeOnComplete: { count: 0 },
  removeOnFail: { count: 0 },
});
worker.on('error', () => undefined);
process.stdout.write('peer ready\n');
process.on('SIGTERM', () => {
  void worker.close(true).finally(() => process.exit(0));
});
