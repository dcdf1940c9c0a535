import { EventEmitter } from 'node:events';
import type { SendOutcomeKind } from '../domain/send-outcome.js';

/**
 * What the use cases report as they work. Metrics, logs and tests subscribe
 * here instead of reaching into the code that does the work.
 */
export interface AppEventMap {
  'send:done': { provider: string; outcome: SendOutcomeKind; code?: string; durationMs: number };
  'limiter:waited': { provider: string; ms: number };
  'ledger:transitions': { to: 'claimed' | 'sent' | 'failed' | 'retry' | 'requeued' | 'unknown' | 'skipped' | 'deferred'; count: number };
  /** Recipients the gate kept from being sent now, by why (names of domain/respect.ts REASONS). */
  'recipients:held': { outcome: 'skipped' | 'deferred'; reason: string; count: number };
  'page:released': { campaignId: string; runId: string; page: number; pending: number };
  'run:started': { campaignId: string; runId: string; total: number };
  'run:completed': { campaignId: string; runId: string };
  'run:counts-mismatch': { campaignId: string; runId: string };
  'lease:fenced': { campaignId: string; runId: string; page: number };
  'recipients:unknown': { campaignId: string; runId: string; page: number; count: number };
}

export class AppEvents {
  private readonly emitter = new EventEmitter();

  constructor() {
    this.emitter.setMaxListeners(100);
  }

  emit<K extends keyof AppEventMap>(event: K, payload: AppEventMap[K]): void {
    this.emitter.emit(event, payload);
  }

  on<K extends keyof AppEventMap>(event: K, listener: (payload: AppEventMap[K]) => void): () => void {
    this.emitter.on(event, listener);
    return () => this.emitter.off(event, listener);
  }
}

/** The slice of a pino logger the use cases rely on. */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
}
