/**
 * npm run fuzz -- [--runs N] [--seed S]
 * Fuzzes every route of the REST API against a real API process on the test
 * Redis (TEST_REDIS_URL). A seed replays the same requests. Prints the
 * statuses seen per operation; exits 1 with the failing request if a
 * property broke.
 */
import { parseArgs } from 'node:util';
import { formatReport, fuzzApi } from './api-fuzz.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '10000' }, seed: { type: 'string' } } });
const runs = Number(values.runs);
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
if (!Number.isInteger(runs) || runs < 1 || !Number.isInteger(seed)) {
  process.stderr.write('usage: npm run fuzz -- [--runs N] [--seed S]\n');
  process.exit(2);
}
const report = await fuzzApi({ runs, seed, log: (line) => process.stderr.write(`${line}\n`) });
process.stdout.write(`${formatReport(report)}\n`);
if (report.failure) process.stdout.write(`\nreplay: npm run fuzz -- --runs ${runs} --seed ${seed}\n`);
process.exit(report.failure ? 1 : 0);
