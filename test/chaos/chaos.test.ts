import { describe, expect, it } from 'vitest';
import { faultTable, runChaos } from './chaos.js';

/**
 * The CI variant of `npm run chaos`: 60 s of seeded faults against real
 * processes (a new seed each run, printed; CHAOS_SEED replays one).
 */
const seed = process.env.CHAOS_SEED ? Number(process.env.CHAOS_SEED) : Math.floor(Math.random() * 2 ** 31);

describe('the nemesis', () => {
  it(`finds nothing in 60 s of faults (seed ${seed})`, async () => {
    const result = await runChaos({ seed, minutes: 1, topology: 'standalone', log: (line) => console.info(line) });
    console.info(
      `chaos (seed ${seed}): ${result.campaigns} campaigns, ${result.sends} requests\n${faultTable(result)}\n${JSON.stringify(result.verdict.facts)}`,
    );
    expect(result.verdict.violations, `replay with: npm run chaos -- --seed ${seed} --minutes 1`).toEqual([]);
  }, 360_000);
});
