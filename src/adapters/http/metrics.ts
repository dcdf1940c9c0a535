import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AppEvents } from '../../app/events.js';
import type { ProviderState, RunState } from '../../app/ports.js';

/**
 * Prometheus metrics of this process. Labels stay bounded: provider names and
 * outcome kinds, never campaign or recipient ids (per-campaign progress is in
 * the API).
 */
const BREAKER_VALUE = { closed: 0, 'half-open': 1, open: 2 } as const;

/**
 * The sources read state every process shares (Redis), so an API process
 * reports breakers, pace and stuck runs even though it sends nothing itself.
 */
export function createMetrics(
  events: AppEvents,
  sources: { providerStates?: () => Promise<ProviderState[]>; activeRuns?: () => Promise<RunState[]> } = {},
): Registry {
  const { providerStates, activeRuns } = sources;
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'pushq_process_' });
  const sends = new Counter({
    name: 'pushq_sends_total',
    help: 'Requests made to providers, by provider and outcome (sent, rate-limited, permanent, transient, not-sent).',
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
  const runs = new Counter({ name: 'pushq_runs_completed_total', help: 'Runs that completed.', registers: [registry] });
  const unknown = new Counter({
    name: 'pushq_recipients_unknown_total',
    help: 'Recipients marked unknown because their worker was lost mid-send.',
    registers: [registry],
  });
  if (providerStates) {
    const read = async (set: (state: ProviderState) => void) => {
      try {
        for (const state of await providerStates()) set(state);
      } catch {
        // Redis away: the gauges keep their last values; /readyz says why.
      }
    };
    new Gauge({
      name: 'pushq_provider_breaker_state',
      help: 'Circuit breaker of each provider: 0 closed, 1 half-open (probing), 2 open.',
      labelNames: ['provider'],
      registers: [registry],
      async collect() {
        await read((s) => this.set({ provider: s.name }, BREAKER_VALUE[s.breaker]));
      },
    });
    new Gauge({
      name: 'pushq_provider_rate_ratio',
      help: 'Share of its tps each provider is paced at (below 1 after 429s, climbing back).',
      labelNames: ['provider'],
      registers: [registry],
      async collect() {
        await read((s) => this.set({ provider: s.name }, s.rate));
      },
    });
    new Gauge({
      name: 'pushq_provider_tps',
      help: 'Configured cap of each provider in requests per sliding second.',
      labelNames: ['provider'],
      registers: [registry],
      async collect() {
        await read((s) => this.set({ provider: s.name }, s.tps));
      },
    });
  }
  if (activeRuns) {
    new Gauge({
      name: 'pushq_runs_active',
      help: 'Runs not finished yet, by status, and how many of them raise the stuck-run alarm.',
      labelNames: ['status'],
      registers: [registry],
      async collect() {
        try {
          const runs = await activeRuns();
          this.reset();
          for (const status of ['running', 'paused']) this.set({ status }, runs.filter((r) => r.status === status).length);
          this.set({ status: 'stuck' }, runs.filter((r) => r.stuckSince !== null && r.status === 'running').length);
        } catch {
          // Redis away: /readyz says so.
        }
      },
    });
  }
  const mismatches = new Counter({
    name: 'pushq_run_counts_mismatch_total',
    help: 'Times the supervisor found the counts of a run not adding up (should stay 0).',
    registers: [registry],
  });
  events.on('run:counts-mismatch', () => mismatches.inc());
  events.on('send:done', (e) => {
    sends.inc({ provider: e.provider, outcome: e.outcome });
    latency.observe({ provider: e.provider }, e.durationMs / 1000);
  });
  events.on('run:completed', () => runs.inc());
  events.on('recipients:unknown', (e) => unknown.inc(e.count));
  return registry;
}
