import { createHash } from 'node:crypto';
import type { Response } from 'express';
import type { ResultRow } from '../../app/campaign-queries.js';
import type { DryRunFailure, DryRunReport } from '../../app/dry-run.js';
import { csvLine } from './csv.js';

const CSV_COLUMNS = [
  'id',
  'state',
  'attempts',
  'reason',
  'reasonDetail',
  'errorCode',
  'errorMessage',
  'errorAt',
  'updatedAt',
  'locale',
  'delivery',
  'provider',
] as const;

function csvRow(row: ResultRow): string {
  return csvLine([
    row.id,
    row.state,
    row.attempts,
    row.reason ?? '',
    row.reasonDetail ?? '',
    row.lastError?.code ?? '',
    row.lastError?.message ?? '',
    row.lastError?.at ?? '',
    row.updatedAt ?? '',
    row.locale ?? '',
    row.delivery ?? '',
    row.provider ?? '',
  ]);
}

/**
 * Streams a dry run as NDJSON: one line per recipient who would fail, in list
 * order, then `{"summary": report}`. A failure before the first line is
 * answered as an error; one after it cuts the body short (no summary line).
 */
export async function streamDryRun(res: Response, execute: (onFailure: (failure: DryRunFailure) => Promise<void>) => Promise<DryRunReport>): Promise<void> {
  res.type('application/x-ndjson; charset=utf-8');
  const write = async (text: string) => {
    if (res.destroyed) throw new Error('the reader went away');
    if (!res.write(text) && !res.destroyed) await drained(res);
  };
  try {
    const report = await execute((failure) => write(`${JSON.stringify(failure)}\n`));
    await write(`${JSON.stringify({ summary: report })}\n`);
    res.end();
  } catch (err) {
    if (!res.headersSent) throw err;
    res.destroy(err as Error);
  }
}

/** Resolves once `res` wants more, or once it is gone (a reader that went away). */
function drained(res: Response): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/**
 * Streams a run's results in constant memory (a page of rows at a time,
 * waiting whenever the reader is slower) so the receiving side can check the
 * file is whole: `X-Recipient-Count` up front, then the count written and the
 * SHA-256 of the whole body in HTTP trailers — and, in NDJSON, a last line
 * `{"summary":{"count":…,"sha256":…}}` whose checksum covers every byte
 * before it, for a reader that kept only the file. A body without them was
 * cut short: a read that fails half-way destroys the response rather than
 * end it.
 */
export async function streamResults(
  res: Response,
  results: { total: number; archived?: boolean; rows: AsyncIterable<ResultRow> },
  format: 'ndjson' | 'csv',
  filename: string,
): Promise<void> {
  const csv = format === 'csv';
  const hash = createHash('sha256');
  res.type(csv ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8');
  if (csv) res.attachment(filename);
  res.setHeader('X-Recipient-Count', String(results.total));
  res.setHeader('Trailer', 'X-Recipient-Count-Written, X-Content-SHA256');
  let written = 0;
  const write = async (text: string) => {
    hash.update(text);
    if (!res.write(text) && !res.destroyed) await drained(res);
  };
  try {
    if (csv) await write(csvLine([...CSV_COLUMNS]));
    for await (const row of results.rows) {
      if (res.destroyed) return;
      await write(csv ? csvRow(row) : `${JSON.stringify(row)}\n`);
      written += 1;
    }
  } catch (err) {
    res.destroy(err as Error);
    return;
  }
  if (!csv) {
    const summary = `${JSON.stringify({ summary: { count: written, sha256: hash.copy().digest('hex'), ...(results.archived ? { archived: true } : {}) } })}\n`;
    hash.update(summary);
    res.write(summary);
  }
  res.addTrailers({ 'X-Recipient-Count-Written': String(written), 'X-Content-SHA256': hash.digest('hex') });
  res.end();
}
