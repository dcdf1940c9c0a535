import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { z } from 'zod';

/**
 * fast-check arbitraries for the API fuzzer, derived from the JSON Schema
 * that zod produces for each route (the same one the OpenAPI document
 * carries), so a new route or field is fuzzed without new code here.
 */

export type JsonSchema = {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  minItems?: number;
  maxItems?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  enum?: unknown[];
  const?: unknown;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  minimum?: number;
  maximum?: number;
};

export function jsonSchemaOf(schema: z.ZodType): JsonSchema {
  return z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
}

/** Strings every text field is tried with: empty, blank, control and bidi characters, Korean, formulas, paths, markup, huge. */
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '',
    ' ',
    '\t',
    '\u0000',
    '\u001b[2J\u001b[31mred',
    '\u202eevil',
    '\ud800',
    '김민준',
    '=cmd|"/c calc"!A1',
    '+1',
    '-3029',
    '@SUM(1)',
    '../../etc/passwd',
    '<script>alert(1)</script>',
    '__proto__',
    'constructor',
    'NaN',
    '1e999',
    '9007199254740993',
    '{"a":',
    '\r\n',
  ),
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.nat({ max: 70_000 }).map((n) => 'x'.repeat(n)),
);

/** A value nested `depth` levels deep (arrays or objects). */
export function nested(depth: number, object: boolean): unknown {
  let value: unknown = 1;
  for (let i = 0; i < depth; i++) value = object ? { a: value } : [value];
  return value;
}

class Raw {
  constructor(readonly text: string) {}
}

/** JSON.stringify without recursion, for values nested deeper than the call stack allows. */
export function toJson(root: unknown): string {
  const out: string[] = [];
  const stack: unknown[] = [root];
  while (stack.length) {
    const item = stack.pop();
    if (item instanceof Raw) {
      out.push(item.text);
    } else if (Array.isArray(item)) {
      out.push('[');
      stack.push(new Raw(']'));
      for (let i = item.length - 1; i >= 0; i--) {
        stack.push(item[i] === undefined ? null : item[i]);
        if (i > 0) stack.push(new Raw(','));
      }
    } else if (item && typeof item === 'object') {
      out.push('{');
      stack.push(new Raw('}'));
      const entries = Object.entries(item).filter(([, v]) => v !== undefined);
      for (let i = entries.length - 1; i >= 0; i--) {
        stack.push(entries[i]![1]);
        stack.push(new Raw(`${JSON.stringify(entries[i]![0])}:`));
        if (i > 0) stack.push(new Raw(','));
      }
    } else {
      out.push(JSON.stringify(item) ?? 'null');
    }
  }
  return out.join('');
}

/** Values of every JSON type that a field may be handed instead of the right one. */
export const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: hostileString },
  {
    weight: 2,
    arbitrary: fc.constantFrom<unknown>(null, true, false, 0, -1, -0, 1.5, 2 ** 31, 2 ** 53 - 1, 2 ** 53 + 2, -(2 ** 63), 1e300, [], {}, [null], { '': '' }),
  },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 1, arbitrary: fc.constantFrom(5, 63, 64, 65, 200, 20_000).chain((depth) => fc.boolean().map((object) => nested(depth, object))) },
);

/** Values for fields whose schema is only "a string": what such a field means (a duration, a date, a cron, a zone, ...). */
const HINTS: Record<string, fc.Arbitrary<unknown>> = {
  per: fc.constantFrom('1m', '1h', '24h', '7d', '90d', '0s', '59s', '91d', '999999999999d', '1x', '-1h', '1.5h', ''),
  at: fc.oneof(
    fc.constantFrom(
      '2030-01-01T00:00:00Z',
      '2030-01-01T09:00:00+09:00',
      '2001-01-01T00:00:00Z',
      '2030-02-30T00:00:00Z',
      '+275760-09-13T00:00:00.000Z',
      '9999-12-31T23:59:59Z',
      'tomorrow',
      '',
    ),
    fc.date({ min: new Date('1969-01-01'), max: new Date('2100-01-01'), noInvalidDate: true }).map((d) => d.toISOString()),
  ),
  cron: fc.constantFrom(
    '0 0 9 * * *',
    '0 30 8 * * MON-FRI',
    '* * * * * *',
    '*/2 * * * * *',
    '0 * * * * *',
    '0 0 9 * *',
    '0 0 0 30 2 *',
    '@daily',
    '61 * * * * *',
    'garbage',
  ),
  timezone: fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom('Asia/Seoul', 'UTC', 'aSiA/sEoUl', 'America/New_York', 'Etc/GMT+14') },
    { weight: 1, arbitrary: fc.constantFrom('Mars/Olympus', '+09:00', 'x'.repeat(64)) },
  ),
  provider: fc.oneof({ weight: 6, arbitrary: fc.constant('mock') }, { weight: 1, arbitrary: fc.constantFrom('MOCK', 'nope', '') }),
};

/** Recipient ids: plain, Korean (multi-byte in every encoding), long, blank. */
export const recipientId: fc.Arbitrary<string> = fc.oneof(
  { weight: 5, arbitrary: fc.stringMatching(/^[a-z0-9]{1,12}$/) },
  { weight: 2, arbitrary: fc.constantFrom('김민준', '이서연', '박지후', '😀', 'é', 'ｶﾀｶﾅ') },
  { weight: 1, arbitrary: hostileString },
);

const recipientRecord: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: recipientId.map((id) => ({ id })) },
  { weight: 2, arbitrary: fc.record({ id: recipientId, name: fc.string({ maxLength: 10 }), tz: HINTS.timezone! }) },
  { weight: 1, arbitrary: recipientId },
  { weight: 1, arbitrary: hostileValue },
);
const validRecipient: fc.Arbitrary<unknown> = fc.stringMatching(/^[a-z0-9]{1,12}$/).map((id) => ({ id }));

HINTS.recipients = fc.oneof(fc.array(validRecipient, { minLength: 1, maxLength: 6 }), fc.array(recipientRecord, { maxLength: 6 }));
HINTS.ids = fc.array(recipientId, { maxLength: 6 });

/** A value the schema accepts (mostly: patterns and hints aim at the edges, where validation lives). */
export function fromSchema(schema: JsonSchema, name?: string, depth = 0): fc.Arbitrary<unknown> {
  const hint = name ? HINTS[name] : undefined;
  const base = baseFromSchema(schema, depth);
  return hint ? fc.oneof({ weight: 3, arbitrary: hint }, { weight: 1, arbitrary: base }) : base;
}

function baseFromSchema(schema: JsonSchema, depth: number): fc.Arbitrary<unknown> {
  if (schema.const !== undefined) return fc.constant(schema.const);
  if (schema.enum) return fc.constantFrom(...schema.enum);
  const alternatives = schema.anyOf ?? schema.oneOf;
  if (alternatives) return fc.oneof(...alternatives.map((s) => fromSchema(s, undefined, depth + 1)));
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type;
  switch (type) {
    case 'object': {
      const properties = schema.properties ?? {};
      const required = schema.required ?? [];
      const keys = Object.keys(properties);
      if (keys.length === 0 && schema.additionalProperties !== false) {
        return fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 });
      }
      return fc.record(Object.fromEntries(keys.map((key) => [key, fromSchema(properties[key]!, key, depth + 1)])), { requiredKeys: required });
    }
    case 'array':
      return fc.array(schema.items ? fromSchema(schema.items, undefined, depth + 1) : fc.jsonValue({ maxDepth: 2 }), {
        minLength: schema.minItems ?? 0,
        maxLength: Math.min(schema.maxItems ?? 5, 5),
      });
    case 'string': {
      if (schema.pattern) {
        const pattern = new RegExp(schema.pattern);
        return fc.stringMatching(pattern).filter((s) => s.length <= (schema.maxLength ?? Infinity) && s.length >= (schema.minLength ?? 0));
      }
      return fc.string({ minLength: schema.minLength ?? 0, maxLength: Math.min(schema.maxLength ?? 40, 40) });
    }
    case 'integer':
      return fc.integer({ min: schema.minimum ?? -(2 ** 31), max: schema.maximum ?? 2 ** 31 });
    case 'number':
      return fc.double({ min: schema.minimum, max: schema.maximum, noNaN: true });
    case 'boolean':
      return fc.boolean();
    case 'null':
      return fc.constant(null);
    default:
      return fc.jsonValue({ maxDepth: 2 });
  }
}

/** Every place in a JSON value (as a path of keys), the root first. */
function places(value: unknown, path: Array<string | number> = [], out: Array<Array<string | number>> = []): Array<Array<string | number>> {
  out.push(path);
  if (out.length > 200) return out;
  if (Array.isArray(value)) value.forEach((v, i) => places(v, [...path, i], out));
  else if (value && typeof value === 'object') for (const [k, v] of Object.entries(value)) places(v, [...path, k], out);
  return out;
}

/** `root` with the container at `path`'s parent copied (and every one above it), then edited: the rest is shared, never cloned. */
function setAt(root: unknown, path: Array<string | number>, edit: (parent: any, key: string | number) => void): unknown {
  if (path.length === 0) return root;
  const copy = (value: unknown): any => (Array.isArray(value) ? [...value] : { ...(value as object) });
  const top = copy(root);
  let parent: any = top;
  for (const key of path.slice(0, -1)) {
    parent[key] = copy(parent[key]);
    parent = parent[key];
  }
  edit(parent, path.at(-1)!);
  return top;
}

type Mutation = { kind: 'replace'; value: unknown } | { kind: 'delete' } | { kind: 'add'; key: string; value: unknown };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: hostileValue.map((value) => ({ kind: 'replace' as const, value })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'delete' as const }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('add' as const),
      key: fc.oneof(fc.constantFrom('unknown', 'constructor', 'prototype', '', 'id'), fc.string({ maxLength: 8 })),
      value: hostileValue,
    }),
  },
);

/** `value` with one place in it changed: replaced by a hostile value, removed, or given an unknown key. */
export function mutated(value: unknown): fc.Arbitrary<unknown> {
  return fc.tuple(fc.nat(), mutation).map(([n, m]) => {
    const all = places(value);
    const path = all[n % all.length]!;
    if (path.length === 0) {
      if (m.kind === 'replace') return m.value;
      if (m.kind === 'add' && value && typeof value === 'object' && !Array.isArray(value)) return { ...value, [m.key]: m.value };
      return value;
    }
    return setAt(value, path, (parent, key) => {
      if (m.kind === 'replace') parent[key] = m.value;
      else if (m.kind === 'delete') {
        if (Array.isArray(parent)) parent.splice(Number(key), 1);
        else delete parent[key];
      } else if (parent && typeof parent === 'object' && !Array.isArray(parent)) parent[m.key] = m.value;
    });
  });
}

/** A schema-valid value, or one with a single hostile change, or any JSON at all. */
export function bodyValue(schema: JsonSchema): fc.Arbitrary<unknown> {
  const valid = fromSchema(schema);
  return fc.oneof({ weight: 6, arbitrary: valid }, { weight: 4, arbitrary: valid.chain(mutated) }, { weight: 1, arbitrary: hostileValue });
}

/** How a JSON value is put on the wire: as it is, or broken in one of the ways clients break it. */
export type BodyEncoding = 'json' | 'truncated' | 'proto' | 'duplicate-key' | 'bom' | 'invalid-utf8' | 'deep-text' | 'huge-number' | 'not-json';

export const bodyEncoding: fc.Arbitrary<BodyEncoding> = fc.oneof(
  { weight: 12, arbitrary: fc.constant('json' as const) },
  { weight: 1, arbitrary: fc.constantFrom<BodyEncoding>('truncated', 'proto', 'duplicate-key', 'bom', 'invalid-utf8', 'deep-text', 'huge-number', 'not-json') },
);

export function encodeBody(value: unknown, encoding: BodyEncoding, cut: number): Buffer {
  const text = toJson(value);
  switch (encoding) {
    case 'json':
      return Buffer.from(text);
    case 'truncated':
      return Buffer.from(text).subarray(0, cut % Math.max(1, Buffer.byteLength(text)));
    case 'proto':
      return Buffer.from(
        text.startsWith('{') ? `{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}${text === '{}' ? '' : ','}${text.slice(1)}` : text,
      );
    case 'duplicate-key':
      return Buffer.from(text.startsWith('{') && text !== '{}' ? `{"name":1,${text.slice(1)}` : text);
    case 'bom':
      return Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)]);
    case 'invalid-utf8':
      return Buffer.concat([Buffer.from(text.slice(0, -1)), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from(text.slice(-1))]);
    case 'deep-text':
      return Buffer.from('['.repeat(100_000) + ']'.repeat(100_000));
    case 'huge-number':
      return Buffer.from(text.replace(/\d+/, '1e999'));
    case 'not-json':
      return Buffer.from('name=x&provider=mock');
  }
}

// --- Uploads (CSV / NDJSON) -------------------------------------------------

export interface UploadBody {
  format: 'csv' | 'ndjson';
  bytes: Buffer;
  rows: number;
}

const uploadRow: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  { weight: 6, arbitrary: recipientId.map((id) => ({ id })) },
  { weight: 2, arbitrary: fc.record({ id: recipientId, name: fc.string({ maxLength: 12 }) }) },
  { weight: 1, arbitrary: fc.record({ id: hostileValue }) },
  { weight: 1, arbitrary: fc.record({ nope: recipientId }) },
);

function csvCell(value: unknown): string {
  const text = typeof value === 'string' ? value : toJson(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export type UploadDamage =
  'none' | 'truncated' | 'bom' | 'crlf' | 'invalid-utf8' | 'extra-columns' | 'deep-line' | 'unterminated-quote' | 'empty' | 'blank-lines';

export const uploadDamage: fc.Arbitrary<UploadDamage> = fc.oneof(
  { weight: 8, arbitrary: fc.constant('none' as const) },
  {
    weight: 3,
    arbitrary: fc.constantFrom<UploadDamage>(
      'truncated',
      'bom',
      'crlf',
      'invalid-utf8',
      'extra-columns',
      'deep-line',
      'unterminated-quote',
      'empty',
      'blank-lines',
    ),
  },
);

export const uploadBody: fc.Arbitrary<UploadBody & { damage: UploadDamage }> = fc
  .record({
    format: fc.constantFrom<'csv' | 'ndjson'>('csv', 'ndjson'),
    rows: fc.array(uploadRow, { maxLength: 8 }),
    damage: uploadDamage,
    cut: fc.nat(),
  })
  .map(({ format, rows, damage, cut }) => {
    let text: string;
    if (format === 'ndjson') {
      text = rows.map((row) => toJson(row)).join('\n') + (rows.length ? '\n' : '');
      if (damage === 'deep-line') text += toJson({ id: 'deep', f: nested(20_000, false) }) + '\n';
      if (damage === 'unterminated-quote') text += '{"id":"open\n';
      if (damage === 'extra-columns') text += '{"id":"a"} {"id":"b"}\n';
    } else {
      const columns = [...new Set(rows.flatMap((row) => Object.keys(row)))];
      if (columns.length === 0) columns.push('id');
      text = [columns.join(','), ...rows.map((row) => columns.map((c) => csvCell(row[c])).join(','))].join('\n') + '\n';
      if (damage === 'extra-columns') text += 'a,b,c,d,e,f\n';
      if (damage === 'unterminated-quote') text += '"open,1\n';
      if (damage === 'deep-line') text += `${'x,'.repeat(5000)}x\n`;
    }
    if (damage === 'crlf') text = text.replace(/\n/g, '\r\n');
    if (damage === 'blank-lines') text = text.replace(/\n/g, '\n\n');
    let bytes = Buffer.from(text);
    if (damage === 'bom') bytes = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), bytes]);
    if (damage === 'invalid-utf8') bytes = Buffer.concat([bytes, Buffer.from([0xe1, 0x80]), Buffer.from('\n')]);
    if (damage === 'truncated') bytes = bytes.subarray(0, cut % Math.max(1, bytes.length));
    if (damage === 'empty') bytes = Buffer.alloc(0);
    return { format, bytes, rows: rows.length, damage };
  });

export function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** What an upload's integrity headers say: the truth, a lie, or nonsense. */
export const announced = {
  count: fc.oneof(
    { weight: 4, arbitrary: fc.constant('truth' as const) },
    { weight: 2, arbitrary: fc.constant(undefined) },
    { weight: 1, arbitrary: fc.constantFrom('+1', '-1') },
    { weight: 2, arbitrary: fc.constantFrom('9007199254740991', '1e300', '-1', 'abc', '', '00000000001', '99999999999', '1000000001', ' 3', '0x10') },
  ),
  sha256: fc.oneof(
    { weight: 4, arbitrary: fc.constant('truth' as const) },
    { weight: 2, arbitrary: fc.constant(undefined) },
    { weight: 1, arbitrary: fc.constant('wrong' as const) },
    { weight: 1, arbitrary: fc.constantFrom('', 'zz', 'A'.repeat(64), '0'.repeat(63), 'g'.repeat(64)) },
  ),
};

/** Percent-encodes any string, lone surrogates included (as U+FFFD, as a browser would send them). */
export function percent(text: string): string {
  return [...Buffer.from(text)]
    .map((b) => (/[A-Za-z0-9\-_.~]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`))
    .join('');
}

/** Path parameters: a known one (a fixture), a well-formed unknown one, or one made to confuse routing and decoding. */
export function pathParam(known: string[]): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 16, arbitrary: known.length ? fc.constantFrom(...known.map(percent)) : fc.constant('x') },
    { weight: 1, arbitrary: fc.stringMatching(/^[0-9a-hjkmnp-tv-z]{26}$/) },
    {
      weight: 3,
      arbitrary: fc.constantFrom(
        '..',
        '.',
        '%2e%2e',
        '%2F',
        'a%2Fb',
        '..%2F..%2Fadmin',
        '%00',
        '%zz',
        '%',
        '%C3%28',
        encodeURIComponent('김민준'),
        encodeURIComponent('\u202e'),
        'x'.repeat(10_000),
        '01ARZ3NDEKTSV4RRFFQ69G5FAV',
        '__proto__',
        'constructor',
        '%20',
      ),
    },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 20 }).map(percent) },
  );
}

/** A query string from the route's query schema: valid values, hostile ones, unknown and repeated keys. */
export function queryString(schema: JsonSchema): fc.Arbitrary<string> {
  const properties = Object.entries(schema.properties ?? {});
  const pair = fc.oneof(
    ...(properties.length
      ? [
          {
            weight: 4,
            arbitrary: fc
              .constantFrom(...properties)
              .chain(([key, s]) =>
                fc.oneof(fromSchema(s, key), hostileString).map((value) => [key, typeof value === 'string' ? value : JSON.stringify(value)] as const),
              ),
          },
        ]
      : []),
    { weight: 1, arbitrary: fc.tuple(fc.constantFrom('unknown', '__proto__', 'limit[]', 'a[b]', ''), hostileString) },
  );
  const valid = properties.length
    ? fc.array(
        fc
          .constantFrom(...properties)
          .chain(([key, s]) => fromSchema(s, key).map((value) => [key, typeof value === 'string' ? value : JSON.stringify(value)] as const)),
        { maxLength: 2 },
      )
    : fc.constant([] as Array<readonly [string, string]>);
  return fc
    .oneof(
      { weight: 6, arbitrary: fc.constant([] as Array<readonly [string, string]>) },
      { weight: 3, arbitrary: valid },
      { weight: 2, arbitrary: fc.array(pair, { maxLength: 3 }) },
    )
    .map((pairs) => (pairs.length ? `?${pairs.map(([k, v]) => `${percent(k)}=${percent(v.slice(0, 2000))}`).join('&')}` : ''));
}
