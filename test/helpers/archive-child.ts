/**
 * A worker's archiving, alone in a process the archive test can SIGKILL at
 * any point: archives run RUN of campaign CAMPAIGN (env, beside the usual
 * REDIS_URL, QUEUE_PREFIX, ARCHIVE_DIR / ARCHIVE_URL) with the product's own
 * Janitor, printing `ready` before it begins and `done` once it is over
 * (`ARCHIVE_WRITE_ONLY=1`: only writes it to the archive, for the benchmark).
 */
import { createArchive } from '../../src/adapters/archive/create-archive.js';
import { connect, createWorkerRedis } from '../../src/adapters/redis/connection.js';
import { ledgerRows } from '../../src/app/campaign-queries.js';
import { AppEvents } from '../../src/app/events.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { buildServices } from '../../src/wiring/services.js';
import { createJanitor } from '../../src/wiring/worker-role.js';

const config = loadConfig(process.env);
const redis = createWorkerRedis(config.redisUrl);
await connect(redis, config.redisUrl);
const s = buildServices(redis, config, new AppEvents());
const archive = await createArchive(config);
const janitor = createJanitor(s, archive, new AppEvents(), createLogger('silent'), { intervalMs: 1000, retentionMs: 0 });
process.stdout.write('ready\n');
if (process.env.ARCHIVE_WRITE_ONLY === '1') {
  // The sink alone (the benchmark's archive throughput): rows read from Redis and written, nothing marked or removed.
  const run = (await s.runs.getRun(process.env.CAMPAIGN!, process.env.RUN!))!;
  await archive.write(
    {
      campaignId: run.campaignId,
      runId: run.id,
      status: run.status,
      trigger: run.trigger,
      createdAt: run.createdAt,
      finishedAt: run.finishedAt ?? 0,
      counts: run.counts,
      skippedBy: run.skippedBy,
    },
    ledgerRows(s.store, s.ledger, run),
  );
} else {
  await janitor.archiveRun(process.env.CAMPAIGN!, process.env.RUN!);
}
process.stdout.write('done\n');
await archive.close();
await s.close();
redis.disconnect();
