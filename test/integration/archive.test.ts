import { createHash, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { createArchive } from '../../src/adapters/archive/create-archive.js';
import { unlinkMatching } from '../../src/adapters/redis/connection.js';
import { Keys } from '../../src/adapters/redis/keys.js';
import { AppEvents } from '../../src/app/events.js';
import type { ResultsArchive } from '../../src/app/ports.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { buildServices } from '../../src/wiring/services.js';
import { createJanitor } from '../../src/wiring/worker-role.js';
import { prng } from '../chaos/schedule.js';
import { onCleanup, testPrefix } from '../helpers/cleanup.js';
import { providersFile, TEST_TOKEN } from '../helpers/fixtures.js';
import { startInProcess } from '../helpers/in-process.js';
import { PushqProcess, REPO_ROOT } from '../helpers/processes.js';
import { deletePrefix, TEST_REDIS_URL, testRedis } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The archive of finished runs, against a real directory and a real
 * PostgreSQL: a run of 20,000 recipients (50,000 with `npm run archive-kill`) written, read back through the API
 * byte for byte (count and SHA-256 as the live export), and the archiving
 * worker SIGKILLed at random points — the run is always either still in
 * Redis or wholly in the archive, and once archiving is done, there once.
 */
const PG_URL = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
/**
 * In the suite: 20,000 recipients and 10 kill points (seeds 1–5 against the
 * directory, 6–10 against PostgreSQL). `npm run archive-kill`: 50,000 and
 * 10 per sink — heavier than the suite can carry beside its timing tests.
 */
const RECIPIENTS = Number(process.env.ARCHIVE_KILL_RECIPIENTS ?? 20_000);
const PER_SINK = Number(process.env.ARCHIVE_KILL_SEEDS_PER_SINK ?? 5);
const SEEDS = PER_SINK * 2;
const seedsFrom = (first: number) => Array.from({ length: PER_SINK }, (_, i) => first + i);

/** `work`, or a failure naming the stage that did not finish in `ms` (a hang becomes a labelled failure). */
async function within<T>(stage: string, ms: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${stage} did not finish within ${ms} ms`)), ms)));
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

async function exportRun(baseUrl: string, campaignId: string, runId: string) {
  const res = await request(`${baseUrl}/api/campaigns/${campaignId}/runs/${runId}/results`, {
    headers: { authorization: `Bearer ${TEST_TOKEN}` },
    headersTimeout: 60_000,
    bodyTimeout: 60_000,
  });
  const body = await res.body.text();
  expect(res.statusCode).toBe(200);
  const lines = body.trimEnd().split('\n');
  const summary = (JSON.parse(lines.at(-1)!) as { summary: { count: number; sha256: string; archived?: boolean } }).summary;
  const rows = body.slice(0, body.length - lines.at(-1)!.length - 1);
  return { summary, count: lines.length - 1, sha256: createHash('sha256').update(rows).digest('hex'), archived: res.headers['x-archived'] === 'true' };
}

type Sink = 'dir' | 'postgres';

/** A sink of its own for one test: a fresh directory, or a fresh PostgreSQL schema; dropped afterwards. */
function sinkEnv(sink: Sink): Record<string, string> {
  if (sink === 'dir') {
    const dir = mkdtempSync(join(tmpdir(), 'pushq-archive-'));
    onCleanup(() => rmSync(dir, { recursive: true, force: true }));
    return { ARCHIVE_DIR: dir };
  }
  const schema = `pushq_t_${randomBytes(4).toString('hex')}`;
  onCleanup(async () => {
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await client.end();
  });
  return { ARCHIVE_URL: `${PG_URL}?schema=${schema}` };
}

/** pushq in this process with a fast simulated provider (2% of sends fail for good), and a finished run of `n` recipients. */
async function finishedRun(prefix: string, env: Record<string, string>, n: number) {
  const running = await startInProcess(prefix, {
    ...env,
    PROVIDERS_FILE: providersFile([{ name: 'sim', type: 'sim', tps: 100_000, latencyMs: 0, failureRate: 0.02 }]),
  });
  onCleanup(() => running.stop());
  const headers = { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/json' };
  const ids = Array.from({ length: n }, (_, i) => `user-${i}`);
  const created = await request(`${running.url}/api/campaigns`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ name: 'archive', provider: 'sim', maxAttempts: 1, message: { title: 't', body: 'b' }, recipients: ids }),
  });
  const { id } = (await created.body.json()) as { id: string };
  expect((await request(`${running.url}/api/campaigns/${id}/launch`, { method: 'POST', headers })).statusCode).toBe(200);
  await waitFor(
    async () => {
      const res = await request(`${running.url}/api/campaigns/${id}`, { headers });
      const view = (await res.body.json()) as { status: string };
      return view.status === 'completed';
    },
    { timeoutMs: 90_000, intervalMs: 200, what: 'the run to complete' },
  );
  return { url: running.url!, campaignId: id };
}

/** Everything under a campaign's hash tag, to put back between kills. */
async function snapshot(redis: ReturnType<typeof testRedis>, base: string) {
  const names: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${base}*`, 'COUNT', 1000);
    names.push(...batch);
    cursor = next;
  } while (cursor !== '0');
  const dumps = await Promise.all(names.map((name) => redis.dumpBuffer(name)));
  return async () => {
    await unlinkMatching(redis, `${base}:meta`, base);
    for (let i = 0; i < names.length; i += 500) {
      const tx = redis.multi();
      for (let j = i; j < Math.min(i + 500, names.length); j += 1) tx.restore(names[j]!, 0, dumps[j]!, 'REPLACE');
      await tx.exec();
    }
  };
}

function janitorFor(prefix: string, env: Record<string, string>, archive: ResultsArchive, events = new AppEvents()) {
  const redis = testRedis();
  const config = loadConfig({ REDIS_URL: TEST_REDIS_URL, QUEUE_PREFIX: prefix, ...env });
  const s = buildServices(redis, config, events);
  onCleanup(() => s.close());
  const janitor = createJanitor(s, archive, events, createLogger('silent'), { intervalMs: 1000, retentionMs: 0 });
  return { janitor, services: s };
}

describe('archiving a finished run', () => {
  it(`keeps a ${RECIPIENTS.toLocaleString('en')}-recipient run whole through SIGKILLs at ${SEEDS} random points (half to a directory, half to PostgreSQL), and reads it back through the API`, async () => {
    const prefix = testPrefix('kill');
    const redis = testRedis();
    onCleanup(() => deletePrefix(redis, prefix));
    const t0 = Date.now();
    const { url: sendingUrl, campaignId } = await finishedRun(prefix, {}, RECIPIENTS);
    const live = await exportRun(sendingUrl, campaignId, 'main');
    expect(live.summary).toEqual({ count: RECIPIENTS, sha256: live.sha256 });
    expect(live.archived).toBe(false);
    const base = new Keys(prefix).campaignBase(campaignId);
    const restore = await snapshot(redis, base);
    const records = new Keys(prefix).campaign(campaignId).run('main').records(0);
    const report: string[] = [`sending ${RECIPIENTS}: ${Date.now() - t0} ms`];

    for (const [sink, seeds] of [
      ['dir', seedsFrom(1)],
      ['postgres', seedsFrom(PER_SINK + 1)],
    ] as const) {
      await restore();
      const env = sinkEnv(sink);
      // An API that reads this sink, as every API process beside the workers would.
      const api = await startInProcess(prefix, env, { worker: false });
      onCleanup(() => api.stop());
      const url = api.url!;
      const archive = await createArchive({ archiveDir: env.ARCHIVE_DIR ?? '', archiveUrl: env.ARCHIVE_URL });
      onCleanup(() => archive.close());
      const { janitor } = janitorFor(prefix, env, archive);
      const child = () => {
        const proc = new PushqProcess(
          spawn(process.execPath, ['--import', 'tsx', 'test/helpers/archive-child.ts'], {
            cwd: REPO_ROOT,
            env: { ...process.env, REDIS_URL: TEST_REDIS_URL, QUEUE_PREFIX: prefix, CAMPAIGN: campaignId, RUN: 'main', ...env },
            stdio: ['ignore', 'pipe', 'pipe'],
          }),
        );
        onCleanup(() => proc.kill());
        return proc;
      };

      // Once uninterrupted: how long archiving this run takes, the span the kills fall in.
      let proc = child();
      await proc.waitForOutput(/ready/);
      const began = Date.now();
      await proc.waitForOutput(/done/, 120_000);
      const spanMs = Date.now() - began;
      expect(await exportRun(url, campaignId, 'main')).toMatchObject({ archived: true, count: RECIPIENTS, sha256: live.sha256 });

      const outcomes = { stillInRedis: 0, archived: 0 };
      for (const seed of seeds) {
        await within(`${sink} seed ${seed}: restoring the run`, 60_000, restore());
        await within(`${sink} seed ${seed}: purging the archive`, 60_000, archive.purge(campaignId));
        proc = child();
        await proc.waitForOutput(/ready/);
        // Even seeds anywhere in the span; odd ones in its last fifth, where the run is marked and its ledger leaves Redis.
        const at = seed % 2 === 0 ? prng(seed)() : 0.8 + 0.2 * prng(seed)();
        await new Promise((resolve) => setTimeout(resolve, Math.floor(at * spanMs)));
        await proc.kill('SIGKILL');

        // Right after the kill: never neither, never half — the export is the whole run, from one place or the other.
        const after = await exportRun(url, campaignId, 'main');
        expect(after.count, `${sink} seed ${seed}`).toBe(RECIPIENTS);
        expect(after.sha256, `${sink} seed ${seed}`).toBe(live.sha256);
        outcomes[after.archived ? 'archived' : 'stillInRedis'] += 1;

        // Another worker picks it up and finishes: archived once, the ledger gone from Redis.
        await within(`${sink} seed ${seed}: archiving after the kill`, 120_000, janitor.archiveRun(campaignId, 'main'));
        if (seed === seeds[seeds.length - 1]) {
          const final = await exportRun(url, campaignId, 'main');
          expect(final).toMatchObject({ archived: true, count: RECIPIENTS, sha256: live.sha256 });
          expect(final.summary).toEqual({ count: RECIPIENTS, sha256: live.sha256, archived: true });
        }
        expect(await redis.exists(records), `${sink} seed ${seed}: the ledger left Redis`).toBe(0);
        expect(await archive.manifest(campaignId, 'main')).toMatchObject({ count: RECIPIENTS, sha256: live.sha256 });
        if (sink === 'dir') {
          expect(readdirSync(join(env.ARCHIVE_DIR!, campaignId)).sort()).toEqual(['main.manifest.json', 'main.ndjson.gz']);
        } else {
          const client = new pg.Client({ connectionString: PG_URL });
          await client.connect();
          const schema = new URL(env.ARCHIVE_URL!).searchParams.get('schema');
          const rows = await client.query(`SELECT count(*)::int AS n, count(DISTINCT position)::int AS d FROM "${schema}".run_results WHERE campaign_id = $1`, [
            campaignId,
          ]);
          const runs = await client.query(`SELECT count(*)::int AS n FROM "${schema}".runs WHERE campaign_id = $1`, [campaignId]);
          await client.end();
          expect(rows.rows[0], `seed ${seed}: no row twice`).toEqual({ n: RECIPIENTS, d: RECIPIENTS });
          expect(runs.rows[0].n).toBe(1);
        }
      }
      report.push(
        `${sink}: archiving took ${spanMs} ms; seeds ${seeds.join(', ')} left the run in Redis ${outcomes.stillInRedis}×, archived ${outcomes.archived}×`,
      );

      // A recipient, and the failures, read from the archive.
      const headers = { authorization: `Bearer ${TEST_TOKEN}` };
      const failures = (await (await request(`${url}/api/campaigns/${campaignId}/failures?limit=5`, { headers })).body.json()) as {
        items: Array<{ recipientId: string; state: string }>;
        nextCursor: string | null;
      };
      expect(failures.items).toHaveLength(5);
      expect(failures.items.every((f) => f.state === 'failed')).toBe(true);
      expect(failures.nextCursor).not.toBeNull();
      const one = await request(`${url}/api/campaigns/${campaignId}/recipients/${failures.items[0]!.recipientId}`, { headers });
      expect(await one.body.json()).toMatchObject({ state: 'failed', archived: true, lastError: { code: 'SIM_FAILURE' } });
    }
    console.log(report.join('\n'));
  }, 300_000);
});

describe('two workers archiving at once', () => {
  it('archive a run once: one holds the janitor lock, the write is idempotent', async () => {
    const prefix = testPrefix('twice');
    const redis = testRedis();
    onCleanup(() => deletePrefix(redis, prefix));
    const env = sinkEnv('dir');
    const { url, campaignId } = await finishedRun(prefix, { ...env, RUN_RETENTION_MS: String(30 * 86_400_000) }, 2000);
    const live = await exportRun(url, campaignId, 'main');
    const archive = await createArchive({ archiveDir: env.ARCHIVE_DIR!, archiveUrl: undefined });
    const events = new AppEvents();
    let archived = 0;
    events.on('run:archived', () => (archived += 1));
    const a = janitorFor(prefix, env, archive, events);
    const b = janitorFor(prefix, env, archive, events);
    // The run is due (retention 0 in these janitors); both tick together, again and again, until one has archived it
    // (a tick finds the lock taken by the other, or by the janitor of the pushq that sent the run, and passes).
    await waitFor(
      async () => {
        await Promise.all([a.janitor.tick(), b.janitor.tick()]);
        return archived > 0;
      },
      { timeoutMs: 30_000, what: 'one of the janitors to archive the run' },
    );
    await Promise.all([a.janitor.tick(), b.janitor.tick(), a.janitor.tick(), b.janitor.tick()]);
    expect(archived).toBe(1);
    expect(await exportRun(url, campaignId, 'main')).toMatchObject({ archived: true, count: 2000, sha256: live.sha256 });
  });
});
