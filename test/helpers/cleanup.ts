import { expect } from 'vitest';
import { randomBytes } from 'node:crypto';

/**
 * Per-test resources, pg-boss style: whatever a test (or a helper it calls)
 * opens registers its own cleanup here, and test/setup.ts runs them after
 * each test, last first. No test file keeps its own cleanup arrays.
 */
const cleanups: Array<() => unknown> = [];

/** Runs `fn` after the current test (last registered, first run). */
export function onCleanup(fn: () => unknown): void {
  cleanups.push(fn);
}

/** Runs every registered cleanup, last first; the first failure is rethrown once all have run. */
export async function runCleanups(): Promise<void> {
  let failure: unknown = null;
  for (const fn of cleanups.splice(0).reverse()) {
    try {
      await fn();
    } catch (err) {
      failure ??= err;
    }
  }
  if (failure) throw failure;
}

/**
 * A Redis key prefix no other test (or run) uses, derived from the current
 * test's name, so a key left behind says which test wrote it.
 */
export function testPrefix(label = 't'): string {
  const name = expect.getState().currentTestName ?? '';
  const slug = name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, 40);
  // At most 59 characters: a prefix must also pass QUEUE_PREFIX's check (64).
  const base = `pqtest-${label}${slug ? `-${slug}` : ''}`.slice(0, 50).replace(/-$/, '');
  return `${base}-${randomBytes(4).toString('hex')}`;
}
