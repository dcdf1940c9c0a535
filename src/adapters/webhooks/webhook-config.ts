import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from '../../config-error.js';
import { loadJsonFile } from '../config-file.js';
import { CAMPAIGN_ID_PATTERN } from '../../domain/ids.js';
import { DEFAULT_WEBHOOK_RETRY, EVENT_TYPES, WEBHOOK_SECRET_PATTERN, type WebhookEndpoint } from '../../domain/webhooks.js';

/**
 * Webhook endpoints: the fields an endpoint has, whether it comes from
 * WEBHOOKS_FILE (its secret in a file or an environment variable, never in
 * the file itself) or from `POST /api/webhooks` (its secret given or made,
 * shown once, kept in Redis).
 */
export const webhookName = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'lower-case letters, digits, "-" and "_", starting with a letter or digit');

export const webhookSecret = z.string().regex(WEBHOOK_SECRET_PATTERN, 'a Standard Webhooks secret: whsec_ and the base64 of 24 to 64 random bytes');

const eventTypes = z
  .array(z.enum(EVENT_TYPES))
  .min(1)
  .max(EVENT_TYPES.length)
  .refine((types) => new Set(types).size === types.length, 'an event type is listed twice');

/** The fields an endpoint has whatever its source, with their defaults. */
export const webhookFields = {
  url: z.url({ protocol: /^https?$/ }).max(2048),
  events: eventTypes,
  /** Only these campaigns' events; all campaigns' when absent. */
  campaigns: z.array(z.string().regex(CAMPAIGN_ID_PATTERN, 'a campaign id')).min(1).max(1000).optional(),
  /** Deliveries per second at most (the permit limiter's cap, shared by every worker). */
  tps: z.number().int().min(1).max(10_000).default(10),
  timeoutMs: z.number().int().min(100).max(60_000).default(10_000),
  /** Attempts of one delivery at most, and the backoff between them (exponential, jittered). */
  maxAttempts: z.number().int().min(1).max(1000).default(DEFAULT_WEBHOOK_RETRY.maxAttempts),
  retryBaseMs: z.number().int().min(10).max(3_600_000).default(DEFAULT_WEBHOOK_RETRY.baseMs),
  retryMaxMs: z.number().int().min(10).max(86_400_000).default(DEFAULT_WEBHOOK_RETRY.maxMs),
  /** No attempt later than this after the first: the delivery becomes a dead letter. */
  retryForMs: z
    .number()
    .int()
    .min(0)
    .max(7 * 86_400_000)
    .default(DEFAULT_WEBHOOK_RETRY.forMs),
};

const fileEntry = z
  .strictObject({
    name: webhookName,
    ...webhookFields,
    secretFile: z.string().min(1).optional(),
    secretEnv: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name')
      .optional(),
  })
  .refine((e) => (e.secretFile === undefined) !== (e.secretEnv === undefined), {
    message: 'give exactly one of secretFile or secretEnv',
    path: ['secretFile'],
  });

export type WebhookFileEntry = z.infer<typeof fileEntry>;

const fileSchema = z
  .array(fileEntry)
  .max(100)
  .superRefine((list, ctx) => {
    const seen = new Set<string>();
    list.forEach((w, i) => {
      if (seen.has(w.name)) ctx.addIssue({ code: 'custom', message: `webhook name "${w.name}" is used twice`, path: [i, 'name'] });
      seen.add(w.name);
    });
  });

/** The endpoint an entry describes (whatever its source). */
export function endpointOf(entry: z.infer<z.ZodObject<typeof webhookFields>> & { name: string }, source: 'file' | 'api'): WebhookEndpoint {
  return {
    name: entry.name,
    url: entry.url,
    events: [...entry.events],
    campaigns: entry.campaigns ?? null,
    tps: entry.tps,
    timeoutMs: entry.timeoutMs,
    retry: { maxAttempts: entry.maxAttempts, baseMs: entry.retryBaseMs, maxMs: Math.max(entry.retryBaseMs, entry.retryMaxMs), forMs: entry.retryForMs },
    source,
  };
}

export function loadWebhooksFile(file: string): WebhookFileEntry[] {
  return loadJsonFile('WEBHOOKS_FILE', file, fileSchema);
}

/**
 * A file endpoint's secret, from its file or environment variable: read by
 * the processes that deliver (workers); an error names where it looked,
 * never what it found.
 */
export function readWebhookSecret(entry: WebhookFileEntry, env: NodeJS.ProcessEnv = process.env): string {
  let value: string | undefined;
  if (entry.secretFile !== undefined) {
    try {
      value = readFileSync(entry.secretFile, 'utf8').trim();
    } catch (err) {
      throw new ConfigError(`webhook ${entry.name}: secretFile ${entry.secretFile} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  } else {
    value = env[entry.secretEnv!]?.trim();
    if (!value) throw new ConfigError(`webhook ${entry.name}: environment variable ${entry.secretEnv} (secretEnv) is not set`);
  }
  if (!WEBHOOK_SECRET_PATTERN.test(value)) {
    throw new ConfigError(`webhook ${entry.name}: its secret is not a Standard Webhooks secret (whsec_ and the base64 of 24 to 64 bytes)`);
  }
  return value;
}
