import type { ArchiveManifest, Deletions, MemoryProbe, MemoryReading, RetainedRun, Retention, Transition } from '../../app/ports.js';
import { sourceStatesFor, type CampaignStatus } from '../../domain/campaign.js';
import { isCluster, unlinkMatching, type RedisClient } from './connection.js';
import type { Keys } from './keys.js';
import type { Scripts } from './scripts.js';

/** Keys unlinked per command: each UNLINK of small keys stays well under a millisecond; large values are freed off the main thread. */
const UNLINK_BATCH = 500;

async function unlinkAll(redis: RedisClient, names: readonly string[]): Promise<void> {
  for (let i = 0; i < names.length; i += UNLINK_BATCH) await redis.unlink(...names.slice(i, i + UNLINK_BATCH));
}

/**
 * Retention on Redis: finished runs in one sorted set scored by when they
 * finished (noted as they leave the worklist, RedisRuns.markInactive), the step
 * that hands a run to the archive, and the removal of its ledger after.
 */
export class RedisRetention implements Retention {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly scripts: Scripts,
  ) {}

  async due(before: number, limit: number): Promise<RetainedRun[]> {
    const flat = await this.redis.zrangebyscore(this.keys.retention(), '-inf', before, 'WITHSCORES', 'LIMIT', 0, limit);
    const out: RetainedRun[] = [];
    for (let i = 0; i < flat.length; i += 2) out.push({ ...this.keys.parseRunMember(flat[i]!), finishedAt: Number(flat[i + 1]) });
    return out;
  }

  async forget(campaignId: string, runId: string): Promise<void> {
    await this.redis.zrem(this.keys.retention(), this.keys.runMember(campaignId, runId));
  }

  async markArchived(campaignId: string, runId: string, manifest: ArchiveManifest, kind: string, dropList: boolean): Promise<boolean> {
    const k = this.keys.campaign(campaignId);
    const reply = await this.scripts.run('mark-archived', [k.run(runId).run, k.meta()], [kind, manifest.count, dropList ? '1' : '']);
    if (Number(reply) !== 1) return false;
    // Its ledger leaves: a receipt for it has nothing to update (its number is forgotten, and the receipt answers 404).
    await forgetRunNumber(this.redis, this.keys, k.run(runId).run);
    return true;
  }

  async trimSummaries(campaignId: string, keep: number): Promise<number> {
    const k = this.keys.campaign(campaignId);
    const oldest = await this.redis.zrange(k.runs(), 0, -(keep + 1));
    let dropped = 0;
    for (const runId of oldest) {
      // Only summaries of archived runs: a run still in Redis is never forgotten here.
      if (!(await this.redis.hexists(k.run(runId).run, 'archived'))) continue;
      await this.redis.multi().del(k.run(runId).run).zrem(k.runs(), runId).exec();
      dropped += 1;
    }
    return dropped;
  }

  async dropRunData(campaignId: string, runId: string, pages: number): Promise<void> {
    const run = this.keys.campaign(campaignId).run(runId);
    const names = [run.errors, run.bad, run.open, run.unfinished, run.parked, run.doubt, run.early, run.waves, run.leases, run.series];
    for (let page = 0; page < pages; page += 1) names.push(run.records(page), run.legs(page), run.lease(page));
    await unlinkAll(this.redis, names);
  }

  async backfill(): Promise<number> {
    if ((await this.redis.exists(this.keys.retentionBackfilled())) === 1) return 0;
    let noted = 0;
    let cursor = '-';
    for (;;) {
      const ids = await this.redis.zrangebylex(this.keys.campaignIndex(), cursor === '-' ? '-' : `(${cursor}`, '+', 'LIMIT', 0, 200);
      for (const campaignId of ids) {
        const k = this.keys.campaign(campaignId);
        for (const runId of await this.redis.zrange(k.runs(), 0, -1)) {
          const [status, inflight, completedAt, cancelledAt, archived] = await this.redis.hmget(
            k.run(runId).run,
            'status',
            'inflight',
            'completedAt',
            'cancelledAt',
            'archived',
          );
          const finished = status === 'completed' || (status === 'cancelled' && Number(inflight ?? 0) === 0);
          if (!finished || archived) continue;
          await this.redis.zadd(this.keys.retention(), 'NX', Number(completedAt || cancelledAt || Date.now()), this.keys.runMember(campaignId, runId));
          noted += 1;
        }
      }
      if (ids.length < 200) break;
      cursor = ids[ids.length - 1]!;
    }
    await this.redis.set(this.keys.retentionBackfilled(), '1');
    return noted;
  }
}

/** Deleting campaigns on Redis: a mark (one Lua step), then removal in bounded steps. */
export class RedisDeletions implements Deletions {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly scripts: Scripts,
  ) {}

  async mark(campaignId: string, latestRunId: string | null, purgeArchive: boolean): Promise<{ ok: true; runs: number } | (Transition & { ok: false })> {
    const k = this.keys.campaign(campaignId);
    // Listed first: a crash after the mark must still leave it listed for a worker to remove.
    await this.redis.zadd(this.keys.deletions(), 'NX', Date.now(), campaignId);
    const reply = (await this.scripts.run(
      'delete-campaign',
      [k.meta(), k.run(latestRunId ?? '-').run],
      [sourceStatesFor('delete').join(','), latestRunId ?? '', purgeArchive ? '1' : ''],
    )) as Array<string | number>;
    if (reply[0] !== 'ok') {
      await this.redis.zrem(this.keys.deletions(), campaignId);
      return {
        ok: false,
        reason: reply[0] as 'missing' | 'state' | 'moved',
        status: reply[1] as CampaignStatus | undefined,
        message: reply[2] ? String(reply[2]) : undefined,
      };
    }
    await this.redis.zrem(this.keys.campaignIndex(), campaignId);
    return { ok: true, runs: await this.redis.zcard(k.runs()) };
  }

  async pending(campaignId: string): Promise<boolean> {
    return (await this.redis.zscore(this.keys.deletions(), campaignId)) !== null;
  }

  async list(limit: number): Promise<Array<{ campaignId: string; purgeArchive: boolean; requestedAt: number }>> {
    const flat = await this.redis.zrange(this.keys.deletions(), 0, limit - 1, 'WITHSCORES');
    const out: Array<{ campaignId: string; purgeArchive: boolean; requestedAt: number }> = [];
    for (let i = 0; i < flat.length; i += 2) {
      const campaignId = flat[i]!;
      const [status, purge] = await this.redis.hmget(this.keys.campaign(campaignId).meta(), 'status', 'purgeArchive');
      const requestedAt = Number(flat[i + 1]);
      if (status === 'deleting') out.push({ campaignId, purgeArchive: purge === '1', requestedAt });
      // Listed but never marked (the mark was refused and its caller died before unlisting): not ours to remove.
      else if (Date.now() - requestedAt > 60_000) await this.redis.zrem(this.keys.deletions(), campaignId);
    }
    return out;
  }

  async remove(campaignId: string): Promise<void> {
    const k = this.keys.campaign(campaignId);
    if ((await this.redis.hget(k.meta(), 'status')) === 'deleting') {
      const runs = await this.redis.zrange(k.runs(), 0, -1);
      for (const runId of runs) {
        const member = this.keys.runMember(campaignId, runId);
        await this.redis.zrem(this.keys.retention(), member);
        await this.redis.srem(this.keys.activeRuns(), member);
        await forgetRunNumber(this.redis, this.keys, k.run(runId).run);
      }
      // Every other key of the campaign — lists of every version, staged uploads, runs, their ledgers — in SCAN-sized steps; the mark goes last.
      const base = this.keys.campaignBase(campaignId);
      await unlinkMatching(this.redis, k.meta(), `${base}:`, new Set([k.meta()]));
      // Anything written beside the scan (a late staged page) went with it, or is dropped by the staging sweep.
      await this.redis.unlink(k.meta());
    }
    await this.redis.zrem(this.keys.campaignIndex(), campaignId);
    await this.redis.zrem(this.keys.outboxCampaigns(), campaignId);
    await this.redis.zrem(this.keys.deletions(), campaignId);
  }
}

/** A run leaving Redis: its number names nothing any more. */
async function forgetRunNumber(redis: RedisClient, keys: Keys, runKey: string): Promise<void> {
  const no = await redis.hget(runKey, 'no');
  if (no) await redis.hdel(keys.runNumbers(), no);
}

function infoNumber(info: string, field: string): number | null {
  const match = new RegExp(`^${field}:(\\d+)`, 'm').exec(info);
  return match ? Number(match[1]) : null;
}

/**
 * How full Redis is, from `INFO memory`: `used_memory` against `maxmemory`,
 * or `limitBytes` (MEMORY_LIMIT_BYTES) where Redis has none. On a cluster,
 * the fullest master (one full master refuses the writes of its slots).
 * Cached for a second: the API asks on every create, upload and launch.
 */
export class RedisMemoryProbe implements MemoryProbe {
  private cached: { at: number; reading: Promise<MemoryReading> } | null = null;

  constructor(
    private readonly redis: RedisClient,
    private readonly limitBytes: number | undefined,
  ) {}

  read(): Promise<MemoryReading> {
    const now = Date.now();
    if (this.cached && now - this.cached.at < 1000) return this.cached.reading;
    const reading = this.measure();
    this.cached = { at: now, reading };
    reading.catch(() => (this.cached = null));
    return reading;
  }

  private async measure(): Promise<MemoryReading> {
    const nodes = isCluster(this.redis) ? this.redis.nodes('master') : [this.redis];
    const readings = await Promise.all(
      nodes.map(async (node): Promise<MemoryReading> => {
        const info = await node.info('memory');
        const used = infoNumber(info, 'used_memory') ?? 0;
        const max = infoNumber(info, 'maxmemory') ?? 0;
        if (max > 0) return { used, limit: max, source: 'maxmemory' };
        if (this.limitBytes) return { used, limit: this.limitBytes, source: 'MEMORY_LIMIT_BYTES' };
        return { used, limit: null, source: null };
      }),
    );
    const ratio = (r: MemoryReading) => (r.limit ? r.used / r.limit : -1);
    return readings.reduce((a, b) => (ratio(b) > ratio(a) ? b : a));
  }
}
