import { describe, expect, it } from 'vitest';
import { formatReport, fuzzApi, fuzzRoutes } from './api-fuzz.js';

/**
 * The schema-driven API fuzzer, bounded for CI (`npm run fuzz -- --runs N`
 * runs it longer). A fixed seed keeps CI reproducible; the long runs vary it.
 */
describe('API fuzzer', () => {
  it('covers every route of the route table', () => {
    const operations = fuzzRoutes().map((r) => r.operationId);
    expect(operations).toEqual(expect.arrayContaining(['createCampaign', 'uploadRecipients', 'replaceSuppressionList', 'scheduleCampaign', 'pageAction']));
    expect(new Set(operations).size).toBe(operations.length);
  });

  it('2,000 random and adversarial requests: documented 4xx only, contract error bodies, nothing changed by a rejection, the process up', async () => {
    const report = await fuzzApi({ runs: 2000, seed: 15 });
    console.log(formatReport(report));
    expect(report.failure).toBeUndefined();
    // Every route was reached, and most of them both accepted and refused something.
    expect(Object.keys(report.statuses).length).toBe(fuzzRoutes().length);
  }, 600_000);
});
