import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { pipeline, Transform, type TransformCallback } from 'node:stream';
import { CsvError, parse } from 'csv-parse';
import type { UploadSource } from '../../app/upload-recipients.js';
import { DomainError, ErrorCodes } from '../../domain/errors.js';

export type UploadFormat = 'csv' | 'ndjson';

const MAX_LINE = 64 * 1024;

function malformed(message: string): DomainError {
  return new DomainError(ErrorCodes.MALFORMED_REQUEST, `${message}: nothing was kept`);
}

/** Splits a byte stream into lines (LF or CRLF), one string per line. */
class LineSplitter extends Transform {
  private rest = '';

  constructor() {
    super({ readableObjectMode: true });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    const text = this.rest + chunk.toString('utf8');
    const lines = text.split('\n');
    this.rest = lines.pop() ?? '';
    if (this.rest.length > MAX_LINE) return done(malformed(`a line is longer than ${MAX_LINE} bytes`));
    for (const line of lines) this.push(line.endsWith('\r') ? line.slice(0, -1) : line);
    done();
  }

  override _flush(done: TransformCallback): void {
    if (this.rest.length > 0) this.push(this.rest.endsWith('\r') ? this.rest.slice(0, -1) : this.rest);
    done();
  }
}

async function* ndjsonRows(lines: AsyncIterable<string>): AsyncGenerator<unknown> {
  let lineNo = 0;
  for await (const raw of lines) {
    lineNo += 1;
    const line = lineNo === 1 ? raw.replace(/^\uFEFF/, '') : raw;
    if (line.trim() === '') continue;
    try {
      yield JSON.parse(line);
    } catch {
      throw malformed(`line ${lineNo} is not JSON`);
    }
  }
}

async function* csvRows(records: AsyncIterable<string[]>): AsyncGenerator<unknown> {
  let header: string[] | null = null;
  try {
    for await (const record of records) {
      if (!header) {
        header = record.map((name) => name.trim());
        if (!header.includes('id')) throw malformed('the CSV header has no "id" column');
        if (new Set(header).size !== header.length) throw malformed('the CSV header names a column twice');
        continue;
      }
      // Empty cells are absent fields. fromEntries defines own properties: a
      // column named __proto__ is data like any other.
      yield Object.fromEntries(header.map((name, i) => [name, record[i]]).filter(([, value]) => value !== ''));
    }
  } catch (err) {
    if (err instanceof CsvError) throw malformed(`the CSV is malformed (${err.code}): ${err.message}`);
    throw err;
  }
  if (!header) throw malformed('the CSV is empty: no header row');
}

/**
 * The body of an upload as rows, parsed while it streams in, with a running
 * SHA-256 and byte count. A body cut short (the client went away before its
 * Content-Length) or a syntax error ends the rows with an error.
 */
export function uploadSource(req: IncomingMessage, format: UploadFormat): UploadSource {
  const hash = createHash('sha256');
  let bytes = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      bytes += chunk.length;
      done(null, chunk);
    },
  });
  const parser = format === 'csv' ? parse({ bom: true, skip_empty_lines: true, relax_column_count: false }) : new LineSplitter();
  const onError = (err: Error | null) => {
    if (err && !(err instanceof DomainError) && !(err instanceof CsvError)) {
      parser.destroy(malformed(`the body ended before it was whole (${err.message})`));
    }
  };
  pipeline(req, meter, parser, onError);
  let sha256: string | null = null;
  return {
    rows: format === 'csv' ? csvRows(parser as AsyncIterable<string[]>) : ndjsonRows(parser as AsyncIterable<string>),
    digest() {
      if (!req.complete) throw malformed('the body ended before its Content-Length');
      sha256 ??= hash.digest('hex');
      return { bytes, sha256 };
    },
  };
}
