import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Writes a PROVIDERS_FILE and returns its path. */
export function providersFile(providers: unknown[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'pushq-providers-'));
  const file = join(dir, 'providers.json');
  writeFileSync(file, JSON.stringify(providers));
  return file;
}

export const TEST_TOKEN = 'test-admin-token-0123456789';
