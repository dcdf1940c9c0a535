import { createHash } from 'node:crypto';
import { CliError, type Api } from './api.js';
import { bar, Progress } from './progress.js';

/**
 * `pushq results`: a run's results to stdout as the API streams them, with
 * progress on stderr, then a check that the file is whole — the count and
 * SHA-256 the server sent at the end against what arrived. Exits with an
 * error (after the bytes, which are already written) when they differ.
 */
export async function results(
  api: Api,
  campaignId: string,
  options: { run?: string; format?: string },
  out: NodeJS.WritableStream = process.stdout,
): Promise<string> {
  const format = options.format ?? 'ndjson';
  if (format !== 'ndjson' && format !== 'csv') throw new CliError(`--format is ndjson or csv, not ${JSON.stringify(format)}`);
  const runId = options.run ?? (await api.call('GET', `/api/campaigns/${encodeURIComponent(campaignId)}`)).latestRun?.id;
  if (!runId) throw new CliError(`campaign ${campaignId} has not run yet`);
  const res = await api.open('GET', `/api/campaigns/${encodeURIComponent(campaignId)}/runs/${encodeURIComponent(runId)}/results?format=${format}`);
  const total = Number(res.headers['x-recipient-count'] ?? 0);
  const hash = createHash('sha256');
  const progress = new Progress();
  let lines = 0;
  for await (const chunk of res.body) {
    const bytes = chunk as Buffer;
    hash.update(bytes);
    for (const byte of bytes) if (byte === 10) lines += 1;
    if (!out.write(bytes)) await new Promise((resolve) => out.once('drain', resolve));
    const rows = Math.max(0, lines - (format === 'csv' ? 1 : 0));
    progress.update(`${bar(total ? rows / total : 0)} ${rows.toLocaleString('en')}/${total.toLocaleString('en')}`);
  }
  const expected = res.trailers['x-content-sha256'];
  const written = Number(res.trailers['x-recipient-count-written']);
  if (typeof expected !== 'string') throw new CliError('the export ended without its checksum: it was cut short');
  const digest = hash.digest('hex');
  if (digest !== expected || written !== total)
    throw new CliError(`the export is not whole: ${written} of ${total} recipients, checksum ${digest === expected ? 'matches' : 'differs'}`);
  progress.done(`${written.toLocaleString('en')} recipients, sha256 ${expected}`);
  return runId;
}
