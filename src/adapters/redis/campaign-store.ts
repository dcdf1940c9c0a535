import type { ChainableCommander } from 'ioredis';
import type { RedisClient } from './connection.js';
import type { CampaignPage, CampaignStore, NewCampaign, OccurrenceEntry, Staging } from '../../app/ports.js';
import { type Campaign, type CampaignPriority, type CampaignStatus, type Message, type RecipientLayout } from '../../domain/campaign.js';
import { recipientId, type StoredRecipient } from '../../domain/recipient.js';
import type { FrequencyCap, QuietHours } from '../../domain/respect.js';
import type { ScheduleSpec } from '../../domain/schedule.js';
import { readWindowFields, windowFields } from '../../domain/windows.js';
import { fallbackFields, readFallback } from '../../domain/fallback.js';
import type { CampaignKeys, Keys } from './keys.js';
import { outboxEntries } from './redis-outbox.js';
import type { OutboxEntry } from '../../domain/outbox.js';
import { bucketOf, decodePage, encodePage } from './page-codec.js';
import { dropAbandonedStagings, RedisStaging } from './redis-staging.js';
import type { Scripts } from './scripts.js';

function parseCampaign(hash: Record<string, string>): Campaign | null {
  // A campaign being deleted is gone for every reader; a worker removes its keys.
  if (!hash.id || hash.status === 'deleting') return null;
  return {
    id: hash.id,
    name: hash.name ?? '',
    provider: hash.provider ?? '',
    message: JSON.parse(hash.message ?? '{}') as Message,
    priority: (hash.priority ?? 'normal') as CampaignPriority,
    maxAttempts: hash.maxAttempts ? Number(hash.maxAttempts) : null,
    kind: hash.kind || 'transactional',
    quietHours: hash.quietHours ? (JSON.parse(hash.quietHours) as QuietHours) : null,
    suppressionLists: hash.suppressionLists ? (JSON.parse(hash.suppressionLists) as string[]) : ['global'],
    frequencyCap: hash.frequencyCap ? (JSON.parse(hash.frequencyCap) as FrequencyCap) : null,
    onRenderError: hash.onRenderError === 'skip' ? 'skip' : 'refuse',
    listFields: hash.listFields ? (JSON.parse(hash.listFields) as string[]) : null,
    templated: hash.templated === '1',
    status: hash.status as CampaignStatus,
    createdAt: new Date(Number(hash.createdAt)).toISOString(),
    updatedAt: new Date(Number(hash.updatedAt)).toISOString(),
    recipients: {
      total: Number(hash.total),
      pageSize: Number(hash.pageSize),
      pages: Number(hash.pages),
      buckets: Number(hash.buckets),
      version: Number(hash.rv ?? 1),
    },
    latestRunId: hash.latestRun || null,
    schedule: hash.schedule ? (JSON.parse(hash.schedule) as ScheduleSpec) : null,
    scheduleVersion: Number(hash.scheduleVersion ?? 0),
    listArchived: hash.listArchived === '1',
    ...readWindowFields(hash),
    fallback: readFallback(hash),
  };
}

function layoutFields(layout: RecipientLayout): Record<string, number> {
  return { total: layout.total, pageSize: layout.pageSize, pages: layout.pages, buckets: layout.buckets, rv: layout.version };
}

/**
 * Campaigns and their recipient lists. A list is stored in pages (one JSON
 * string per page: the unit a send job reads) plus an id → position index
 * split into small hashes so each stays a compact listpack. Lists are
 * versioned: a replacement is written beside the current one and swapped in
 * by one Lua step (lifecycle), so no reader ever sees half of one.
 */
export class RedisCampaignStore implements CampaignStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly scripts: Scripts,
  ) {}

  private writeList(tx: ChainableCommander, k: CampaignKeys, layout: RecipientLayout, recipients: readonly StoredRecipient[]): void {
    for (let page = 0; page < layout.pages; page += 1) {
      tx.set(k.page(layout.version, page), encodePage(recipients.slice(page * layout.pageSize, (page + 1) * layout.pageSize)));
    }
    const buckets = new Map<number, Array<string | number>>();
    recipients.forEach((recipient, position) => {
      const id = recipientId(recipient);
      const bucket = bucketOf(id, layout.buckets);
      let fields = buckets.get(bucket);
      if (!fields) buckets.set(bucket, (fields = []));
      fields.push(id, position);
    });
    for (const [bucket, fields] of buckets) tx.hset(k.bucket(layout.version, bucket), ...fields);
  }

  private async exec(tx: ChainableCommander): Promise<void> {
    const results = await tx.exec();
    const failure = results?.find(([err]) => err);
    if (!results || failure) throw failure?.[0] ?? new Error('campaign write was aborted');
  }

  async create(campaign: NewCampaign, recipients: readonly StoredRecipient[] | null): Promise<void> {
    const k = this.keys.campaign(campaign.id);
    const tx = this.redis.multi();
    tx.hset(k.meta(), {
      id: campaign.id,
      name: campaign.name,
      provider: campaign.provider,
      message: JSON.stringify(campaign.message),
      priority: campaign.priority,
      maxAttempts: campaign.maxAttempts ?? '',
      kind: campaign.kind,
      quietHours: campaign.quietHours ? JSON.stringify(campaign.quietHours) : '',
      suppressionLists: JSON.stringify(campaign.suppressionLists),
      frequencyCap: campaign.frequencyCap ? JSON.stringify(campaign.frequencyCap) : '',
      onRenderError: campaign.onRenderError,
      listFields: campaign.listFields ? JSON.stringify(campaign.listFields) : '',
      templated: campaign.templated ? '1' : '',
      ...windowFields(campaign),
      ...fallbackFields(campaign.fallback),
      status: 'draft',
      createdAt: campaign.createdAt,
      updatedAt: campaign.createdAt,
      ...layoutFields(campaign.layout),
      rvSeq: campaign.layout.version,
      latestRun: '',
      schedule: '',
      scheduleVersion: 0,
    });
    if (recipients) this.writeList(tx, k, campaign.layout, recipients);
    await this.exec(tx);
    // The index lives outside the campaign's hash slot, so it is written after
    // the campaign itself: a crash in between leaves a campaign that is
    // reachable by id but not listed, never a listed campaign with no data.
    await this.redis.zadd(this.keys.campaignIndex(), 0, campaign.id);
  }

  beginStaging(campaignId: string, expectedRows: number, pageSize: number): Promise<Staging> {
    return RedisStaging.begin(this.redis, this.keys, this.scripts, campaignId, expectedRows, pageSize);
  }

  dropAbandonedStagings(olderThanMs: number): Promise<number> {
    return dropAbandonedStagings(this.redis, this.keys, olderThanMs);
  }

  async dropRecipients(campaignId: string, layout: RecipientLayout): Promise<void> {
    const k = this.keys.campaign(campaignId);
    const names: string[] = [];
    for (let page = 0; page < layout.pages; page += 1) names.push(k.page(layout.version, page));
    for (let bucket = 0; bucket < layout.buckets; bucket += 1) names.push(k.bucket(layout.version, bucket));
    for (let i = 0; i < names.length; i += 1000) await this.redis.unlink(...names.slice(i, i + 1000));
  }

  async copyRecipients(from: Campaign, toId: string): Promise<void> {
    const source = this.keys.campaign(from.id);
    const target = this.keys.campaign(toId);
    const { version } = from.recipients;
    const names: Array<[string, string]> = [];
    for (let page = 0; page < from.recipients.pages; page += 1) names.push([source.page(version, page), target.page(1, page)]);
    for (let bucket = 0; bucket < from.recipients.buckets; bucket += 1) names.push([source.bucket(version, bucket), target.bucket(1, bucket)]);
    // DUMP/RESTORE key by key: the two campaigns live in different hash slots.
    for (let i = 0; i < names.length; i += 500) {
      const chunk = names.slice(i, i + 500);
      const dumps = await Promise.all(chunk.map(([name]) => this.redis.dumpBuffer(name)));
      const tx = this.redis.multi();
      chunk.forEach(([, to], j) => {
        if (dumps[j]) tx.restore(to, 0, dumps[j]!, 'REPLACE');
      });
      await this.exec(tx);
    }
  }

  async get(id: string): Promise<Campaign | null> {
    return parseCampaign(await this.redis.hgetall(this.keys.campaign(id).meta()));
  }

  async list(limit: number, cursor?: string): Promise<CampaignPage> {
    const ids = await this.redis.zrevrangebylex(this.keys.campaignIndex(), cursor ? `(${cursor}` : '+', '-', 'LIMIT', 0, limit + 1);
    const pageIds = ids.slice(0, limit);
    // One command per campaign, not a pipeline: on a cluster each lives in its own slot.
    const hashes = await Promise.all(pageIds.map((id) => this.redis.hgetall(this.keys.campaign(id).meta())));
    const items: Campaign[] = [];
    for (const hash of hashes) {
      const campaign = parseCampaign(hash);
      if (campaign) items.push(campaign);
    }
    return { items, nextCursor: ids.length > limit ? (pageIds[pageIds.length - 1] ?? null) : null };
  }

  async readPage(campaignId: string, version: number, page: number): Promise<StoredRecipient[]> {
    const raw = await this.redis.get(this.keys.campaign(campaignId).page(version, page));
    if (raw === null) throw new Error(`page ${page} of version ${version} of campaign ${campaignId} is missing`);
    return decodePage(raw);
  }

  async findPosition(campaignId: string, layout: RecipientLayout, id: string): Promise<number | null> {
    const bucket = bucketOf(id, layout.buckets);
    const position = await this.redis.hget(this.keys.campaign(campaignId).bucket(layout.version, bucket), id);
    return position === null ? null : Number(position);
  }

  async events(campaignId: string, after: string | null, limit: number): Promise<OutboxEntry[]> {
    return outboxEntries(await this.redis.xrange(this.keys.campaign(campaignId).events(), after ? `(${after}` : '-', '+', 'COUNT', limit));
  }

  async rememberCleanDryRun(campaignId: string, fingerprint: string, ttlMs: number): Promise<void> {
    await this.redis.set(this.keys.campaign(campaignId).dryRun(), fingerprint, 'PX', ttlMs);
  }

  lastCleanDryRun(campaignId: string): Promise<string | null> {
    return this.redis.get(this.keys.campaign(campaignId).dryRun());
  }

  async nextTestSend(campaignId: string): Promise<number | null> {
    const n = Number(await this.scripts.run('campaign-counter', [this.keys.campaign(campaignId).meta()], ['testSends']));
    return n > 0 ? n : null;
  }

  async recordOccurrence(campaignId: string, entry: OccurrenceEntry): Promise<void> {
    const k = this.keys.campaign(campaignId);
    // A skipped occurrence is an event: the webhook dispatchers look at the campaign until it is delivered.
    if (entry.outcome === 'skipped') await this.redis.zincrby(this.keys.outboxCampaigns(), 1, campaignId);
    await this.scripts.run(
      'record-occurrence',
      [k.occurrences(), k.meta()],
      [JSON.stringify(entry), entry.outcome === 'skipped' ? '1' : '0', entry.runId ?? '', Date.parse(entry.handledAt), entry.at, entry.reason ?? ''],
    );
  }

  async occurrences(campaignId: string, limit: number): Promise<OccurrenceEntry[]> {
    const raw = await this.redis.lrange(this.keys.campaign(campaignId).occurrences(), 0, limit - 1);
    return raw.map((entry) => JSON.parse(entry) as OccurrenceEntry);
  }

  async runIds(campaignId: string, limit: number): Promise<string[]> {
    return this.redis.zrevrange(this.keys.campaign(campaignId).runs(), 0, limit - 1);
  }
}
