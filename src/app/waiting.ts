import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

/** Waits until performance.now() reaches `at` (timers may fire a little early: checked again). */
export async function sleepUntil(at: number): Promise<void> {
  while (performance.now() < at) await sleep(Math.ceil(at - performance.now()));
}

/** Thrown in place of a wait that a stop signal cut short. */
export class StopRequested extends Error {}

/** Resolves with `promise`, or rejects with StopRequested when `stop` fires first; `late` gets a value that arrives after. */
export function unlessStopped<T>(promise: Promise<T>, stop: AbortSignal, late: (value: T) => void): Promise<T> {
  if (stop.aborted) {
    void promise.then(late, () => undefined);
    return Promise.reject(new StopRequested());
  }
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const onStop = () => {
      settled = true;
      reject(new StopRequested());
    };
    stop.addEventListener('abort', onStop, { once: true });
    promise.then(
      (value) => {
        stop.removeEventListener('abort', onStop);
        if (settled) late(value);
        else resolve(value);
      },
      (err) => {
        stop.removeEventListener('abort', onStop);
        if (!settled) reject(err);
      },
    );
  });
}

/** Most time template rendering runs before it lets the event loop in (worker and dry run). */
export const RENDER_SLICE_MS = 20;

/**
 * Lets the event loop in once `sliceMs` of work have gone by since it last
 * did: a long synchronous loop (rendering templates) then shares the
 * process with lease renewals, confirms and other requests.
 */
export class TimeSlice {
  private since = performance.now();

  constructor(private readonly sliceMs: number) {}

  async yieldIfDue(): Promise<void> {
    if (performance.now() - this.since <= this.sliceMs) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.since = performance.now();
  }
}
