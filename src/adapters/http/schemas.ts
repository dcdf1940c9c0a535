import { z } from 'zod';
import { CAMPAIGN_PRIORITIES } from '../../domain/campaign.js';
import { CAMPAIGN_ID_PATTERN } from '../../domain/ids.js';

/**
 * Request schemas: the same zod objects validate requests and describe the API.
 * Objects are strict: a misspelled field ("recipient" for "recipients") is a
 * 422, not a silently empty campaign.
 */
export const messageSchema = z.strictObject({
  title: z.string().max(1024),
  body: z.string().max(16_384),
  data: z.record(z.string(), z.unknown()).default({}),
});

export const createCampaignBody = z.strictObject({
  name: z.string().trim().min(1).max(200),
  provider: z.string().min(1).max(64),
  message: messageSchema,
  priority: z.enum(CAMPAIGN_PRIORITIES).default('normal'),
  /** Attempts per recipient, overriding the provider's `maxAttempts`. */
  maxAttempts: z.number().int().min(1).max(100).optional(),
  recipients: z.array(z.unknown()).optional(),
});

/** `invalid`: an unusable recipient is skipped and reported, or the whole request refused. */
export const ingestQuery = z.strictObject({
  invalid: z.enum(['skip', 'reject']).default('skip'),
});

export const listQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().min(1).max(64).optional(),
});

/** Routes that take no query parameters refuse unknown ones, as they refuse unknown fields. */
export const noQuery = z.strictObject({});

export const scheduleBody = z.strictObject({
  at: z.string().optional(),
  cron: z.string().min(1).max(200).optional(),
  timezone: z.string().min(1).max(64).optional(),
});

export const patchCampaignBody = z.strictObject({
  name: z.string().trim().min(1).max(200).optional(),
  message: messageSchema.optional(),
  priority: z.enum(CAMPAIGN_PRIORITIES).optional(),
  maxAttempts: z.number().int().min(1).max(100).optional(),
  recipients: z.array(z.unknown()).optional(),
});

export const cloneBody = z.strictObject({ name: z.string().trim().min(1).max(200).optional() });

export const uploadHeaders = z.object({
  'x-recipient-count': z.coerce.number().int().min(0).optional(),
  'x-content-sha256': z.string().regex(/^[0-9a-fA-F]{64}$/, 'must be 64 hex digits').optional(),
});

export const campaignIdParam = z.object({ id: z.string().regex(CAMPAIGN_ID_PATTERN) });
