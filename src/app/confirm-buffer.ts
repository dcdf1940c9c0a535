import { setTimeout as sleep } from 'node:timers/promises';
import type { ConfirmEntry, ConfirmPolicy, Ledger } from './ports.js';
import type { HeldPage } from './lease-renewer.js';

export interface ConfirmBufferOptions {
  leaseMs: number;
  /** Most outcomes recorded by one ledger call. */
  confirmBatch: number;
  /** Longest an outcome waits to be recorded with others. */
  confirmDelayMs: number;
}

/**
 * Outcomes of one page, recorded a batch at a time. Every batch is checked
 * against the page lease, so a worker that lost its page records nothing; a
 * batch that lands renews the lease. A batch Redis refuses (out of memory, a
 * failover) is tried once more before the page gives up: what is not
 * recorded is settled by the in-doubt policy once the lease is gone.
 */
export class ConfirmBuffer {
  private entries: ConfirmEntry[] = [];
  private timer: NodeJS.Timeout | null = null;
  private chain: Promise<void> = Promise.resolve();
  fenced = false;
  runCompleted = false;
  failure: unknown = null;

  constructor(
    private readonly ledger: Pick<Ledger, 'confirm'>,
    private readonly page: HeldPage,
    private readonly policy: ConfirmPolicy,
    private readonly options: ConfirmBufferOptions,
  ) {}

  add(entry: ConfirmEntry): void {
    this.entries.push(entry);
    if (this.entries.length >= this.options.confirmBatch) void this.flush();
    else if (!this.timer) this.timer = setTimeout(() => void this.flush(), this.options.confirmDelayMs);
  }

  flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const batch = this.entries;
    this.entries = [];
    if (batch.length > 0) this.chain = this.chain.then(() => this.record(batch));
    return this.chain;
  }

  private async record(batch: ConfirmEntry[]): Promise<void> {
    for (let attempt = 0; ; attempt += 1) {
      const sentAt = performance.now();
      try {
        const result = await this.ledger.confirm(this.page.ref, this.page.token, this.options.leaseMs, this.policy, batch);
        if (result.kind === 'fenced') {
          this.fenced = true;
          this.page.halt ??= { kind: 'fenced' };
        } else {
          this.page.renewed(sentAt);
          if (result.runCompleted) this.runCompleted = true;
        }
        return;
      } catch (err) {
        if (attempt >= 1) {
          this.failure ??= err;
          return;
        }
        await sleep(200);
      }
    }
  }
}
