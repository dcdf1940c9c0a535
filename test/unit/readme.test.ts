import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { README, regenerate } from '../tools/readme.js';

describe('the README', () => {
  it('shows the configuration as src/config.ts declares it (npm run docs rewrites it)', () => {
    const text = readFileSync(README, 'utf8');
    expect(regenerate(text) === text, 'README.md is out of date: run `npm run docs`').toBe(true);
  });
});
