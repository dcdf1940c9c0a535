import { createHash } from 'node:crypto';
import type { ResultRow } from '../../app/ports.js';

/** About this many characters of NDJSON per chunk handed on: few enough chunks for a million rows, small enough to stay constant in memory. */
const CHUNK_CHARS = 64 * 1024;

/**
 * The NDJSON lines of `rows`, joined into chunks, with the count and the
 * SHA-256 of every byte yielded (read `digest()` once the chunks are
 * consumed): the archive's file body, and what its manifest vouches for.
 */
export function ndjsonChunks(rows: AsyncIterable<ResultRow>, line: (row: ResultRow, position: number) => string = (row) => `${JSON.stringify(row)}\n`) {
  const hash = createHash('sha256');
  let count = 0;
  async function* chunks(): AsyncGenerator<string> {
    let pending: string[] = [];
    let size = 0;
    for await (const row of rows) {
      const ndjson = `${JSON.stringify(row)}\n`;
      hash.update(ndjson);
      const text = line(row, count);
      count += 1;
      pending.push(text);
      size += text.length;
      if (size >= CHUNK_CHARS) {
        yield pending.join('');
        pending = [];
        size = 0;
      }
    }
    if (pending.length > 0) yield pending.join('');
  }
  return {
    chunks: chunks(),
    /** The count and hex SHA-256 of the NDJSON of every row yielded. */
    digest: () => ({ count, sha256: hash.digest('hex') }),
  };
}
