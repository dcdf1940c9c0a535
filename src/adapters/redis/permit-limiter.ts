import { performance } from 'node:perf_hooks';
import { redisTime, type RedisClient } from './connection.js';
import type { FlowPace, Permit, PermitOutcome, ProviderLimits, ProviderState, RateLimiter, RestBasis } from '../../app/ports.js';
import type { PriorityClass } from '../../domain/campaign.js';
import type { Keys } from './keys.js';
import type { Scripts } from './scripts.js';

/**
 * Client side of the global permit limiter (lua/permit-lease.lua has the rules
 * and why the cap holds at the provider). Each process keeps a small local
 * pool per provider and priority class: permits are leased and handed back in
 * batches, so the limiter costs well under one Redis round trip per send, and
 * a process with no demand makes no calls at all.
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
  /** Shortest pause between two lease calls of one pool while waiting. */
  minIntervalMs?: number;
  /** Longest a waiter sleeps before asking again. */
  maxWaitMs?: number;
  /** How soon completed permits are handed back when nobody is waiting. */
  flushDelayMs?: number;
  /** Permits a process holds beyond a request timeout before Redis takes them back. */
  leaseSlackMs?: number;
  /** How long before it is free a permit may be granted (the caller waits out the rest). */
  leadMs?: number;
  /** Told what each completed permit's rest counted from (for metrics). */
  onRest?: (provider: string, from: RestBasis) => void;
}

/** A permit with the server time it is (or was) free at, to hand it back unused without shortening its rest. */
interface LeasedPermit extends Permit {
  readonly freeAt: number;
  /** A paced flow's permit (lua/permit-lease.lua): only callers of that pace may use it. */
  readonly paceKey?: string;
  /** The grant it is one unit of: handed back whole, once every unit is accounted for. */
  readonly grant: Grant;
}

/**
 * A grant of lua/permit-lease.lua: one or more permits (units) leased
 * together. It goes back in one entry once each of its units completed (its
 * rest began at `rests`) or went unused (free again at `unused`).
 */
interface Grant {
  readonly name: string;
  /** Ids of its permits not yet completed or handed back. */
  readonly out: Set<string>;
  /** performance.now() at which each completed unit's rest began. */
  readonly rests: number[];
  /** Server time each unused unit was free at. */
  readonly unused: number[];
  /** The completed units' outcome codes, in order. */
  outcomes: string;
}

interface Waiter {
  want: number;
  pace: FlowPace | null;
  resolve(permits: Permit[]): void;
  reject(err: unknown): void;
}

const OUTCOME_CODE: Record<PermitOutcome, string> = { healthy: 's', failed: 't', neutral: 'n' };

interface Pool {
  key: string;
  limits: ProviderLimits;
  priorityClass: PriorityClass;
  free: LeasedPermit[];
  /** Permits of paced flows, by pace key: each usable only by callers of that flow. */
  pacedFree: Map<string, LeasedPermit[]>;
  /** Grants whose every unit completed or went unused: handed back with the next call. */
  ready: Grant[];
  /** Permits leased but not used, to account to their grants with the next call. */
  unused: LeasedPermit[];
  /** Waiters by flow, flows in the order they are served next (round robin). */
  waiters: Map<string, Waiter[]>;
  demand: number;
  /** Consecutive lease calls that got nothing: each one doubles the wait (up to maxWaitMs). */
  emptyStreak: number;
  running: boolean;
  timer: NodeJS.Timeout | null;
  wake: (() => void) | null;
}

/** permit-lease.lua's largest step of the steady clock. */
const STEADY_STEP_MS = 250;

/** How long a provider's fastest answer time is remembered (between one and two of these). */
const FASTEST_ANSWER_MEMORY_MS = 10_000;

/**
 * How long the fastest answer time must hold (not fall by more than the
 * margin) before departures count. It falls while a process warms up — a
 * freshly started process answers late on every request (its code still
 * compiling, its connections new, often beside others starting on the same
 * machine), so its fastest answer says nothing yet about the provider's.
 */
const SETTLE_MS = 1000;

/**
 * The fastest answer time (departure to answer) a provider gave this process
 * lately: the part of a round trip that is the provider working and the way
 * back, at least, when nothing queued.
 */
class FastestAnswer {
  private current = Infinity;
  private previous = Infinity;
  private since = -Infinity;
  /** When the fastest answer time was first seen or last fell by more than the margin. */
  private fellAt = -Infinity;

  /** Records one answer time and returns the fastest lately, this one included. */
  observe(ms: number, now: number, marginMs: number): number {
    if (now - this.since >= FASTEST_ANSWER_MEMORY_MS) {
      this.previous = now - this.since >= 2 * FASTEST_ANSWER_MEMORY_MS ? Infinity : this.current;
      this.current = Infinity;
      this.since = now;
    }
    if (ms < Math.min(this.current, this.previous) - marginMs) this.fellAt = now;
    this.current = Math.min(this.current, ms);
    return Math.min(this.current, this.previous);
  }

  /** Whether the fastest answer time has held for SETTLE_MS. */
  settled(now: number): boolean {
    return now - this.fellAt >= SETTLE_MS;
  }
}

function iso(ms: number): string | null {
  return ms > 0 ? new Date(ms).toISOString() : null;
}

export class RedisPermitLimiter implements RateLimiter {
  /** Round trips to Redis and permits granted so far: the limiter's cost per send. */
  readonly stats = { calls: 0, granted: 0 };
  /** Per provider: the limiter's steady time in the last answer, and when (performance.now()) that call went out. */
  private readonly seen = new Map<string, { steady: number; sentAt: number }>();
  private readonly pools = new Map<string, Pool>();
  private readonly fastest = new Map<string, FastestAnswer>();
  private readonly opts: Required<Omit<PermitLimiterOptions, 'onRest'>>;
  private readonly onRest: PermitLimiterOptions['onRest'];
  private closed = false;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly scripts: Scripts,
    options: PermitLimiterOptions = {},
  ) {
    this.opts = {
      maxBatch: 500,
      marginMs: 2,
      // Waking more often than this only splits the same permits into more calls;
      // the lead (longer) keeps a late wake from costing rate.
      minIntervalMs: 8,
      maxWaitMs: 50,
      flushDelayMs: 20,
      leaseSlackMs: 10_000,
      leadMs: 50,
      ...options,
    };
    this.onRest = options.onRest;
  }

  acquire(limits: ProviderLimits, want: number, priorityClass: PriorityClass, flow = '', pace: FlowPace | null = null): Promise<Permit[]> {
    if (this.closed) return Promise.reject(new Error('rate limiter is closed'));
    const pool = this.pool(limits, priorityClass);
    if (pool.demand === 0) {
      const local = this.takeLocal(pool, want, pace);
      if (local.length > 0) return Promise.resolve(local);
    }
    return new Promise<Permit[]>((resolve, reject) => {
      let queue = pool.waiters.get(flow);
      if (!queue) pool.waiters.set(flow, (queue = []));
      const waiter = { want: Math.max(1, want), pace, resolve, reject };
      queue.push(waiter);
      pool.demand += waiter.want;
      void this.run(pool);
    });
  }

  complete(permit: Permit, outcome: PermitOutcome, departedAt?: number): void {
    const pool = this.pools.get(permit.pool);
    const grant = (permit as Partial<LeasedPermit>).grant;
    if (!pool || !grant?.out.delete(permit.id)) return;
    const now = performance.now();
    const rest = departedAt === undefined ? { at: now, from: 'answer' as const } : this.restFrom(pool.limits, Math.min(departedAt, now), now);
    this.onRest?.(pool.limits.name, rest.from);
    grant.rests.push(rest.at);
    grant.outcomes += OUTCOME_CODE[outcome];
    if (grant.out.size === 0) pool.ready.push(grant);
    this.scheduleFlush(pool);
  }

  /**
   * When the provider may have counted a request that left at `departedAt`
   * and was answered at `answeredAt` — the permit rests a second from then.
   * Never later than the answer (the provider counts what it answers), and
   * otherwise the later of:
   * - the departure plus the provider's arrivalMarginMs, the jitter of the
   *   way there;
   * - the answer less the fastest answer time lately: an answer slower than
   *   that may have queued on its way in (an overloaded provider, its
   *   process starved of CPU, a connection it had not read yet), so the
   *   request is taken to have been counted as late as the answer allows.
   * A provider that answers in steady time loses only the margin; one whose
   * answer time varies loses some of that variation, never the cap. Until
   * the fastest answer time has settled (SETTLE_MS), permits rest from the
   * answers.
   */
  private restFrom(limits: ProviderLimits, departedAt: number, answeredAt: number): { at: number; from: RestBasis } {
    let fastest = this.fastest.get(limits.name);
    if (!fastest) this.fastest.set(limits.name, (fastest = new FastestAnswer()));
    const lately = fastest.observe(answeredAt - departedAt, answeredAt, limits.arrivalMarginMs);
    const margin = departedAt + limits.arrivalMarginMs;
    const late = answeredAt - lately;
    if (!fastest.settled(answeredAt) || Math.max(margin, late) >= answeredAt) return { at: answeredAt, from: 'answer' };
    return late > margin ? { at: late, from: 'late-answer' } : { at: margin, from: 'departure' };
  }

  giveBack(permit: Permit): void {
    const pool = this.pools.get(permit.pool);
    if (!pool) return;
    this.serveWaiters(pool, [permit as LeasedPermit]);
    this.scheduleFlush(pool);
  }

  async pause(provider: string, delayMs: number): Promise<void> {
    await this.scripts.run('permit-pause', [this.keys.limiter(provider).config], [Math.max(0, Math.round(delayMs)), this.vouched(provider, performance.now())]);
  }

  /**
   * How far this process can vouch the limiter's steady clock has come (its
   * last answer's time plus what this process's monotonic clock measured
   * since), so a step of Redis's wall clock is not taken for elapsed time
   * (lua/includes/clock.lua); -1 before the first answer.
   */
  private vouched(provider: string, now: number): number {
    const seen = this.seen.get(provider);
    return seen ? Math.floor(seen.steady + (now - seen.sentAt)) : -1;
  }

  async state(limits: ProviderLimits): Promise<ProviderState> {
    const [hash, wall] = await Promise.all([this.redis.hgetall(this.keys.limiter(limits.name).config), redisTime(this.redis)]);
    const n = (field: string) => Number(hash[field] ?? 0);
    // The limiter times everything on its steady clock (lua/includes/clock.lua): shown here as wall-clock instants.
    const steadyNow = hash.clk === undefined ? wall : n('clk') + Math.min(STEADY_STEP_MS, Math.max(0, wall - n('clkWall')));
    const wallOf = (steady: number) => wall + (steady - steadyNow);
    const pausedUntil = n('pausedUntil') > steadyNow ? wallOf(n('pausedUntil')) : 0;
    const breaker = hash.breaker === 'open' && n('openUntil') <= steadyNow ? 'half' : (hash.breaker ?? 'closed');
    return {
      name: limits.name,
      tps: hash.cap === undefined ? limits.tps : n('cap'),
      rate: hash.rate === undefined ? 1 : Math.round(Number(hash.rate) * 1000) / 1000,
      pausedUntil: iso(pausedUntil),
      breaker: breaker === 'half' ? 'half-open' : (breaker as 'open' | 'closed'),
      openUntil: breaker === 'open' ? iso(wallOf(n('openUntil'))) : null,
      consecutiveFailures: n('streak'),
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const pool of this.pools.values()) {
      if (pool.timer) clearTimeout(pool.timer);
      this.rejectAll(pool, new Error('rate limiter is closed'));
      this.dropFree(pool);
      if (pool.ready.length > 0 || pool.unused.length > 0) await this.lease(pool, false).catch(() => undefined);
    }
  }

  private pool(limits: ProviderLimits, priorityClass: PriorityClass): Pool {
    const key = `${limits.name}|${priorityClass}`;
    let pool = this.pools.get(key);
    if (!pool) {
      pool = {
        key,
        limits,
        priorityClass,
        free: [],
        pacedFree: new Map(),
        ready: [],
        unused: [],
        waiters: new Map(),
        demand: 0,
        emptyStreak: 0,
        running: false,
        timer: null,
        wake: null,
      };
      this.pools.set(key, pool);
    }
    pool.limits = limits;
    return pool;
  }

  /** Permits already leased by this process that are still safe to use: of the pace's own when the caller is paced. */
  private takeLocal(pool: Pool, want: number, pace: FlowPace | null): Permit[] {
    const source = pace ? pool.pacedFree.get(pace.key) : pool.free;
    const out: Permit[] = [];
    if (!source) return out;
    const now = performance.now();
    while (out.length < want && source.length > 0) {
      const permit = source.shift()!;
      if (permit.usableUntil > Math.max(now, permit.notBefore) + pool.limits.timeoutMs) out.push(permit);
      else pool.unused.push(permit);
    }
    return out;
  }

  /**
   * Permits whose callers are gone (their page stopped, or handed them back)
   * go back to Redis with this call while the loop runs: the flush timer
   * that does it otherwise waits for the loop to end, which a busy pool's
   * never does, and a slow paced flow has only a slot or two.
   */
  private dropUnwanted(pool: Pool): void {
    const wanted = new Set<string>();
    let generic = false;
    for (const queue of pool.waiters.values()) {
      for (const waiter of queue) {
        if (waiter.pace) wanted.add(waiter.pace.key);
        else generic = true;
      }
    }
    if (!generic) pool.unused.push(...pool.free.splice(0));
    for (const [key, permits] of pool.pacedFree) {
      if (wanted.has(key)) continue;
      pool.unused.push(...permits);
      pool.pacedFree.delete(key);
    }
  }

  /** Every permit held unused goes back to Redis with the next call. */
  private dropFree(pool: Pool): void {
    pool.unused.push(...pool.free.splice(0));
    for (const permits of pool.pacedFree.values()) pool.unused.push(...permits);
    pool.pacedFree.clear();
  }

  /** Hands out what is in the pool, one waiter per flow in turn; a paced flow only takes its own pace's permits. */
  private serveWaiters(pool: Pool, fresh: LeasedPermit[]): void {
    for (const permit of fresh) {
      if (permit.paceKey === undefined) pool.free.push(permit);
      else {
        let own = pool.pacedFree.get(permit.paceKey);
        if (!own) pool.pacedFree.set(permit.paceKey, (own = []));
        own.push(permit);
      }
    }
    for (let served = true; served;) {
      served = false;
      for (const [flow, queue] of [...pool.waiters]) {
        const waiter = queue[0]!;
        const permits = this.takeLocal(pool, waiter.want, waiter.pace);
        if (permits.length === 0) continue;
        queue.shift();
        pool.demand -= waiter.want;
        // Served: this flow goes to the back of the line.
        pool.waiters.delete(flow);
        if (queue.length > 0) pool.waiters.set(flow, queue);
        waiter.resolve(permits);
        served = true;
      }
    }
    pool.wake?.();
  }

  private rejectAll(pool: Pool, err: unknown): void {
    for (const queue of pool.waiters.values()) for (const waiter of queue) waiter.reject(err);
    pool.waiters.clear();
    pool.demand = 0;
  }

  private scheduleFlush(pool: Pool): void {
    if (pool.timer || pool.running || this.closed) return;
    pool.timer = setTimeout(() => {
      pool.timer = null;
      // Permits nobody asked for within the delay go back to everyone.
      this.dropFree(pool);
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
      while (!this.closed && (pool.demand > 0 || pool.ready.length > 0 || pool.unused.length > 0)) {
        this.dropUnwanted(pool);
        const { retryIn, granted } = await this.lease(pool, true);
        if (pool.demand === 0) break;
        // Processes that keep coming back empty-handed back off (never longer
        // than the lead, which covers a wake that late), so many waiting
        // processes do not turn into many Redis calls per permit.
        pool.emptyStreak = granted > 0 ? 0 : pool.emptyStreak + 1;
        const floor = Math.min(this.opts.leadMs, this.opts.minIntervalMs * 2 ** Math.min(pool.emptyStreak, 6));
        const delay = retryIn < 0 ? this.opts.maxWaitMs : Math.min(this.opts.maxWaitMs, Math.max(floor, retryIn));
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
      this.rejectAll(pool, err);
    } finally {
      pool.running = false;
      if (pool.free.length > 0 || pool.pacedFree.size > 0 || pool.ready.length > 0) this.scheduleFlush(pool);
    }
  }

  /**
   * What the waiters want: unpaced permits, and each paced flow's own (with
   * its pace now), each at most a batch.
   */
  private wants(pool: Pool): { generic: number; paced: Map<string, { want: number; tps: number }> } {
    let generic = 0;
    const paced = new Map<string, { want: number; tps: number }>();
    for (const queue of pool.waiters.values()) {
      for (const waiter of queue) {
        if (!waiter.pace) generic += waiter.want;
        else {
          const flow = paced.get(waiter.pace.key) ?? { want: 0, tps: waiter.pace.tps };
          flow.want = Math.min(this.opts.maxBatch, flow.want + waiter.want);
          flow.tps = waiter.pace.tps;
          paced.set(waiter.pace.key, flow);
        }
      }
    }
    return { generic: Math.min(this.opts.maxBatch, generic), paced };
  }

  /** One round trip: hand back completed and unused permits, and (with `ask`) lease what the waiters want. */
  private async lease(pool: Pool, ask: boolean): Promise<{ retryIn: number; granted: number }> {
    for (const permit of pool.unused.splice(0)) {
      const { grant } = permit;
      if (!grant.out.delete(permit.id)) continue;
      grant.unused.push(permit.freeAt);
      if (grant.out.size === 0) pool.ready.push(grant);
    }
    const ready = pool.ready.splice(0);
    const sentAt = performance.now();
    const { limits } = pool;
    const wants = ask ? this.wants(pool) : { generic: 0, paced: new Map<string, { want: number; tps: number }>() };
    const args: Array<string | number> = [
      limits.tps,
      wants.generic,
      limits.timeoutMs + this.opts.leaseSlackMs,
      1000 + this.opts.marginMs,
      pool.priorityClass,
      limits.breaker.failures,
      limits.breaker.coolDownMs,
      limits.breaker.maxCoolDownMs,
      this.opts.leadMs,
      this.vouched(limits.name, sentAt),
      ready.length,
      wants.paced.size,
    ];
    for (const [key, flow] of wants.paced) args.push(key, flow.want, flow.tps);
    for (const grant of ready) args.push(grant.name, restsOf(grant, sentAt), grant.outcomes);
    const k = this.keys.limiter(limits.name);
    let reply: Array<string | number>;
    this.stats.calls += 1;
    try {
      reply = (await this.scripts.run('permit-lease', [k.free, k.held, k.config, k.retired], args)) as Array<string | number>;
    } catch (err) {
      // Nothing was handed back: keep them to hand back on the next call.
      pool.ready.unshift(...ready);
      throw err;
    }
    const receivedAt = performance.now();
    const serverNow = Number(reply[0]);
    this.seen.set(limits.name, { steady: serverNow, sentAt });
    const retryAt = Number(reply[1]);
    // The lease ends `leaseMs` after the script ran, which is after `sentAt`.
    const usableUntil = sentAt + limits.timeoutMs + this.opts.leaseSlackMs;
    const fresh: LeasedPermit[] = [];
    for (let i = 2; i < reply.length; i += 3) {
      const name = String(reply[i]);
      const units = Number(reply[i + 1]);
      // Its start: free, and allowed by the pace (every unit of the grant).
      const freeAt = Number(reply[i + 2]);
      // `g<seq>:1:<flow slot>:<pace key>` for a paced flow's permit.
      const parts = name.split(':');
      const paceKey = parts.length >= 4 ? parts.slice(3).join(':') : undefined;
      const grant: Grant = { name, out: new Set(), rests: [], unused: [], outcomes: '' };
      // The server's clock read at least `serverNow` when the reply left, so at
      // local time receivedAt + d it reads at least serverNow + d: waiting until
      // then never starts a request before the permit is free.
      const notBefore = freeAt > serverNow ? receivedAt + (freeAt - serverNow) : 0;
      for (let u = 0; u < units; u += 1) {
        const id = units === 1 ? name : `${name}/${u}`;
        grant.out.add(id);
        fresh.push({ provider: limits.name, pool: pool.key, id, freeAt, notBefore, usableUntil, grant, ...(paceKey === undefined ? {} : { paceKey }) });
      }
    }
    this.stats.granted += fresh.length;
    this.serveWaiters(pool, fresh);
    return { retryIn: retryAt < 0 ? -1 : retryAt - serverNow, granted: fresh.length };
  }
}

/**
 * A grant's units as permit-lease.lua takes them back: `n:ago` for n units
 * whose rest began `ago` ms before the call, `n@t` for n unused ones free
 * at server time t. "ms since the rest began" measured before the call is at
 * most the true elapsed time when the script runs, so a unit never frees
 * early; units within a millisecond of each other go as one.
 */
function restsOf(grant: Grant, sentAt: number): string {
  const groups = new Map<string, number>();
  for (const at of grant.rests) {
    const key = `:${Math.max(0, Math.floor(sentAt - at))}`;
    groups.set(key, (groups.get(key) ?? 0) + 1);
  }
  for (const freeAt of grant.unused) {
    const key = `@${freeAt}`;
    groups.set(key, (groups.get(key) ?? 0) + 1);
  }
  return [...groups].map(([key, n]) => `${n}${key}`).join(',');
}
