import type { RecipientRecord, StoredRecipient } from '../../domain/recipient.js';

/**
 * How a page of recipients is stored: compact, because a campaign may hold
 * millions. A page is `{"c":[field names], "r":[rows]}` where a row is
 *   "id"                    a bare id;
 *   ["id", v1, v2, …]       the id and its fields in the order of `c`
 *                           (absent fields are JSON null; trailing ones dropped);
 *   { "id": …, … }          the record as is, for one that carries a field whose
 *                           value is null (so null and absent stay different).
 * Field names are written once per page instead of once per recipient.
 * Pages written before this codec (a plain JSON array of rows) still read.
 */
interface EncodedPage {
  c: string[];
  r: Array<string | unknown[] | RecipientRecord>;
}

export function encodePage(recipients: readonly StoredRecipient[]): string {
  const columns: string[] = [];
  const index = new Map<string, number>();
  const rows: EncodedPage['r'] = [];
  for (const recipient of recipients) {
    if (typeof recipient === 'string') {
      rows.push(recipient);
      continue;
    }
    const keys = Object.keys(recipient).filter((key) => key !== 'id');
    if (keys.some((key) => recipient[key] === null)) {
      rows.push(recipient);
      continue;
    }
    const row: unknown[] = [recipient.id];
    for (const key of keys) {
      let column = index.get(key);
      if (column === undefined) {
        column = columns.length;
        columns.push(key);
        index.set(key, column);
      }
      while (row.length <= column + 1) row.push(null);
      row[column + 1] = recipient[key];
    }
    rows.push(row);
  }
  return JSON.stringify({ c: columns, r: rows } satisfies EncodedPage);
}

export function decodePage(raw: string): StoredRecipient[] {
  const parsed = JSON.parse(raw) as EncodedPage | StoredRecipient[];
  if (Array.isArray(parsed)) return parsed;
  const { c: columns, r: rows } = parsed;
  return rows.map((row) => {
    if (typeof row === 'string' || !Array.isArray(row)) return row as StoredRecipient;
    const entries: Array<[string, unknown]> = [['id', row[0]]];
    for (let i = 1; i < row.length; i += 1) if (row[i] !== null) entries.push([columns[i - 1]!, row[i]]);
    // fromEntries defines own properties: a field named __proto__ stays data.
    return Object.fromEntries(entries) as RecipientRecord;
  });
}

/** FNV-1a over the UTF-8 bytes: picks an id's index bucket (id → position). Persisted layout: never change it. */
export function bucketOf(id: string, buckets: number): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(id, 'utf8')) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % buckets;
}
