import { spawn, type ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { onCleanup } from '../helpers/cleanup.js';
import { launchCampaign, range, stacksPerTest, waitForStatus } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';

/**
 * A provider that takes its time to answer: the permit's second of rest
 * counts from when the request left, so the answer time is not lost from the
 * cap — and the cap still holds where the provider counts, every sliding
 * second, when the latency jumps, under CPU load, with retries. Default
 * settings throughout (the provider's own defaults too: no arrivalMarginMs).
 */
const start = stacksPerTest();

/** Busy loops that keep both cores of this machine contended while the campaign runs. */
function cpuHogs(count: number): ChildProcess[] {
  const hogs = Array.from({ length: count }, () => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
  onCleanup(async () => {
    for (const hog of hogs) hog.kill('SIGKILL');
  });
  return hogs;
}

describe('a slow provider', () => {
  it("rests a permit from the request's departure, not from the provider's answer", async () => {
    const tps = 3;
    const latencyMs = 400;
    const { mock, client } = await start({ mock: { cap: tps, latencyMs }, provider: { tps, timeoutMs: 5000 }, workers: 1 });
    const id = await launchCampaign(client, range(24, 'slow'));
    const done = await waitForStatus(client, id, 'completed');
    expect(done.counts).toMatchObject({ sent: 24, failed: 0, unknown: 0 });
    expect(mock.count(429)).toBe(0);
    expect(mock.maxWindow(1000)).toBeLessThanOrEqual(tps);
    // Three slots: arrival i and arrival i − 3 are one slot's two turns. A
    // rest from the answer puts them at least 1 s + 400 ms apart; a rest
    // from the departure, a second and its margin — once the worker's
    // fastest answer time has settled (its first answers rest from the answer).
    const times = mock.arrivals.map((a) => a.at).sort((a, b) => a - b);
    const turns = times.slice(tps).map((t, i) => Math.round(t - times[i]!));
    console.info(`slow provider: one slot's turns ${turns.join(' ')} ms apart`);
    expect(Math.min(...turns)).toBeGreaterThanOrEqual(1000);
    const settled = turns.slice(-tps * 3);
    expect(Math.max(...settled)).toBeLessThan(1000 + latencyMs);
    // The metric an operator tunes arrivalMarginMs by: what the rests counted from.
    const rests = await waitFor(async () => {
      const metrics = await (await fetch(`${client.baseUrl}/metrics`)).text();
      const count = (from: string) => Number(new RegExp(`^pushq_permit_rests_total\\{provider="mock",from="${from}"\\} (\\d+)`, 'm').exec(metrics)?.[1] ?? 0);
      const seen = { departure: count('departure'), lateAnswer: count('late-answer'), answer: count('answer') };
      return seen.departure + seen.lateAnswer + seen.answer >= 24 ? seen : undefined;
    });
    expect(rests.departure).toBeGreaterThan(0);
    expect(rests.answer).toBeGreaterThan(0);
  });

  it('never lets a sliding second at the provider exceed the cap when the latency jumps (200 → 5 → 500 ms), under CPU load, with retries', async () => {
    const tps = 100;
    const phases = [
      { untilMs: 4000, latencyMs: 200 },
      { untilMs: 8000, latencyMs: 5 },
      { untilMs: Infinity, latencyMs: 500 },
    ];
    let firstAt = 0;
    const attempts = new Map<string, number>();
    const { mock, client } = await start({
      mock: {
        cap: tps,
        respond: (body, arrival) => {
          firstAt ||= arrival.at;
          const { latencyMs } = phases.find((p) => arrival.at - firstAt < p.untilMs)!;
          const id = body.recipient.id;
          const attempt = (attempts.get(id) ?? 0) + 1;
          attempts.set(id, attempt);
          // Every 10th recipient fails its first attempt: retried on a permit of its own.
          if (attempt === 1 && Number(id.slice(1)) % 10 === 0) return { status: 503, body: 'busy', delayMs: latencyMs };
          return { status: 200, body: '{"ok":true}', delayMs: latencyMs };
        },
      },
      provider: { tps, timeoutMs: 5000 },
      workers: 3,
    });
    mock.keepBodies = false;
    cpuHogs(2);
    const n = 1400;
    const started = performance.now();
    const id = await launchCampaign(client, range(n, 'r'));
    const done = await waitForStatus(client, id, 'completed', 90_000);
    expect(done.counts).toMatchObject({ sent: n, failed: 0, unknown: 0 });
    const retried = [...attempts.values()].filter((a) => a > 1).length;
    console.info(
      `latency jumps: ${mock.arrivals.length} requests (${retried} retried) in ${Math.round(performance.now() - started)} ms, busiest second ${mock.maxWindow(1000)} of ${tps}`,
    );
    expect(retried).toBe(n / 10);
    expect(mock.duplicates()).toBe(0);
    // Judged where the provider counts: no request over the cap, in any sliding second.
    expect(mock.count(429)).toBe(0);
    expect(mock.maxWindow(1000)).toBeLessThanOrEqual(tps);
    // Every phase was reached (the run outlasted the last jump).
    expect(mock.arrivals.at(-1)!.at - firstAt).toBeGreaterThan(phases[1]!.untilMs);
  });
});
