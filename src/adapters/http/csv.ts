/**
 * CSV the product writes (failures.csv, and every export after it). Fields
 * follow RFC 4180 (quoted when they hold a comma, quote or line break; quotes
 * doubled), and text a spreadsheet would run as a formula — starting with
 * `=`, `+`, `-`, `@`, a tab or a carriage return (OWASP, CSV injection) — gets
 * a leading `'`, so it is shown, never evaluated. Ids and provider messages
 * come from outside: either can be `=HYPERLINK(…)`. Numbers are written as
 * numbers.
 */
const FORMULA_START = /^[=+\-@\t\r]/;

export function csvField(value: string | number): string {
  if (typeof value === 'number') return String(value);
  const text = FORMULA_START.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function csvLine(values: ReadonlyArray<string | number>): string {
  return `${values.map(csvField).join(',')}\n`;
}
