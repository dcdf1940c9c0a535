import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';
import type { AppEvents } from '../../app/events.js';

/**
 * Prometheus metrics of this process. Labels stay bounded: provider names and
 * outcome kinds, never campaign or recipient ids (per-campaign progress is in
 * the API).
 */
export function createMetrics(events: AppEvents): Registry {
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
  events.on('send:done', (e) => {
    sends.inc({ provider: e.provider, outcome: e.outcome });
    latency.observe({ provider: e.provider }, e.durationMs / 1000);
  });
  events.on('run:completed', () => runs.inc());
  events.on('recipients:unknown', (e) => unknown.inc(e.count));
  return registry;
}
