import type { Outbox, OutboxReader, OutboxTake } from '../../app/ports.js';
import { formatCursor, parseCursor, type Cursor, type OutboxEntry } from '../../domain/outbox.js';
import type { RedisClient } from './connection.js';
import type { Keys } from './keys.js';
import type { Reply } from './replies.js';
import type { Scripts } from './scripts.js';

/** XRANGE's answer as outbox entries. */
export function outboxEntries(raw: Array<[string, string[]]>): OutboxEntry[] {
  return raw.map(([id, flat]) => {
    const fields: Record<string, string> = {};
    for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i]!] = flat[i + 1]!;
    const { type = '', run = '', at = '0', ...rest } = fields;
    return { id, type, runId: run, at: Number(at), fields: rest };
  });
}

function readerArgs(readers: readonly OutboxReader[]): Array<string | number> {
  return readers.flatMap((r) => [r.name, r.epoch, r.start]);
}

/** The outboxes of campaigns, for webhook dispatchers (lua/webhook-cursor.lua, outbox-scan.lua, outbox-trim.lua). */
export class RedisOutbox implements Outbox {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly scripts: Scripts,
  ) {}

  /** Where the next look at the marked campaigns starts: they are taken `limit` at a time, in turn. */
  private markOffset = 0;

  async campaigns(limit: number): Promise<Array<{ campaignId: string; mark: number | null }>> {
    const [active, marked] = await Promise.all([
      this.redis.smembers(this.keys.activeRuns()),
      this.redis.zrange(this.keys.outboxCampaigns(), this.markOffset, this.markOffset + limit - 1, 'WITHSCORES'),
    ]);
    this.markOffset = marked.length / 2 < limit ? 0 : this.markOffset + limit;
    // Campaigns sending now first, then the marked ones.
    const out = new Map<string, number | null>();
    for (const member of active) out.set(this.keys.parseRunMember(member).campaignId, null);
    for (let i = 0; i + 1 < marked.length; i += 2) out.set(marked[i]!, Number(marked[i + 1]));
    return [...out].map(([campaignId, mark]) => ({ campaignId, mark }));
  }

  async mark(campaignId: string): Promise<void> {
    await this.redis.zincrby(this.keys.outboxCampaigns(), 1, campaignId);
  }

  async unmark(campaignId: string, mark: number): Promise<boolean> {
    return Number(await this.scripts.run('zrem-if-score', [this.keys.outboxCampaigns()], [campaignId, mark])) === 1;
  }

  async clearMarks(): Promise<void> {
    await this.redis.unlink(this.keys.outboxCampaigns());
  }

  async due(campaignId: string, readers: readonly OutboxReader[]): Promise<{ due: string[]; pending: boolean }> {
    if (readers.length === 0) return { due: [], pending: false };
    const k = this.keys.campaign(campaignId);
    const [pending, ...due] = (await this.scripts.run('outbox-scan', [k.events(), k.webhooks()], readerArgs(readers))) as [number, ...string[]];
    return { due, pending: Number(pending) === 1 };
  }

  private cursorOp(campaignId: string, op: string, endpoint: string, token: string, leaseMs: number, value = ''): Promise<Reply> {
    return this.scripts.run('webhook-cursor', [this.keys.campaign(campaignId).webhooks()], [op, endpoint, token, leaseMs, value]) as Promise<Reply>;
  }

  async take(campaignId: string, endpoint: string, token: string, leaseMs: number): Promise<OutboxTake> {
    const reply = await this.cursorOp(campaignId, 'take', endpoint, token, leaseMs);
    if (reply[0] !== 'ok') return { kind: 'busy', ms: Number(reply[1]) };
    const stored = String(reply[1]);
    const sep = stored.indexOf('|');
    return {
      kind: 'ok',
      cursor: sep < 0 ? null : { epoch: Number(stored.slice(0, sep)), cursor: parseCursor(stored.slice(sep + 1)) },
      delivery: reply[2] ? String(reply[2]) : null,
    };
  }

  async saveDelivery(campaignId: string, endpoint: string, token: string, leaseMs: number, delivery: string): Promise<boolean> {
    return (await this.cursorOp(campaignId, 'delivery', endpoint, token, leaseMs, delivery))[0] === 'ok';
  }

  async advance(campaignId: string, endpoint: string, token: string, leaseMs: number, epoch: number, cursor: Cursor): Promise<boolean> {
    return (await this.cursorOp(campaignId, 'advance', endpoint, token, leaseMs, `${epoch}|${formatCursor(cursor)}`))[0] === 'ok';
  }

  async renew(campaignId: string, endpoint: string, token: string, leaseMs: number): Promise<boolean> {
    return (await this.cursorOp(campaignId, 'renew', endpoint, token, leaseMs))[0] === 'ok';
  }

  async release(campaignId: string, endpoint: string, token: string): Promise<void> {
    await this.cursorOp(campaignId, 'release', endpoint, token, 0);
  }

  async read(campaignId: string, from: Cursor, count: number): Promise<{ entries: OutboxEntry[]; lost: string | null; lostRun: string | null }> {
    const k = this.keys.campaign(campaignId);
    const start = from.off > 0 ? from.id : `(${from.id}`;
    // One transaction: what was pushed out is known as of the entries read.
    const replies = await this.redis.multi().xrange(k.events(), start, '+', 'COUNT', count).hmget(k.webhooks(), 'lost', 'lostRun').exec();
    if (!replies || replies.some(([err]) => err)) throw replies?.find(([err]) => err)?.[0] ?? new Error('outbox read aborted');
    const [lost, lostRun] = replies[1]![1] as Array<string | null>;
    return { entries: outboxEntries(replies[0]![1] as Array<[string, string[]]>), lost: lost ?? null, lostRun: lostRun ?? null };
  }

  async trim(campaignId: string, readers: readonly OutboxReader[], before: number): Promise<{ removed: number; left: boolean }> {
    const k = this.keys.campaign(campaignId);
    const [removed, left] = (await this.scripts.run('outbox-trim', [k.events(), k.webhooks()], [`${before}-0`, 1000, ...readerArgs(readers)])) as [
      number,
      number,
    ];
    return { removed: Number(removed), left: Number(left) === 1 };
  }
}
