import { DEFER_REASONS } from '../../domain/respect.js';
import { AggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { Queue } from 'bullmq';
import type { AppEvents } from '../../app/events.js';
import type { MetricsBoard, ProviderState, RunState } from '../../app/ports.js';

/**
 * Prometheus metrics. Labels stay bounded: provider names, outcome kinds,
 * queue names and job states, never campaign or recipient ids (per-campaign
 * progress is in the API).
 *
 * Where they come from: each process counts what it does (sends, ledger
 * transitions, limiter waits). Worker processes push a snapshot of theirs
 * into Redis every few seconds; the API's /metrics serves its own, the
 * workers' (summed), and gauges read from Redis at scrape time (providers,
 * runs, queues). One scrape target covers the whole deployment.
 */
const BREAKER_VALUE = { closed: 0, 'half-open': 1, open: 2 } as const;

/** What a process counts about its own work. */
export function createProcessMetrics(events: AppEvents): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'pushq_process_' });
  const sends = new Counter({
    name: 'pushq_sends_total',
    help: 'Requests made to providers, by provider and outcome (sent, rate-limited, permanent, transient, in-doubt, not-sent). 429s are outcome="rate-limited".',
    labelNames: ['provider', 'outcome'],
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'pushq_send_duration_seconds',
    help: 'Time from request start to the provider answer.',
    labelNames: ['provider'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const waits = new Histogram({
    name: 'pushq_limiter_wait_seconds',
    help: 'Time a page waited for rate-limit permits before it could send.',
    labelNames: ['provider'],
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    registers: [registry],
  });
  const rests = new Counter({
    name: 'pushq_permit_rests_total',
    help: "Permits whose second of rest counted from their request's departure (plus arrivalMarginMs), from a late answer less the fastest answer time, or from the answer.",
    labelNames: ['provider', 'from'],
    registers: [registry],
  });
  const transitions = new Counter({
    name: 'pushq_ledger_transitions_total',
    help: 'Recipient state changes recorded by this process: claimed, sent, failed, retry, requeue (the provider said not now), unclaim (never left the worker), unknown, skipped, deferred.',
    labelNames: ['to'],
    registers: [registry],
  });
  const respect = new Counter({
    name: 'pushq_recipients_held_total',
    help: 'Recipients not sent now: skipped (suppressed, frequency-cap, token-invalid, render-error, expired) or deferred (quiet-hours, local-time), by reason.',
    labelNames: ['outcome', 'reason'],
    registers: [registry],
  });
  const runs = new Counter({ name: 'pushq_runs_completed_total', help: 'Runs that completed.', registers: [registry] });
  const unknown = new Counter({
    name: 'pushq_recipients_unknown_total',
    help: 'Recipients marked unknown because their worker was lost mid-send.',
    registers: [registry],
  });
  const mismatches = new Counter({
    name: 'pushq_run_counts_mismatch_total',
    help: 'Times the supervisor found the counts of a run not adding up (should stay 0).',
    registers: [registry],
  });
  const unreplicated = new Counter({
    name: 'pushq_claims_unreplicated_total',
    help: 'Recipients claimed but not sent because too few replicas acknowledged the claim in time (REDIS_WAIT_REPLICAS); they stay pending.',
    registers: [registry],
  });
  const expired = new Counter({
    name: 'pushq_leases_expired_total',
    help: 'Pages whose worker stopped renewing their lease, taken over by the supervisor (each a dead, frozen or cut-off worker).',
    registers: [registry],
  });
  const fenced = new Counter({
    name: 'pushq_leases_fenced_total',
    help: 'Pages this process lost to another worker while working on them (it was frozen or cut off longer than LEASE_MS).',
    registers: [registry],
  });
  events.on('claims:unreplicated', (e) => unreplicated.inc(e.count));
  events.on('lease:expired', (e) => expired.inc(e.pages));
  events.on('lease:fenced', () => fenced.inc());
  // Per send: the labelled series are looked up once each and kept (prom-client hashes the labels on every call otherwise).
  const sendsBy = seriesOf(sends);
  const latencyBy = seriesOf(latency);
  const transitionsBy = seriesOf(transitions);
  events.on('send:done', (e) => {
    sendsBy({ provider: e.provider, outcome: e.outcome }).inc();
    latencyBy({ provider: e.provider }).observe(e.durationMs / 1000);
  });
  events.on('limiter:waited', (e) => waits.observe({ provider: e.provider }, e.ms / 1000));
  events.on('permit:rested', (e) => rests.inc({ provider: e.provider, from: e.from }));
  events.on('ledger:transitions', (e) => transitionsBy({ to: e.to }).inc(e.count));
  events.on('recipients:held', (e) => respect.inc({ outcome: e.outcome, reason: e.reason }, e.count));
  events.on('run:completed', () => runs.inc());
  events.on('recipients:unknown', (e) => {
    if (e.count > 0) {
      unknown.inc(e.count);
      transitions.inc({ to: 'unknown' }, e.count);
    }
  });
  events.on('run:counts-mismatch', () => mismatches.inc());
  const archived = new Counter({
    name: 'pushq_runs_archived_total',
    help: 'Finished runs written to the archive and removed from Redis (RUN_RETENTION_MS), by archive kind.',
    labelNames: ['kind'],
    registers: [registry],
  });
  const archivedRows = new Counter({ name: 'pushq_archived_recipients_total', help: 'Recipient results written to the archive.', registers: [registry] });
  const archiveFailures = new Counter({
    name: 'pushq_archive_failures_total',
    help: 'Attempts to archive a run that failed (the run stays in Redis and is tried again): should stay 0.',
    registers: [registry],
  });
  const deleted = new Counter({ name: 'pushq_campaigns_deleted_total', help: 'Campaigns deleted and removed from Redis.', registers: [registry] });
  events.on('run:archived', (e) => {
    archived.inc({ kind: e.kind });
    archivedRows.inc(e.count);
  });
  events.on('archive:failed', () => archiveFailures.inc());
  events.on('campaign:deleted', () => deleted.inc());
  const webhookAttempts = new Counter({
    name: 'pushq_webhook_deliveries_total',
    help: 'Webhook delivery attempts (and dead-letter replays) by endpoint and outcome: delivered, failed (tried again later), dead (a dead letter now), gone (410: the endpoint was disabled).',
    labelNames: ['endpoint', 'outcome'],
    registers: [registry],
  });
  const webhookLost = new Counter({
    name: 'pushq_webhook_events_lost_total',
    help: 'Times an endpoint fell so far behind that the outbox bound pushed out events it was not sent (it is told with outbox.overflowed): should stay 0.',
    labelNames: ['endpoint'],
    registers: [registry],
  });
  const deadDropped = new Counter({
    name: 'pushq_webhook_dead_letters_dropped_total',
    help: 'Dead letters dropped past WEBHOOK_DEAD_LETTER_LIMIT (the oldest): should stay 0.',
    labelNames: ['endpoint'],
    registers: [registry],
  });
  events.on('webhook:attempt', (e) => webhookAttempts.inc({ endpoint: e.endpoint, outcome: e.outcome }));
  events.on('webhook:lost', (e) => webhookLost.inc({ endpoint: e.endpoint }));
  events.on('webhook:dead-letters-dropped', (e) => deadDropped.inc({ endpoint: e.endpoint }, e.count));
  return registry;
}

export interface SharedSources {
  providerStates(): Promise<ProviderState[]>;
  /** Redis memory used, and its ratio to the limit (null: no limit known). */
  memory(): Promise<{ used: number; ratio: number | null }>;
  activeRuns(): Promise<RunState[]>;
  /** Each webhook endpoint: enabled or not, and its dead letters now. */
  webhooks(): Promise<Array<{ name: string; enabled: boolean; deadLetters: number }>>;
  queues: Queue[];
}

/** Gauges read from Redis at scrape time: the same for every process that serves them. */
export function createSharedMetrics(sources: SharedSources): Registry {
  const registry = new Registry();
  const quietly = async (read: () => Promise<void>) => {
    try {
      await read();
    } catch {
      // Redis away: /readyz says so; the gauges keep their last values.
    }
  };
  const providerGauge = (name: string, help: string, value: (s: ProviderState) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['provider'],
      registers: [registry],
      async collect() {
        await quietly(async () => {
          for (const state of await sources.providerStates()) this.set({ provider: state.name }, value(state));
        });
      },
    });
  providerGauge('pushq_provider_breaker_state', 'Circuit breaker of each provider: 0 closed, 1 half-open (probing), 2 open.', (s) => BREAKER_VALUE[s.breaker]);
  providerGauge('pushq_provider_rate_ratio', 'Share of its tps each provider is paced at (below 1 after 429s, climbing back).', (s) => s.rate);
  providerGauge('pushq_provider_tps', 'Configured cap of each provider in requests per sliding second.', (s) => s.tps);
  new Gauge({
    name: 'pushq_redis_memory_ratio',
    help: 'Redis used_memory over maxmemory (or MEMORY_LIMIT_BYTES); -1 when neither is known. Above MEMORY_HIGH_WATERMARK new campaigns, uploads and launches are refused.',
    registers: [registry],
    async collect() {
      await quietly(async () => this.set((await sources.memory()).ratio ?? -1));
    },
  });
  new Gauge({
    name: 'pushq_redis_memory_used_bytes',
    help: 'Redis used_memory (the fullest master on a cluster).',
    registers: [registry],
    async collect() {
      await quietly(async () => this.set((await sources.memory()).used));
    },
  });
  new Gauge({
    name: 'pushq_runs_active',
    help: 'Runs not finished yet, by status, and how many of them raise the stuck-run alarm.',
    labelNames: ['status'],
    registers: [registry],
    async collect() {
      await quietly(async () => {
        const runs = await sources.activeRuns();
        this.reset();
        for (const status of ['running', 'paused']) this.set({ status }, runs.filter((r) => r.status === status).length);
        this.set({ status: 'stuck' }, runs.filter((r) => r.stuckSince !== null && r.status === 'running').length);
      });
    },
  });
  new Gauge({
    name: 'pushq_recipients_deferred',
    help: 'Recipients of unfinished runs waiting for their time, by reason (quiet-hours, local-time).',
    labelNames: ['reason'],
    registers: [registry],
    async collect() {
      await quietly(async () => {
        const runs = await sources.activeRuns();
        this.reset();
        for (const reason of DEFER_REASONS)
          this.set(
            { reason },
            runs.reduce((sum, r) => sum + (r.deferredBy[reason] ?? 0), 0),
          );
      });
    },
  });
  new Gauge({
    name: 'pushq_paced_runs',
    help: 'Runs sending under a pace of their own (pace), and the sum of their paces in recipients a second (tps).',
    labelNames: ['measure'],
    registers: [registry],
    async collect() {
      await quietly(async () => {
        const paced = (await sources.activeRuns()).filter((r) => r.status === 'running' && r.pace !== null);
        this.set({ measure: 'runs' }, paced.length);
        this.set(
          { measure: 'tps' },
          paced.reduce((sum, r) => sum + r.pace!, 0),
        );
      });
    },
  });
  const webhookGauge = (name: string, help: string, value: (w: { enabled: boolean; deadLetters: number }) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['endpoint'],
      registers: [registry],
      async collect() {
        await quietly(async () => {
          const endpoints = await sources.webhooks();
          this.reset();
          for (const w of endpoints) this.set({ endpoint: w.name }, value(w));
        });
      },
    });
  webhookGauge(
    'pushq_webhook_dead_letters',
    'Dead letters of each webhook endpoint (deliveries that exhausted their attempts), to replay.',
    (w) => w.deadLetters,
  );
  webhookGauge('pushq_webhook_enabled', 'Each webhook endpoint: 1 enabled, 0 disabled (it answered 410, or an operator disabled it).', (w) =>
    w.enabled ? 1 : 0,
  );
  new Gauge({
    name: 'pushq_queue_jobs',
    help: 'BullMQ jobs by queue and state (send jobs are pages of recipients).',
    labelNames: ['queue', 'state'],
    registers: [registry],
    async collect() {
      await quietly(async () => {
        for (const queue of sources.queues) {
          const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'failed', 'completed');
          for (const [state, n] of Object.entries(counts)) this.set({ queue: queue.name, state }, n);
        }
      });
    },
  });
  return registry;
}

const SNAPSHOT_TTL_MS = 30_000;

/** A worker process publishes its metrics for the API to serve (and to count it as alive). */
export class MetricsPusher {
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly board: MetricsBoard,
    private readonly registry: Registry,
    private readonly instance: string,
    private readonly intervalMs = 5000,
  ) {}

  start(): void {
    const push = () => void this.push().catch(() => undefined);
    push();
    this.timer = setInterval(push, this.intervalMs);
    this.timer.unref();
  }

  async push(): Promise<void> {
    await this.board.publish(this.instance, JSON.stringify(await this.registry.getMetricsAsJSON()), SNAPSHOT_TTL_MS);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.push().catch(() => undefined);
  }
}

/** Worker instances that published a snapshot in the last half minute. */
export function recentWorkers(board: MetricsBoard): Promise<string[]> {
  return board.recent(SNAPSHOT_TTL_MS);
}

/** This process's metrics, the workers' (summed across them), and the shared gauges, as Prometheus text. */
export async function renderMetrics(own: Registry, shared: Registry, board: MetricsBoard, self: string): Promise<{ contentType: string; text: string }> {
  // This process's own snapshot is in `own` already (a process that is API and worker at once).
  const instances = (await recentWorkers(board).catch(() => [])).filter((i) => i !== self);
  const snapshots = instances.length > 0 ? await board.snapshots(instances).catch(() => []) : [];
  const workers = snapshots.filter((s): s is string => s !== null).map((s) => JSON.parse(s) as Array<MetricObjectWithValues<MetricValue<string>>>);
  const merged = AggregatorRegistry.aggregate([await own.getMetricsAsJSON(), ...workers]);
  const text = `${await merged.metrics()}\n${await shared.metrics()}`;
  return { contentType: own.contentType, text };
}

/** A metric's labelled series, each made once and kept, by its label values. */
function seriesOf<T extends string, S>(metric: { labels(labels: Partial<Record<T, string | number>>): S }): (labels: Record<T, string>) => S {
  const made = new Map<string, S>();
  return (labels) => {
    const key = Object.values(labels).join('\0');
    let series = made.get(key);
    if (!series) made.set(key, (series = metric.labels(labels)));
    return series;
  };
}
