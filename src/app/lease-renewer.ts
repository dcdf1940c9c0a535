import { performance } from 'node:perf_hooks';
import { describeError } from '../domain/send-outcome.js';
import type { HeldLease, Ledger, Logger, PageRef } from './ports.js';

/** Why a page this process works on must stop: its lease went to another worker (or may have), or its run stopped. */
export type LeaseHalt = { kind: 'fenced' } | { kind: 'inactive'; status: string };

/** A page lease this process holds, as the renewer keeps it. */
export class HeldPage implements HeldLease {
  /** Set once the renewer learns the page must stop. */
  halt: LeaseHalt | null = null;
  /** performance.now() until which the lease is surely still this process's (its last renewal's send time + the lease). */
  validUntil: number;

  constructor(
    readonly ref: PageRef,
    readonly token: string,
    private readonly leaseMs: number,
    acquiredAt: number,
  ) {
    this.validUntil = acquiredAt + leaseMs;
  }

  /** When it was last renewed (by the renewer, or by a claim or confirm: they renew the lease too). */
  get touchedAt(): number {
    return this.validUntil - this.leaseMs;
  }

  /** A ledger call that renews the lease went out at `sentAt` and was answered as the holder's. */
  renewed(sentAt: number): void {
    this.validUntil = Math.max(this.validUntil, sentAt + this.leaseMs);
  }

  /** True while nothing says the lease may be lost; a request must not start on a page for which this is false. */
  get live(): boolean {
    return this.halt === null && performance.now() < this.validUntil;
  }
}

export interface LeaseRenewerOptions {
  leaseMs: number;
  /** How often held leases are renewed. */
  intervalMs: number;
}

/**
 * Keeps every page lease this process holds alive: one timer, one batched
 * ledger call per tick (BullMQ's lock manager does the same for job locks),
 * on the connection that claims and confirms share but never behind a WAIT.
 * A lease renewed by a claim or confirm within the last half interval is
 * skipped. When a renewal finds a lease taken over, or its run no longer
 * running, the page learns it (`HeldPage.halt`) and stops at its next step.
 */
export class LeaseRenewer {
  private readonly held = new Set<HeldPage>();
  private timer: NodeJS.Timeout | null = null;
  private renewing = false;
  private lastWarned = 0;

  constructor(
    private readonly deps: { ledger: Pick<Ledger, 'renewLeases'>; log: Logger },
    private readonly options: LeaseRenewerOptions,
  ) {}

  hold(ref: PageRef, token: string, acquiredAt: number): HeldPage {
    const page = new HeldPage(ref, token, this.options.leaseMs, acquiredAt);
    this.held.add(page);
    this.timer ??= setInterval(() => void this.tick(), this.options.intervalMs);
    return page;
  }

  drop(page: HeldPage): void {
    this.held.delete(page);
    if (this.held.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  /** One renewal round (the timer's; exposed for tests). */
  async tick(): Promise<void> {
    if (this.renewing) return;
    const sentAt = performance.now();
    const due = [...this.held].filter((page) => page.halt === null && sentAt - page.touchedAt >= this.options.intervalMs / 2);
    if (due.length === 0) return;
    this.renewing = true;
    try {
      const results = await this.deps.ledger.renewLeases(due, this.options.leaseMs);
      due.forEach((page, i) => {
        const result = results[i]!;
        if (result.kind === 'fenced') page.halt ??= { kind: 'fenced' };
        else {
          page.renewed(sentAt);
          if (result.kind === 'inactive') page.halt ??= { kind: 'inactive', status: result.status };
        }
      });
    } catch (err) {
      // The next tick tries again; a page whose lease may have run out meanwhile sends nothing more (HeldPage.live).
      if (sentAt - this.lastWarned > 5000) {
        this.lastWarned = sentAt;
        this.deps.log.warn({ err: describeError(err), leases: due.length }, 'page lease renewal failed');
      }
    } finally {
      this.renewing = false;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
