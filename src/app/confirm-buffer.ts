import type { ConfirmEntry, Ledger, PageRef } from './ports.js';

export interface ConfirmBufferOptions {
  leaseMs: number;
  /** Most outcomes recorded by one ledger call. */
  confirmBatch: number;
  /** Longest an outcome waits to be recorded with others. */
  confirmDelayMs: number;
}

/**
 * Outcomes of one page, recorded a batch at a time. Every batch is checked
 * against the page lease, so a worker that lost its page records nothing.
 */
export class ConfirmBuffer {
  private entries: ConfirmEntry[] = [];
  private timer: NodeJS.Timeout | null = null;
  private chain: Promise<void> = Promise.resolve();
  fenced = false;
  runCompleted = false;
  failure: unknown = null;

  constructor(
    private readonly ledger: Ledger,
    private readonly ref: PageRef,
    private readonly token: string,
    private readonly maxAttempts: number,
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
    if (batch.length > 0) {
      this.chain = this.chain.then(async () => {
        try {
          const result = await this.ledger.confirm(this.ref, this.token, this.options.leaseMs, this.maxAttempts, batch);
          if (result.kind === 'fenced') this.fenced = true;
          else if (result.runCompleted) this.runCompleted = true;
        } catch (err) {
          this.failure ??= err;
        }
      });
    }
    return this.chain;
  }
}
