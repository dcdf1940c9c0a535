/**
 * What the command line prints of the server's text (campaign names, error
 * messages) reaches a terminal: control characters in it could move the
 * cursor, retitle the window or hide what follows (ESC sequences, C1 CSI,
 * bidirectional overrides). They are printed as escapes instead.
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
/** Those that JSON.stringify leaves raw inside strings. */
const UNSAFE_IN_JSON = /[\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

const escape = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;

/** One line of text, safe for a terminal: every control character (a line break too) escaped. */
export function printable(text: string): string {
  return text.replace(UNSAFE, (c) => (c === '\n' ? '\\n' : c === '\t' ? '\\t' : c === '\r' ? '\\r' : escape(c)));
}

/** A value as indented JSON, safe for a terminal (and still valid JSON). */
export function printableJson(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(UNSAFE_IN_JSON, escape);
}
