/**
 * Counts free slots (e.g. requests a process may have in flight). `acquire`
 * waits for at least one and takes up to `want`, so a batch never waits for a
 * whole batch of slots to free up at once.
 */
export class Semaphore {
  private waiters: Array<{ want: number; resolve: (n: number) => void }> = [];

  constructor(private available: number) {}

  get free(): number {
    return this.available;
  }

  acquire(want: number): Promise<number> {
    if (this.available > 0 && this.waiters.length === 0) {
      const n = Math.min(want, this.available);
      this.available -= n;
      return Promise.resolve(n);
    }
    return new Promise((resolve) => this.waiters.push({ want, resolve }));
  }

  release(n: number): void {
    this.available += n;
    while (this.available > 0 && this.waiters.length > 0) {
      const waiter = this.waiters.shift()!;
      const granted = Math.min(waiter.want, this.available);
      this.available -= granted;
      waiter.resolve(granted);
    }
  }
}
