import { readFileSync } from 'node:fs';
import type { z } from 'zod';
import { ConfigError } from '../config-error.js';

/**
 * Where JSON.parse stopped, without the text around it: V8's messages quote
 * the input, and the input here may hold a key.
 */
export function jsonPosition(err: unknown, text?: string): string {
  const at = /at position (\d+)/.exec((err as Error).message ?? '');
  if (!at || text === undefined) return at ? `at character ${at[1]}` : 'a syntax error';
  const before = text.slice(0, Number(at[1]));
  const line = before.split('\n').length;
  return `a syntax error at line ${line}, column ${before.length - before.lastIndexOf('\n')}`;
}

/**
 * A JSON configuration file (PROVIDERS_FILE, WEBHOOKS_FILE) read and checked
 * against its schema; anything wrong is one line naming the variable, the
 * file and where (never the file's content: it may hold a key).
 */
export function loadJsonFile<S extends z.ZodType>(variable: string, file: string, schema: S): z.output<S> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${variable} ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${variable} ${file} is not valid JSON (${jsonPosition(err, text)})`);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ConfigError(`${variable} ${file}: at [${issue.path.join('.')}]: ${issue.message}`);
  }
  return parsed.data;
}
