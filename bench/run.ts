/**
 * `npm run bench [-- section …]`: measurements that do not belong in tests.
 * Every row of a table is measured in the same run, on the same machine,
 * against the same loopback mock provider; ratios sit beside absolute
 * figures because this machine is shared and noisy.
 *
 * Sections:
 *   limiter     pushq vs naive BullMQ, BullMQ's limiter and Bottleneck at caps
 *               300 / 2,000 (BENCH_CAPS), providers answering in 0 / 200 / 500 ms
 *               (BENCH_LATENCIES): rate, whole-campaign use of the cap, first and
 *               last second, busiest sliding second, 429s, duplicates
 *               (BENCH_PEERS=0: pushq alone; BENCH_COLD=1: workers not warmed up);
 *               a campaign paced at a quarter of the cap beside an unpaced one
 *   throughput  uncapped sends/s with the ledger on, vs naive BullMQ and the raw HTTP ceiling;
 *               a 3-variable template vs the fixed text (sim), µs per render
 *   memory      Redis bytes per recipient, pushq vs one BullMQ job per recipient
 *   idle        what idle workers cost Redis
 *   ingest      a 1M-row CSV upload: time, API memory, Redis bytes per recipient
 *   scale       sends/s for 1, 2, 4 worker processes on one Redis and on a
 *               3-master Redis Cluster; CPU per send of workers and Redis
 *   lifecycle   Redis bytes after 30 one-off runs of 100,000 recipients with and
 *               without retention (BENCH_LIFECYCLE_RUNS, _RECIPIENTS); archive
 *               throughput to a directory and to PostgreSQL and the export of a
 *               1M run (BENCH_EXPORT_ROWS; BENCH_PG_URL): rows/s, the API's peak RSS
 *   templates   the whole-list dry run of 1M personalised recipients
 *               (BENCH_DRY_RUN_RECIPIENTS), and a launch it refuses
 *   events      sends/s with a webhook endpoint taking recipient.sent vs none
 *               (BENCH_EVENTS_RECIPIENTS); Redis bytes per recipient of the
 *               ledger with receipts, and receipts applied per second
 *               (BENCH_RECEIPTS_RECIPIENTS)
 *   cost        CPU per send of the workers and of Redis, Redis calls and bytes on
 *               the wire per send, for the sim and http providers (2 workers,
 *               uncapped, BENCH_COST_RECIPIENTS); `--baseline <git ref>` runs the
 *               same against that checkout in the same run and prints ratios;
 *               `--profile` writes a worker's CPU profile (.artifacts/), its top
 *               15 functions by self time and a flame graph (.artifacts/flame.png)
 *   fallback    Redis bytes per recipient of a run whose push leg falls back to a
 *               second channel for 20 % (BENCH_FALLBACK_RECIPIENTS), vs the same
 *               run without a chain
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  createReadStream,
  createWriteStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { cpus, tmpdir } from 'node:os';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { Pool, request } from 'undici';
import { ApiClient } from '../test/helpers/api-client.js';
import { providersFile, TEST_TOKEN } from '../test/helpers/fixtures.js';
import { deliveries, duplicates, maxInWindow, type Arrival } from '../test/helpers/mock-provider.js';
import { PushqProcess, REPO_ROOT, startApiProcess, startWorkerProcess } from '../test/helpers/processes.js';
import { startRedisCluster } from '../test/helpers/redis-cluster.js';
import { startOwnRedis, type OwnRedis } from '../test/helpers/redis-server.js';
import { waitFor } from '../test/helpers/wait.js';
import { newWebhookSecret, webhooksFile } from '../test/helpers/webhook-receiver.js';
import { Webhook } from 'standardwebhooks';
import { CompiledMessage } from '../src/domain/template.js';
import type { Message } from '../src/domain/campaign.js';
import type { RecipientRecord } from '../src/domain/recipient.js';

type Row = Record<string, string | number>;

function table(title: string, rows: Row[], note?: string): void {
  const columns = Object.keys(rows[0] ?? {});
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c]).length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  console.log(`\n### ${title}\n`);
  console.log(line(columns));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const r of rows) console.log(line(columns.map((c) => String(r[c]))));
  if (note) console.log(`\n${note}`);
}

const fmt = (n: number) => Math.round(n).toLocaleString('en');

// ── the provider ─────────────────────────────────────────────────────────────

/** The loopback mock provider (test/helpers/mock-provider.ts) in a process of its own. */
class RemoteMock {
  private constructor(
    private readonly process: PushqProcess,
    readonly url: string,
  ) {}

  static async start(cap?: number, latencyMs = 0, extraEnv: Record<string, string> = {}): Promise<RemoteMock> {
    const env = { ...process.env, ...(cap ? { MOCK_CAP: String(cap) } : {}), MOCK_LATENCY_MS: String(latencyMs), ...extraEnv };
    const proc = new PushqProcess(
      spawn(process.execPath, ['--import', 'tsx', 'bench/mock-server.ts'], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] }),
    );
    const [, url] = await proc.waitForOutput(/mock (\S+)\n/);
    // A provider is a warm service: a second of requests first, so no row
    // measures a freshly started process compiling its own code.
    const mock = new RemoteMock(proc, url!);
    await rawCeiling(url!, 1, 16);
    await mock.reset();
    return mock;
  }

  async arrivals(): Promise<Arrival[]> {
    return (await fetch(new URL('/__arrivals', this.url))).json() as Promise<Arrival[]>;
  }

  /** Forgets every arrival so far. */
  async reset(): Promise<void> {
    await (await fetch(new URL('/__reset', this.url), { method: 'POST' })).body?.cancel();
  }

  async count(): Promise<number> {
    return ((await (await fetch(new URL('/__count', this.url))).json()) as { count: number }).count;
  }

  async close(): Promise<void> {
    await this.process.kill('SIGKILL');
  }
}

// ── the systems under test ──────────────────────────────────────────────────

/** A campaign of the same size as the fixed one, personalised: what the `templated` rows send. */
interface Personalised {
  message: unknown;
  recipient(i: number): unknown;
}

/** "Hi {{ name }}": three variables, in title, body and data, over recipients with three fields. */
const THREE_VARIABLES: Personalised = {
  message: { title: 'Hi {{ name }}', body: 'Your {{ plan }} plan renews on {{ renews }}', data: { k: 'v', url: '/u/{{ name }}' } },
  recipient: (i) => ({ id: `user-${i}`, name: `Name ${i}`, plan: i % 2 ? 'gold' : 'basic', renews: '2027-01-01' }),
};
/** The same three variables through Liquid: a filter or an `if` in each string (no fast path). */
const LIQUID_THREE_VARIABLES = {
  title: 'Hi {{ name | capitalize }}',
  body: 'Your {{ plan | upcase }} plan{% if renews %} renews on {{ renews }}{% endif %}',
  data: { k: 'v', url: '/u/{{ name | url_encode }}' },
};
/** The same recipients with the fixed text: what a template costs is the only difference. */
const FIXED_WITH_FIELDS: Personalised = { message: { title: 'Hello', body: 'World', data: { k: 'v' } }, recipient: THREE_VARIABLES.recipient };

interface System {
  /** Sends `n` recipients to the mock; resolves when they are all out or `deadlineMs` passed. */
  run(n: number, deadlineMs: number, personalised?: Personalised): Promise<void>;
  /** Runs a first campaign so long-lived processes are measured warm (the mock forgets it afterwards). */
  warmUp?(): Promise<void>;
  /** Stops everything; pushq reports the limiter's Redis calls. */
  stop(): Promise<{ limiterCalls?: number }>;
  redisUrl: string;
}

async function pushq(
  mock: { url: string },
  tps: number,
  workers: number,
  extraEnv: Record<string, string> = {},
  ownRedis?: { url: string; kill(): Promise<void> },
  spawnOptions: { root?: string; workerNodeArgs?: string[] } = {},
): Promise<System & { client: ApiClient; apiPid: number; workerPids: number[] }> {
  const redis = ownRedis ?? (await startOwnRedis(['--appendonly', 'no']));
  const env = {
    REDIS_URL: redis.url,
    ADMIN_TOKEN: TEST_TOKEN,
    PROVIDERS_FILE: providersFile([{ name: 'mock', type: 'http', url: mock.url, tps, timeoutMs: 5000 }]),
    ...extraEnv,
  };
  const { process: api, url } = await startApiProcess(env, { root: spawnOptions.root });
  const started = await Promise.all(
    Array.from({ length: workers }, () => startWorkerProcess(env, { root: spawnOptions.root, nodeArgs: spawnOptions.workerNodeArgs })),
  );
  const client = new ApiClient(url, TEST_TOKEN);
  const system: System & { client: ApiClient; apiPid: number; workerPids: number[] } = {
    client,
    apiPid: api.proc.pid!,
    workerPids: started.map((p) => p.proc.pid!),
    redisUrl: redis.url,
    async warmUp() {
      // Seconds of sending, pages enough for every worker: workers that have been up a while (the limiter's SETTLE_MS behind them).
      await system.run(Math.max(tps * 3, 2 * 500 * workers), 60_000);
      // Every permit's second of rest ends before the measured campaign starts.
      await sleep(1100);
    },
    async run(n, deadlineMs, personalised) {
      const recipients = Array.from({ length: n }, (_, i) => (personalised ? personalised.recipient(i) : `user-${i}`));
      const campaign = await client.createCampaign({ provider: 'mock', recipients, ...(personalised ? { message: personalised.message } : {}) });
      await client.launch(campaign.id);
      await waitFor(async () => (await client.campaign(campaign.id)).status === 'completed', { timeoutMs: deadlineMs, intervalMs: 50 }).catch(() => undefined);
    },
    async stop() {
      // SIGTERM: each worker logs its limiter totals on the way out.
      await Promise.all(started.map((p) => p.kill('SIGTERM')));
      await api.kill('SIGKILL');
      await redis.kill();
      const limiterCalls = started.reduce((sum, p) => sum + Number(/"limiterCalls":(\d+)/.exec(p.output)?.[1] ?? NaN), 0);
      return { limiterCalls };
    },
  };
  return system;
}

async function peer(mock: { url: string }, mode: string, cap: number, processes: number): Promise<System> {
  const redis: OwnRedis = await startOwnRedis(['--appendonly', 'no']);
  const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
  const queue = new Queue('peer', { connection });
  const procs: PushqProcess[] = [];
  return {
    redisUrl: redis.url,
    async run(n, deadlineMs) {
      // All the work is queued first: one job per recipient.
      for (let i = 0; i < n; i += 1000) {
        await queue.addBulk(
          Array.from({ length: Math.min(1000, n - i) }, (_, j) => ({ name: 'send', data: { campaignId: 'peer', recipientId: `user-${i + j}` } })),
        );
      }
      const env = { ...process.env, PEER_MODE: mode, PEER_CAP: String(cap), PEER_PROCESSES: String(processes), REDIS_URL: redis.url, MOCK_URL: mock.url };
      for (let i = 0; i < processes; i += 1) {
        const p = new PushqProcess(
          spawn(process.execPath, ['--import', 'tsx', 'bench/peer-worker.ts'], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] }),
        );
        procs.push(p);
      }
      await Promise.all(procs.map((p) => p.waitForOutput(/peer ready/)));
      await waitFor(async () => (await queue.count()) === 0 && (await queue.getActiveCount()) === 0, { timeoutMs: deadlineMs, intervalMs: 50 }).catch(
        () => undefined,
      );
    },
    async stop() {
      await Promise.all(procs.map((p) => p.kill('SIGKILL')));
      await queue.close();
      connection.disconnect();
      await redis.kill();
      return {};
    },
  };
}

// ── measurement at the provider ─────────────────────────────────────────────

interface Measured {
  rate: number;
  /** 2xx answers from the first arrival to the last, per second: what an operator waits for. */
  wholeRate: number;
  /** Arrivals in the first and in the last second of the campaign: ramp-up and tail. */
  firstSecond: number;
  lastSecond: number;
  busiest: number;
  status429: number;
  duplicates: number;
}

/** Leading time left out of the average: fresh processes warming up (JIT, connections, the first pages). */
const RAMP_MS = 2000;

/** Average rate over the steady part (ramp-up left out), busiest sliding second (all of it), 429s, duplicates. */
function measure(arrivals: Arrival[], steadyMs: number): Measured {
  const times = arrivals.map((a) => a.at).sort((a, b) => a - b);
  const first = times[0] ?? 0;
  const from = first + RAMP_MS;
  const to = Math.min(from + steadyMs, times[times.length - 1] ?? 0);
  const inWindow = times.filter((t) => t >= from && t < to).length;
  const delivered = deliveries(arrivals).size;
  const last = times[times.length - 1] ?? first;
  return {
    rate: to > from ? (inWindow * 1000) / (to - from) : 0,
    wholeRate: last > first ? (delivered * 1000) / (last - first) : 0,
    firstSecond: times.filter((t) => t < first + 1000).length,
    lastSecond: times.filter((t) => t > last - 1000).length,
    busiest: maxInWindow(times, 1000),
    status429: arrivals.filter((a) => a.status === 429).length,
    duplicates: duplicates(arrivals),
  };
}

/** A number from INFO: `field` is the text right before it (`used_memory:`, `cmdstat_evalsha:calls=`). */
async function redisInfo(url: string, section: string, field: string): Promise<number> {
  const redis = new Redis(url);
  try {
    return Number(new RegExp(`^${field}(\\d+)`, 'm').exec(await redis.info(section))?.[1] ?? 0);
  } finally {
    redis.disconnect();
  }
}

async function capped(name: string, make: (mock: RemoteMock) => Promise<System>, cap: number, seconds: number, latencyMs = 0): Promise<Row> {
  const mock = await RemoteMock.start(cap, latencyMs);
  process.stderr.write(`bench: ${name} at ${cap}/s, ${latencyMs} ms… `);
  const system = await make(mock);
  let scriptCalls = 0;
  let limiterCalls: number | undefined;
  let arrivals: Arrival[] = [];
  /** Requests of the warm-up: the limiter's totals include them. */
  let warmUpSends = 0;
  try {
    // BENCH_COLD=1 measures freshly started workers instead.
    if (system.warmUp && process.env.BENCH_COLD !== '1') {
      await system.warmUp();
      warmUpSends = await mock.count();
      await mock.reset();
    }
    const before = await redisInfo(system.redisUrl, 'commandstats', 'cmdstat_evalsha:calls=');
    await system.run(cap * (seconds + RAMP_MS / 1000 + 1), (seconds + 8) * 1000);
    scriptCalls = (await redisInfo(system.redisUrl, 'commandstats', 'cmdstat_evalsha:calls=')) - before;
    arrivals = await mock.arrivals();
  } finally {
    limiterCalls = (await system.stop()).limiterCalls;
    await mock.close();
  }
  const m = measure(arrivals, seconds * 1000);
  process.stderr.write(`${fmt(m.rate)}/s\n`);
  return {
    system: name,
    cap: fmt(cap),
    'latency ms': latencyMs,
    'avg rate/s': fmt(m.rate),
    utilisation: `${((100 * m.rate) / cap).toFixed(1)} %`,
    'whole campaign': `${((100 * m.wholeRate) / cap).toFixed(1)} %`,
    'first 1 s': `${((100 * m.firstSecond) / cap).toFixed(0)} %`,
    'last 1 s': `${((100 * m.lastSecond) / cap).toFixed(0)} %`,
    'busiest 1 s': fmt(m.busiest),
    'busiest/cap': (m.busiest / cap).toFixed(2),
    '429s': fmt(m.status429),
    duplicates: m.duplicates,
    'Lua calls/send': (scriptCalls / Math.max(1, arrivals.length)).toFixed(2),
    'limiter calls/send': limiterCalls === undefined ? 'n/a' : (limiterCalls / Math.max(1, arrivals.length + warmUpSends)).toFixed(3),
  };
}

async function limiter(): Promise<void> {
  const caps = (process.env.BENCH_CAPS ?? '300,2000').split(',').map(Number);
  const seconds = Number(process.env.BENCH_SECONDS ?? 7);
  // The provider's answer time: a permit rests a second after the answer, so a slow provider costs utilisation (issue 17).
  const latencies = (process.env.BENCH_LATENCIES ?? '0,200,500').split(',').map(Number);
  // BENCH_PEERS=0 measures pushq alone (quicker, while tuning).
  const peers = process.env.BENCH_PEERS !== '0';
  const rows: Row[] = [];
  // BENCH_PACED_ONLY=1: only the paced rows (BENCH_PACED_ENV: JSON of extra worker settings for them).
  for (const cap of process.env.BENCH_PACED_ONLY === '1' ? [] : caps) {
    const from = rows.length;
    for (const latency of latencies) {
      const row = (name: string, make: (mock: RemoteMock) => Promise<System>) => capped(name, make, cap, seconds, latency);
      for (const workers of process.env.BENCH_WORKERS ? process.env.BENCH_WORKERS.split(',').map(Number) : latency === 0 ? [3, 1, 6] : [3]) {
        rows.push(await row(`pushq, ${workers} worker${workers > 1 ? 's' : ''}`, (mock) => pushq(mock, cap, workers)));
      }
      if (!peers) continue;
      rows.push(await row('naive BullMQ (local pacing), 3 procs', (mock) => peer(mock, 'naive', cap, 3)));
      rows.push(await row("BullMQ's limiter, 3 procs", (mock) => peer(mock, 'bullmq', cap, 3)));
      rows.push(await row('Bottleneck minTime (Redis), 3 procs', (mock) => peer(mock, 'bottleneck', cap, 3)));
      rows.push(await row('Bottleneck reservoir (Redis), 3 procs', (mock) => peer(mock, 'reservoir', cap, 3)));
    }
    for (const row of rows.slice(from)) console.log(JSON.stringify(row));
  }
  const paced: Row[] = [];
  for (const cap of process.env.BENCH_PACED === '0' ? [] : caps)
    for (const latency of latencies.filter((l) => l <= 200)) paced.push(await pacedBesideUnpaced(cap, latency, seconds));
  if (rows.length > 0)
    table(
      `Rate limiting at the provider (${cpus().length} cores; ${seconds} s of steady sending per row; the mock answers 429 above the cap in any sliding second)`,
      rows,
      'utilisation = average rate / cap while work is waiting (after a 2 s ramp-up); whole campaign = delivered / (last arrival − first) / cap; first / last 1 s = arrivals in the first / last second of the campaign ÷ cap (ramp-up, tail); busiest 1 s = most requests the provider saw in any sliding second.',
    );
  table(
    'A campaign paced at a quarter of the cap beside an unpaced one (pushq, 3 workers; same mock)',
    paced,
    'paced avg/s and unpaced avg/s: from 2 s after the paced campaign began until a second before it ended; of the rest = unpaced ÷ (cap − pace); busiest 1 s: any sliding second at the provider.',
  );
}

/**
 * A campaign with `pace: { tps: cap / 4 }` beside an unpaced one on the same
 * provider, 3 workers: at the provider, the paced one's busiest second and
 * its use of its pace, the unpaced one's share of the rest, both together
 * against the cap.
 */
async function pacedBesideUnpaced(cap: number, latencyMs: number, seconds: number): Promise<Row> {
  const pace = cap / 4;
  const mock = await RemoteMock.start(cap, latencyMs);
  process.stderr.write(`bench: paced ${pace}/s beside unpaced at ${cap}/s, ${latencyMs} ms… `);
  const system = await pushq(mock, cap, 3, JSON.parse(process.env.BENCH_PACED_ENV ?? '{}') as Record<string, string>);
  let arrivals: Arrival[] = [];
  const ids: string[] = [];
  try {
    if (process.env.BENCH_COLD !== '1') {
      await system.warmUp!();
      await mock.reset();
    }
    // Twice the other rows' length: long enough for the paced run's pages to turn over (src/app/pump.ts PACED_PAGE_SECONDS).
    const total = 2 * (seconds + RAMP_MS / 1000 + 1);
    for (const [label, n, extra] of [
      ['paced', Math.round(pace * total), { pace: { tps: pace } }],
      ['unpaced', Math.round((cap - pace) * total * 1.5), {}],
    ] as const) {
      const recipients = Array.from({ length: n }, (_, i) => `${label}-${i}`);
      const res = await system.client.request('POST', '/api/campaigns', {
        name: label,
        provider: 'mock',
        message: { title: 't', body: 'b' },
        recipients,
        ...extra,
      });
      ids.push(res.body.id as string);
    }
    await Promise.all(ids.map((id) => system.client.launch(id)));
    await waitFor(async () => (await system.client.campaign(ids[0]!)).status === 'completed', { timeoutMs: (total + 8) * 1000, intervalMs: 50 }).catch(
      () => undefined,
    );
    arrivals = await mock.arrivals();
  } finally {
    await system.stop();
    await mock.close();
  }
  const of = (id: string) =>
    arrivals
      .filter((a) => a.campaignId === id)
      .map((a) => a.at)
      .sort((a, b) => a - b);
  const [p, u] = [of(ids[0]!), of(ids[1]!)];
  // While both had work: after the ramp-up, until the paced one's last second.
  const from = (p[0] ?? 0) + RAMP_MS;
  const to = (p[p.length - 1] ?? 0) - 1000;
  const rateOf = (times: number[]) => (to > from ? (times.filter((t) => t >= from && t < to).length * 1000) / (to - from) : 0);
  process.stderr.write(`${fmt(rateOf(p))}/s of ${pace}\n`);
  return {
    cap: fmt(cap),
    'latency ms': latencyMs,
    pace: fmt(pace),
    'paced avg/s': fmt(rateOf(p)),
    'of its pace': `${((100 * rateOf(p)) / pace).toFixed(1)} %`,
    'paced busiest 1 s': fmt(maxInWindow(p)),
    'unpaced avg/s': fmt(rateOf(u)),
    'of the rest': `${((100 * rateOf(u)) / (cap - pace)).toFixed(1)} %`,
    'both busiest 1 s': fmt(maxInWindow([...p, ...u])),
    '429s': fmt(arrivals.filter((a) => a.status === 429).length),
    duplicates: duplicates(arrivals),
  };
}

// ── throughput and memory ──────────────────────────────────────────────────

async function rawCeiling(url: string, seconds: number, concurrency: number): Promise<number> {
  const target = new URL(url);
  const pool = new Pool(target.origin, { connections: 64, pipelining: 1 });
  const deadline = performance.now() + seconds * 1000;
  let done = 0;
  const loop = async (n: number) => {
    while (performance.now() < deadline) {
      const body = JSON.stringify({
        idempotencyKey: `k${n}-${done}`,
        campaignId: 'raw',
        runId: 'raw',
        recipient: { id: `r${n}-${done}` },
        message: { title: 't', body: 'b', data: {} },
      });
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

/** Sends/s as the provider saw them: deliveries over the time from first to last arrival. */
async function timed(make: (mock: RemoteMock) => Promise<System>, n: number): Promise<{ rate: number; duplicates: number }> {
  const mock = await RemoteMock.start();
  const system = await make(mock);
  try {
    await system.run(n, 600_000);
    const arrivals = await mock.arrivals();
    let first = Infinity;
    let last = 0;
    for (const a of arrivals) {
      first = Math.min(first, a.at);
      last = Math.max(last, a.at);
    }
    return { rate: deliveries(arrivals).size / ((last - first) / 1000), duplicates: duplicates(arrivals) };
  } finally {
    await system.stop();
    await mock.close();
  }
}

async function throughput(): Promise<void> {
  const n = Number(process.env.BENCH_RECIPIENTS ?? 60_000);
  const rawMock = await RemoteMock.start();
  const raw = await rawCeiling(rawMock.url, 5, 128).finally(() => rawMock.close());
  const ours = await timed((mock) => pushq(mock, 100_000, 2), n);
  if (ours.duplicates !== 0) throw new Error(`pushq sent duplicates: ${ours.duplicates}`);
  const naive = (await timed((mock) => peer(mock, 'none', 100_000, 2), n)).rate;
  {
    const sim = await pushq({ url: 'http://127.0.0.1:9/unused' }, 100_000, 2, {
      PROVIDERS_FILE: providersFile([{ name: 'mock', type: 'sim', tps: 100_000, latencyMs: 5 }]),
    });
    // No provider to watch: launch to completion (a slight underestimate).
    const simRun = async (personalised?: Personalised) => {
      const started = performance.now();
      await sim.run(n, 600_000, personalised);
      return n / ((performance.now() - started) / 1000);
    };
    const simRate = await simRun();
    // Fixed text and a 3-variable template over the same recipients, alternating, best of two each (the machine is shared).
    const rates = { fixed: [] as number[], templated: [] as number[] };
    for (let i = 0; i < 2; i += 1) {
      rates.fixed.push(await simRun(FIXED_WITH_FIELDS));
      rates.templated.push(await simRun(THREE_VARIABLES));
    }
    await sim.stop();
    const fixedRate = Math.max(...rates.fixed);
    const templatedRate = Math.max(...rates.templated);
    const render = renderCost();
    table(`Uncapped throughput: ${fmt(n)} recipients, 2 worker processes, ${cpus().length} cores`, [
      { what: 'raw ceiling: undici Pool → mock, no queue, no ledger', 'sends/s': fmt(raw), 'vs raw': '1.00', 'vs naive': (raw / naive).toFixed(2) },
      { what: 'naive BullMQ: one job per recipient, global fetch', 'sends/s': fmt(naive), 'vs raw': (naive / raw).toFixed(2), 'vs naive': '1.00' },
      {
        what: 'pushq, http provider → mock, ledger on',
        'sends/s': fmt(ours.rate),
        'vs raw': (ours.rate / raw).toFixed(2),
        'vs naive': (ours.rate / naive).toFixed(2),
      },
      {
        what: 'pushq, sim provider (5 ms latency), ledger on',
        'sends/s': fmt(simRate),
        'vs raw': (simRate / raw).toFixed(2),
        'vs naive': (simRate / naive).toFixed(2),
      },
    ]);
    table(`Personalised messages: the same ${fmt(n)} recipients (3 fields each), sim provider, 2 worker processes`, [
      { what: 'fixed text', 'sends/s': fmt(fixedRate), 'vs fixed': '1.00', 'µs per render': '—' },
      {
        what: '3-variable template (title, body, data)',
        'sends/s': fmt(templatedRate),
        'vs fixed': (templatedRate / fixedRate).toFixed(2),
        'µs per render': render.fast.toFixed(2),
      },
      { what: 'the same through Liquid (a filter, an if: no fast path)', 'sends/s': '—', 'vs fixed': '—', 'µs per render': render.liquid.toFixed(2) },
    ]);
  }
}

/** µs to render one recipient's message (title, body, data), in this process: the compiled fast path and full Liquid. */
function renderCost(): { fast: number; liquid: number } {
  const context = { campaign: { id: 'c', name: 'n' }, run: { id: 'main', occurrence: null }, timezone: 'UTC', now: Date.now() };
  const measure = (message: unknown) => {
    const compiled = CompiledMessage.compile(message as Message);
    if (!compiled.ok) throw new Error('the bench template does not parse');
    const n = 200_000;
    for (let i = 0; i < 10_000; i += 1) compiled.compiled.render(THREE_VARIABLES.recipient(i) as RecipientRecord, context);
    const started = performance.now();
    for (let i = 0; i < n; i += 1) compiled.compiled.render(THREE_VARIABLES.recipient(i) as RecipientRecord, context);
    return ((performance.now() - started) * 1000) / n;
  };
  return {
    fast: measure(THREE_VARIABLES.message),
    liquid: measure(LIQUID_THREE_VARIABLES),
  };
}

const usedMemory = (url: string) => redisInfo(url, 'memory', 'used_memory:');

/** What workers with nothing to do cost Redis: commands per second, measured over 10 s. */
async function idle(): Promise<void> {
  const mock = await RemoteMock.start();
  const system = await pushq(mock, 1000, 3);
  try {
    await system.run(100, 30_000);
    const before = await redisInfo(system.redisUrl, 'stats', 'total_commands_processed:');
    const started = performance.now();
    await waitFor(() => performance.now() - started >= 10_000, { timeoutMs: 11_000, intervalMs: 100 });
    const perSecond = ((await redisInfo(system.redisUrl, 'stats', 'total_commands_processed:')) - before - 1) / 10;
    table('Idle cost: 3 worker processes and the API with nothing to send', [
      { what: 'Redis commands per second, all processes', value: perSecond.toFixed(1) },
    ]);
  } finally {
    await system.stop();
    await mock.close();
  }
}

async function memory(): Promise<void> {
  const n = Number(process.env.BENCH_MEMORY_RECIPIENTS ?? 100_000);
  const ids = Array.from({ length: n }, (_, i) => `user-${String(i).padStart(7, '0')}`);
  const ownBytes = ids.reduce((sum, id) => sum + Buffer.byteLength(id), 0);
  const mock = await RemoteMock.start();
  const ours = await pushq(mock, 100_000, 2);
  let firstSendMs = 0;
  let queued = 0;
  let ledger = 0;
  try {
    // Warm-up: a first campaign creates the structures every campaign shares (queue, limiter).
    await ours.run(1, 30_000);
    const before = await usedMemory(ours.redisUrl);
    const campaign = await ours.client.createCampaign({ provider: 'mock', recipients: ids });
    const stored = await usedMemory(ours.redisUrl);
    const launchedAt = performance.now();
    await ours.client.launch(campaign.id);
    const warmUp = await mock.count();
    await waitFor(async () => (await mock.count()) > warmUp, { intervalMs: 1 });
    firstSendMs = performance.now() - launchedAt;
    await waitFor(async () => (await ours.client.campaign(campaign.id)).status === 'completed', { timeoutMs: 600_000, intervalMs: 100 });
    const done = await usedMemory(ours.redisUrl);
    queued = stored - before - ownBytes;
    ledger = done - stored;
  } finally {
    await ours.stop();
    await mock.close();
  }
  const naive = await startOwnRedis(['--appendonly', 'no']);
  const connection = new Redis(naive.url, { maxRetriesPerRequest: null });
  const queue = new Queue('peer', { connection });
  let naiveBytes = 0;
  try {
    await queue.add('warm-up', {});
    const before = await usedMemory(naive.url);
    for (let i = 0; i < n; i += 1000) {
      await queue.addBulk(ids.slice(i, i + 1000).map((id) => ({ name: 'send', data: { campaignId: 'c', recipientId: id } })));
    }
    naiveBytes = (await usedMemory(naive.url)) - before - ownBytes;
  } finally {
    await queue.close();
    connection.disconnect();
    await naive.kill();
  }
  const per = (bytes: number) => (bytes / n).toFixed(1);
  table(
    `Redis memory per recipient, ${fmt(n)} recipients with ${ids[0]!.length}-byte ids, beyond the ids (INFO used_memory)`,
    [
      { what: 'pushq: recipients stored (pages + id index)', 'bytes/recipient': per(queued) },
      { what: 'pushq: ledger of the completed run', 'bytes/recipient': per(ledger) },
      { what: 'pushq: total', 'bytes/recipient': per(queued + ledger) },
      { what: 'naive BullMQ: one waiting job per recipient', 'bytes/recipient': per(naiveBytes) },
    ],
    `launch → first request at the provider: ${firstSendMs.toFixed(0)} ms for ${fmt(n)} recipients`,
  );
}

/** Peak resident memory of a process (VmHWM), in MB. */
function peakRssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmHWM:\s+(\d+) kB/m.exec(status)![1]) / 1024;
}

/** A 1M-row CSV upload, streamed: time, the API's peak memory, Redis bytes per recipient, first send after launch. */
async function ingest(): Promise<void> {
  const n = Number(process.env.BENCH_INGEST_ROWS ?? 1_000_000);
  const dir = mkdtempSync(join(tmpdir(), 'pushq-ingest-'));
  const file = join(dir, 'recipients.csv');
  const out = createWriteStream(file);
  const hash = createHash('sha256');
  const write = (text: string) => {
    hash.update(text);
    return out.write(text) ? Promise.resolve() : new Promise<void>((resolve) => out.once('drain', () => resolve()));
  };
  await write('id,phone,name\n');
  for (let i = 0; i < n; i += 1)
    await write(`user-${String(i).padStart(7, '0')},010-${String(i % 10_000).padStart(4, '0')}-${String(i % 9973).padStart(4, '0')},"Kim, ${i % 1000}"\n`);
  await new Promise<void>((resolve) => out.end(resolve));
  const bytes = statSync(file).size;
  const mock = await RemoteMock.start();
  const stack = await pushq(mock, 100_000, 2, { PROVIDERS_FILE: providersFile([{ name: 'mock', type: 'sim', tps: 100_000, latencyMs: 1 }]) });
  try {
    // Warm-up: a first campaign creates what every campaign shares (queues, the provider's permits).
    await stack.run(1, 30_000);
    const campaignId = (await stack.client.createCampaign({ provider: 'mock' })).id;
    const before = await usedMemory(stack.redisUrl);
    const started = performance.now();
    const res = await request(`${stack.client.baseUrl}/api/campaigns/${campaignId}/recipients`, {
      method: 'PUT',
      headers: {
        authorization: `Bearer ${TEST_TOKEN}`,
        'content-type': 'text/csv',
        'content-length': String(bytes),
        'x-recipient-count': String(n),
        'x-content-sha256': hash.digest('hex'),
      },
      body: createReadStream(file),
    });
    const answer = (await res.body.json()) as { accepted: number };
    const seconds = (performance.now() - started) / 1000;
    if (res.statusCode !== 200 || answer.accepted !== n) throw new Error(`upload failed: ${res.statusCode} ${JSON.stringify(answer)}`);
    const apiPeak = peakRssMb(stack.apiPid);
    const stored = await usedMemory(stack.redisUrl);
    const launchedAt = performance.now();
    await stack.client.launch(campaignId);
    await waitFor(async () => (await stack.client.campaign(campaignId)).counts.sent > 0, { intervalMs: 2 });
    const firstSendMs = performance.now() - launchedAt;
    await waitFor(async () => (await stack.client.campaign(campaignId)).status === 'completed', { timeoutMs: 900_000, intervalMs: 500 });
    const done = await usedMemory(stack.redisUrl);
    // Its own fields: what the upload carried per recipient, minus the CSV's commas and quotes.
    const ownBytes = bytes - 'id,phone,name\n'.length - n * 5;
    table(`Ingest: ${fmt(n)}-row CSV (${(bytes / 1e6).toFixed(1)} MB) streamed to PUT …/recipients with count and SHA-256`, [
      {
        what: 'upload + validation + dedup + commit',
        value: `${seconds.toFixed(1)} s (${fmt(n / seconds)} rows/s, ${(bytes / 1e6 / seconds).toFixed(1)} MB/s)`,
      },
      { what: 'API process peak RSS (VmHWM), whole life', value: `${apiPeak.toFixed(0)} MB` },
      { what: "Redis: list stored, beyond the recipients' own fields", value: `${((stored - before - ownBytes) / n).toFixed(1)} B/recipient` },
      { what: 'Redis: ledger of the completed run', value: `${((done - stored) / n).toFixed(1)} B/recipient` },
      { what: "Redis: total beyond the recipients' own fields", value: `${((done - before - ownBytes) / n).toFixed(1)} B/recipient` },
      { what: 'launch → first recipient sent (seen through the API)', value: `${firstSendMs.toFixed(0)} ms` },
    ]);
  } finally {
    await stack.stop();
    await mock.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}

/** CPU seconds (user + system) an INFO cpu answer says Redis has used. */
function usedCpu(info: string): number {
  return Number(/^used_cpu_user:([\d.]+)/m.exec(info)?.[1] ?? 0) + Number(/^used_cpu_sys:([\d.]+)/m.exec(info)?.[1] ?? 0);
}

/** CPU seconds Redis servers have used so far (INFO cpu), summed over `ports`. */
async function redisCpu(ports: readonly number[]): Promise<number> {
  let total = 0;
  for (const port of ports) {
    const redis = new Redis({ host: '127.0.0.1', port, lazyConnect: true });
    try {
      const info = await redis.info('cpu');
      total += usedCpu(info);
    } finally {
      redis.disconnect();
    }
  }
  return total;
}

/**
 * How throughput grows with worker processes, on one Redis and on a
 * 3-master cluster (6 send shards), ledger on, cap out of reach, loopback
 * mock. CPU per send tells where it bends: the machine has few cores, and
 * workers, Redis and the mock share them.
 */
async function scale(): Promise<void> {
  const n = Number(process.env.BENCH_SCALE_RECIPIENTS ?? 40_000);
  const rows: Row[] = [];
  for (const topology of ['one Redis', '3-master cluster'] as const) {
    for (const workers of [1, 2, 4]) {
      let ports: number[];
      let own: { url: string; kill(): Promise<void> };
      if (topology === 'one Redis') {
        const single = await startOwnRedis(['--appendonly', 'no']);
        ports = [Number(new URL(single.url).port)];
        own = single;
      } else {
        const cluster = await startRedisCluster({ masters: 3 });
        ports = cluster.nodes.map((node) => node.port);
        own = { url: cluster.url, kill: () => cluster.stop() };
      }
      const mock = await RemoteMock.start();
      const system = await pushq(mock, 100_000, workers, topology === 'one Redis' ? {} : { SEND_SHARDS: '6' }, own);
      try {
        const cpuBefore = system.workerPids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
        const redisBefore = await redisCpu(ports);
        await system.run(n, 600_000);
        const workerCpu = system.workerPids.reduce((sum, pid) => sum + cpuSeconds(pid), 0) - cpuBefore;
        const redisUsed = (await redisCpu(ports)) - redisBefore;
        const arrivals = await mock.arrivals();
        const first = Math.min(...arrivals.map((a) => a.at));
        const last = Math.max(...arrivals.map((a) => a.at));
        const rate = deliveries(arrivals).size / ((last - first) / 1000);
        const dup = duplicates(arrivals);
        if (dup !== 0) throw new Error(`pushq sent duplicates on ${topology} with ${workers} workers: ${dup}`);
        rows.push({
          topology,
          workers,
          'sends/s': fmt(rate),
          'vs 1 worker, one Redis': rows.length === 0 ? '1.00' : (rate / Number(String(rows[0]!['sends/s']).replace(/,/g, ''))).toFixed(2),
          'worker CPU µs/send': ((workerCpu / n) * 1e6).toFixed(0),
          'Redis CPU µs/send': ((redisUsed / n) * 1e6).toFixed(0),
        });
      } finally {
        await system.stop();
        await mock.close();
      }
    }
  }
  table(`Scaling: ${fmt(n)} recipients, ledger on, no cap in reach, ${cpus().length} cores shared by workers, Redis and the mock`, rows);
}

/** A campaign of `n` recipients uploaded as CSV (ids `user-0000000`…), launched, and run to completion. */
async function sentRun(client: ApiClient, n: number, timeoutMs: number): Promise<string> {
  const body = `id\n${Array.from({ length: n }, (_, i) => `user-${String(i).padStart(7, '0')}`).join('\n')}\n`;
  const id = (await client.createCampaign({ provider: 'mock' })).id as string;
  const res = await request(`${client.baseUrl}/api/campaigns/${id}/recipients`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'text/csv', 'x-recipient-count': String(n) },
    body,
  });
  if (res.statusCode !== 200) throw new Error(`upload failed: ${res.statusCode} ${await res.body.text()}`);
  await res.body.dump();
  await client.launch(id);
  await waitFor(async () => (await client.campaign(id)).status === 'completed', { timeoutMs, intervalMs: 200 });
  return id;
}

/** The archive child (test/helpers/archive-child.ts) on one run: ms from its start of work to done. */
async function archiveChild(env: Record<string, string>): Promise<number> {
  const proc = new PushqProcess(
    spawn(process.execPath, ['--import', 'tsx', 'test/helpers/archive-child.ts'], {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  await proc.waitForOutput(/ready/);
  const began = performance.now();
  await proc.waitForOutput(/done/, 900_000);
  const ms = performance.now() - began;
  await proc.exited;
  return ms;
}

async function lifecycle(): Promise<void> {
  const runs = Number(process.env.BENCH_LIFECYCLE_RUNS ?? 30);
  const n = Number(process.env.BENCH_LIFECYCLE_RECIPIENTS ?? 100_000);
  const exportRows = Number(process.env.BENCH_EXPORT_ROWS ?? 1_000_000);
  const pgUrl = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const sim = providersFile([{ name: 'mock', type: 'sim', tps: 100_000, latencyMs: 1 }]);
  const dir = mkdtempSync(join(tmpdir(), 'pushq-lifecycle-'));
  const rows: Row[] = [];
  try {
    for (const retention of [false, true]) {
      const env: Record<string, string> = {
        PROVIDERS_FILE: sim,
        ARCHIVE_DIR: join(dir, `series-${retention}`),
        ...(retention ? { RUN_RETENTION_MS: '1000' } : {}),
      };
      const stack = await pushq({ url: 'http://127.0.0.1:9' }, 100_000, 2, env);
      try {
        await stack.run(1, 30_000);
        const before = await usedMemory(stack.redisUrl);
        const started = performance.now();
        for (let i = 0; i < runs; i += 1) await sentRun(stack.client, n, 600_000);
        const sending = (performance.now() - started) / 1000;
        if (retention) {
          const redis = new Redis(stack.redisUrl);
          await waitFor(async () => (await redis.zcard('pushq:retention')) === 0, { timeoutMs: 600_000, intervalMs: 200 });
          redis.disconnect();
        }
        const grown = (await usedMemory(stack.redisUrl)) - before;
        rows.push({
          series: retention ? 'RUN_RETENTION_MS=1000 (archived to a directory)' : 'no retention (the default 30 days, not reached)',
          runs,
          recipients: fmt(n),
          'Redis grew by': `${(grown / 1e6).toFixed(1)} MB`,
          'per run': `${(grown / runs / 1e3).toFixed(1)} kB`,
          'sending took': `${sending.toFixed(0)} s`,
        });
      } finally {
        await stack.stop();
      }
    }
    table(`Redis after ${runs} one-off runs of ${fmt(n)} recipients (INFO used_memory, after the runs less before)`, rows);

    // A 1M run: exported through the API, then written to each archive.
    const schema = `pushq_bench_${process.pid}`;
    const stack = await pushq({ url: 'http://127.0.0.1:9' }, 100_000, 2, { PROVIDERS_FILE: sim, ARCHIVE_DIR: join(dir, 'big') });
    try {
      await stack.run(1, 30_000);
      const campaignId = await sentRun(stack.client, exportRows, 1_800_000);
      // A fresh API process for the export, so its peak memory is the export's alone.
      const { process: api, url } = await startApiProcess({
        REDIS_URL: stack.redisUrl,
        ADMIN_TOKEN: TEST_TOKEN,
        PROVIDERS_FILE: sim,
        ARCHIVE_DIR: join(dir, 'big'),
      });
      const started = performance.now();
      const res = await request(`${url}/api/campaigns/${campaignId}/runs/main/results`, { headers: { authorization: `Bearer ${TEST_TOKEN}` } });
      let bytes = 0;
      for await (const chunk of res.body) bytes += (chunk as Buffer).length;
      const exportS = (performance.now() - started) / 1000;
      const rss = peakRssMb(api.proc.pid!);
      await api.kill('SIGKILL');
      const child = { REDIS_URL: stack.redisUrl, CAMPAIGN: campaignId, RUN: 'main', PROVIDERS_FILE: sim };
      const toDir = await archiveChild({ ...child, ARCHIVE_DIR: join(dir, 'sink'), ARCHIVE_WRITE_ONLY: '1' });
      const toPg = await archiveChild({ ...child, ARCHIVE_URL: `${pgUrl}?schema=${schema}`, ARCHIVE_WRITE_ONLY: '1' });
      const whole = await archiveChild({ ...child, ARCHIVE_DIR: join(dir, 'whole') });
      const rate = (ms: number) => `${fmt(exportRows / (ms / 1000))} rows/s (${(ms / 1000).toFixed(1)} s)`;
      table(`A run of ${fmt(exportRows)} recipients: export and archive`, [
        { what: 'export, NDJSON through the API', value: `${rate(exportS * 1000)}, ${(bytes / 1e6).toFixed(0)} MB; API peak RSS ${rss.toFixed(0)} MB` },
        { what: 'archive write to a directory (gzip NDJSON, fsync, read back)', value: rate(toDir) },
        { what: 'archive write to PostgreSQL (COPY, one transaction, count checked)', value: rate(toPg) },
        { what: 'whole archiving to a directory (write, mark, ledger and list out of Redis)', value: rate(whole) },
      ]);
    } finally {
      await stack.stop();
      const { default: pg } = await import('pg');
      const client = new pg.Client({ connectionString: pgUrl });
      await client
        .connect()
        .then(() => client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`))
        .catch(() => undefined);
      await client.end().catch(() => undefined);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The whole-list dry run of a personalised campaign: 1M recipients (3 fields
 * each, 1 % without one of them) rendered in the API, page by page.
 */
async function templates(): Promise<void> {
  const n = Number(process.env.BENCH_DRY_RUN_RECIPIENTS ?? 1_000_000);
  const dir = mkdtempSync(join(tmpdir(), 'pushq-dryrun-'));
  const file = join(dir, 'recipients.ndjson');
  const out = createWriteStream(file);
  const write = (text: string) => (out.write(text) ? Promise.resolve() : new Promise<void>((resolve) => out.once('drain', () => resolve())));
  let missing = 0;
  for (let i = 0; i < n; i += 1) {
    const r = THREE_VARIABLES.recipient(i) as Record<string, unknown>;
    if (i % 100 === 7) {
      delete r.plan;
      missing += 1;
    }
    await write(`${JSON.stringify(r)}\n`);
  }
  await new Promise<void>((resolve) => out.end(resolve));
  const mock = await RemoteMock.start();
  const stack = await pushq(mock, 100_000, 0, { PROVIDERS_FILE: providersFile([{ name: 'mock', type: 'sim', tps: 100_000, latencyMs: 1 }]) });
  try {
    const campaignId = (await stack.client.createCampaign({ provider: 'mock', message: THREE_VARIABLES.message })).id;
    const res = await request(`${stack.client.baseUrl}/api/campaigns/${campaignId}/recipients`, {
      method: 'PUT',
      headers: {
        authorization: `Bearer ${TEST_TOKEN}`,
        'content-type': 'application/x-ndjson',
        'content-length': String(statSync(file).size),
        'x-recipient-count': String(n),
      },
      body: createReadStream(file),
    });
    if (res.statusCode !== 200) throw new Error(`upload failed: ${res.statusCode} ${await res.body.text()}`);
    await res.body.dump();
    const started = performance.now();
    const dry = await stack.client.request('POST', `/api/campaigns/${campaignId}/dry-run`);
    const seconds = (performance.now() - started) / 1000;
    if (dry.status !== 200 || dry.body.recipients !== n || dry.body.failed !== missing)
      throw new Error(`dry run: ${dry.status} ${JSON.stringify(dry.body).slice(0, 300)}`);
    const launchStarted = performance.now();
    const launch = await stack.client.request('POST', `/api/campaigns/${campaignId}/launch`);
    const refusedIn = (performance.now() - launchStarted) / 1000;
    if (launch.status !== 422) throw new Error(`the launch was not refused: ${launch.status}`);
    // The same list, a template that needs Liquid (a filter and an if in each string).
    const patched = await stack.client.request('PATCH', `/api/campaigns/${campaignId}`, { message: LIQUID_THREE_VARIABLES });
    if (patched.status !== 200) throw new Error(`PATCH: ${patched.status}`);
    const liquidStarted = performance.now();
    const liquidDry = await stack.client.request('POST', `/api/campaigns/${campaignId}/dry-run`);
    const liquidSeconds = (performance.now() - liquidStarted) / 1000;
    if (liquidDry.status !== 200 || liquidDry.body.failed !== missing)
      throw new Error(`dry run: ${liquidDry.status} ${JSON.stringify(liquidDry.body).slice(0, 300)}`);
    table(`Dry run: ${fmt(n)} recipients, a 3-variable template, ${fmt(missing)} without one field, in the API`, [
      {
        what: 'POST …/dry-run',
        seconds: seconds.toFixed(1),
        'recipients/s': fmt(n / seconds),
        'API peak RSS MB (the upload before included)': peakRssMb(stack.apiPid).toFixed(0),
      },
      {
        what: 'POST …/dry-run, through Liquid (a filter, an if)',
        seconds: liquidSeconds.toFixed(1),
        'recipients/s': fmt(n / liquidSeconds),
        'API peak RSS MB (the upload before included)': peakRssMb(stack.apiPid).toFixed(0),
      },
      {
        what: 'POST …/launch refused (422, the same report)',
        seconds: refusedIn.toFixed(1),
        'recipients/s': fmt(n / refusedIn),
        'API peak RSS MB (the upload before included)': peakRssMb(stack.apiPid).toFixed(0),
      },
    ]);
  } finally {
    await stack.stop();
    await mock.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Events out: what the outbox and the webhook deliveries cost when an
 * endpoint takes an event per send (the same sim campaigns with and without
 * it, alternating, best of two), and what receipts cost Redis.
 */
async function events(): Promise<void> {
  const n = Number(process.env.BENCH_EVENTS_RECIPIENTS ?? 60_000);
  const sink = new PushqProcess(spawn(process.execPath, ['--import', 'tsx', 'bench/webhook-sink.ts'], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] }));
  const [, sinkUrl] = await sink.waitForOutput(/sink (\S+)\n/);
  const secret = newWebhookSecret();
  const sim = providersFile([{ name: 'mock', type: 'sim', tps: 100_000, latencyMs: 5 }]);
  const nowhere = { url: 'http://127.0.0.1:9/unused' };
  const plain = await pushq(nowhere, 100_000, 2, { PROVIDERS_FILE: sim });
  const subscribed = await pushq(nowhere, 100_000, 2, {
    PROVIDERS_FILE: sim,
    WEBHOOKS_FILE: webhooksFile([{ name: 'warehouse', url: sinkUrl!, secret, events: ['recipient.sent'], tps: 5000 }]),
  });
  const delivered = async () => ((await (await fetch(sinkUrl!)).json()) as { events: number }).events;
  const rates = { plain: [] as number[], subscribed: [] as number[] };
  let eventsPerSecond = 0;
  try {
    for (let i = 0; i < 2; i += 1) {
      for (const [name, system] of [
        ['plain', plain],
        ['subscribed', subscribed],
      ] as const) {
        const before = await delivered();
        const started = performance.now();
        await system.run(n, 600_000);
        rates[name].push(n / ((performance.now() - started) / 1000));
        if (name === 'subscribed') {
          await waitFor(async () => (await delivered()) - before >= n, { timeoutMs: 600_000, intervalMs: 50 });
          eventsPerSecond = Math.max(eventsPerSecond, n / ((performance.now() - started) / 1000));
        }
      }
    }
  } finally {
    await plain.stop();
    await subscribed.stop();
    await sink.kill('SIGKILL');
  }
  const base = Math.max(...rates.plain);
  const withEvents = Math.max(...rates.subscribed);
  table(`Events out: ${fmt(n)} recipients, sim provider, 2 worker processes, an endpoint on loopback`, [
    { what: 'no webhook endpoint', 'sends/s': fmt(base), 'vs none': '1.00', 'sent events delivered/s': '—' },
    {
      what: 'an endpoint taking recipient.sent (an event per send, 500 a delivery)',
      'sends/s': fmt(withEvents),
      'vs none': (withEvents / base).toFixed(2),
      'sent events delivered/s': fmt(eventsPerSecond),
    },
  ]);
  await receiptsCost();
}

/** Redis bytes per recipient of a run whose provider sends receipts, and receipts applied per second. */
async function receiptsCost(): Promise<void> {
  const n = Number(process.env.BENCH_RECEIPTS_RECIPIENTS ?? 100_000);
  const secret = newWebhookSecret();
  const secretDir = mkdtempSync(join(tmpdir(), 'pushq-bench-receipts-'));
  const secretFile = join(secretDir, 'secret');
  writeFileSync(secretFile, secret);
  const mock = await RemoteMock.start(undefined, 0, { MOCK_MESSAGE_IDS: '1' });
  const system = await pushq(mock, 100_000, 2, {
    PROVIDERS_FILE: providersFile([
      { name: 'plain', type: 'http', url: mock.url, tps: 100_000 },
      { name: 'mock', type: 'http', url: mock.url, tps: 100_000, receipts: { secretFile } },
    ]),
  });
  const ids = Array.from({ length: n }, (_, i) => `user-${String(i).padStart(7, '0')}`);
  const run = async (provider: string) => {
    const campaign = await system.client.createCampaign({ provider, recipients: ids });
    const stored = await usedMemory(system.redisUrl);
    await system.client.launch(campaign.id);
    await waitFor(async () => (await system.client.campaign(campaign.id)).status === 'completed', { timeoutMs: 600_000, intervalMs: 100 });
    return { id: campaign.id as string, bytes: (await usedMemory(system.redisUrl)) - stored };
  };
  const signer = new Webhook(secret);
  try {
    // Warm-up on both providers: each one's limiter slots are made by its first campaign.
    await system.run(1, 30_000);
    await system.client.launch((await system.client.createCampaign({ provider: 'plain', recipients: ['w'] })).id);
    const plainRun = await run('plain');
    await mock.reset();
    const receiptsRun = await run('mock');
    const keys = (await mock.arrivals()).map((a) => a.key!);
    const beforeReceipts = await usedMemory(system.redisUrl);
    const started = performance.now();
    for (let i = 0; i < keys.length; i += 1000) {
      const body = JSON.stringify({ receipts: keys.slice(i, i + 1000).map((key) => ({ idempotencyKey: key, status: 'delivered' })) });
      const now = new Date();
      const id = `msg_bench_${i}`;
      const res = await fetch(new URL('/api/receipts/mock', system.client.baseUrl), {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'webhook-id': id,
          'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
          'webhook-signature': signer.sign(id, now, body),
        },
        body,
      });
      if (res.status !== 200) throw new Error(`receipts answered ${res.status}: ${await res.text()}`);
      await res.body?.cancel();
    }
    const receiptsPerSecond = keys.length / ((performance.now() - started) / 1000);
    const counts = (await system.client.campaign(receiptsRun.id)).counts;
    if (counts.delivered !== n) throw new Error(`${counts.delivered} of ${n} receipts recorded`);
    const afterReceipts = await usedMemory(system.redisUrl);
    const per = (bytes: number) => (bytes / n).toFixed(1);
    table(
      `Receipts: Redis bytes per recipient of a completed run, ${fmt(n)} recipients (INFO used_memory)`,
      [
        { what: 'ledger of a run, provider without receipts', 'bytes/recipient': per(plainRun.bytes) },
        { what: 'ledger of a run whose provider sends receipts and names messages by its own id (kept 16 B each)', 'bytes/recipient': per(receiptsRun.bytes) },
        {
          what: `… after ${fmt(n)} delivered receipts (records change state in place)`,
          'bytes/recipient': per(receiptsRun.bytes + afterReceipts - beforeReceipts),
        },
      ],
      `receipts applied: ${fmt(receiptsPerSecond)}/s (by idempotency key, batches of 1,000, signed, one API process)`,
    );
  } finally {
    await system.stop();
    await mock.close();
    rmSync(secretDir, { recursive: true, force: true });
  }
}

/** Redis bytes per recipient of a run with a fallback chain (sim providers: a push leg without a token for 20 %, then an SMS-like leg). */
async function fallback(): Promise<void> {
  const n = Number(process.env.BENCH_FALLBACK_RECIPIENTS ?? 100_000);
  const mock = await RemoteMock.start();
  const system = await pushq(mock, 100_000, 2, {
    PROVIDERS_FILE: providersFile([
      { name: 'mock', type: 'http', url: mock.url, tps: 100_000 },
      { name: 'push', type: 'sim', tps: 100_000, latencyMs: 0, tokenField: 'token' },
      { name: 'text', type: 'sim', tps: 100_000, latencyMs: 0, tokenField: 'phone' },
    ]),
  });
  const recipients = Array.from({ length: n }, (_, i) => ({
    id: `user-${String(i).padStart(7, '0')}`,
    phone: `0105${String(i).padStart(7, '0')}`,
    ...(i % 5 === 0 ? {} : { token: `t${i}` }),
  }));
  const run = async (chain: boolean) => {
    const res = await system.client.request('POST', '/api/campaigns', {
      name: 'fallback bench',
      provider: 'push',
      message: { title: 'Hello', body: 'World' },
      recipients,
      ...(chain ? { fallback: [{ provider: 'text' }] } : {}),
    });
    if (res.status !== 201) throw new Error(`create: ${res.status} ${JSON.stringify(res.body)}`);
    const stored = await usedMemory(system.redisUrl);
    await system.client.launch(res.body.id);
    await waitFor(async () => (await system.client.campaign(res.body.id)).status === 'completed', { timeoutMs: 600_000, intervalMs: 100 });
    const counts = (await system.client.campaign(res.body.id)).counts;
    return { bytes: (await usedMemory(system.redisUrl)) - stored, counts };
  };
  try {
    // Warm-up on each provider: its limiter's slots (a cost per provider, not per recipient) are made by its first campaign.
    for (const provider of ['push', 'text']) {
      const warm = await system.client.request('POST', '/api/campaigns', {
        name: 'warm',
        provider,
        message: { title: 'a', body: 'b' },
        recipients: [{ id: 'w', token: 't', phone: '1' }],
      });
      await system.client.launch(warm.body.id);
      await waitFor(async () => (await system.client.campaign(warm.body.id)).status === 'completed', { timeoutMs: 30_000, intervalMs: 100 });
    }
    const without = await run(false);
    const withChain = await run(true);
    if (withChain.counts.sent !== n || withChain.counts.byLeg?.[1]?.sent !== n / 5) throw new Error(`unexpected counts ${JSON.stringify(withChain.counts)}`);
    const per = (bytes: number) => (bytes / n).toFixed(1);
    table(`Fallback: Redis bytes per recipient of a completed run, ${fmt(n)} recipients, 20 % without a push token (INFO used_memory)`, [
      { what: 'no chain: the 20 % end failed (NO_TOKEN)', 'bytes/recipient': per(without.bytes) },
      { what: 'push → second channel: the 20 % sent on leg 1', 'bytes/recipient': per(withChain.bytes) },
    ]);
  } finally {
    await system.stop();
    await mock.close();
  }
}

/** A flag's value from the command line (`--baseline main`). */
function argValue(flag: string): string | undefined {
  const i = process.argv.indexOf(flag);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** A checkout of `ref` beside this one (a git worktree sharing this node_modules), made once per commit. */
async function baselineCheckout(ref: string): Promise<{ root: string; sha: string }> {
  const git = (...args: string[]) =>
    new Promise<string>((resolve, reject) => {
      const proc = spawn('git', args, { cwd: REPO_ROOT });
      let out = '';
      proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
      proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
      proc.on('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`git ${args.join(' ')}: ${out}`))));
    });
  const sha = await git('rev-parse', '--verify', `${ref}^{commit}`);
  const root = join(tmpdir(), `pushq-baseline-${sha.slice(0, 12)}`);
  if (!existsSync(join(root, 'package.json'))) {
    await git('worktree', 'add', '--detach', '--force', root, sha);
  }
  if (!existsSync(join(root, 'node_modules'))) symlinkSync(join(REPO_ROOT, 'node_modules'), join(root, 'node_modules'), 'dir');
  return { root, sha };
}

/** Every command Redis has run so far (INFO commandstats), and its bytes in and out (INFO stats). */
async function redisTotals(url: string): Promise<{ calls: number; bytes: number; cpu: number }> {
  const redis = new Redis(url, { lazyConnect: true });
  try {
    const [commands, stats, cpu] = await Promise.all([redis.info('commandstats'), redis.info('stats'), redis.info('cpu')]);
    const calls = [...commands.matchAll(/^cmdstat_[^:]+:calls=(\d+)/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
    const bytes = Number(/^total_net_input_bytes:(\d+)/m.exec(stats)?.[1] ?? 0) + Number(/^total_net_output_bytes:(\d+)/m.exec(stats)?.[1] ?? 0);
    return { calls, bytes, cpu: usedCpu(cpu) };
  } finally {
    redis.disconnect();
  }
}

async function slowlogAll(url: string): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true });
  await redis.config('SET', 'slowlog-log-slower-than', '0');
  await redis.config('SET', 'slowlog-max-len', '2000000');
  await redis.slowlog('RESET');
  redis.disconnect();
}

/** Redis time by command over the whole process life, per send of the measured run (for finding what to cut). */
async function printCommandStats(url: string, n: number): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true });
  try {
    const text = await redis.info('commandstats');
    const rows = [...text.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)]
      .map((m) => ({ command: m[1]!, calls: Number(m[2]), usec: Number(m[3]) }))
      .sort((a, b) => b.usec - a.usec)
      .slice(0, 20);
    const log = (await redis.call('SLOWLOG', 'GET', '-1')) as Array<[number, number, number, string[]]>;
    const byScript = new Map<string, { calls: number; usec: number; args: number }>();
    let allUsec = 0;
    const byCommand = new Map<string, number>();
    for (const [, , usec, args] of log) {
      allUsec += usec;
      byCommand.set(args[0]!.toLowerCase(), (byCommand.get(args[0]!.toLowerCase()) ?? 0) + usec);
      if (!/^evalsha$/i.test(args[0] ?? '')) continue;
      const key = `${(args[1] ?? '').slice(0, 8)} ${args[3] ?? ''}`;
      const e = byScript.get(key) ?? { calls: 0, usec: 0, args: 0 };
      e.calls += 1;
      e.usec += usec;
      e.args += args.length;
      byScript.set(key, e);
    }
    console.log(
      `slowlog: ${log.length} commands, ${(allUsec / n).toFixed(2)} µs per send in all; by command: ${[...byCommand]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 8)
        .map(([c, u]) => `${c} ${(u / n).toFixed(2)}`)
        .join(', ')}`,
    );
    table(
      'Scripts (measured run)',
      [...byScript.entries()]
        .sort((a, b) => b[1].usec - a[1].usec)
        .slice(0, 15)
        .map(([k, e]) => ({
          script: k.slice(0, 90),
          calls: fmt(e.calls),
          'µs/call': (e.usec / e.calls).toFixed(1),
          'µs per send': (e.usec / n).toFixed(2),
          'args/call (≤32 logged)': (e.args / e.calls).toFixed(1),
        })),
    );
    table(
      'Redis commands (whole life, incl. warm-up)',
      rows.map((r) => ({
        command: r.command,
        calls: fmt(r.calls),
        'µs total': fmt(r.usec),
        'µs/call': (r.usec / r.calls).toFixed(2),
        'µs per measured send': (r.usec / n).toFixed(2),
      })),
    );
  } finally {
    redis.disconnect();
  }
}

interface CostRow {
  rate: number;
  workerUs: number;
  redisUs: number;
  calls: number;
  bytes: number;
}

/** One uncapped run of `n` recipients on 2 workers of the checkout at `root`: what each send cost. */
async function costOf(root: string, provider: 'sim' | 'http', n: number, profileDir?: string): Promise<CostRow> {
  const mock = await RemoteMock.start();
  const providers =
    provider === 'sim'
      ? [{ name: 'mock', type: 'sim', tps: 100_000, latencyMs: 0 }]
      : [{ name: 'mock', type: 'http', url: mock.url, tps: 100_000, timeoutMs: 5000 }];
  // BENCH_COST_ENV: JSON of extra worker settings (to see what a setting costs).
  const extra = JSON.parse(process.env.BENCH_COST_ENV ?? '{}') as Record<string, string>;
  const system = await pushq(mock, 100_000, 2, { PROVIDERS_FILE: providersFile(providers), ...extra }, undefined, {
    root,
    workerNodeArgs: profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [],
  });
  try {
    await system.run(20_000, 120_000);
    // The campaign is made before the measurement: storing its recipients is the upload's cost (bench `ingest`), not the sends'.
    const { client } = system;
    const campaign = await client.createCampaign({ provider: 'mock', recipients: Array.from({ length: n }, (_, i) => `user-${i}`) });
    const cpuBefore = system.workerPids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
    const before = await redisTotals(system.redisUrl);
    if (process.env.BENCH_COST_COMMANDS) await slowlogAll(system.redisUrl);
    const started = performance.now();
    await client.launch(campaign.id);
    await waitFor(async () => ((await client.campaign(campaign.id)).status === 'completed' ? true : undefined), { timeoutMs: 600_000, intervalMs: 50 });
    const seconds = (performance.now() - started) / 1000;
    const workerCpu = system.workerPids.reduce((sum, pid) => sum + cpuSeconds(pid), 0) - cpuBefore;
    const after = await redisTotals(system.redisUrl);
    if (process.env.BENCH_COST_COMMANDS) await printCommandStats(system.redisUrl, n);
    return {
      rate: n / seconds,
      workerUs: (workerCpu / n) * 1e6,
      redisUs: ((after.cpu - before.cpu) / n) * 1e6,
      calls: (after.calls - before.calls) / n,
      bytes: (after.bytes - before.bytes) / n,
    };
  } finally {
    await system.stop();
    await mock.close();
  }
}

/** A CPU profile's functions by self time (ms), the top `k`. */
function topSelfTime(profile: CpuProfile, k: number): Array<{ fn: string; ms: number; share: number }> {
  const self = new Map<number, number>();
  const deltas = profile.timeDeltas;
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (deltas[i] ?? 0)));
  const byFn = new Map<string, number>();
  for (const node of profile.nodes) {
    const f = node.callFrame;
    // Waiting is not cost: shares are of the time the worker was busy.
    if (IDLE_FRAMES.has(f.functionName)) continue;
    const where = f.url ? `${f.url.replace(/^.*\/(node_modules\/|src\/)/, '$1')}:${f.lineNumber + 1}` : '';
    const name = `${f.functionName || '(anonymous)'}${where ? ` ${where}` : ''}`;
    byFn.set(name, (byFn.get(name) ?? 0) + (self.get(node.id) ?? 0));
  }
  const total = [...byFn.values()].reduce((a, b) => a + b, 0);
  return [...byFn.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, k)
    .map(([fn, us]) => ({ fn, ms: us / 1000, share: us / total }));
}

/** A profile's pseudo-frames for time the process spent waiting. */
const IDLE_FRAMES = new Set(['(idle)', '(program)']);

interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }>;
  samples: number[];
  timeDeltas: number[];
}

/** An SVG flame graph of a CPU profile (total time per call path, widest at the bottom). */
function flameGraph(profile: CpuProfile): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const total = new Map<number, number>();
  const root = profile.nodes[0]!;
  const busy = (id: number): number => {
    const node = byId.get(id)!;
    if (IDLE_FRAMES.has(node.callFrame.functionName)) return 0;
    const t = (self.get(id) ?? 0) + (node.children ?? []).reduce((acc, c) => acc + busy(c), 0);
    total.set(id, t);
    return t;
  };
  const all = busy(root.id);
  const width = 1600;
  const row = 16;
  const rects: string[] = [];
  let depthMax = 0;
  const draw = (id: number, x: number, depth: number) => {
    const node = byId.get(id)!;
    if (IDLE_FRAMES.has(node.callFrame.functionName)) return;
    const w = ((total.get(id) ?? 0) / all) * width;
    if (w < 0.5) return;
    depthMax = Math.max(depthMax, depth);
    const name = node.callFrame.functionName || '(anonymous)';
    const hue = node.callFrame.url.includes('node_modules') ? 200 : node.callFrame.url.includes('/src/') ? 20 : 100;
    const label = w > 40 ? name.slice(0, Math.floor(w / 7)) : '';
    rects.push(
      `<g><title>${escapeXml(name)} ${((100 * (total.get(id) ?? 0)) / all).toFixed(1)} %</title><rect x="${x.toFixed(1)}" y="{Y${depth}}" width="${w.toFixed(1)}" height="${row - 1}" fill="hsl(${hue},70%,${60 + (depth % 3) * 6}%)"/>` +
        (label ? `<text x="${(x + 3).toFixed(1)}" y="{T${depth}}" font-size="11" font-family="monospace">${escapeXml(label)}</text>` : '') +
        '</g>',
    );
    let cx = x;
    for (const child of node.children ?? []) {
      draw(child, cx, depth + 1);
      cx += ((total.get(child) ?? 0) / all) * width;
    }
  };
  draw(root.id, 0, 0);
  const height = (depthMax + 1) * row + 20;
  const svg = rects
    .join('\n')
    .replace(/\{Y(\d+)\}/g, (_, d) => String(height - (Number(d) + 1) * row))
    .replace(/\{T(\d+)\}/g, (_, d) => String(height - Number(d) * row - 4));
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${svg}</svg>`;
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);
}

/** The flame graph as an image, drawn by headless Chromium. */
async function renderPng(svg: string, path: string): Promise<void> {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu'] });
  try {
    const page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
    await page.setContent(`<!doctype html><body style="margin:0">${svg}</body>`);
    await page.screenshot({ path, fullPage: true });
  } finally {
    await browser.close();
  }
}

/**
 * What one send costs: worker and Redis CPU, Redis calls and bytes on the
 * wire, for the sim and http providers, against a baseline checkout in the
 * same run when given (`--baseline <ref>`).
 */
async function cost(): Promise<void> {
  const n = Number(process.env.BENCH_COST_RECIPIENTS ?? 100_000);
  const ref = argValue('--baseline');
  const checkouts: Array<{ label: string; root: string }> = [];
  if (ref) {
    const base = await baselineCheckout(ref);
    checkouts.push({ label: `baseline ${ref} (${base.sha.slice(0, 7)})`, root: base.root });
  }
  checkouts.push({ label: 'this checkout', root: REPO_ROOT });
  const rows: Row[] = [];
  const measured = new Map<string, CostRow>();
  // Best of `repeat` runs, the checkouts taking turns: this machine is shared, and noise only ever adds cost.
  const repeat = Number(process.env.BENCH_COST_REPEAT ?? 2);
  for (const provider of ['sim', 'http'] as const) {
    for (let round = 0; round < repeat; round += 1) {
      for (const { label, root } of checkouts) {
        const c = await costOf(root, provider, n);
        const best = measured.get(`${provider}|${label}`);
        measured.set(
          `${provider}|${label}`,
          best
            ? {
                rate: Math.max(best.rate, c.rate),
                workerUs: Math.min(best.workerUs, c.workerUs),
                redisUs: Math.min(best.redisUs, c.redisUs),
                calls: Math.min(best.calls, c.calls),
                bytes: Math.min(best.bytes, c.bytes),
              }
            : c,
        );
      }
    }
    for (const { label } of checkouts) {
      const c = measured.get(`${provider}|${label}`)!;
      const base = ref ? measured.get(`${provider}|${checkouts[0]!.label}`) : undefined;
      rows.push({
        provider,
        checkout: label,
        'sends/s': fmt(c.rate),
        'vs baseline': base && base !== c ? (c.rate / base.rate).toFixed(2) : '–',
        'worker CPU µs/send (2 workers)': c.workerUs.toFixed(1),
        'Redis CPU µs/send': c.redisUs.toFixed(1),
        'Redis calls/send': c.calls.toFixed(2),
        'Redis bytes/send (in + out)': fmt(c.bytes),
      });
    }
  }
  table(`Cost per send: ${fmt(n)} recipients, 2 worker processes, uncapped, ledger on, ${cpus().length} cores (best of ${repeat} runs each)`, rows);
  const oneRedis = measured.get(`sim|this checkout`)!;
  console.log(
    `One Redis core at this Redis CPU per send: ~${fmt(1e6 / oneRedis.redisUs)} sends/s (1 s ÷ ${oneRedis.redisUs.toFixed(1)} µs); ` +
      `a 3-master cluster ~${fmt((3 * 1e6) / oneRedis.redisUs)} sends/s on paper (each master a core of its own, runs spread by hash tag).`,
  );
  if (process.argv.includes('--profile')) {
    const dir = join(REPO_ROOT, '.artifacts', 'profile');
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    // Three times the recipients: start-up (module loading) weighs less in the profile.
    const profiled = argValue('--profile-provider') === 'http' ? 'http' : 'sim';
    await costOf(REPO_ROOT, profiled, 3 * n, dir);
    const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
    if (files.length === 0) throw new Error('no CPU profile was written (workers must exit by SIGTERM)');
    const profile = JSON.parse(readFileSync(join(dir, files[0]!), 'utf8')) as CpuProfile;
    table(
      `Worker CPU profile (${profiled}, uncapped, ${fmt(3 * n)} recipients after a warm-up; start-up included): top 15 functions by self time, shares of busy time (${files[0]})`,
      topSelfTime(profile, 15).map((t) => ({ function: t.fn, 'self ms': t.ms.toFixed(0), share: `${(t.share * 100).toFixed(1)} %` })),
    );
    const svg = flameGraph(profile);
    writeFileSync(join(REPO_ROOT, '.artifacts', 'flame.svg'), svg);
    await renderPng(svg, join(REPO_ROOT, '.artifacts', 'flame.png'));
    console.log('flame graph: .artifacts/flame.svg, .artifacts/flame.png');
  }
}

const SECTIONS: Record<string, () => Promise<void>> = { limiter, throughput, memory, idle, ingest, scale, lifecycle, templates, events, fallback, cost };
const wanted = process.argv.slice(2).filter((a) => a in SECTIONS);
for (const name of wanted.length > 0 ? wanted : Object.keys(SECTIONS)) await SECTIONS[name]!();
