/**
 * npm run chaos -- [--seed N] [--minutes M] [--topology standalone|cluster]
 * Replays a seed exactly: the same faults and operator actions at the same moments.
 * Prints the table, the facts and any violation; exits 1 when there is one.
 */
import { parseArgs } from 'node:util';
import { faultTable, runChaos } from './chaos.js';

const { values } = parseArgs({
  options: {
    seed: { type: 'string' },
    minutes: { type: 'string', default: '3' },
    topology: { type: 'string', default: 'standalone' },
  },
});
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
const minutes = Number(values.minutes);
const topology = values.topology === 'cluster' ? 'cluster' : 'standalone';
if (!Number.isInteger(seed) || !(minutes > 0)) {
  process.stderr.write('usage: npm run chaos -- [--seed N] [--minutes M] [--topology standalone|cluster]\n');
  process.exit(2);
}
const replay = `npm run chaos -- --seed ${seed} --minutes ${minutes} --topology ${topology}`;
let failed = false;
try {
  const result = await runChaos({ seed, minutes, topology });
  process.stdout.write(`\nchaos ${topology}, seed ${seed}, ${minutes} min: ${result.campaigns} campaigns, ${result.sends} requests at the providers\n\n`);
  process.stdout.write(`${faultTable(result)}\n\n`);
  for (const [fact, value] of Object.entries(result.verdict.facts)) process.stdout.write(`${fact}: ${value}\n`);
  if (result.verdict.violations.length === 0) {
    process.stdout.write(`\nclean: nobody delivered twice, every run final, sent ≤ delivered ≤ sent + unknown, counts conserved, the caps held\n`);
  } else {
    failed = true;
    process.stdout.write(`\n${result.verdict.violations.length} violation(s) (replay: ${replay}):\n`);
    for (const v of result.verdict.violations.slice(0, 50)) process.stdout.write(`  ${v}\n`);
  }
} catch (err) {
  failed = true;
  process.stdout.write(`\nchaos run broke down (replay: ${replay}): ${(err as Error).stack ?? String(err)}\n`);
}
// Everything it started is stopped by now; whatever a killed peer left behind must not keep this process alive.
process.exit(failed ? 1 : 0);
