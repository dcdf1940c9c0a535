import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ProviderLimits } from '../../src/app/ports.js';

/** Writes a PROVIDERS_FILE and returns its path. */
export function providersFile(providers: unknown[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'pushq-providers-'));
  const file = join(dir, 'providers.json');
  writeFileSync(file, JSON.stringify(providers));
  return file;
}

export const TEST_TOKEN = 'test-admin-token-0123456789';

/** A provider's limits for tests that drive the limiter directly: name and tps, the rest as a providers file's defaults would give. */
export function testLimits(limits: Pick<ProviderLimits, 'name' | 'tps'> & Partial<ProviderLimits>): ProviderLimits {
  return { timeoutMs: 1000, arrivalMarginMs: 10, breaker: { failures: 20, coolDownMs: 5000, maxCoolDownMs: 60_000 }, ...limits };
}
