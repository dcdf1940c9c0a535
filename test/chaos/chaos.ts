import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { providersFile, TEST_TOKEN } from '../helpers/fixtures.js';
import { spawnPushq, type PushqProcess } from '../helpers/processes.js';
import { startRedisCluster, type RedisCluster } from '../helpers/redis-cluster.js';
import { freePort, startOwnRedis, type OwnRedis } from '../helpers/redis-server.js';
import { uniquePrefix } from '../helpers/redis.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { check, countsProblem, type RunOutcome, type Verdict } from './checker.js';
import { startChaosProvider } from './provider.js';
import { planChaos, type Action, type CampaignPlan, type Fault, type FaultKind } from './schedule.js';

/**
 * `npm run chaos`: pushq as real processes (an API and three workers, default
 * settings) on a Redis of its own (AOF, fsync always) behind a TCP proxy,
 * sending several campaigns at once to two loopback providers with different
 * caps, while a seeded nemesis kills, freezes, cuts and slows everything in
 * turn and operators pause, resume, cancel, retry and reschedule. Then the
 * faults stop, every run must become final, and the checker judges.
 */
export interface ChaosOptions {
  seed: number;
  minutes: number;
  topology: 'standalone' | 'cluster';
  /** Longest every run may take to become final once the faults stop. */
  settleMs?: number;
  log?: (line: string) => void;
}

export interface FaultRow {
  kind: FaultKind;
  injected: number;
  survived: number;
  inDoubt: number;
}

export interface ChaosResult {
  seed: number;
  topology: string;
  minutes: number;
  verdict: Verdict;
  faults: FaultRow[];
  campaigns: number;
  sends: number;
}

const PROVIDERS = {
  strict: { tps: 200, timeoutMs: 1000, dedupe: false },
  idem: { tps: 120, timeoutMs: 1000, dedupe: true },
} as const;
const WORKERS = 3;

interface Live {
  api: PushqProcess | null;
  workers: PushqProcess[];
}

export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const log = options.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const durationMs = Math.round(options.minutes * 60_000);
  const plan = planChaos(options.seed, durationMs, options.topology);
  const cleanups: Array<() => Promise<unknown>> = [];
  const providers = {
    strict: await startChaosProvider('strict', { dedupe: PROVIDERS.strict.dedupe, holdMs: 1500 }),
    idem: await startChaosProvider('idem', { dedupe: PROVIDERS.idem.dedupe, holdMs: 1500 }),
  };
  cleanups.push(
    () => providers.strict.close(),
    () => providers.idem.close(),
  );
  const prefix = uniquePrefix('chaos');
  let own: OwnRedis | null = null;
  let proxy: TcpProxy | null = null;
  let cluster: RedisCluster | null = null;
  const live: Live = { api: null, workers: [] };
  const rows = new Map<FaultKind, FaultRow>();
  const row = (kind: FaultKind) => rows.get(kind) ?? rows.set(kind, { kind, injected: 0, survived: 0, inDoubt: 0 }).get(kind)!;
  const sampled: string[] = [];
  try {
    const apiPort = await freePort();
    const apiUrl = `http://127.0.0.1:${apiPort}`;
    if (options.topology === 'cluster') {
      cluster = await startRedisCluster({ masters: 3, replicasPerMaster: 1, appendfsync: 'always' });
      cleanups.push(() => cluster!.stop());
    } else {
      own = await startOwnRedis({ args: ['--appendonly', 'yes', '--appendfsync', 'always'] });
      cleanups.push(() => own!.kill());
      proxy = await startTcpProxy({ port: own.port });
      cleanups.push(() => proxy!.close());
    }
    const env: Record<string, string> = {
      QUEUE_PREFIX: prefix,
      ADMIN_TOKEN: TEST_TOKEN,
      LOG_LEVEL: 'info',
      // The plan reschedules crons every few seconds, below the 60 s a production schedule is held to.
      MIN_SCHEDULE_INTERVAL_MS: '1000',
      PROVIDERS_FILE: providersFile([
        {
          name: 'strict',
          type: 'http',
          url: providers.strict.url,
          tps: PROVIDERS.strict.tps,
          timeoutMs: PROVIDERS.strict.timeoutMs,
          retryTimeouts: false,
          inDoubt: 'report',
          maxAttempts: 4,
          retryBaseMs: 100,
          retryMaxMs: 1000,
        },
        {
          name: 'idem',
          type: 'http',
          url: providers.idem.url,
          tps: PROVIDERS.idem.tps,
          timeoutMs: PROVIDERS.idem.timeoutMs,
          inDoubt: 'resend',
          maxAttempts: 6,
          retryBaseMs: 100,
          retryMaxMs: 1000,
        },
      ]),
      ...(cluster ? { REDIS_URL: cluster.url, SEND_SHARDS: '6', REDIS_WAIT_REPLICAS: '1' } : {}),
    };
    const apiEnv = { ...env, ...(own ? { REDIS_URL: own.url } : {}), PORT: String(apiPort) };
    const workerEnv = { ...env, ...(proxy ? { REDIS_URL: proxy.url } : {}) };

    /** Starts a process, again and again while Redis is away, until it is up. */
    const startUntilUp = async (start: () => PushqProcess, ready: RegExp): Promise<PushqProcess> => {
      for (let attempt = 0; ; attempt += 1) {
        const p = start();
        try {
          await p.waitForOutput(ready, 30_000);
          return p;
        } catch (err) {
          await p.kill('SIGKILL');
          if (attempt >= 20) throw err;
          await sleep(500);
        }
      }
    };
    const startApi = async () => {
      live.api = await startUntilUp(() => spawnPushq('api', apiEnv), /"msg":"API listening"/);
    };
    const startWorker = async () => {
      const worker = await startUntilUp(() => spawnPushq('worker', workerEnv), /"msg":"worker started"/);
      live.workers.push(worker);
      return worker;
    };
    cleanups.push(async () => {
      await Promise.all([live.api, ...live.workers].filter((p): p is PushqProcess => p !== null).map((p) => p.kill('SIGKILL')));
    });
    await startApi();
    await Promise.all(Array.from({ length: WORKERS }, () => startWorker()));

    const api = apiClient(apiUrl);
    const ids: Array<string | null> = plan.campaigns.map(() => null);
    const retryOf = new Map<string, string[]>();
    const failedAtRetry = new Map<string, string[]>();
    const create = async (index: number) => {
      ids[index] = await createCampaign(api, plan.campaigns[index]!, index);
    };
    const initial = new Set(plan.campaigns.map((_, i) => i));
    for (const a of plan.actions) if (a.kind === 'create') initial.delete(a.campaign);
    for (const index of initial) await create(index);
    log(
      `chaos: seed ${plan.seed}, ${options.topology}, ${options.minutes} min, ${plan.faults.length} faults, ${plan.campaigns.length} campaigns (${initial.size} at once)`,
    );

    // Sampling: the counts of every campaign's latest run add up at every instant.
    const t0 = performance.now();
    let stopSampling = false;
    const sampler = (async () => {
      while (!stopSampling) {
        for (const id of ids) {
          if (!id) continue;
          const res = await api.tryRequest('GET', `/api/campaigns/${id}`);
          if (res?.status !== 200) continue;
          const problem = countsProblem(res.body.counts);
          if (problem) sampled.push(`${id}: at ${Math.round(performance.now() - t0)} ms: ${problem}`);
        }
        await sleep(500);
      }
    })();

    // The nemesis and the operators, each on its own schedule.
    const recoveries: Array<Promise<void>> = [];
    const injections = (async () => {
      for (const fault of plan.faults) {
        await sleepUntil(t0 + fault.at);
        row(fault.kind).injected += 1;
        recoveries.push(
          inject(fault).then(
            () => {
              row(fault.kind).survived += 1;
            },
            (err) => log(`chaos: recovering from ${fault.kind} failed: ${(err as Error).message.split('\n')[0]}`),
          ),
        );
      }
    })();
    const operators = (async () => {
      for (const action of plan.actions) {
        await sleepUntil(t0 + action.at);
        await act(action).catch((err) => log(`chaos: ${action.kind} of campaign ${action.campaign} failed: ${(err as Error).message}`));
      }
    })();

    async function inject(fault: Fault): Promise<void> {
      const pickWorker = () => live.workers[fault.target % Math.max(1, live.workers.length)];
      switch (fault.kind) {
        case 'worker-kill': {
          const victim = pickWorker();
          if (!victim) return;
          live.workers.splice(live.workers.indexOf(victim), 1);
          await victim.kill('SIGKILL');
          await sleep(fault.durationMs);
          await startWorker();
          return;
        }
        case 'worker-freeze': {
          const victim = pickWorker();
          if (!victim?.alive) return;
          victim.proc.kill('SIGSTOP');
          await sleep(fault.durationMs);
          victim.proc.kill('SIGCONT');
          return;
        }
        case 'api-kill': {
          const victim = live.api;
          // Another kill's restart is under way: starting one more would leave one API orphaned, holding the port
          // (found by seed 1926029222 under CPU load, where two kills 3 s apart overlapped a slow start).
          if (!victim) return;
          live.api = null;
          await victim.kill('SIGKILL');
          await sleep(fault.durationMs);
          await startApi();
          return;
        }
        case 'api-freeze': {
          const victim = live.api;
          if (!victim?.alive) return;
          victim.proc.kill('SIGSTOP');
          await sleep(fault.durationMs);
          victim.proc.kill('SIGCONT');
          return;
        }
        case 'redis-kill': {
          if (!own) return;
          await own.kill('SIGKILL');
          await sleep(fault.durationMs);
          await own.start();
          return;
        }
        case 'net-cut':
          proxy?.cut();
          return;
        case 'net-stall':
          proxy?.stall();
          await sleep(fault.durationMs);
          proxy?.resume();
          return;
        case 'net-delay':
          if (proxy) proxy.latencyMs = fault.amount;
          await sleep(fault.durationMs);
          if (proxy) proxy.latencyMs = 0;
          return;
        case 'net-lost-reply':
          proxy?.dropNextReplies(fault.amount);
          return;
        case 'provider-5xx':
        case 'provider-429':
        case 'provider-timeout':
        case 'provider-reset': {
          const provider = fault.target % 2 === 0 ? providers.strict : providers.idem;
          provider.misbehave(fault.kind.slice('provider-'.length) as '5xx' | '429' | 'timeout' | 'reset', fault.durationMs);
          await sleep(fault.durationMs);
          return;
        }
        case 'failover': {
          if (!cluster) return;
          const masters = await cluster.masters();
          const victim = masters[fault.target % masters.length]!;
          await cluster.kill(victim.port);
          await sleep(fault.durationMs);
          await cluster.restart(victim.port);
          return;
        }
      }
    }

    async function act(action: Action): Promise<void> {
      const id = ids[action.campaign];
      if (action.kind === 'create') return create(action.campaign);
      if (!id) return;
      switch (action.kind) {
        case 'pause':
        case 'resume':
        case 'cancel':
          await api.request('POST', `/api/campaigns/${id}/${action.kind}`);
          return;
        case 'reschedule':
          await api.request('POST', `/api/campaigns/${id}/schedule`, { cron: '*/30 * * * * *', timezone: 'UTC' });
          return;
        case 'retry-failed': {
          // Once the run to retry has completed (it may still be sending under the faults).
          const deadline = t0 + durationMs;
          for (;;) {
            const campaign = (await api.request('GET', `/api/campaigns/${id}`)).body;
            if (campaign.status === 'completed') {
              const failed = await failedRecipients(api, id);
              const res = await api.request('POST', `/api/campaigns/${id}/retry-failed`);
              if (res.status === 200) {
                failedAtRetry.set(`${id}|${campaign.latestRun.id}`, failed);
                retryOf.set(`${id}|${res.body.latestRun.id}`, failed);
                log(`chaos: retry-failed of ${failed.length} recipients (run ${res.body.latestRun.id})`);
              }
              return;
            }
            if (performance.now() > deadline) return;
            await sleep(2000);
          }
        }
      }
    }

    await Promise.all([injections, operators]);
    await sleepUntil(t0 + durationMs);
    log('chaos: faults stop; waiting for every run to become final');
    await Promise.all(recoveries);
    proxy?.resume();
    if (proxy) proxy.latencyMs = 0;
    providers.strict.behave();
    providers.idem.behave();
    if (
      own &&
      !(await own.onlineReplicas().then(
        () => true,
        () => false,
      ))
    )
      await own.start();
    if (!live.api?.alive) await startApi();
    for (const w of live.workers) if (w.alive) w.proc.kill('SIGCONT');
    while (live.workers.filter((w) => w.alive).length < WORKERS) await startWorker();

    // What is deliberately stopped is set going or ended: paused campaigns resume, the cron campaign is cancelled.
    for (const [index, id] of ids.entries()) {
      if (!id) continue;
      const campaign = (await api.request('GET', `/api/campaigns/${id}`)).body;
      if (campaign.status === 'paused') await api.request('POST', `/api/campaigns/${id}/resume`);
      if (plan.campaigns[index]!.cronSeconds) await api.request('POST', `/api/campaigns/${id}/cancel`);
    }
    const settleBy = performance.now() + (options.settleMs ?? 120_000);
    const runs: RunOutcome[] = [];
    for (const id of ids) {
      if (!id) continue;
      for (;;) {
        const listed = (await api.request('GET', `/api/campaigns/${id}/runs?limit=100`)).body.items as Array<{
          id: string;
          status: string;
          counts: RunOutcome['counts'];
        }>;
        const open = listed.filter((r) => (r.status !== 'completed' && r.status !== 'cancelled') || r.counts.pending > 0);
        if (open.length === 0 || performance.now() > settleBy) {
          const latest = listed[0];
          const failedNow = latest ? await failedRecipients(api, id) : [];
          for (const r of listed) {
            const key = `${id}|${r.id}`;
            runs.push({
              campaignId: id,
              runId: r.id,
              status: r.status,
              counts: r.counts,
              ...(r.id === latest?.id ? { failed: failedNow } : failedAtRetry.has(key) ? { failed: failedAtRetry.get(key)! } : {}),
              ...(retryOf.has(key) ? { retryOf: retryOf.get(key)! } : {}),
            });
          }
          break;
        }
        await sleep(500);
      }
    }
    stopSampling = true;
    await sampler;

    // Recipients in doubt, by the fault that was going on (or had just ended) when they became unknown.
    for (const id of ids) {
      if (!id) continue;
      for (const item of await failures(api, id)) {
        if (item.state !== 'unknown' || !item.at) continue;
        const at = Date.parse(item.at) - (Date.now() - (performance.now() - t0));
        const cause = [...plan.faults].reverse().find((f) => f.at <= at + 500 && at <= f.at + f.durationMs + 5000);
        if (cause) row(cause.kind).inDoubt += 1;
      }
    }

    const verdict = check(
      [
        { name: 'strict', tps: PROVIDERS.strict.tps, arrivals: providers.strict.arrivals },
        { name: 'idem', tps: PROVIDERS.idem.tps, arrivals: providers.idem.arrivals },
      ],
      runs,
      sampled,
    );
    return {
      seed: plan.seed,
      topology: options.topology,
      minutes: options.minutes,
      verdict,
      faults: [...rows.values()].sort((a, b) => a.kind.localeCompare(b.kind)),
      campaigns: ids.filter(Boolean).length,
      sends: providers.strict.arrivals.length + providers.idem.arrivals.length,
    };
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  }
}

async function sleepUntil(at: number): Promise<void> {
  const ms = at - performance.now();
  if (ms > 0) await sleep(ms);
}

interface Answer {
  status: number;
  body: any;
}

/** The API as an operator's script sees it through the faults: calls are retried while the API is away or answers 503. */
function apiClient(baseUrl: string) {
  const once = async (method: string, path: string, body?: unknown): Promise<Answer> => {
    const res = await fetch(`${baseUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${TEST_TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
  return {
    async tryRequest(method: string, path: string): Promise<Answer | null> {
      return once(method, path).catch(() => null);
    },
    async request(method: string, path: string, body?: unknown): Promise<Answer> {
      const deadline = performance.now() + 120_000;
      for (;;) {
        const res = await once(method, path, body).catch(() => null);
        if (res && res.status < 500) return res;
        if (performance.now() > deadline) throw new Error(`${method} ${path}: no answer (${res?.status ?? 'unreachable'})`);
        await sleep(300);
      }
    },
  };
}

type Api = ReturnType<typeof apiClient>;

async function createCampaign(api: Api, plan: CampaignPlan, index: number): Promise<string> {
  const recipients = Array.from({ length: plan.size }, (_, i) =>
    plan.badEvery > 0 && i % plan.badEvery === plan.badEvery - 1 ? `bad-c${index}-${i}` : `c${index}-${i}`,
  );
  const created = await api.request('POST', '/api/campaigns', {
    name: `chaos ${index}`,
    provider: plan.provider,
    priority: plan.priority,
    message: { title: 't', body: 'b' },
    recipients,
  });
  if (created.status !== 201) throw new Error(`create: ${created.status} ${JSON.stringify(created.body)}`);
  const id = created.body.id as string;
  const started = plan.cronSeconds
    ? await api.request('POST', `/api/campaigns/${id}/schedule`, { cron: `*/${plan.cronSeconds} * * * * *`, timezone: 'UTC' })
    : await api.request('POST', `/api/campaigns/${id}/launch`);
  if (started.status !== 200) throw new Error(`start: ${started.status} ${JSON.stringify(started.body)}`);
  return id;
}

async function failures(api: Api, id: string): Promise<Array<{ recipientId: string; state: string; at: string | null }>> {
  const items = [];
  let cursor: string | null = null;
  do {
    const page: Answer = await api.request('GET', `/api/campaigns/${id}/failures?limit=100${cursor ? `&cursor=${cursor}` : ''}`);
    if (page.status !== 200) throw new Error(`failures of ${id}: ${page.status} ${JSON.stringify(page.body)}`);
    items.push(...page.body.items);
    cursor = page.body.nextCursor;
  } while (cursor);
  return items;
}

async function failedRecipients(api: Api, id: string): Promise<string[]> {
  return (await failures(api, id)).filter((f) => f.state === 'failed').map((f) => f.recipientId);
}

export function faultTable(result: ChaosResult): string {
  const lines = ['| fault | injected | survived | recipients in doubt |', '| --- | --- | --- | --- |'];
  for (const r of result.faults) lines.push(`| ${r.kind} | ${r.injected} | ${r.survived} | ${r.inDoubt} |`);
  return lines.join('\n');
}
