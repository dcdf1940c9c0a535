import { EventEmitter } from 'node:events';
import type { SendOutcomeKind } from '../domain/send-outcome.js';
import type { RecordOutcome } from '../domain/send-rules.js';
import type { RestBasis } from './ports.js';

/**
 * What the use cases report as they work. Metrics, logs and tests subscribe
 * here instead of reaching into the code that does the work.
 */
export interface AppEventMap {
  'send:done': { provider: string; outcome: SendOutcomeKind; code?: string; durationMs: number };
  'limiter:waited': { provider: string; ms: number };
  /** What a permit's second of rest counted from (permit-limiter.ts restFrom). */
  'permit:rested': { provider: string; from: RestBasis };
  'ledger:transitions': { to: 'claimed' | RecordOutcome | 'skipped' | 'deferred'; count: number };
  /** Recipients the gate kept from being sent now, by why (names of domain/respect.ts REASONS). */
  'recipients:held': { outcome: 'skipped' | 'deferred'; reason: string; count: number };
  /** Claims too few replicas acknowledged in time (REDIS_WAIT_REPLICAS): their recipients went back to pending, unsent. */
  'claims:unreplicated': { count: number };
  'page:released': { campaignId: string; runId: string; page: number; pending: number };
  'run:started': { campaignId: string; runId: string; total: number };
  'run:completed': { campaignId: string; runId: string };
  'run:counts-mismatch': { campaignId: string; runId: string };
  'lease:fenced': { campaignId: string; runId: string; page: number };
  /** Pages whose worker stopped renewing their leases, settled and handed to other workers (the supervisor). */
  'lease:expired': { campaignId: string; runId: string; pages: number };
  'recipients:unknown': { campaignId: string; runId: string; page: number; count: number };
  /** A finished run's results went to the archive and left Redis (the janitor). */
  'run:archived': { campaignId: string; runId: string; kind: string; count: number; ms: number };
  'archive:failed': { campaignId: string; runId: string };
  'campaign:deleted': { campaignId: string; purgedRuns: number };
  /** One webhook delivery attempt (or a dead letter's replay): delivered, failed (retried later), dead (a dead letter now), gone (410: the endpoint is disabled). */
  'webhook:attempt': { endpoint: string; outcome: 'delivered' | 'failed' | 'dead' | 'gone'; events: number };
  /** The outbox's bound pushed out events an endpoint was not sent (it is told: outbox.overflowed). */
  'webhook:lost': { endpoint: string; campaignId: string };
  /** Dead letters past WEBHOOK_DEAD_LETTER_LIMIT, dropped. */
  'webhook:dead-letters-dropped': { endpoint: string; count: number };
  'worker:start': { instance: string };
  'worker:stop': { instance: string };
  /** Graceful shutdown: no new work taken (`begin`), in-flight work finished and recorded (`done`). */
  'shutdown:begin': { instance: string };
  'shutdown:done': { instance: string };
}

/**
 * A typed event map. A listener that throws is reported (to `onListenerError`)
 * and never reaches the code that emitted: a broken metric cannot break a send.
 */
export class AppEvents {
  private readonly emitter = new EventEmitter();

  constructor(
    private readonly onListenerError: (event: string, err: unknown) => void = (event, err) => process.emitWarning(`listener of ${event} threw: ${String(err)}`),
  ) {
    this.emitter.setMaxListeners(100);
  }

  emit<K extends keyof AppEventMap>(event: K, payload: AppEventMap[K]): void {
    for (const listener of this.emitter.listeners(event)) {
      try {
        (listener as (payload: AppEventMap[K]) => void)(payload);
      } catch (err) {
        try {
          this.onListenerError(event, err);
        } catch {
          // Nothing left to tell.
        }
      }
    }
  }

  on<K extends keyof AppEventMap>(event: K, listener: (payload: AppEventMap[K]) => void): () => void {
    this.emitter.on(event, listener);
    return () => this.emitter.off(event, listener);
  }
}
