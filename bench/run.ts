/**
 * `npm run bench [-- section …]`: measurements that do not belong in tests.
 * Every row of a table is measured in the same run on the same machine, and
 * ratios are printed beside absolute figures (this machine is shared and noisy).
 *
 * Sections: throughput (end to end, ledger on, sim and http providers vs the
 * raw HTTP ceiling), memory (Redis bytes per recipient for 100k recipients).
 */
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { Redis } from 'ioredis';
import { ApiClient } from '../test/helpers/api-client.js';
import { providersFile, TEST_TOKEN } from '../test/helpers/fixtures.js';
import { startMockProvider } from '../test/helpers/mock-provider.js';
import { startApiProcess, startWorkerProcess, type PushqProcess } from '../test/helpers/processes.js';
import { startOwnRedis, type OwnRedis } from '../test/helpers/redis-server.js';
import { waitFor } from '../test/helpers/wait.js';

type Row = Record<string, string | number>;

function table(title: string, rows: Row[]): void {
  const columns = Object.keys(rows[0] ?? {});
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c]).length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  console.log(`\n### ${title}\n`);
  console.log(line(columns));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const r of rows) console.log(line(columns.map((c) => String(r[c]))));
}

async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  return Number(/^used_memory:(\d+)/m.exec(info)![1]);
}

interface Stack {
  redis: OwnRedis;
  api: PushqProcess;
  workers: PushqProcess[];
  client: ApiClient;
  stop(): Promise<void>;
}

async function stack(providers: unknown[], workers: number, extraEnv: Record<string, string> = {}): Promise<Stack> {
  const redis = await startOwnRedis(['--appendonly', 'no']);
  const env = {
    REDIS_URL: redis.url,
    ADMIN_TOKEN: TEST_TOKEN,
    LOG_LEVEL: 'warn',
    PROVIDERS_FILE: providersFile(providers),
    ...extraEnv,
  };
  const { process: api, url } = await startApiProcess({ ...env, LOG_LEVEL: 'info' });
  const started = await Promise.all(Array.from({ length: workers }, () => startWorkerProcess({ ...env, LOG_LEVEL: 'info' })));
  return {
    redis,
    api,
    workers: started,
    client: new ApiClient(url, TEST_TOKEN),
    async stop() {
      await Promise.all([api, ...started].map((p) => p.kill('SIGTERM')));
      await redis.kill();
    },
  };
}

async function runCampaign(client: ApiClient, provider: string, recipients: unknown[]): Promise<{ seconds: number; counts: Record<string, number> }> {
  const campaign = await client.createCampaign({ provider, recipients });
  const started = performance.now();
  await client.launch(campaign.id);
  const done = await waitFor(
    async () => {
      const c = await client.campaign(campaign.id);
      return c.status === 'completed' ? c : undefined;
    },
    { timeoutMs: 600_000, intervalMs: 50, what: 'campaign completion' },
  );
  return { seconds: (performance.now() - started) / 1000, counts: done.counts };
}

async function rawCeiling(url: string, seconds: number, concurrency: number): Promise<number> {
  const target = new URL(url);
  const pool = new Pool(target.origin, { connections: 64, pipelining: 1 });
  const deadline = performance.now() + seconds * 1000;
  let done = 0;
  const loop = async (n: number) => {
    while (performance.now() < deadline) {
      const body = JSON.stringify({ idempotencyKey: `k${n}-${done}`, campaignId: 'raw', runId: 'raw', recipient: { id: `r${n}-${done}` }, message: { title: 't', body: 'b', data: {} } });
      const res = await pool.request({ method: 'POST', path: target.pathname, headers: { 'content-type': 'application/json', 'idempotency-key': 'k' }, body });
      await res.body.dump();
      done += 1;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, (_, n) => loop(n)));
  const rate = done / ((performance.now() - started) / 1000);
  await pool.close();
  return rate;
}

async function throughput(): Promise<void> {
  const n = Number(process.env.BENCH_RECIPIENTS ?? 30_000);
  const workers = Number(process.env.BENCH_WORKERS ?? 2);
  const recipients = Array.from({ length: n }, (_, i) => `user-${i}`);
  const mock = await startMockProvider();
  mock.keepBodies = false;
  const raw = await rawCeiling(mock.url, 5, 128);
  mock.reset();
  const rows: Row[] = [{ what: `raw ceiling: undici Pool → mock, no queue, no ledger`, 'sends/s': Math.round(raw), 'vs raw': '1.00' }];
  const s = await stack(
    [
      { name: 'mock', type: 'http', url: mock.url, tps: 100_000, timeoutMs: 5000 },
      { name: 'sim', type: 'sim', tps: 100_000, latencyMs: 5 },
    ],
    workers,
  );
  try {
    for (const provider of ['sim', 'mock']) {
      const { seconds, counts } = await runCampaign(s.client, provider, recipients);
      const rate = counts.sent! / seconds;
      rows.push({
        what: `pushq end to end, ${provider === 'sim' ? 'sim provider (5 ms latency)' : 'http provider → mock'}, ${workers} workers`,
        'sends/s': Math.round(rate),
        'vs raw': (rate / raw).toFixed(2),
      });
      if (provider === 'mock' && mock.duplicates() !== 0) throw new Error(`duplicates at the provider: ${mock.duplicates()}`);
    }
  } finally {
    await s.stop();
    await mock.close();
  }
  table(`Throughput: ${n.toLocaleString('en')} recipients, provider cap 100,000 TPS, ${cpus().length} cores`, rows);
}

async function memory(): Promise<void> {
  const n = Number(process.env.BENCH_MEMORY_RECIPIENTS ?? 100_000);
  const s = await stack([{ name: 'sim', type: 'sim', tps: 100_000, latencyMs: 1 }], 2);
  const redis = new Redis(s.redis.url);
  try {
    const ids = Array.from({ length: n }, (_, i) => `user-${String(i).padStart(7, '0')}`);
    const ownBytes = ids.reduce((sum, id) => sum + Buffer.byteLength(id), 0);
    // Warm up: a first campaign creates the queue and script structures every campaign shares.
    await runCampaign(s.client, 'sim', ['warm-up']);
    const before = await usedMemory(redis);
    const campaign = await s.client.createCampaign({ provider: 'sim', recipients: ids });
    const stored = await usedMemory(redis);
    const launchedAt = performance.now();
    await s.client.launch(campaign.id);
    await waitFor(async () => (await s.client.campaign(campaign.id)).counts.sent > 0, { intervalMs: 5 });
    const firstSendMs = performance.now() - launchedAt;
    await waitFor(async () => (await s.client.campaign(campaign.id)).status === 'completed', { timeoutMs: 600_000, intervalMs: 100 });
    // Completed send jobs are kept for an hour (Bull Board); they are not per-recipient state.
    const done = await usedMemory(redis);
    const perRecipient = (bytes: number) => (bytes / n).toFixed(1);
    table(`Redis memory, ${n.toLocaleString('en')} recipients (ids of ${ids[0]!.length} bytes), INFO used_memory`, [
      { what: 'recipients stored (pages + id index), beyond the ids themselves', 'bytes/recipient': perRecipient(stored - before - ownBytes) },
      { what: 'ledger of the completed run (records, counts, job bookkeeping)', 'bytes/recipient': perRecipient(done - stored) },
      { what: 'total beyond the ids', 'bytes/recipient': perRecipient(done - before - ownBytes) },
    ]);
    console.log(`\nlaunch → first recipient sent (seen through the API): ${firstSendMs.toFixed(0)} ms for ${n.toLocaleString('en')} recipients`);
  } finally {
    redis.disconnect();
    await s.stop();
  }
}

const SECTIONS: Record<string, () => Promise<void>> = { throughput, memory };

const wanted = process.argv.slice(2).filter((a) => a in SECTIONS);
for (const name of wanted.length > 0 ? wanted : Object.keys(SECTIONS)) await SECTIONS[name]!();
