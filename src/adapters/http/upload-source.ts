import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { pipeline, Transform, type TransformCallback } from 'node:stream';
import { CsvError, parse } from 'csv-parse';
import type { UploadSource } from '../../app/upload-recipients.js';
import { DomainError, ErrorCodes } from '../../domain/errors.js';

export type UploadFormat = 'csv' | 'ndjson';

/** Longest row (an NDJSON line, a CSV record) in bytes: a recipient is at most 8 KiB of JSON, so this is room and to spare. */
export const MAX_ROW_BYTES = 64 * 1024;
/** Most columns a CSV header may name. */
export const MAX_CSV_COLUMNS = 1000;

function malformed(message: string): DomainError {
  return new DomainError(ErrorCodes.MALFORMED_REQUEST, `${message}: nothing was kept`);
}

function tooLarge(message: string): DomainError {
  return new DomainError(ErrorCodes.PAYLOAD_TOO_LARGE, `${message}: nothing was kept`);
}

/** A parser's message can quote a whole field: enough of it to find the place, no more. */
function clip(text: string, max = 200): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/**
 * Splits a byte stream into lines (LF or CRLF), one string per line. Lines
 * are cut at the newline byte, which never occurs inside a multi-byte UTF-8
 * character, and decoded whole, so a character split across two chunks of the
 * body arrives intact.
 */
class LineSplitter extends Transform {
  private parts: Buffer[] = [];
  private partBytes = 0;
  private line = 0;

  constructor() {
    super({ readableObjectMode: true });
  }

  private emitLine(bytes: Buffer): void {
    this.line += 1;
    const end = bytes.length > 0 && bytes[bytes.length - 1] === 0x0d ? bytes.length - 1 : bytes.length;
    this.push(bytes.toString('utf8', 0, end));
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    let start = 0;
    for (let nl = chunk.indexOf(0x0a, start); nl >= 0; nl = chunk.indexOf(0x0a, start)) {
      const piece = chunk.subarray(start, nl);
      if (this.partBytes + piece.length > MAX_ROW_BYTES) return done(tooLarge(`line ${this.line + 1} is longer than ${MAX_ROW_BYTES} bytes`));
      const line = this.parts.length === 0 ? piece : Buffer.concat([...this.parts, piece]);
      this.parts = [];
      this.partBytes = 0;
      this.emitLine(line);
      start = nl + 1;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      this.partBytes += rest.length;
      if (this.partBytes > MAX_ROW_BYTES) return done(tooLarge(`line ${this.line + 1} is longer than ${MAX_ROW_BYTES} bytes`));
      this.parts.push(Buffer.from(rest));
    }
    done();
  }

  override _flush(done: TransformCallback): void {
    if (this.partBytes > 0) this.emitLine(Buffer.concat(this.parts));
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
  let rows = 0;
  try {
    for await (const record of records) {
      if (!header) {
        if (record.length > MAX_CSV_COLUMNS) {
          throw new DomainError(ErrorCodes.VALIDATION_FAILED, `the CSV header names ${record.length} columns, more than ${MAX_CSV_COLUMNS}: nothing was kept`);
        }
        header = record.map((name) => name.trim());
        if (!header.includes('id')) throw malformed('the CSV header has no "id" column');
        if (new Set(header).size !== header.length) throw malformed('the CSV header names a column twice');
        continue;
      }
      if (record.length !== header.length) {
        throw malformed(`CSV row ${rows + 1} has ${record.length} fields, the header ${header.length}`);
      }
      rows += 1;
      // Empty cells are absent fields. fromEntries defines own properties: a
      // column named __proto__ is data like any other.
      yield Object.fromEntries(header.map((name, i) => [name, record[i]]).filter(([, value]) => value !== ''));
    }
  } catch (err) {
    if (err instanceof CsvError) throw csvProblem(err);
    throw err;
  }
  if (!header) throw malformed('the CSV is empty: no header row');
}

function csvProblem(err: CsvError): DomainError {
  if (err.code === 'CSV_MAX_RECORD_SIZE') return tooLarge(`a CSV row is larger than ${MAX_ROW_BYTES} bytes`);
  return malformed(`the CSV is malformed (${err.code}): ${clip(err.message)}`);
}

/**
 * The body of an upload as rows, parsed while it streams in, with a running
 * SHA-256 and byte count. A body cut short (the client went away before its
 * Content-Length), larger than `maxBytes`, or with a syntax error ends the
 * rows with an error.
 */
export function uploadSource(req: IncomingMessage, format: UploadFormat, maxBytes: number): UploadSource {
  const hash = createHash('sha256');
  // Bytes that are not UTF-8 refuse the upload: decoded, they would become replacement characters, and distinct ids the same.
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  let bytes = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      bytes += chunk.length;
      if (bytes > maxBytes) return done(tooLarge(`the upload is larger than MAX_UPLOAD_BYTES (${maxBytes} bytes)`));
      try {
        utf8.decode(chunk, { stream: true });
      } catch {
        return done(malformed(`the upload is not UTF-8 (bytes ${bytes - chunk.length}–${bytes})`));
      }
      hash.update(chunk);
      done(null, chunk);
    },
    flush(done) {
      try {
        utf8.decode();
        done();
      } catch {
        done(malformed('the upload ends inside a UTF-8 character'));
      }
    },
  });
  // Field counts are checked row by row in csvRows (after the header's own checks), not by the parser.
  const parser = format === 'csv' ? parse({ bom: true, skip_empty_lines: true, relax_column_count: true, max_record_size: MAX_ROW_BYTES }) : new LineSplitter();
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
