import { readFileSync } from 'node:fs';
import calculateSlot from 'cluster-key-slot';
import type { RedisClient } from './connection.js';

/**
 * The Lua scripts of the product, loaded by name from ./lua. Each transition
 * of the ledger or the limiter is one script, so none is ever half done.
 * `-- @include name` pulls in ./lua/includes/name.lua (once per script, so
 * includes may include each other).
 */
const SCRIPT_KEYS = {
  'create-run': 3,
  'acquire-page': 7,
  claim: 7,
  confirm: 7,
  'release-page': 10,
  /** A run's hash, its leases zset and one lease key per page renewed. */
  'renew-leases': 'any',
  'advance-cursor': 3,
  'kick-run': 5,
  'expire-leases': 5,
  'expire-pages': 6,
  'set-schedule': 1,
  'restore-schedule': 1,
  pause: 2,
  resume: 4,
  cancel: 2,
  'edit-campaign': 1,
  'set-pace': 2,
  'swap-recipients': 2,
  unlock: 1,
  'extend-lock': 1,
  'mark-archived': 2,
  'delete-campaign': 2,
  /** As many keys as recipients in the batch. */
  'frequency-cap': 'any',
  'stage-rows': 1,
  'permit-lease': 4,
  'permit-pause': 1,
  'campaign-counter': 1,
  'mark-stuck': 2,
  'record-occurrence': 2,
  'webhook-cursor': 1,
  'outbox-scan': 2,
  'outbox-trim': 2,
  'zrem-if-score': 1,
  /** A run's hash, bad set and campaign meta, then one records key per receipt (one hash tag). */
  receipt: 'any',
  /** One key per day of the receipt window, in one bucket (one hash tag). */
  'message-id-find': 'any',
  'series-add': 1,
} as const;

export type ScriptName = keyof typeof SCRIPT_KEYS;
type Arg = string | number | Buffer;
type ScriptFn = (...args: Arg[]) => Promise<unknown>;

const LUA_DIR = new URL('./lua/', import.meta.url);
const sources = new Map<ScriptName, string>();

const INCLUDE = /^-- @include (\S+)[ \t]*$/gm;

function expandIncludes(source: string, seen: Set<string>): string {
  return source.replace(INCLUDE, (_, include: string) => {
    if (seen.has(include)) return '';
    seen.add(include);
    return expandIncludes(readFileSync(new URL(`includes/${include}.lua`, LUA_DIR), 'utf8'), seen);
  });
}

export function scriptSource(name: ScriptName): string {
  let source = sources.get(name);
  if (!source) {
    source = expandIncludes(readFileSync(new URL(`${name}.lua`, LUA_DIR), 'utf8'), new Set());
    sources.set(name, source);
  }
  return source;
}

function commandName(name: ScriptName): string {
  return `pushq_${name.replace(/-/g, '_')}`;
}

/**
 * Every script touches keys of one Redis Cluster slot (their hash tags say
 * which). Checked on every call, on a standalone Redis too, so a key that
 * would raise CROSSSLOT on a cluster fails the test suite, not production.
 */
export function assertOneSlot(name: string, keys: readonly string[]): void {
  if (keys.length < 2) return;
  const slot = calculateSlot(keys[0]!);
  for (const key of keys) {
    if (calculateSlot(key) !== slot)
      throw new Error(`script ${name} would touch keys of several cluster slots (${keys[0]} and ${key}): give them one hash tag`);
  }
}

export class Scripts {
  constructor(private readonly redis: RedisClient) {
    for (const name of Object.keys(SCRIPT_KEYS) as ScriptName[]) {
      if (typeof (redis as unknown as Record<string, unknown>)[commandName(name)] === 'function') continue;
      const keys = SCRIPT_KEYS[name];
      // Without numberOfKeys, ioredis takes the key count as the first argument.
      redis.defineCommand(commandName(name), keys === 'any' ? { lua: scriptSource(name) } : { numberOfKeys: keys, lua: scriptSource(name) });
    }
  }

  /** Runs a script; replies come back as strings and numbers. */
  run(name: ScriptName, keys: readonly string[], args: readonly Arg[]): Promise<unknown> {
    return this.call(commandName(name), name, keys, args);
  }

  /** Runs a script; string replies come back as Buffers (for binary ledger records). */
  runBuffer(name: ScriptName, keys: readonly string[], args: readonly Arg[]): Promise<unknown> {
    return this.call(`${commandName(name)}Buffer`, name, keys, args);
  }

  private call(method: string, name: ScriptName, keys: readonly string[], args: readonly Arg[]): Promise<unknown> {
    assertOneSlot(name, keys);
    const expected = SCRIPT_KEYS[name];
    const fn = (this.redis as unknown as Record<string, ScriptFn>)[method]!;
    if (expected === 'any') return fn.call(this.redis, keys.length, ...keys, ...args);
    if (keys.length !== expected) throw new Error(`script ${name} takes ${expected} keys, got ${keys.length}`);
    return fn.call(this.redis, ...keys, ...args);
  }
}
