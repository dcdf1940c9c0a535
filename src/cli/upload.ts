import { createHash } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import { Transform } from 'node:stream';
import { parse } from 'csv-parse';
import type { Api } from './api.js';
import { bar, duration, Progress } from './progress.js';

export type FileFormat = 'csv' | 'ndjson';

export function formatOf(file: string, given?: string): FileFormat {
  if (given === 'csv' || given === 'ndjson') return given;
  if (/\.csv$/i.test(file)) return 'csv';
  if (/\.(ndjson|jsonl)$/i.test(file)) return 'ndjson';
  throw new Error(`cannot tell the format of ${file}: name it .csv or .ndjson, or pass --format`);
}

/** One pass over the file: SHA-256 of its bytes and its data rows (CSV parsed for real: quoted line breaks are one row). */
export async function fingerprint(file: string, format: FileFormat): Promise<{ rows: number; sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let rows = 0;
  const input = createReadStream(file);
  input.on('data', (chunk) => hash.update(chunk));
  if (format === 'csv') {
    const parser = input.pipe(parse({ bom: true, skip_empty_lines: true, relax_column_count: true }));
    for await (const _ of parser) rows += 1;
    rows = Math.max(0, rows - 1);
  } else {
    let rest = '';
    for await (const chunk of input) {
      const lines = (rest + chunk.toString('utf8')).split('\n');
      rest = lines.pop() ?? '';
      rows += lines.filter((line) => line.trim() !== '').length;
    }
    if (rest.trim() !== '') rows += 1;
  }
  return { rows, sha256: hash.digest('hex'), bytes: statSync(file).size };
}

/** Streams the file to PUT …/recipients with its count and hash, showing rows, MB/s and ETA; answers the server's counts. */
export async function upload(api: Api, campaignId: string, file: string, options: { format?: string; invalid?: 'reject' | 'skip' }): Promise<any> {
  const format = formatOf(file, options.format);
  const progress = new Progress();
  progress.update(`checking ${file}…`);
  const { rows, sha256, bytes } = await fingerprint(file, format);
  let sent = 0;
  const started = Date.now();
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      sent += chunk.length;
      const seconds = (Date.now() - started) / 1000;
      const rate = sent / Math.max(seconds, 0.001);
      progress.update(
        `${bar(sent / bytes)} ~${Math.round((rows * sent) / bytes).toLocaleString('en')} / ${rows.toLocaleString('en')} rows  ${(rate / 1e6).toFixed(1)} MB/s  ETA ${duration((bytes - sent) / rate)}`,
      );
      done(null, chunk);
    },
  });
  const query = options.invalid ? `?invalid=${options.invalid}` : '';
  const result = await api.call('PUT', `/api/campaigns/${campaignId}/recipients${query}`, createReadStream(file).pipe(meter), {
    'content-type': format === 'csv' ? 'text/csv' : 'application/x-ndjson',
    'content-length': String(bytes),
    'x-recipient-count': String(rows),
    'x-content-sha256': sha256,
  });
  progress.done(`uploaded ${rows.toLocaleString('en')} rows (${(bytes / 1e6).toFixed(1)} MB) in ${duration((Date.now() - started) / 1000)}`);
  return result;
}
