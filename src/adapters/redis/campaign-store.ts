import type { Redis } from 'ioredis';
import type { CampaignPage, CampaignStore, NewCampaign } from '../../app/ports.js';
import type { Campaign, CampaignPriority, CampaignStatus, Message } from '../../domain/campaign.js';
import { recipientId, type StoredRecipient } from '../../domain/recipient.js';
import type { Keys } from './keys.js';

/** FNV-1a over the UTF-8 bytes: picks an id's index bucket. Persisted layout: never change it. */
export function bucketOf(id: string, buckets: number): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(id, 'utf8')) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % buckets;
}

function parseCampaign(hash: Record<string, string>): Campaign | null {
  if (!hash.id) return null;
  return {
    id: hash.id,
    name: hash.name ?? '',
    provider: hash.provider ?? '',
    message: JSON.parse(hash.message ?? '{}') as Message,
    priority: (hash.priority ?? 'normal') as CampaignPriority,
    status: hash.status as CampaignStatus,
    createdAt: new Date(Number(hash.createdAt)).toISOString(),
    updatedAt: new Date(Number(hash.updatedAt)).toISOString(),
    recipients: {
      total: Number(hash.total),
      pageSize: Number(hash.pageSize),
      pages: Number(hash.pages),
      buckets: Number(hash.buckets),
    },
    latestRunId: hash.latestRun || null,
  };
}

/**
 * Campaigns and their recipient lists. Recipients are stored in pages (one
 * JSON string per page: the unit a send job reads) plus an id → position
 * index split into small hashes so each stays a compact listpack.
 */
export class RedisCampaignStore implements CampaignStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
  ) {}

  async create(campaign: NewCampaign, recipients: readonly StoredRecipient[]): Promise<void> {
    const k = this.keys.campaign(campaign.id);
    const { layout } = campaign;
    const tx = this.redis.multi();
    tx.hset(k.meta(), {
      id: campaign.id,
      name: campaign.name,
      provider: campaign.provider,
      message: JSON.stringify(campaign.message),
      priority: campaign.priority,
      status: 'draft',
      createdAt: campaign.createdAt,
      updatedAt: campaign.createdAt,
      total: layout.total,
      pageSize: layout.pageSize,
      pages: layout.pages,
      buckets: layout.buckets,
      latestRun: '',
    });
    for (let page = 0; page < layout.pages; page += 1) {
      tx.set(k.page(page), JSON.stringify(recipients.slice(page * layout.pageSize, (page + 1) * layout.pageSize)));
    }
    const buckets = new Map<number, Array<string | number>>();
    recipients.forEach((recipient, position) => {
      const id = recipientId(recipient);
      const bucket = bucketOf(id, layout.buckets);
      let fields = buckets.get(bucket);
      if (!fields) buckets.set(bucket, (fields = []));
      fields.push(id, position);
    });
    for (const [bucket, fields] of buckets) tx.hset(k.bucket(bucket), ...fields);
    const results = await tx.exec();
    const failure = results?.find(([err]) => err);
    if (!results || failure) throw failure?.[0] ?? new Error('campaign write was aborted');
    // The index lives outside the campaign's hash slot, so it is written after
    // the campaign itself: a crash in between leaves a campaign that is
    // reachable by id but not listed, never a listed campaign with no data.
    await this.redis.zadd(this.keys.campaignIndex(), 0, campaign.id);
  }

  async get(id: string): Promise<Campaign | null> {
    return parseCampaign(await this.redis.hgetall(this.keys.campaign(id).meta()));
  }

  async list(limit: number, cursor?: string): Promise<CampaignPage> {
    const ids = await this.redis.zrevrangebylex(this.keys.campaignIndex(), cursor ? `(${cursor}` : '+', '-', 'LIMIT', 0, limit + 1);
    const pageIds = ids.slice(0, limit);
    const pipeline = this.redis.pipeline();
    for (const id of pageIds) pipeline.hgetall(this.keys.campaign(id).meta());
    const replies = (await pipeline.exec()) ?? [];
    const items: Campaign[] = [];
    for (const [err, hash] of replies) {
      if (err) throw err;
      const campaign = parseCampaign(hash as Record<string, string>);
      if (campaign) items.push(campaign);
    }
    return { items, nextCursor: ids.length > limit ? (pageIds[pageIds.length - 1] ?? null) : null };
  }

  async readPage(campaignId: string, page: number): Promise<StoredRecipient[]> {
    const raw = await this.redis.get(this.keys.campaign(campaignId).page(page));
    if (raw === null) throw new Error(`page ${page} of campaign ${campaignId} is missing`);
    return JSON.parse(raw) as StoredRecipient[];
  }

  async findPosition(campaign: Campaign, id: string): Promise<number | null> {
    const bucket = bucketOf(id, campaign.recipients.buckets);
    const position = await this.redis.hget(this.keys.campaign(campaign.id).bucket(bucket), id);
    return position === null ? null : Number(position);
  }
}
