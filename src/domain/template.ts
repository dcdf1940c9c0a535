import { Liquid, type Template } from 'liquidjs';
import { BoundedCache } from './bounded-cache.js';
import type { Message, MessageVariant } from './campaign.js';
import { DomainError, ErrorCodes } from './errors.js';
import type { RecipientRecord } from './recipient.js';
import { isValidTimeZone, occurrenceOfRunId, type ScheduleSpec } from './schedule.js';

/**
 * Personalised messages: `title`, `body` and every string in `data` (and in
 * each locale variant) may be Liquid templates over the recipient's fields.
 *
 * Liquid is strict here: a variable the recipient does not have, or an
 * unknown filter, is an error, never an empty string ("Hi " to a million
 * people) — except in an `if` / `unless` condition and under `default`,
 * where an absent field is what is being asked about. No file system (no include / render / layout), and limits on
 * template size, render time and memory, so no template can loop or blow a
 * worker's memory.
 *
 * Variables: the recipient's fields (`{{ recipient.name }}` and the bare
 * `{{ name }}`), `campaign` (id, name), `run` (id, occurrence), `now` (the
 * time of the send as ISO-8601 in the recipient's time zone: `{{ now | date:
 * "%H:%M" }}` shows their local time), and `locale` (the variant chosen).
 *
 * A template of plain text and `{{ name }}` / `{{ a.b }}` outputs (most of
 * them) renders without Liquid, by a compiled concatenation that gives the
 * same text; anything else goes through Liquid.
 */

/** Liquid's limits per template: length of its source, render time (ms), bytes it may allocate while rendering. */
export const TEMPLATE_LIMITS = { parseLimit: 64 * 1024, renderLimitMs: 50, memoryLimit: 16 * 1024 * 1024 } as const;

/** The most locale variants a message may have. */
export const MAX_LOCALES = 50;

/** Names the renderer provides; a recipient field of the same name is still there as `recipient.<name>`. */
export const RESERVED_VARIABLES = ['recipient', 'campaign', 'run', 'now', 'locale'] as const;

export interface RenderContext {
  campaign: { id: string; name: string };
  run: { id: string; occurrence: string | null };
  /** Time zone for `now` and local dates when the recipient has no valid `timezone`. */
  timezone: string;
  /** The time of the send (ms). */
  now: number;
}

export type RenderResult = { ok: true; message: Message; locale: string | null } | { ok: false; locale: string | null; variable: string | null; error: string };

/** Where a template of a message fails to parse, for a 422 next to the field. */
export interface TemplateProblem {
  /** Path in the campaign, e.g. `message.locales.ko.body`. */
  path: Array<string | number>;
  line: number;
  column: number;
  message: string;
}

function engine(): Liquid {
  const liquid = new Liquid({
    strictVariables: true,
    strictFilters: true,
    // …except where asking is the point: `{% if vip %}` and `{{ name | default: "there" }}` on a recipient without the field.
    lenientIf: true,
    ownPropertyOnly: true,
    // No file system: include / render / layout find nothing.
    fs: {
      existsSync: () => false,
      exists: () => Promise.resolve(false),
      readFileSync: () => {
        throw new Error('templates cannot read files');
      },
      readFile: async () => {
        throw new Error('templates cannot read files');
      },
      resolve: (_root: string, file: string) => file,
      contains: () => Promise.resolve(false),
      containsSync: () => false,
      sep: '/',
    },
    root: [],
    partials: [],
    layouts: [],
    relativeReference: false,
    dynamicPartials: false,
    preserveTimezones: true,
    parseLimit: TEMPLATE_LIMITS.parseLimit,
    renderLimit: TEMPLATE_LIMITS.renderLimitMs,
    memoryLimit: TEMPLATE_LIMITS.memoryLimit,
  });
  liquid.registerFilter('money', function (this: { context: { environments: unknown } }, value: unknown, currency?: unknown, locale?: unknown) {
    const amount = typeof value === 'number' ? value : Number(value);
    if (!Number.isFinite(amount)) return String(value ?? '');
    const tag = typeof locale === 'string' ? locale : localeOf(this.context.environments);
    return numberFormat(tag, typeof currency === 'string' ? currency.toUpperCase() : 'USD').format(amount);
  });
  liquid.registerFilter(
    'local_date',
    function (this: { context: { environments: unknown } }, value: unknown, locale?: unknown, style?: unknown, zone?: unknown) {
      const at = value instanceof Date ? value : new Date(typeof value === 'number' ? value : String(value));
      if (Number.isNaN(at.getTime())) return String(value ?? '');
      const tag = typeof locale === 'string' ? locale : localeOf(this.context.environments);
      const tz = typeof zone === 'string' && isValidTimeZone(zone) ? zone : zoneOf(this.context.environments);
      return dateFormat(tag, typeof style === 'string' ? style : 'medium', tz).format(at);
    },
  );
  return liquid;
}

const liquid = engine();

/** Scope keys the filters read: not variables a template can name (Liquid identifiers cannot hold `$`). */
const ZONE = '$zone';
const LOCALE = '$locale';

function localeOf(env: unknown): string {
  const value = (env as Record<string, unknown> | undefined)?.[LOCALE];
  return typeof value === 'string' ? value : 'en';
}

function zoneOf(env: unknown): string {
  const value = (env as Record<string, unknown> | undefined)?.[ZONE];
  return typeof value === 'string' ? value : 'UTC';
}

const numberFormats = new BoundedCache<string, Intl.NumberFormat>(256);
const dateFormats = new BoundedCache<string, Intl.DateTimeFormat>(1024);

function numberFormat(locale: string, currency: string): Intl.NumberFormat {
  return numberFormats.get(`${locale}|${currency}`, () => {
    try {
      return new Intl.NumberFormat(locale, { style: 'currency', currency });
    } catch {
      return new Intl.NumberFormat('en', { style: 'currency', currency: /^[A-Z]{3}$/.test(currency) ? currency : 'USD' });
    }
  });
}

type DateStyle = 'full' | 'long' | 'medium' | 'short';

function dateFormat(locale: string, style: string, zone: string): Intl.DateTimeFormat {
  return dateFormats.get(`${locale}|${style}|${zone}`, () => {
    const dateStyle: DateStyle = (['full', 'long', 'medium', 'short'] as const).find((s) => s === style) ?? 'medium';
    try {
      return new Intl.DateTimeFormat(locale, { dateStyle, timeZone: zone });
    } catch {
      return new Intl.DateTimeFormat('en', { dateStyle, timeZone: zone });
    }
  });
}

// ---------------------------------------------------------------------------
// Compiling

/** One string of a message: fixed text, a fast concatenation, or a Liquid template. */
type Piece =
  | { kind: 'text'; text: string }
  | { kind: 'fast'; parts: ReadonlyArray<string | readonly string[]>; template: Template[]; now: boolean }
  | { kind: 'liquid'; template: Template[]; now: boolean };

/** A message's strings compiled: the same shape as the message, with templates where strings were. */
type CompiledValue = Piece | CompiledValue[] | { [key: string]: CompiledValue } | number | boolean | null;

interface CompiledVariant {
  title: Piece;
  body: Piece;
  data: { [key: string]: CompiledValue };
}

const OUTPUT = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*\}\}/g;
const MARKUP = /\{\{|\{%/;

class TemplateSyntaxError extends Error {
  constructor(
    readonly line: number,
    readonly column: number,
    message: string,
  ) {
    super(message);
  }
}

/** Compiled strings, told apart from a data object that happens to have a `kind` field. */
const PIECES = new WeakSet<object>();

function piece(p: Piece): Piece {
  PIECES.add(p);
  return p;
}

function isPiece(value: object): value is Piece {
  return PIECES.has(value);
}

/** Names Liquid reads as literals, and properties it computes (`size`, `first`, `last`): left to Liquid. */
const NOT_PLAIN_NAMES = new Set(['true', 'false', 'nil', 'null', 'empty', 'blank', 'size', 'first', 'last']);

function compileString(source: string): Piece {
  if (!MARKUP.test(source)) return piece({ kind: 'text', text: source });
  const parts: Array<string | readonly string[]> = [];
  let last = 0;
  let fast = true;
  for (const match of source.matchAll(OUTPUT)) {
    const text = source.slice(last, match.index);
    if (MARKUP.test(text)) {
      fast = false;
      break;
    }
    if (text) parts.push(text);
    const path = match[1]!.split('.');
    if (path.some((name) => NOT_PLAIN_NAMES.has(name))) {
      fast = false;
      break;
    }
    parts.push(path);
    last = match.index + match[0].length;
  }
  const tail = source.slice(last);
  if (fast && MARKUP.test(tail)) fast = false;
  // Parsed by Liquid in every case: what it refuses is refused, whichever way it renders.
  let template: Template[];
  try {
    template = liquid.parse(source);
  } catch (err) {
    const e = err as Error & { token?: { getPosition?: () => [number, number] } };
    const [line, column] = e.token?.getPosition?.() ?? [1, 1];
    throw new TemplateSyntaxError(line, column, e.message.replace(/, line:\d+, col:\d+$/, ''));
  }
  if (fast) {
    if (tail) parts.push(tail);
    return piece({ kind: 'fast', parts, template, now: parts.some((p) => typeof p !== 'string' && p[0] === 'now') });
  }
  return piece({ kind: 'liquid', template, now: /\bnow\b/.test(source) });
}

/** Compiles every string of `value` (nested too); `literal`: each string is its own text, no template. */
function compileValue(value: unknown, path: Array<string | number>, problems: TemplateProblem[], literal = false): CompiledValue {
  if (typeof value === 'string') {
    if (literal) return piece({ kind: 'text', text: value });
    try {
      return compileString(value);
    } catch (err) {
      if (!(err instanceof TemplateSyntaxError)) throw err;
      problems.push({ path, line: err.line, column: err.column, message: err.message });
      return piece({ kind: 'text', text: value });
    }
  }
  if (Array.isArray(value)) return value.map((v, i) => compileValue(v, [...path, i], problems, literal));
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, compileValue(v, [...path, k], problems, literal)]));
  }
  return (value ?? null) as number | boolean | null;
}

/** A campaign's message, compiled once (per worker process), rendered per recipient. */
export class CompiledMessage {
  private constructor(
    private readonly variants: ReadonlyMap<string, CompiledVariant>,
    private readonly fallback: CompiledVariant,
    /** Lower-cased tag → the tag as the message spells it. */
    private readonly tags: ReadonlyMap<string, string>,
    /** True when no string of it is a template and it has no variant: every recipient gets the same text. */
    readonly fixed: boolean,
  ) {
    this.localeTags = [...variants.keys()].sort();
  }

  /** The message sent as it is, braces and all (a campaign stored before templates existed). */
  static literal(message: Message): CompiledMessage {
    const literal = (value: unknown) => compileValue(value, [], [], true);
    const fallback: CompiledVariant = {
      title: literal(message.title) as Piece,
      body: literal(message.body) as Piece,
      data: literal(message.data ?? {}) as CompiledVariant['data'],
    };
    return new CompiledMessage(new Map(), fallback, new Map(), true);
  }

  /** A message no recipient can get (it does not compile): every render fails with `error`. */
  static broken(error: string): CompiledMessage {
    const compiled = new CompiledMessage(
      new Map(),
      { title: piece({ kind: 'text', text: '' }), body: piece({ kind: 'text', text: '' }), data: {} },
      new Map(),
      false,
    );
    compiled.stopped = error;
    return compiled;
  }

  /**
   * Set once a render hit one of Liquid's limits (time, memory): a template
   * that took 50 ms for one recipient is broken for all of them, and every
   * later render fails at once with the same error instead of taking as long.
   */
  private stopped: string | null = null;

  /** Compiles `message`; answers the parse problems (with line and column) instead when there are any. */
  static compile(message: Message): { ok: true; compiled: CompiledMessage } | { ok: false; problems: TemplateProblem[] } {
    const problems: TemplateProblem[] = [];
    const variant = (v: MessageVariant, base: Array<string | number>, defaults?: CompiledVariant): CompiledVariant => ({
      title: v.title !== undefined ? (compileValue(v.title, [...base, 'title'], problems) as Piece) : defaults!.title,
      body: v.body !== undefined ? (compileValue(v.body, [...base, 'body'], problems) as Piece) : defaults!.body,
      data: v.data !== undefined ? (compileValue(v.data, [...base, 'data'], problems) as CompiledVariant['data']) : defaults!.data,
    });
    const fallback = variant({ title: message.title, body: message.body, data: message.data ?? {} }, ['message']);
    const variants = new Map<string, CompiledVariant>();
    const tags = new Map<string, string>();
    for (const [tag, v] of Object.entries(message.locales ?? {})) {
      variants.set(tag, variant(v, ['message', 'locales', tag], fallback));
      tags.set(tag.toLowerCase(), tag);
    }
    if (problems.length > 0) return { ok: false, problems };
    // Fixed: no variant and no template; every recipient gets the campaign's message as it is.
    const fixed = variants.size === 0 && isFixed(fallback.title) && isFixed(fallback.body) && isFixed(fallback.data);
    return { ok: true, compiled: new CompiledMessage(variants, fallback, tags, fixed) };
  }

  /** The message's locale tags, sorted (as create-run.lua stores them on a run): a ledger record's locale code k is the k-th. */
  readonly localeTags: readonly string[];

  /** Recipient fields its templates name (`name`, `recipient.name` → name), each with the first place it is used. */
  fieldReferences(): Array<{ field: string; path: string }> {
    const seen = new Map<string, string>();
    const visit = (value: CompiledValue, path: string) => {
      if (value === null || typeof value !== 'object') return;
      if (Array.isArray(value)) return value.forEach((v, i) => visit(v, `${path}.${i}`));
      if (isPiece(value)) {
        const segments: Array<ReadonlyArray<unknown>> =
          value.kind === 'fast'
            ? value.parts.filter((p): p is readonly string[] => typeof p !== 'string')
            : value.kind === 'liquid'
              ? liquid.globalVariableSegmentsSync(value.template)
              : [];
        for (const s of segments) {
          const root = String(s[0]);
          const field =
            root === 'recipient' ? (s[1] !== undefined ? String(s[1]) : null) : (RESERVED_VARIABLES as readonly string[]).includes(root) ? null : root;
          if (field !== null && !seen.has(field)) seen.set(field, path);
        }
        return;
      }
      for (const [k, v] of Object.entries(value)) visit(v, `${path}.${k}`);
    };
    const variant = (v: CompiledVariant, base: string) => {
      visit(v.title, `${base}.title`);
      visit(v.body, `${base}.body`);
      visit(v.data, `${base}.data`);
    };
    variant(this.fallback, 'message');
    for (const [tag, v] of this.variants) variant(v, `message.locales.${tag}`);
    return [...seen].map(([field, path]) => ({ field, path }));
  }

  /** The ledger's code for a variant: k ≥ 1 for the k-th sorted tag, 0 for the default message. */
  localeCode(tag: string | null): number {
    return tag === null ? 0 : this.localeTags.indexOf(tag) + 1;
  }

  /** The variant for a recipient's `locale` (BCP 47 fallback: `en-US` → `en` → the default); null: the default. */
  localeFor(recipient: RecipientRecord): string | null {
    return chooseLocale(recipient.locale, this.tags);
  }

  render(recipient: RecipientRecord, context: RenderContext): RenderResult {
    const locale = this.localeFor(recipient);
    if (this.stopped !== null) return { ok: false, locale, variable: null, error: this.stopped };
    const variant = (locale !== null ? this.variants.get(locale) : undefined) ?? this.fallback;
    const scope = new Scope(recipient, context, locale);
    try {
      const message: Message = { title: renderPiece(variant.title, scope), body: renderPiece(variant.body, scope), data: renderData(variant.data, scope) };
      return { ok: true, message, locale };
    } catch (err) {
      if (err instanceof MissingVariable) return { ok: false, locale, variable: err.variable, error: `missing variable: ${err.variable}` };
      const e = err as Error;
      const missing = /^undefined variable: ([^,]+)/.exec(e.message);
      if (missing) return { ok: false, locale, variable: missing[1]!, error: `missing variable: ${missing[1]}` };
      const error = e.message.replace(/, line:\d+, col:\d+$/, '');
      if (/limit exceeded/.test(error)) this.stopped = `${error} (the template is stopped for every recipient)`;
      return { ok: false, locale, variable: null, error };
    }
  }
}

function isFixed(value: CompiledValue): boolean {
  if (value === null || typeof value !== 'object') return true;
  if (Array.isArray(value)) return value.every(isFixed);
  if (isPiece(value)) return value.kind === 'text';
  return Object.values(value as Record<string, CompiledValue>).every(isFixed);
}

/** BCP 47 fallback over the tags a message has (case-insensitive): `zh-Hant-TW` → `zh-Hant` → `zh` → null. */
export function chooseLocale(wanted: unknown, tags: ReadonlyMap<string, string>): string | null {
  if (typeof wanted !== 'string' || wanted === '' || tags.size === 0) return null;
  let tag = wanted.trim().replace(/_/g, '-').toLowerCase();
  while (tag) {
    const found = tags.get(tag);
    if (found !== undefined) return found;
    const cut = tag.lastIndexOf('-');
    if (cut < 0) break;
    tag = tag.slice(0, cut);
    // A single-letter subtag (an extension or private-use singleton) goes with what follows it.
    if (/-[a-z0-9]$/.test(tag)) tag = tag.slice(0, tag.lastIndexOf('-'));
  }
  return null;
}

// ---------------------------------------------------------------------------
// Rendering

class MissingVariable extends Error {
  constructor(readonly variable: string) {
    super(`missing variable: ${variable}`);
  }
}

/** Not a plain value the fast path can print as Liquid would: that string goes through Liquid. */
class NotPlain extends Error {}

/** What a template sees, built lazily: most recipients need two lookups, not a copy of their record. */
class Scope {
  private liquidScope: Record<string, unknown> | null = null;
  private nowText: string | null = null;

  constructor(
    private readonly recipient: RecipientRecord,
    private readonly context: RenderContext,
    private readonly locale: string | null,
  ) {}

  get zone(): string {
    const tz = this.recipient.timezone;
    return typeof tz === 'string' && isValidTimeZone(tz) ? tz : this.context.timezone;
  }

  now(): string {
    this.nowText ??= isoInZone(this.context.now, this.zone);
    return this.nowText;
  }

  top(name: string): unknown {
    switch (name) {
      case 'recipient':
        return this.recipient;
      case 'campaign':
        return this.context.campaign;
      case 'run':
        return this.context.run;
      case 'now':
        return this.now();
      case 'locale':
        return this.locale;
      default:
        return Object.prototype.hasOwnProperty.call(this.recipient, name) ? this.recipient[name] : undefined;
    }
  }

  /** The locale `money` and `local_date` use when not told: the variant's, else the recipient's, else en. */
  get filterLocale(): string {
    return this.locale ?? (typeof this.recipient.locale === 'string' ? this.recipient.locale : 'en');
  }

  forLiquid(withNow: boolean): Record<string, unknown> {
    if (!this.liquidScope) {
      // Object.assign into a fresh object is ~30× cheaper than a spread with extra keys, the hot spot of the
      // Liquid path; a record with an own "__proto__" (JSON allows it) takes the spread, which cannot set a prototype.
      const scope: Record<string, unknown> = Object.prototype.hasOwnProperty.call(this.recipient, '__proto__')
        ? { ...this.recipient }
        : Object.assign({}, this.recipient);
      scope.recipient = this.recipient;
      scope.campaign = this.context.campaign;
      scope.run = this.context.run;
      scope.locale = this.locale;
      scope[ZONE] = this.zone;
      scope[LOCALE] = this.filterLocale;
      this.liquidScope = scope;
    }
    // `now` is the renderer's, even over a recipient field of that name (as in the fast path).
    if (withNow) this.liquidScope.now = this.now();
    return this.liquidScope;
  }
}

function renderPiece(piece: Piece, scope: Scope): string {
  switch (piece.kind) {
    case 'text':
      return piece.text;
    case 'fast':
      try {
        return renderFast(piece.parts, scope);
      } catch (err) {
        if (!(err instanceof NotPlain)) throw err;
        return renderLiquid(piece.template, scope, piece.now);
      }
    case 'liquid':
      return renderLiquid(piece.template, scope, piece.now);
  }
}

function renderLiquid(template: Template[], scope: Scope, withNow: boolean): string {
  return String(liquid.renderSync(template, scope.forLiquid(withNow)));
}

function renderFast(parts: ReadonlyArray<string | readonly string[]>, scope: Scope): string {
  let out = '';
  for (const part of parts) {
    if (typeof part === 'string') {
      out += part;
      continue;
    }
    let value = scope.top(part[0]!);
    for (let i = 1; i < part.length && value !== undefined; i += 1) {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new NotPlain();
      value = Object.prototype.hasOwnProperty.call(value, part[i]!) ? (value as Record<string, unknown>)[part[i]!] : undefined;
    }
    if (value === undefined) throw new MissingVariable(part.join('.'));
    if (typeof value === 'string') out += value;
    else if (typeof value === 'number' && Number.isFinite(value)) out += String(value);
    else if (typeof value === 'boolean') out += value ? 'true' : 'false';
    else if (value === null) continue;
    else throw new NotPlain();
  }
  return out;
}

function renderData(data: { [key: string]: CompiledValue }, scope: Scope): Record<string, unknown> {
  return renderValue(data, scope) as Record<string, unknown>;
}

function renderValue(value: CompiledValue, scope: Scope): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => renderValue(v, scope));
  if (isPiece(value)) return renderPiece(value, scope);
  // fromEntries defines keys, so a "__proto__" key stays a key (an assignment would set the prototype).
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, renderValue(v, scope)]));
}

/** ISO-8601 of `at` in `zone`, with its offset (`2026-12-02T09:05:00+09:00`). */
export function isoInZone(at: number, zone: string): string {
  const parts = Object.fromEntries(
    isoFormat(zone)
      .formatToParts(new Date(at))
      .map((p) => [p.type, p.value]),
  );
  const local = Date.UTC(Number(parts.year), Number(parts.month) - 1, Number(parts.day), Number(parts.hour) % 24, Number(parts.minute), Number(parts.second));
  const offset = Math.round((local - Math.floor(at / 1000) * 1000) / 60_000);
  const sign = offset < 0 ? '-' : '+';
  const abs = Math.abs(offset);
  const hh = String(Math.floor(abs / 60)).padStart(2, '0');
  const mm = String(abs % 60).padStart(2, '0');
  return `${parts.year}-${parts.month}-${parts.day}T${String(Number(parts.hour) % 24).padStart(2, '0')}:${parts.minute}:${parts.second}${sign}${hh}:${mm}`;
}

const isoFormats = new BoundedCache<string, Intl.DateTimeFormat>(1024);

function isoFormat(zone: string): Intl.DateTimeFormat {
  return isoFormats.get(
    zone,
    () =>
      new Intl.DateTimeFormat('en-US', {
        timeZone: zone,
        hourCycle: 'h23',
        year: 'numeric',
        month: '2-digit',
        day: '2-digit',
        hour: '2-digit',
        minute: '2-digit',
        second: '2-digit',
      }),
  );
}

// ---------------------------------------------------------------------------
// At the door

/**
 * A campaign's message as it is sent: Liquid for a campaign `templated`
 * (every one created or PATCHed since templates exist), its text as it is
 * for one stored before (a literal "{{" in it meant no variable then).
 */
export function compileCampaignMessage(campaign: { message: Message; templated: boolean }): ReturnType<typeof CompiledMessage.compile> {
  return campaign.templated ? CompiledMessage.compile(campaign.message) : { ok: true, compiled: CompiledMessage.literal(campaign.message) };
}

/** Refuses a message whose templates do not parse: 422 naming each field, line and column. */
export function assertTemplatesParse(message: Message): void {
  const result = CompiledMessage.compile(message);
  if (result.ok) return;
  throw templateProblems(result.problems);
}

export function templateProblems(problems: readonly TemplateProblem[]): DomainError {
  const first = problems[0]!;
  return new DomainError(
    ErrorCodes.VALIDATION_FAILED,
    `${first.path.join('.')} is not a valid template (line ${first.line}, column ${first.column}): ${first.message}`,
    { templates: problems.map((p) => ({ path: p.path.join('.'), line: p.line, column: p.column, message: p.message })) },
  );
}

/**
 * Warnings for a campaign: each recipient field its templates name that no
 * recipient of its list has (checked against the field names the list was
 * stored with). Guarded names (`{% if x %}`, `| default`) are named too: a
 * field nobody has is worth a look even when it cannot fail the send.
 */
export function templateWarnings(campaign: { message: Message; templated: boolean }, listFields: readonly string[] | null, listSize: number): string[] {
  if (listFields === null || listSize === 0) return [];
  const compiled = compileCampaignMessage(campaign);
  if (!compiled.ok) return [];
  const has = new Set(listFields);
  return compiled.compiled
    .fieldReferences()
    .filter((r) => r.field !== 'id' && !has.has(r.field))
    .map((r) => `no recipient of the list has the field ${r.field} (used in ${r.path})`);
}

/** The render context of a send: the campaign, its run, and the zone for recipients without one (the schedule's, the quiet hours', UTC). */
export function renderContext(
  campaign: { id: string; name: string; schedule: ScheduleSpec | null; quietHours: { timezone: string } | null },
  runId: string,
  now: number,
): RenderContext {
  const timezone = campaign.schedule?.kind === 'cron' ? campaign.schedule.timezone : (campaign.quietHours?.timezone ?? 'UTC');
  return { campaign: { id: campaign.id, name: campaign.name }, run: { id: runId, occurrence: occurrenceOfRunId(runId) }, timezone, now };
}

/** Compiled messages by campaign and version (its `updatedAt`): compiled once per process, never per recipient. */
export class CompiledMessages {
  private readonly cache = new BoundedCache<string, CompiledMessage>(256);

  /** A message that does not compile (stored before it was checked) is one every recipient fails to render, never an exception. */
  for(campaign: { id: string; updatedAt: string; message: Message; templated: boolean }): CompiledMessage {
    return this.cache.get(`${campaign.id}|${campaign.updatedAt}|${campaign.templated ? 1 : 0}`, () => {
      const result = compileCampaignMessage(campaign);
      return result.ok ? result.compiled : CompiledMessage.broken(templateProblems(result.problems).message);
    });
  }
}
