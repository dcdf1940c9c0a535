import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { frequencyCapSchema } from './adapters/http/schemas.js';
import type { FrequencyCap } from './domain/respect.js';
import { DEFAULT_REDACT_FIELDS } from './logger.js';

/**
 * The whole configuration of a process: one zod schema over the environment,
 * parsed once at start. A bad value stops the process with one line naming
 * the variable (ConfigError); nothing reads process.env anywhere else.
 */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const common = {
  name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'lower-case letters, digits, "-" and "_", starting with a letter or digit'),
  tps: z.number().int().min(1).max(100_000),
  maxAttempts: z.number().int().min(1).max(100).default(5),
  retryBaseMs: z.number().int().min(1).max(3_600_000).default(1000),
  retryMaxMs: z.number().int().min(1).max(86_400_000).default(60_000),
  /**
   * A send whose fate is unknown (its worker died mid-request): `report` it as
   * unknown, or `resend` it with the same idempotency key (only for a
   * provider that honours the key).
   */
  inDoubt: z.enum(['report', 'resend']).default('report'),
  breaker: z
    .strictObject({
      failures: z.number().int().min(1).max(100_000).default(20),
      coolDownMs: z.number().int().min(100).max(3_600_000).default(5000),
      maxCoolDownMs: z.number().int().min(100).max(86_400_000).default(60_000),
    })
    .prefault({}),
};

const httpProvider = z.object({
  ...common,
  type: z.literal('http'),
  url: z.url({ protocol: /^https?$/ }),
  timeoutMs: z.number().int().min(1).max(300_000).default(5000),
  /** Keep-alive connections to the provider per worker process. */
  connections: z.number().int().min(1).max(1024).default(64),
  headers: z.record(z.string(), z.string()).default({}),
  /** The contract: a timeout is transient, retried with the same Idempotency-Key. `false` reports it as in doubt instead. */
  retryTimeouts: z.boolean().default(true),
});

const simProvider = z.object({
  ...common,
  type: z.literal('sim'),
  latencyMs: z.number().min(0).max(60_000).default(20),
  failureRate: z.number().min(0).max(1).default(0),
  timeoutMs: z.number().int().min(1).max(300_000).default(5000),
});

export const providerSchema = z.discriminatedUnion('type', [httpProvider, simProvider]);
export type ProviderConfig = z.infer<typeof providerSchema>;
export type HttpProviderConfig = z.infer<typeof httpProvider>;
export type SimProviderConfig = z.infer<typeof simProvider>;

const providersSchema = z
  .array(providerSchema)
  .min(1)
  .superRefine((list, ctx) => {
    const seen = new Set<string>();
    list.forEach((p, i) => {
      if (seen.has(p.name)) ctx.addIssue({ code: 'custom', message: `provider name "${p.name}" is used twice`, path: [i, 'name'] });
      seen.add(p.name);
    });
  });

/** The limits every provider type hands to the rate limiter. */
export function providerLimits(config: ProviderConfig) {
  return { name: config.name, tps: config.tps, timeoutMs: config.timeoutMs, breaker: config.breaker };
}

/** The retry policy every provider type hands to the ledger. */
export function retryPolicy(config: ProviderConfig) {
  return {
    maxAttempts: config.maxAttempts,
    baseMs: config.retryBaseMs,
    maxMs: config.retryMaxMs,
    inDoubt: config.inDoubt,
    retryTimeouts: config.type === 'http' ? config.retryTimeouts : true,
  };
}

export const DEFAULT_PROVIDERS: ProviderConfig[] = [providerSchema.parse({ name: 'sim', type: 'sim', tps: 200 })];

const envSchema = z.object({
  NODE_ENV: z.string().default('development'),
  REDIS_URL: z.string().regex(/^rediss?:\/\//, 'must start with redis:// or rediss://').optional(),
  QUEUE_PREFIX: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, ".", "-" and "_" only (1-64)').default('pushq'),
  PORT: int(0, 65_535).default(3000),
  HOST: z.string().min(1).default('127.0.0.1'),
  ADMIN_TOKEN: z.string().min(1).optional(),
  /** Read-only access: the API's reads, Bull Board and the progress page; every change answers 403. */
  VIEWER_TOKEN: z.string().min(1).optional(),
  PROVIDERS_FILE: z.string().min(1).optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Recipient fields never written to a log line (comma-separated); the default covers device tokens and phone numbers. */
  LOG_REDACT_FIELDS: z.string().optional(),
  /** Recipients per send job. */
  PAGE_SIZE: int(1, 10_000).default(500),
  /** Pages of one run queued at once; the rest are enqueued as pages finish. */
  RUN_WINDOW: int(1, 10_000).default(32),
  /** Send jobs (pages) one worker process works on at once. */
  WORKER_CONCURRENCY: int(1, 1000).default(8),
  /** Requests one worker process may have in flight at once, across providers. */
  SEND_CONCURRENCY: int(1, 100_000).default(256),
  /** How long a worker owns a page without renewing before others take it over. */
  LEASE_MS: int(1000, 3_600_000).default(30_000),
  /** BullMQ lock duration and stalled-check interval of send jobs. */
  STALLED_INTERVAL_MS: int(1000, 3_600_000).default(30_000),
  SHUTDOWN_TIMEOUT_MS: int(0, 3_600_000).default(10_000),
  SUPERVISOR_INTERVAL_MS: int(100, 3_600_000).default(5000),
  /** A running run with no ledger change for this long has its pages enqueued again. */
  STALL_MS: int(1000, 86_400_000).default(60_000),
  /** … and one with none for this long raises the stuck-run alarm (log, metric, API). */
  STUCK_MS: int(1000, 86_400_000).default(300_000),
  /** An upload with nothing received for this long is abandoned: its staged rows are dropped. */
  STAGING_TTL_MS: int(1000, 86_400_000).default(600_000),
  MAX_BODY_BYTES: int(1024, 1024 * 1024 * 1024).default(16 * 1024 * 1024),
  /** An occurrence missed (every process down) by more than this is skipped, not run late. */
  SCHEDULE_GRACE_MS: int(0, 30 * 86_400_000).default(3_600_000),
  /**
   * Frequency caps for campaigns without their own, as a JSON array, e.g.
   * [{"max":2,"per":"24h","kinds":["advertising"]}]; the first whose kinds
   * include the campaign's kind applies.
   */
  FREQUENCY_CAPS: z
    .string()
    .transform((text, ctx) => {
      try {
        return JSON.parse(text) as unknown;
      } catch {
        ctx.addIssue({ code: 'custom', message: 'is not valid JSON' });
        return z.NEVER;
      }
    })
    .pipe(z.array(frequencyCapSchema).max(20))
    .default([]),
});

export interface Config {
  env: string;
  production: boolean;
  redisUrl: string;
  /** True when REDIS_URL was not given (the one-machine default may start its own Redis). */
  redisUrlDefaulted: boolean;
  prefix: string;
  port: number;
  host: string;
  adminToken: string | undefined;
  viewerToken: string | undefined;
  providers: ProviderConfig[];
  logLevel: string;
  redactFields: string[];
  pageSize: number;
  runWindow: number;
  workerConcurrency: number;
  sendConcurrency: number;
  leaseMs: number;
  stalledIntervalMs: number;
  shutdownTimeoutMs: number;
  supervisorIntervalMs: number;
  stallMs: number;
  stuckMs: number;
  stagingTtlMs: number;
  maxBodyBytes: number;
  scheduleGraceMs: number;
  frequencyCaps: FrequencyCap[];
}

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

function describeIssue(issue: z.core.$ZodIssue, input: Record<string, unknown>): string {
  const variable = String(issue.path[0]);
  const got = input[variable];
  return `${variable} ${issue.message}${got === undefined ? '' : ` (got ${JSON.stringify(got)})`}`;
}

export function loadProviders(file: string): ProviderConfig[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError(`PROVIDERS_FILE ${file} cannot be read as JSON: ${(err as Error).message}`);
  }
  const parsed = providersSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ConfigError(`PROVIDERS_FILE ${file}: at [${issue.path.join('.')}]: ${issue.message}`);
  }
  return parsed.data;
}

/**
 * A process that serves the API needs the admin token in production; a
 * worker never uses it, so worker machines need not hold it.
 */
export function requireAdminToken(config: Config): void {
  if (config.production && !config.adminToken) throw new ConfigError('ADMIN_TOKEN must be set when NODE_ENV=production');
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const input: Record<string, unknown> = {};
  for (const key of Object.keys(envSchema.shape)) {
    const value = env[key];
    if (value !== undefined && value !== '') input[key] = value;
  }
  const parsed = envSchema.safeParse(input);
  if (!parsed.success) throw new ConfigError(describeIssue(parsed.error.issues[0]!, input));
  const e = parsed.data;
  const production = e.NODE_ENV === 'production';
  return {
    env: e.NODE_ENV,
    production,
    redisUrl: e.REDIS_URL ?? DEFAULT_REDIS_URL,
    redisUrlDefaulted: e.REDIS_URL === undefined,
    prefix: e.QUEUE_PREFIX,
    port: e.PORT,
    host: e.HOST,
    adminToken: e.ADMIN_TOKEN,
    viewerToken: e.VIEWER_TOKEN,
    providers: e.PROVIDERS_FILE ? loadProviders(e.PROVIDERS_FILE) : DEFAULT_PROVIDERS,
    logLevel: e.LOG_LEVEL,
    redactFields: e.LOG_REDACT_FIELDS
      ? e.LOG_REDACT_FIELDS.split(',').map((f) => f.trim()).filter(Boolean)
      : DEFAULT_REDACT_FIELDS,
    pageSize: e.PAGE_SIZE,
    runWindow: e.RUN_WINDOW,
    workerConcurrency: e.WORKER_CONCURRENCY,
    sendConcurrency: e.SEND_CONCURRENCY,
    leaseMs: e.LEASE_MS,
    stalledIntervalMs: e.STALLED_INTERVAL_MS,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    supervisorIntervalMs: e.SUPERVISOR_INTERVAL_MS,
    stallMs: e.STALL_MS,
    stuckMs: e.STUCK_MS,
    stagingTtlMs: e.STAGING_TTL_MS,
    maxBodyBytes: e.MAX_BODY_BYTES,
    scheduleGraceMs: e.SCHEDULE_GRACE_MS,
    frequencyCaps: e.FREQUENCY_CAPS,
  };
}
