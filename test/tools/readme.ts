/**
 * The README's generated blocks, between `<!-- name:begin -->` and
 * `<!-- name:end -->`: the configuration table (from src/config.ts ENV).
 * `npm run docs` writes them; test/unit/readme.test.ts fails when the README
 * is out of date.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { configTable } from '../../src/config.js';

export const README = fileURLToPath(new URL('../../README.md', import.meta.url));

export const GENERATED: Record<string, () => string> = {
  config: configTable,
};

/** The README with every generated block as it should be now. */
export function regenerate(text: string): string {
  let out = text;
  for (const [name, make] of Object.entries(GENERATED)) {
    const begin = `<!-- ${name}:begin -->`;
    const end = `<!-- ${name}:end -->`;
    const from = out.indexOf(begin);
    const to = out.indexOf(end);
    if (from < 0 || to < from) throw new Error(`README.md has no ${begin} … ${end} block`);
    out = `${out.slice(0, from + begin.length)}\n${make()}\n${out.slice(to)}`;
  }
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const before = readFileSync(README, 'utf8');
  const after = regenerate(before);
  if (after !== before) writeFileSync(README, after);
  process.stdout.write(after === before ? 'README.md is up to date\n' : 'README.md: generated blocks written\n');
}
