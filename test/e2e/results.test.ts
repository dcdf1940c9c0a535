import { createHash } from 'node:crypto';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { TEST_TOKEN } from '../helpers/fixtures.js';
import { launchCampaign, stacksPerTest, waitForStatus } from '../helpers/stack.js';

/**
 * A run's results, exported whole: every recipient with its outcome, and the
 * means for the receiving side to tell the file is complete (the count up
 * front, the count and SHA-256 at the end).
 */
const start = stacksPerTest();

async function exportResults(baseUrl: string, path: string) {
  const res = await request(`${baseUrl}${path}`, { headers: { authorization: `Bearer ${TEST_TOKEN}` } });
  const body = await res.body.text();
  return { status: res.statusCode, headers: res.headers, body, trailers: res.trailers };
}

describe('the results export', () => {
  it('streams every recipient of a run as NDJSON and as CSV, with its count and the SHA-256 of the body', async () => {
    const { client } = await start({
      mock: { respond: (body) => (body.recipient.id.startsWith('bad') ? { status: 400, body: 'no such user' } : undefined) },
      workers: 1,
    });
    const ids = [...Array.from({ length: 40 }, (_, i) => `ok${i}`), 'bad1', 'bad2', '=HYPERLINK("x")'];
    const id = await launchCampaign(client, ids);
    const done = await waitForStatus(client, id, 'completed');
    expect(done.counts).toMatchObject({ total: 43, sent: 41, failed: 2 });
    const runId = done.latestRun.id as string;

    const ndjson = await exportResults(client.baseUrl, `/api/campaigns/${id}/runs/${runId}/results`);
    expect(ndjson.status).toBe(200);
    expect(ndjson.headers['content-type']).toMatch(/^application\/x-ndjson/);
    expect(ndjson.headers['x-recipient-count']).toBe('43');
    const lines = ndjson.body.trimEnd().split('\n');
    const summary = JSON.parse(lines.at(-1)!) as { summary: { count: number; sha256: string } };
    const rows = lines.slice(0, -1).map((line) => JSON.parse(line) as { id: string; state: string; attempts: number; lastError: { code: string } | null });
    const bodyBeforeSummary = ndjson.body.slice(0, ndjson.body.length - lines.at(-1)!.length - 1);
    const digest = createHash('sha256').update(bodyBeforeSummary).digest('hex');
    expect(summary.summary).toEqual({ count: 43, sha256: digest });
    // The trailer covers the whole body, summary line included.
    expect(ndjson.trailers).toMatchObject({ 'x-recipient-count-written': '43', 'x-content-sha256': createHash('sha256').update(ndjson.body).digest('hex') });
    // In list order, each with its outcome.
    expect(rows.map((r) => r.id)).toEqual(ids);
    expect(rows.filter((r) => r.state === 'sent')).toHaveLength(41);
    expect(rows.find((r) => r.id === 'bad1')).toMatchObject({ state: 'failed', attempts: 1, lastError: { code: 'HTTP_400' } });

    const csv = await exportResults(client.baseUrl, `/api/campaigns/${id}/runs/${runId}/results?format=csv`);
    expect(csv.status).toBe(200);
    expect(csv.headers['content-type']).toMatch(/^text\/csv/);
    const csvLines = csv.body.trimEnd().split('\n');
    expect(csvLines[0]).toBe('id,state,attempts,reason,reasonDetail,errorCode,errorMessage,errorAt,updatedAt,locale,delivery,provider');
    expect(csvLines).toHaveLength(44);
    expect(csv.trailers).toMatchObject({ 'x-recipient-count-written': '43', 'x-content-sha256': createHash('sha256').update(csv.body).digest('hex') });
    // A spreadsheet shows the formula-looking id, never runs it.
    expect(csvLines.at(-1)).toMatch(/^"'=HYPERLINK\(""x""\)",sent,1,/);

    // A run that does not exist, and a format that does not.
    expect((await exportResults(client.baseUrl, `/api/campaigns/${id}/runs/nope/results`)).status).toBe(404);
    expect((await exportResults(client.baseUrl, `/api/campaigns/${id}/runs/${runId}/results?format=xml`)).status).toBeGreaterThanOrEqual(400);
  });
});
