import { randomBytes } from 'node:crypto';
import { onCleanup, testPrefix } from './cleanup.js';
import { Redis } from 'ioredis';

export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A prefix no other test (or run) uses, so tests never see each other's keys. */
export function uniquePrefix(label = 't'): string {
  return `pqtest-${label}-${randomBytes(5).toString('hex')}`;
}

export function testRedis(url: string = TEST_REDIS_URL): Redis {
  return new Redis(url, { maxRetriesPerRequest: null });
}

export async function keysWithPrefix(redis: Redis, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys.sort();
}

export async function deletePrefix(redis: Redis, prefix: string): Promise<void> {
  const keys = await keysWithPrefix(redis, prefix);
  for (let i = 0; i < keys.length; i += 500) await redis.del(...keys.slice(i, i + 500));
}

/** A prefix for this test whose keys are deleted after it (see helpers/cleanup.ts). */
export function cleanPrefix(label = 't'): string {
  const prefix = testPrefix(label);
  onCleanup(async () => {
    const redis = testRedis();
    try {
      await deletePrefix(redis, prefix);
    } finally {
      redis.disconnect();
    }
  });
  return prefix;
}

/** A connection to the test Redis, closed after this test. */
export function testConnection(url: string = TEST_REDIS_URL): Redis {
  const redis = testRedis(url);
  onCleanup(() => redis.disconnect());
  return redis;
}

/**
 * What each key under a prefix holds, by content (not DUMP, whose bytes
 * change with a hash's encoding or field order), in one Lua call.
 * ARGV: 1 the SCAN pattern, 2 hash fields left out (comma separated), then
 * substrings of key names left out.
 */
const DIGEST = `
local function sorted(t) table.sort(t) return t end
local keys = {}
local cursor = '0'
repeat
  local reply = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000)
  cursor = reply[1]
  for _, key in ipairs(reply[2]) do
    local keep = true
    for i = 3, #ARGV do
      if string.find(key, ARGV[i], 1, true) then keep = false end
    end
    if keep then keys[#keys + 1] = key end
  end
until cursor == '0'
table.sort(keys)
local skip = {}
for field in string.gmatch(ARGV[2], '[^,]+') do skip[field] = true end
local out = {}
for _, key in ipairs(keys) do
  local kind = redis.call('TYPE', key)['ok']
  local parts = { kind }
  if kind == 'string' then
    parts[2] = redis.call('GET', key)
  elseif kind == 'hash' then
    local flat = redis.call('HGETALL', key)
    local fields = {}
    for i = 1, #flat, 2 do
      if not skip[flat[i]] then fields[#fields + 1] = flat[i] .. '=' .. flat[i + 1] end
    end
    parts[2] = table.concat(sorted(fields), '\\0')
  elseif kind == 'set' then
    parts[2] = table.concat(sorted(redis.call('SMEMBERS', key)), '\\0')
  elseif kind == 'zset' then
    parts[2] = table.concat(redis.call('ZRANGE', key, 0, -1, 'WITHSCORES'), '\\0')
  elseif kind == 'list' then
    parts[2] = table.concat(redis.call('LRANGE', key, 0, -1), '\\0')
  else
    parts[2] = redis.call('DUMP', key) or ''
  end
  out[#out + 1] = key
  out[#out + 1] = redis.sha1hex(table.concat(parts, '\\0'))
end
return out
`;

/** Every key under a prefix and a hash of its content (see DIGEST). */
export class PrefixDigest {
  private readonly entries = new Map<string, string>();

  constructor(flat: string[]) {
    for (let i = 0; i < flat.length; i += 2) this.entries.set(flat[i]!, flat[i + 1]!);
  }

  equals(other: PrefixDigest): boolean {
    if (other.entries.size !== this.entries.size) return false;
    for (const [key, hash] of this.entries) if (other.entries.get(key) !== hash) return false;
    return true;
  }

  changedSince(before: PrefixDigest): string {
    const changes: string[] = [];
    for (const [key, hash] of this.entries) if (before.entries.get(key) !== hash) changes.push(`${before.entries.has(key) ? 'changed' : 'added'} ${key}`);
    for (const key of before.entries.keys()) if (!this.entries.has(key)) changes.push(`deleted ${key}`);
    return changes.slice(0, 10).join(', ');
  }
}

/**
 * What `prefix` holds now, to compare with what it held before a request:
 * `skipKeys` (substrings of key names) and `skipFields` (hash fields) are
 * left out — what changes without any request, or is only a number allocator.
 */
export async function digestPrefix(redis: Redis, prefix: string, options: { skipKeys?: string[]; skipFields?: string[] } = {}): Promise<PrefixDigest> {
  const flat = (await redis.eval(DIGEST, 0, `${prefix}:*`, (options.skipFields ?? []).join(','), ...(options.skipKeys ?? []))) as string[];
  return new PrefixDigest(flat);
}
