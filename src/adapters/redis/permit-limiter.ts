import { performance } from 'node:perf_hooks';
import type { Redis } from 'ioredis';
import type { Permit, ProviderLimits, RateLimiter } from '../../app/ports.js';
import type { Keys } from './keys.js';
import type { Scripts } from './scripts.js';

/**
 * Client side of the global permit limiter (lua/permit-lease.lua has the rule
 * and why it holds at the provider). Each process keeps a small local pool:
 * permits are leased in batches and returned in batches, so the limiter costs
 * well under one Redis round trip per send, and a process with no demand
 * makes no calls at all.
 *
 * Local clocks only ever measure elapsed time (performance.now()); every
 * shared instant is the Redis server's, so skew between machines cannot break
 * the cap.
 */
export interface PermitLimiterOptions {
  /** Most permits one call leases. */
  maxBatch?: number;
  /** Extra ms a permit rests beyond one second, against ms rounding at either end. */
  marginMs?: number;
  /** Shortest pause between two lease calls of one provider while waiting. */
  minIntervalMs?: number;
  /** Longest a waiter sleeps before asking again when no free time is known. */
  maxWaitMs?: number;
  /** How soon completed permits are handed back when nobody is waiting. */
  flushDelayMs?: number;
  /** Permits a process holds beyond a request timeout before Redis takes them back. */
  leaseSlackMs?: number;
}

interface Waiter {
  want: number;
  resolve(permits: Permit[]): void;
  reject(err: unknown): void;
}

interface Pool {
  limits: ProviderLimits;
  free: Permit[];
  completed: Array<{ id: string; at: number }>;
  unused: string[];
  waiters: Waiter[];
  running: boolean;
  timer: NodeJS.Timeout | null;
  wake: (() => void) | null;
}

export class RedisPermitLimiter implements RateLimiter {
  private readonly pools = new Map<string, Pool>();
  private readonly opts: Required<PermitLimiterOptions>;
  private closed = false;

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly scripts: Scripts,
    options: PermitLimiterOptions = {},
  ) {
    this.opts = {
      maxBatch: 500,
      marginMs: 2,
      minIntervalMs: 2,
      maxWaitMs: 50,
      flushDelayMs: 20,
      leaseSlackMs: 10_000,
      ...options,
    };
  }

  acquire(limits: ProviderLimits, want: number): Promise<Permit[]> {
    if (this.closed) return Promise.reject(new Error('rate limiter is closed'));
    const pool = this.pool(limits);
    const local = this.takeLocal(pool, want);
    if (local.length > 0) return Promise.resolve(local);
    return new Promise<Permit[]>((resolve, reject) => {
      pool.waiters.push({ want: Math.max(1, want), resolve, reject });
      void this.run(pool);
    });
  }

  complete(permit: Permit): void {
    const pool = this.pools.get(permit.provider);
    if (!pool) return;
    pool.completed.push({ id: permit.id, at: performance.now() });
    this.scheduleFlush(pool);
  }

  giveBack(permit: Permit): void {
    const pool = this.pools.get(permit.provider);
    if (!pool) return;
    pool.free.push(permit);
    this.serveWaiters(pool, []);
    this.scheduleFlush(pool);
  }

  async pause(provider: string, delayMs: number): Promise<void> {
    await this.scripts.run('permit-pause', [this.keys.limiter(provider).config], [Math.max(0, Math.round(delayMs))]);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const pool of this.pools.values()) {
      if (pool.timer) clearTimeout(pool.timer);
      for (const waiter of pool.waiters.splice(0)) waiter.reject(new Error('rate limiter is closed'));
      pool.unused.push(...pool.free.splice(0).map((p) => p.id));
      if (pool.completed.length > 0 || pool.unused.length > 0) await this.lease(pool, 0).catch(() => undefined);
    }
  }

  private pool(limits: ProviderLimits): Pool {
    let pool = this.pools.get(limits.name);
    if (!pool) {
      pool = { limits, free: [], completed: [], unused: [], waiters: [], running: false, timer: null, wake: null };
      this.pools.set(limits.name, pool);
    }
    pool.limits = limits;
    return pool;
  }

  /** Permits already leased by this process that are still safe to use. */
  private takeLocal(pool: Pool, want: number): Permit[] {
    const out: Permit[] = [];
    const latestStart = performance.now() + pool.limits.timeoutMs;
    while (out.length < want && pool.free.length > 0) {
      const permit = pool.free.shift()!;
      if (permit.usableUntil > latestStart) out.push(permit);
      else pool.unused.push(permit.id);
    }
    return out;
  }

  private serveWaiters(pool: Pool, fresh: Permit[]): void {
    pool.free.push(...fresh);
    while (pool.waiters.length > 0) {
      const permits = this.takeLocal(pool, pool.waiters[0]!.want);
      if (permits.length === 0) break;
      pool.waiters.shift()!.resolve(permits);
    }
    pool.wake?.();
  }

  private scheduleFlush(pool: Pool): void {
    if (pool.timer || pool.running || this.closed) return;
    pool.timer = setTimeout(() => {
      pool.timer = null;
      // Permits nobody asked for within the delay go back to everyone.
      pool.unused.push(...pool.free.splice(0).map((p) => p.id));
      void this.run(pool);
    }, this.opts.flushDelayMs);
    pool.timer.unref();
  }

  private async run(pool: Pool): Promise<void> {
    if (pool.running) {
      pool.wake?.();
      return;
    }
    pool.running = true;
    if (pool.timer) {
      clearTimeout(pool.timer);
      pool.timer = null;
    }
    try {
      while (!this.closed && (pool.waiters.length > 0 || pool.completed.length > 0 || pool.unused.length > 0)) {
        const demand = Math.min(
          this.opts.maxBatch,
          pool.waiters.reduce((sum, w) => sum + w.want, 0),
        );
        const { nextFreeIn } = await this.lease(pool, demand);
        if (pool.waiters.length === 0) break;
        const delay = nextFreeIn < 0 ? this.opts.maxWaitMs : Math.min(this.opts.maxWaitMs, Math.max(this.opts.minIntervalMs, nextFreeIn));
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delay);
          pool.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        pool.wake = null;
      }
    } catch (err) {
      for (const waiter of pool.waiters.splice(0)) waiter.reject(err);
    } finally {
      pool.running = false;
      if (pool.free.length > 0 || pool.completed.length > 0) this.scheduleFlush(pool);
    }
  }

  /** One round trip: hand back completed and unused permits, lease up to `want`. */
  private async lease(pool: Pool, want: number): Promise<{ nextFreeIn: number }> {
    const completed = pool.completed.splice(0);
    const unused = pool.unused.splice(0);
    const sentAt = performance.now();
    const args: Array<string | number> = [
      pool.limits.tps,
      want,
      pool.limits.timeoutMs + this.opts.leaseSlackMs,
      1000 + this.opts.marginMs,
      completed.length,
    ];
    // "ms since completion" measured before the call is at most the true
    // elapsed time when the script runs, so the permit never frees early.
    for (const c of completed) args.push(c.id, Math.max(0, Math.floor(sentAt - c.at)));
    args.push(...unused);
    const k = this.keys.limiter(pool.limits.name);
    let reply: Array<string | number>;
    try {
      reply = (await this.scripts.run('permit-lease', [k.free, k.held, k.config], args)) as Array<string | number>;
    } catch (err) {
      // Nothing was handed back: keep them to hand back on the next call.
      pool.completed.unshift(...completed);
      pool.unused.unshift(...unused);
      throw err;
    }
    const serverNow = Number(reply[0]);
    const nextFree = Number(reply[1]);
    // The lease ends `leaseMs` after the script ran, which is after `sentAt`.
    const usableUntil = sentAt + pool.limits.timeoutMs + this.opts.leaseSlackMs;
    const fresh = reply.slice(2).map((id) => ({ provider: pool.limits.name, id: String(id), usableUntil }));
    this.serveWaiters(pool, fresh);
    return { nextFreeIn: nextFree < 0 ? -1 : nextFree - serverNow };
  }
}
