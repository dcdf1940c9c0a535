/**
 * The nemesis's plan: every fault and every operator action of a chaos run,
 * drawn from one seed before the run starts, so `--seed N` replays the same
 * schedule (timings at the processes vary; what is injected when does not).
 */

/** A small, fast, seedable PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type FaultKind =
  | 'worker-kill'
  | 'worker-freeze'
  | 'api-kill'
  | 'api-freeze'
  | 'redis-kill'
  | 'net-cut'
  | 'net-stall'
  | 'net-delay'
  | 'net-lost-reply'
  | 'provider-5xx'
  | 'provider-429'
  | 'provider-timeout'
  | 'provider-reset'
  | 'failover';

export interface Fault {
  kind: FaultKind;
  /** ms after the faults begin. */
  at: number;
  /** How long it lasts (freeze, stall, burst), or how long until the killed process is started again. */
  durationMs: number;
  /** Which worker (index into the live ones, modulo), which provider, how many replies, how much delay. */
  target: number;
  amount: number;
}

export type ActionKind = 'pause' | 'resume' | 'cancel' | 'retry-failed' | 'reschedule' | 'create';

export interface Action {
  kind: ActionKind;
  at: number;
  /** Which campaign of the workload (index). */
  campaign: number;
}

export interface CampaignPlan {
  provider: 'strict' | 'idem';
  size: number;
  /** A cron campaign (every `cronSeconds`), else launched at once. */
  cronSeconds?: number;
  priority: 'high' | 'normal' | 'low';
  /** Every this-many-th recipient is refused for good (400): failures for retry-failed. */
  badEvery: number;
}

export interface ChaosPlan {
  seed: number;
  durationMs: number;
  campaigns: CampaignPlan[];
  faults: Fault[];
  actions: Action[];
}

const STANDALONE_FAULTS: Array<[FaultKind, number]> = [
  ['worker-kill', 4],
  ['worker-freeze', 3],
  ['api-kill', 1],
  ['api-freeze', 1],
  ['redis-kill', 1],
  ['net-cut', 2],
  ['net-stall', 2],
  ['net-delay', 1],
  ['net-lost-reply', 2],
  ['provider-5xx', 2],
  ['provider-429', 2],
  ['provider-timeout', 1],
  ['provider-reset', 2],
];

/** On a Redis Cluster the proxy cannot sit between workers and Redis (redirects bypass it); a master fails over instead. */
const CLUSTER_FAULTS: Array<[FaultKind, number]> = [
  ['worker-kill', 4],
  ['worker-freeze', 3],
  ['api-kill', 1],
  ['failover', 2],
  ['provider-5xx', 2],
  ['provider-429', 2],
  ['provider-timeout', 1],
  ['provider-reset', 2],
];

function weighted<T>(random: () => number, choices: Array<[T, number]>): T {
  const total = choices.reduce((sum, [, w]) => sum + w, 0);
  let r = random() * total;
  for (const [choice, w] of choices) {
    r -= w;
    if (r < 0) return choice;
  }
  return choices[choices.length - 1]![0];
}

const between = (random: () => number, lo: number, hi: number) => Math.round(lo + random() * (hi - lo));

function faultFor(random: () => number, kind: FaultKind, at: number): Fault {
  const fault = (durationMs: number, amount = 0): Fault => ({ kind, at, durationMs, target: Math.floor(random() * 1000), amount });
  switch (kind) {
    case 'worker-kill':
      return fault(between(random, 0, 3000));
    case 'worker-freeze':
      // Some longer than a lease (3 s): the frozen worker's pages are taken over while it sleeps.
      return fault(between(random, 500, 6000));
    case 'api-kill':
      return fault(between(random, 200, 3000));
    case 'api-freeze':
      return fault(between(random, 500, 4000));
    case 'redis-kill':
      return fault(between(random, 200, 2500));
    case 'net-cut':
      return fault(0);
    case 'net-stall':
      return fault(between(random, 300, 4500));
    case 'net-delay':
      return fault(between(random, 1000, 5000), between(random, 50, 400));
    case 'net-lost-reply':
      return fault(0, between(random, 1, 3));
    case 'provider-5xx':
    case 'provider-429':
    case 'provider-reset':
      return fault(between(random, 300, 3000));
    case 'provider-timeout':
      return fault(between(random, 500, 2500));
    case 'failover':
      // The old master comes back (as a replica) after this long.
      return fault(between(random, 2000, 8000));
  }
}

export function planChaos(seed: number, durationMs: number, topology: 'standalone' | 'cluster'): ChaosPlan {
  const random = prng(seed);
  const choices = topology === 'cluster' ? CLUSTER_FAULTS : STANDALONE_FAULTS;
  const faults: Fault[] = [];
  for (let at = between(random, 1500, 3000); at < durationMs; at += between(random, 1200, 3500)) {
    faults.push(faultFor(random, weighted(random, choices), at));
  }

  // The workload: a few campaigns at once from the start, more as the run goes on.
  const campaigns: CampaignPlan[] = [];
  const actions: Action[] = [];
  const campaign = (plan: Partial<CampaignPlan>): number => {
    campaigns.push({
      provider: random() < 0.5 ? 'strict' : 'idem',
      size: between(random, 400, 1500),
      priority: weighted(random, [
        ['normal', 3],
        ['high', 1],
        ['low', 1],
      ] as Array<['high' | 'normal' | 'low', number]>),
      badEvery: random() < 0.5 ? between(random, 40, 120) : 0,
      ...plan,
    });
    return campaigns.length - 1;
  };
  // Two providers with different caps, from the first second.
  campaign({ provider: 'strict', size: between(random, 1200, 2000), badEvery: 50 });
  campaign({ provider: 'idem', size: between(random, 800, 1500) });
  const paused = campaign({ provider: 'strict', priority: 'low' });
  const cancelled = campaign({ provider: 'idem' });
  const cron = campaign({ provider: 'idem', size: between(random, 150, 300), cronSeconds: 20, badEvery: 0 });
  for (let at = 15_000; at < durationMs - 10_000; at += between(random, 12_000, 25_000)) {
    actions.push({ kind: 'create', at, campaign: campaign({}) });
  }
  // Operators act while the faults go on.
  const pauseAt = between(random, 3000, Math.max(4000, durationMs * 0.3));
  actions.push({ kind: 'pause', at: pauseAt, campaign: paused });
  actions.push({ kind: 'resume', at: pauseAt + between(random, 2000, 8000), campaign: paused });
  actions.push({ kind: 'cancel', at: between(random, 2000, Math.max(3000, durationMs * 0.5)), campaign: cancelled });
  actions.push({ kind: 'retry-failed', at: between(random, Math.min(20_000, durationMs * 0.5), Math.max(21_000, durationMs * 0.8)), campaign: 0 });
  actions.push({ kind: 'reschedule', at: between(random, 5000, Math.max(6000, durationMs * 0.6)), campaign: cron });
  actions.sort((a, b) => a.at - b.at);
  return { seed, durationMs, campaigns, faults, actions };
}
