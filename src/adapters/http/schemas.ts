import { z } from 'zod';
import { CAMPAIGN_PRIORITIES, RENDER_ERROR_POLICIES } from '../../domain/campaign.js';
import { frequencyCapSchema } from '../../domain/respect.js';
import { isValidTimeZone } from '../../domain/schedule.js';
import { CAMPAIGN_ID_PATTERN } from '../../domain/ids.js';
import { MAX_JSON_DEPTH, nestsDeeperThan } from '../../domain/json-depth.js';
import { CompiledMessage, MAX_LOCALES } from '../../domain/template.js';
import { MAX_TEST_RECIPIENTS } from '../../app/test-send.js';
import { webhookFields, webhookName, webhookSecret } from '../webhooks/webhook-config.js';
import { deliverAtSchema, paceSchema, windowDuration } from '../../domain/windows.js';
import { FALLBACK_REASONS, MAX_FALLBACK_LEGS } from '../../domain/fallback.js';

/**
 * Request schemas: the same zod objects validate requests and describe the API.
 * Objects are strict: a misspelled field ("recipient" for "recipients") is a
 * 422, not a silently empty campaign.
 */
const messageData = z.record(z.string(), z.unknown()).refine((data) => !nestsDeeperThan(data), `nests deeper than ${MAX_JSON_DEPTH} levels`);

/** A BCP 47 language tag (`ko`, `en-US`, `zh-Hant-TW`). */
const localeTag = z.string().regex(/^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8}){0,7}$/, 'a BCP 47 language tag such as ko, en or en-US');

export const messageSchema = z
  .strictObject({
    title: z.string().max(1024),
    body: z.string().max(16_384),
    data: messageData.default({}),
    /** Variants by the recipient's `locale`: what a variant leaves out comes from the default. */
    locales: z
      .record(localeTag, z.strictObject({ title: z.string().max(1024).optional(), body: z.string().max(16_384).optional(), data: messageData.optional() }))
      .refine((locales) => Object.keys(locales).length <= MAX_LOCALES, `at most ${MAX_LOCALES} locale variants`)
      .refine((locales) => new Set(Object.keys(locales).map((t) => t.toLowerCase())).size === Object.keys(locales).length, 'two variants differ only in case')
      .optional(),
  })
  .superRefine((message, ctx) => {
    // Templates are checked at the door: a 422 with line and column, not a failure at send time.
    // (Data nested too deep is refused by its own check above; nothing to compile in it.)
    if (nestsDeeperThan(message, MAX_JSON_DEPTH + 4)) return;
    const compiled = CompiledMessage.compile(message);
    if (compiled.ok) return;
    for (const p of compiled.problems) {
      ctx.addIssue({ code: 'custom', path: p.path.slice(1), message: `not a valid template (line ${p.line}, column ${p.column}): ${p.message}` });
    }
  });

/** One leg of a campaign's channel fallback (domain/fallback.ts). */
export const fallbackLegSchema = z.strictObject({
  provider: z.string().min(1).max(64),
  /** What of the previous leg sends a recipient on to this one. */
  on: z
    .array(z.enum(FALLBACK_REASONS))
    .min(1)
    .max(FALLBACK_REASONS.length)
    .refine((on) => new Set(on).size === on.length, 'a reason listed twice')
    .default([...FALLBACK_REASONS]),
  /** Also a recipient whose previous leg ended `unknown`: the provider may have delivered it, so they may get two messages. */
  onUnknown: z.boolean().default(false),
  /** This leg's own message (templated like the campaign's); the campaign's message when left out. */
  message: messageSchema.nullable().default(null),
  /** Most messages this leg sends per run; past it recipients are skipped, reason `fallback-budget`. */
  maxMessages: z.number().int().min(0).max(1_000_000_000).nullable().default(null),
});

export const fallbackSchema = z.array(fallbackLegSchema).max(MAX_FALLBACK_LEGS);

const timeOfDay = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$/, 'a local time HH:MM or HH:MM:SS');
const listName = z.string().regex(/^[a-z0-9][a-z0-9_:.-]{0,63}$/, 'lower-case letters, digits and _ : . - (1-64)');

export const quietHoursSchema = z.strictObject({
  start: timeOfDay,
  end: timeOfDay,
  /** For recipients without a valid `timezone` field of their own. */
  timezone: z.string().refine(isValidTimeZone, 'an IANA time zone such as Asia/Seoul').default('UTC'),
});

/** Delivery windows (domain/windows.ts): local time, pace, deadline. */
const windowFieldSchemas = {
  /** Each recipient at this time of their own day (`timezone` field, else this zone). */
  deliverAt: deliverAtSchema.nullable(),
  /** `{ tps }`: at most this many a second at the provider; `{ spreadOver: "2h" }`: the pending recipients evenly over that long. */
  pace: paceSchema.nullable(),
  /** Nothing is sent after this instant (ISO-8601 with an offset). */
  expiresAt: z.iso.datetime({ offset: true }).nullable(),
  /** Nothing is sent this long after each run's start ("3h"). */
  expiresAfter: windowDuration.nullable(),
};

/** Recipient respect: kind, quiet hours, suppression lists, frequency cap. */
const respectFields = {
  kind: z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/, 'lower-case letters, digits, _ and - (transactional, advertising, …)'),
  quietHours: quietHoursSchema.nullable(),
  suppressionLists: z.array(listName).max(20),
  frequencyCap: frequencyCapSchema.nullable(),
};

export const createCampaignBody = z.strictObject({
  name: z.string().trim().min(1).max(200),
  provider: z.string().min(1).max(64),
  message: messageSchema,
  priority: z.enum(CAMPAIGN_PRIORITIES).default('normal'),
  /** Attempts per recipient, overriding the provider's `maxAttempts`. */
  maxAttempts: z.number().int().min(1).max(100).optional(),
  kind: respectFields.kind.default('transactional'),
  quietHours: respectFields.quietHours.default(null),
  suppressionLists: respectFields.suppressionLists.default(['global']),
  frequencyCap: respectFields.frequencyCap.default(null),
  /** A recipient whose message does not render: refuse the launch (`refuse`), or skip them, reason `render-error` (`skip`). */
  onRenderError: z.enum(RENDER_ERROR_POLICIES).default('refuse'),
  deliverAt: windowFieldSchemas.deliverAt.default(null),
  pace: windowFieldSchemas.pace.default(null),
  expiresAt: windowFieldSchemas.expiresAt.default(null),
  expiresAfter: windowFieldSchemas.expiresAfter.default(null),
  /** Providers to try next for a recipient this provider could not reach (up to 3 legs). */
  fallback: fallbackSchema.default([]),
  recipients: z.array(z.unknown()).optional(),
});

/** `invalid`: an unusable recipient refuses the whole request (the default), or is skipped and reported (`skip`). */
export const ingestQuery = z.strictObject({
  invalid: z.enum(['skip', 'reject']).default('reject'),
});

export const listQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().min(1).max(64).optional(),
});

export const deleteQuery = z.strictObject({
  /** Also remove the campaign's archived results (by default they stay: the archive is the record of what was sent). */
  purgeArchive: z
    .enum(['true', 'false'])
    .default('false')
    .transform((v) => v === 'true'),
});

export const resultsQuery = z.strictObject({
  format: z.enum(['ndjson', 'csv']).default('ndjson'),
});

/** Routes that take no query parameters refuse unknown ones, as they refuse unknown fields. */
export const noQuery = z.strictObject({});

export const membersQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: z.string().min(1).max(64).optional(),
});

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
  kind: respectFields.kind.optional(),
  quietHours: respectFields.quietHours.optional(),
  suppressionLists: respectFields.suppressionLists.optional(),
  frequencyCap: respectFields.frequencyCap.optional(),
  onRenderError: z.enum(RENDER_ERROR_POLICIES).optional(),
  deliverAt: windowFieldSchemas.deliverAt.optional(),
  /** The one field a PATCH may change in any state: a running run takes the new pace within a second. */
  pace: windowFieldSchemas.pace.optional(),
  /** Setting one deadline clears the other. */
  expiresAt: windowFieldSchemas.expiresAt.optional(),
  expiresAfter: windowFieldSchemas.expiresAfter.optional(),
  fallback: fallbackSchema.optional(),
  recipients: z.array(z.unknown()).optional(),
});

export const suppressionIdsBody = z.strictObject({ ids: z.array(z.string().min(1).max(256)).min(1).max(100_000) });
export const listNameParam = z.object({ list: listName });

/** A page of a campaign's events: after a stream id (exclusive). */
export const eventsQuery = z.strictObject({
  after: z
    .string()
    .regex(/^\d{1,20}-\d{1,20}$/, 'a stream id as a previous answer gave it in next')
    .optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});

/** `ndjson`: every recipient who would fail, one per line, then the summary. */
export const dryRunQuery = z.strictObject({ format: z.enum(['json', 'ndjson']).default('json') });

/** One recipient of the list by id, or a record typed in. */
export const previewBody = z.strictObject({
  recipientId: z.string().min(1).max(256).optional(),
  recipient: z.unknown().optional(),
});

/** A seed list: the people a test send goes to (up to 50). */
export const testSendBody = z.strictObject({ recipients: z.array(z.unknown()).min(1).max(MAX_TEST_RECIPIENTS) });

export const cloneBody = z.strictObject({ name: z.string().trim().min(1).max(200).optional() });

/** The most rows an upload may announce: far beyond any audience, and a number every step can size work from. */
export const MAX_ANNOUNCED_ROWS = 1_000_000_000;

export const uploadHeaders = z.object({
  'x-recipient-count': z
    .string()
    .regex(/^\d{1,10}$/, 'a whole number of rows')
    .transform(Number)
    .pipe(z.number().max(MAX_ANNOUNCED_ROWS))
    .optional(),
  'x-content-sha256': z
    .string()
    .regex(/^[0-9a-fA-F]{64}$/, 'must be 64 hex digits')
    .optional(),
});

export const campaignIdParam = z.object({ id: z.string().regex(CAMPAIGN_ID_PATTERN) });

/** A webhook endpoint made through the API: as in WEBHOOKS_FILE, with its secret itself (or none: one is made and shown once). */
export const createWebhookBody = z.strictObject({ name: webhookName, ...webhookFields, secret: webhookSecret.optional() });

/** A change to an endpoint: any of its fields; `enabled` turns it on (from now on) or off; `campaigns: null` takes every campaign again. */
export const patchWebhookBody = z.strictObject({
  url: webhookFields.url.optional(),
  events: webhookFields.events.optional(),
  campaigns: webhookFields.campaigns.unwrap().nullable().optional(),
  tps: webhookFields.tps.unwrap().optional(),
  timeoutMs: webhookFields.timeoutMs.unwrap().optional(),
  maxAttempts: webhookFields.maxAttempts.unwrap().optional(),
  retryBaseMs: webhookFields.retryBaseMs.unwrap().optional(),
  retryMaxMs: webhookFields.retryMaxMs.unwrap().optional(),
  retryForMs: webhookFields.retryForMs.unwrap().optional(),
  secret: webhookSecret.optional(),
  enabled: z.boolean().optional(),
});

export const webhookNameParam = z.object({ name: webhookName });

export const deadLettersQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().min(1).max(16).optional(),
  /** Only this campaign's (scanned newest first, 2,000 a page at most: follow nextCursor). */
  campaign: z.string().regex(CAMPAIGN_ID_PATTERN).optional(),
  /** Include each dead letter's body as sent (`payload`). */
  payload: z
    .enum(['true', 'false'])
    .default('false')
    .transform((v) => v === 'true'),
});

/** Which dead letters to send again: these ids, or (without `ids`) all of them. */
export const replayBody = z.strictObject({ ids: z.array(z.string().min(1).max(300)).min(1).max(10_000).optional() });
