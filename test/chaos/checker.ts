import { maxInWindow } from '../helpers/mock-provider.js';
import type { ChaosArrival } from './provider.js';

/**
 * The checker: judges a chaos run from the providers' evidence (every
 * arrival, and whether it was delivered) and the ledger's final word, in the
 * spirit of Jepsen's queue checkers. Pure: the runner gathers, this decides.
 */
export interface ProviderEvidence {
  name: string;
  tps: number;
  arrivals: readonly ChaosArrival[];
}

export interface RunOutcome {
  campaignId: string;
  runId: string;
  status: string;
  counts: { total: number; pending: number; sent: number; failed: number; unknown: number; skipped: number };
  /** Recipients the ledger says failed for good (from …/failures), when known. */
  failed?: readonly string[];
  /** For a retry-failed run: the recipients of the run it retried that had failed. */
  retryOf?: readonly string[];
}

export interface Verdict {
  violations: string[];
  /** Facts worth printing whatever the verdict. */
  facts: Record<string, number>;
}

const runKey = (campaignId: string, runId: string) => `${campaignId}|${runId}`;

export function check(providers: readonly ProviderEvidence[], runs: readonly RunOutcome[], sampledViolations: readonly string[]): Verdict {
  const violations = [...sampledViolations];
  let arrivals = 0;
  let deliveredTotal = 0;
  const facts: Record<string, number> = { runs: runs.length };
  // Delivered recipients per run, across providers (a campaign uses one).
  const delivered = new Map<string, Map<string, number>>();
  for (const provider of providers) {
    arrivals += provider.arrivals.length;
    const keys = new Map<string, Set<string>>();
    for (const a of provider.arrivals) {
      const recipient = `${runKey(a.campaignId, a.runId)}|${a.recipientId}`;
      if (!keys.has(recipient)) keys.set(recipient, new Set());
      keys.get(recipient)!.add(a.key);
      if (!a.delivered) continue;
      deliveredTotal += 1;
      const perRun = delivered.get(runKey(a.campaignId, a.runId)) ?? new Map<string, number>();
      delivered.set(runKey(a.campaignId, a.runId), perRun);
      perRun.set(a.recipientId, (perRun.get(a.recipientId) ?? 0) + 1);
    }
    for (const [recipient, set] of keys)
      if (set.size > 1) violations.push(`${provider.name}: ${recipient} reached the provider under ${set.size} idempotency keys in one run`);
    const busiest = maxInWindow(provider.arrivals.map((a) => a.at));
    facts[`busiest second at ${provider.name}`] = busiest;
    if (busiest > provider.tps) violations.push(`${provider.name}: ${busiest} requests arrived in one sliding second (cap ${provider.tps})`);
  }
  facts.arrivals = arrivals;
  facts.delivered = deliveredTotal;
  for (const [run, perRun] of delivered) {
    for (const [recipient, n] of perRun) if (n > 1) violations.push(`${run}: ${recipient} delivered ${n} times`);
  }
  for (const run of runs) {
    const name = runKey(run.campaignId, run.runId);
    const c = run.counts;
    if (run.status !== 'completed' && run.status !== 'cancelled') violations.push(`${name}: not final (${run.status}, ${c.pending} pending)`);
    if (c.pending !== 0) violations.push(`${name}: ${c.pending} pending at the end`);
    const got = delivered.get(name)?.size ?? 0;
    if (got < c.sent) violations.push(`${name}: ${c.sent} recorded sent but only ${got} delivered`);
    if (got > c.sent + c.unknown) violations.push(`${name}: ${got} delivered, more than ${c.sent} sent + ${c.unknown} unknown`);
    for (const id of run.failed ?? []) if (delivered.get(name)?.has(id)) violations.push(`${name}: ${id} recorded failed but it was delivered`);
    if (run.retryOf) {
      const allowed = new Set(run.retryOf);
      for (const id of delivered.get(name)?.keys() ?? []) if (!allowed.has(id)) violations.push(`${name}: retry-failed sent to ${id}, which had not failed`);
    }
  }
  return { violations, facts };
}

/** The invariant of every sample of a run's counts. */
export function countsProblem(c: {
  total: number;
  pending: number;
  inflight?: number;
  sent: number;
  failed: number;
  unknown: number;
  skipped: number;
}): string | null {
  const sum = c.sent + c.failed + c.unknown + c.skipped + c.pending;
  if (sum !== c.total) return `sent + failed + unknown + skipped + pending = ${sum}, total ${c.total}`;
  if ([c.sent, c.failed, c.unknown, c.skipped, c.pending].some((n) => n < 0)) return `a negative count: ${JSON.stringify(c)}`;
  if (c.inflight !== undefined && (c.inflight < 0 || c.inflight > c.pending)) return `inflight ${c.inflight} outside [0, pending ${c.pending}]`;
  return null;
}
