import { createHash } from 'node:crypto';
import type { MessageIds } from '../../app/ports.js';
import type { RedisClient } from './connection.js';
import type { Keys } from './keys.js';
import type { Scripts } from './scripts.js';

const DAY_MS = 86_400_000;
/** Buckets per provider and day: a day's ids spread over this many strings (and cluster slots). */
const BUCKETS = 1024;
const RECORD = 16;

/**
 * Providers' message ids, 16 bytes each and nothing else: per provider, day
 * and bucket one string of records (7 bytes of the SHA-256 of the id, then
 * the run number in 5 bytes and the position in 4), appended to, expiring
 * `windowMs` after its day. A lookup scans the bucket's strings of the
 * window in Lua (a few kB each). A fingerprint of 56 bits among the ids of a
 * bucket is as good as the id: a false match needs ~10^16 ids in one bucket.
 */
export class RedisMessageIds implements MessageIds {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly scripts: Scripts,
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  private fingerprint(provider: string, messageId: string): { fp: Buffer; bucket: number } {
    const digest = createHash('sha256').update(provider).update('\0').update(messageId).digest();
    return { fp: digest.subarray(0, 7), bucket: digest.readUInt16BE(7) % BUCKETS };
  }

  async remember(provider: string, entries: ReadonlyArray<{ messageId: string; runNo: number; position: number }>): Promise<void> {
    const day = Math.floor(this.now() / DAY_MS);
    const byKey = new Map<string, Buffer[]>();
    for (const { messageId, runNo, position } of entries) {
      const { fp, bucket } = this.fingerprint(provider, messageId);
      const record = Buffer.alloc(RECORD);
      fp.copy(record, 0);
      record.writeUIntBE(runNo, 7, 5);
      record.writeUInt32BE(position, 12);
      const key = this.keys.messageIds(provider, bucket, day);
      byKey.set(key, [...(byKey.get(key) ?? []), record]);
    }
    const expireAt = (day + 1) * DAY_MS + this.windowMs;
    await Promise.all([...byKey].map(([key, records]) => this.redis.multi().append(key, Buffer.concat(records)).pexpireat(key, expireAt).exec()));
  }

  async find(provider: string, messageId: string): Promise<{ runNo: number; position: number } | null> {
    const { fp, bucket } = this.fingerprint(provider, messageId);
    const today = Math.floor(this.now() / DAY_MS);
    const days = Math.ceil(this.windowMs / DAY_MS) + 1;
    const keys = Array.from({ length: days }, (_, i) => this.keys.messageIds(provider, bucket, today - i));
    const found = (await this.scripts.runBuffer('message-id-find', keys, [fp])) as Buffer | null;
    if (!found || found.length !== 9) return null;
    return { runNo: found.readUIntBE(0, 5), position: found.readUInt32BE(5) };
  }
}
