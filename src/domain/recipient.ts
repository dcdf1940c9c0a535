import { DomainError, ErrorCodes } from './errors.js';
import { MAX_JSON_DEPTH, nestsDeeperThan } from './json-depth.js';

/**
 * Recipients: what an operator hands us, validated and deduplicated.
 *
 * A recipient is `{ id, ...fields }`; a bare string is shorthand for `{ id }`.
 * We keep bare ids as plain strings all the way into storage: most audiences
 * are lists of ids or tokens, and an object per recipient would double their
 * footprint for nothing.
 */
export const MAX_RECIPIENT_ID_LENGTH = 256;
export const MAX_RECIPIENT_BYTES = 8 * 1024;
/** How many invalid rows an answer names (each with why), for the operator to fix the source. */
export const MAX_INVALID_EXAMPLES = 100;

export type RecipientRecord = { readonly id: string } & Readonly<Record<string, unknown>>;
/** A bare id, or the whole record when it carries more than its id. */
export type StoredRecipient = string | RecipientRecord;

export function recipientId(r: StoredRecipient): string {
  return typeof r === 'string' ? r : r.id;
}

export function recipientRecord(r: StoredRecipient): RecipientRecord {
  return typeof r === 'string' ? { id: r } : r;
}

export type RecipientCheck = { ok: true; recipient: StoredRecipient } | { ok: false; reason: string };

export function checkRecipientId(id: unknown): string | undefined {
  if (typeof id !== 'string') return 'id must be a string';
  if (id.length === 0) return 'id must not be empty';
  if (id.trim() === '') return 'id must not be blank';
  // Count code points, not UTF-16 units, so 256 emoji are as legal as 256 letters.
  if (id.length > MAX_RECIPIENT_ID_LENGTH && [...id].length > MAX_RECIPIENT_ID_LENGTH) {
    return `id is longer than ${MAX_RECIPIENT_ID_LENGTH} characters`;
  }
  return undefined;
}

export function checkRecipient(input: unknown): RecipientCheck {
  if (typeof input === 'string') {
    const problem = checkRecipientId(input);
    return problem ? { ok: false, reason: problem } : { ok: true, recipient: input };
  }
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    return { ok: false, reason: 'recipient must be an object with an id, or a string id' };
  }
  if (!Object.prototype.hasOwnProperty.call(input, 'id')) return { ok: false, reason: 'id is missing' };
  const record = input as Record<string, unknown>;
  const problem = checkRecipientId(record.id);
  if (problem) return { ok: false, reason: problem };
  const keys = Object.keys(record);
  if (keys.length === 1) return { ok: true, recipient: record.id as string };
  if (nestsDeeperThan(record)) return { ok: false, reason: `recipient fields nest deeper than ${MAX_JSON_DEPTH} levels` };
  if (JSON.stringify(record).length > MAX_RECIPIENT_BYTES) {
    return { ok: false, reason: `recipient record is larger than ${MAX_RECIPIENT_BYTES} bytes` };
  }
  return { ok: true, recipient: record as RecipientRecord };
}

/** Most distinct field names a list's record keeps; a list with more is "fields unknown" (no template warnings). */
export const MAX_LIST_FIELDS = 256;

/** The field names a list's recipients have (for the warning that a template names one nobody has). */
export class FieldNames {
  private readonly names = new Set<string>();
  private overflow = false;

  add(recipient: StoredRecipient): void {
    if (typeof recipient === 'string' || this.overflow) return;
    for (const key of Object.keys(recipient)) {
      if (this.names.has(key)) continue;
      if (this.names.size >= MAX_LIST_FIELDS) {
        this.overflow = true;
        return;
      }
      this.names.add(key);
    }
  }

  /** Sorted, or null when there were more than MAX_LIST_FIELDS. */
  list(): string[] | null {
    return this.overflow ? null : [...this.names].sort();
  }
}

export interface InvalidRow {
  /** 1-based position in the input (data rows; a CSV header and blank lines are not counted). */
  row: number;
  /** 0-based position in an inline array (`recipients[index]`). */
  index?: number;
  reason: string;
}

export interface IngestSummary {
  accepted: number;
  duplicate: number;
  invalid: number;
  /** The first few invalid rows, for the operator to fix the source. */
  invalidRows: InvalidRow[];
}

/**
 * Counts rows as they go by, in input order: accepted, duplicate (an id seen
 * before: the first one wins), invalid (with the first few row numbers and
 * reasons). It keeps no recipient: callers decide where they go.
 */
export class IngestTally {
  accepted = 0;
  duplicate = 0;
  invalid = 0;
  rows = 0;
  private readonly invalidRows: InvalidRow[] = [];

  /** Checks the next row; answers the recipient, or null when the row is unusable. `inline`: rows are array elements (named by index too). */
  check(input: unknown, inline = false): StoredRecipient | null {
    this.rows += 1;
    const check = checkRecipient(input);
    if (check.ok) return check.recipient;
    this.invalid += 1;
    if (this.invalidRows.length < MAX_INVALID_EXAMPLES) {
      this.invalidRows.push(inline ? { row: this.rows, index: this.rows - 1, reason: check.reason } : { row: this.rows, reason: check.reason });
    }
    return null;
  }

  summary(): IngestSummary {
    return { accepted: this.accepted, duplicate: this.duplicate, invalid: this.invalid, invalidRows: [...this.invalidRows] };
  }
}

/**
 * The refusal of a whole input for its invalid rows (the default: the lesson
 * of a truncated batch file is to keep nothing on any doubt): 422 naming the
 * first rows and why, and how to skip them instead.
 */
export function invalidRecipients(summary: IngestSummary, what: string): DomainError {
  const first = summary.invalidRows[0];
  const where = first ? (first.index !== undefined ? `recipients[${first.index}]` : `row ${first.row}`) : '';
  return new DomainError(
    ErrorCodes.VALIDATION_FAILED,
    `${summary.invalid} recipient(s) are invalid${first ? ` (first: ${where}: ${first.reason})` : ''}; ${what}. Fix them, or add ?invalid=skip to skip and report them`,
    summary,
  );
}

/** Collects a list in memory (inline recipients), deduplicated, first one wins. */
export class RecipientCollector {
  private readonly seen = new Set<string>();
  private readonly tally = new IngestTally();
  readonly recipients: StoredRecipient[] = [];

  add(input: unknown): void {
    const recipient = this.tally.check(input, true);
    if (recipient === null) return;
    const id = recipientId(recipient);
    if (this.seen.has(id)) {
      this.tally.duplicate += 1;
      return;
    }
    this.seen.add(id);
    this.tally.accepted += 1;
    this.recipients.push(recipient);
  }

  summary(): IngestSummary {
    return this.tally.summary();
  }
}
