import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { uploadSource } from '../../src/adapters/http/upload-source.js';

/**
 * The upload parser on a body that arrives in pieces, as a socket delivers
 * it: every split position, so a multi-byte character is cut in every way
 * there is.
 */
function body(chunks: Buffer[]): IncomingMessage {
  const stream = Readable.from(chunks, { objectMode: false }) as unknown as IncomingMessage & { complete: boolean };
  stream.complete = false;
  stream.on('end', () => (stream.complete = true));
  return stream;
}

async function rows(format: 'csv' | 'ndjson', chunks: Buffer[]): Promise<{ rows: unknown[]; sha256: string }> {
  const source = uploadSource(body(chunks), format, 1 << 20);
  const out: unknown[] = [];
  for await (const row of source.rows) out.push(row);
  return { rows: out, sha256: source.digest().sha256 };
}

const KOREAN = ['김민준', '이서연', '박지후', '최수아', '정예준', '🇰🇷 emoji', 'Ünïcödé'];

describe('uploads split inside multi-byte characters', () => {
  for (const [format, text, expected] of [
    ['ndjson', KOREAN.map((id) => JSON.stringify({ id, name: `${id}님` })).join('\n') + '\n', KOREAN.map((id) => ({ id, name: `${id}님` }))],
    ['csv', `id,name\n${KOREAN.map((id) => `${id},${id}님`).join('\n')}\n`, KOREAN.map((id) => ({ id, name: `${id}님` }))],
  ] as const) {
    it(`${format}: every id arrives whole, whichever byte the body is split at (twice)`, async () => {
      const bytes = Buffer.from(text, 'utf8');
      const sha256 = createHash('sha256').update(bytes).digest('hex');
      for (let cut = 1; cut < bytes.length; cut += 1) {
        const second = Math.min(bytes.length - 1, cut + 2);
        const parsed = await rows(
          format,
          [bytes.subarray(0, cut), bytes.subarray(cut, second), bytes.subarray(second)].filter((b) => b.length > 0),
        );
        expect(parsed.rows, `split at ${cut} and ${second}`).toEqual(expected);
        expect(parsed.sha256).toBe(sha256);
      }
    });
  }

  it('refuses bytes that are not UTF-8 rather than turning them into replacement characters', async () => {
    const bad = Buffer.concat([Buffer.from('{"id":"'), Buffer.from([0xea, 0xb9]), Buffer.from('"}\n')]);
    await expect(rows('ndjson', [bad])).rejects.toThrow(/not UTF-8/);
    const cut = Buffer.concat([Buffer.from('id\n'), Buffer.from('김', 'utf8').subarray(0, 2)]);
    await expect(rows('csv', [cut])).rejects.toThrow(/UTF-8/);
  });
});
