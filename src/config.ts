import { isIP } from 'node:net';
import { z } from 'zod';
import { addressFields, loadProviders, DEFAULT_PROVIDERS, type ProviderConfig } from './adapters/push/provider-config.js';
import { ConfigError } from './config-error.js';
import { frequencyCapSchema } from './domain/respect.js';
import { DEFAULT_REDACT_FIELDS } from './logger.js';
import { loadWebhooksFile, type WebhookFileEntry } from './adapters/webhooks/webhook-config.js';

export { ConfigError } from './config-error.js';

/**
 * The whole configuration of a process: every environment variable declared
 * once, below — its schema, its default and what it means. The `Config`
 * type, the parser and the README's configuration table
 * (`npm run docs`, checked by the test suite) all come from this one table.
 * A bad value stops the process with one line naming the variable
 * (ConfigError); nothing reads process.env anywhere else.
 */
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
/** Documents a variable: what it means, and how the README shows a default that is not a plain value. */
function doc<T extends z.ZodType>(schema: T, description: string, shownDefault?: string): T {
  return schema.meta({ description, ...(shownDefault ? { shownDefault } : {}) });
}

export const ENV = {
  NODE_ENV: doc(z.string().default('development'), '`production` makes `ADMIN_TOKEN` required in processes that serve the API'),
  REDIS_URL: doc(
    z
      .string()
      .regex(/^rediss?(-cluster)?:\/\//, 'must start with redis://, rediss:// or redis-cluster://')
      .default(DEFAULT_REDIS_URL),
    'the one Redis all processes share (`rediss://` for TLS), or a Redis Cluster: `redis-cluster://[user:password@]host1:port1,host2:port2` (`rediss-cluster://` for TLS), some of its nodes',
  ),
  SEND_SHARDS: doc(
    int(1, 256).default(1),
    "send queues pages are spread over, each on its own hash slot; on a cluster, 2× the masters is a good start. Must be the same in every process; change it only while no campaign is running (pages waiting in the old queues are otherwise left to the supervisor's re-enqueue after `STALL_MS`)",
  ),
  REDIS_WAIT_REPLICAS: doc(
    int(0, 16).default(0),
    'with replicas: how many must acknowledge a claim (Redis `WAIT`) before its recipients are sent; set `1` so a failover cannot resend (see *Failover*)',
  ),
  REDIS_WAIT_MODE: doc(
    z.enum(['strict', 'available']).default('strict'),
    '`strict`: nothing is sent while fewer than `REDIS_WAIT_REPLICAS` replicas acknowledge claims, so a failover never resends; `available`: wait only for the replicas connected now, so sending goes on, unprotected, while they are gone',
  ),
  REDIS_WAIT_TIMEOUT_MS: doc(int(10, 10_000).default(500), 'longest a claim waits for its replicas; then its recipients go back to pending, unsent'),
  QUEUE_PREFIX: doc(
    z
      .string()
      .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, ".", "-" and "_" only (1-64)')
      .default('pushq'),
    'prefix of every key the product writes; two prefixes on one Redis never see each other',
  ),
  PORT: doc(int(0, 65_535).default(3000), 'where the API listens'),
  HOST: doc(z.string().min(1).default('127.0.0.1'), 'the address the API binds to'),
  ADMIN_TOKEN: doc(
    z.string().min(1).optional(),
    'bearer token for `/api/*` and `/admin/*`; required with `NODE_ENV=production` in processes that serve the API, and then at least 24 characters (as `VIEWER_TOKEN`)',
    'generated',
  ),
  VIEWER_TOKEN: doc(z.string().min(1).optional(), "read-only token: the API's reads, Bull Board and the progress page, no change"),
  PROVIDERS_FILE: doc(z.string().min(1).optional(), 'JSON array of providers (below)', 'one `sim` at 200 TPS'),
  LOG_LEVEL: doc(
    z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    'pino level (JSON, one line per event: requests by route pattern, runs, pages; `debug` adds one line per send the provider did not accept)',
  ),
  LOG_REDACT_FIELDS: doc(
    z
      .string()
      .transform((list) =>
        list
          .split(',')
          .map((f) => f.trim())
          .filter(Boolean),
      )
      .default(DEFAULT_REDACT_FIELDS),
    "recipient fields never written to a log line (`token,deviceToken,phone,…`), besides each provider's `tokenField` / `phoneField`; the Authorization header never is",
    'device tokens, phone numbers',
  ),
  PAGE_SIZE: doc(int(1, 10_000).default(500), 'recipients per send job'),
  RUN_WINDOW: doc(int(1, 10_000).default(32), 'most pages of one run in their first pass at once'),
  WORKER_CONCURRENCY: doc(int(1, 1000).default(8), 'pages one worker process works on at once'),
  SEND_CONCURRENCY: doc(
    int(1, 100_000).default(512),
    'requests one worker process has in flight at once, across providers; a provider pool opens connections up to it as needed (about tps × answer time)',
  ),
  LEASE_MS: doc(
    int(1000, 3_600_000).default(3000),
    "how long a page stays with a worker that stopped renewing its lease (renewed every quarter of it); then the supervisor settles its in-flight recipients by the provider's in-doubt policy and hands the page on",
  ),
  STALLED_INTERVAL_MS: doc(
    int(1000, 3_600_000).default(5000),
    'BullMQ lock duration and stalled-job check of send jobs (a job whose worker died before it took its page lease comes back within twice this)',
  ),
  SHUTDOWN_TIMEOUT_MS: doc(int(0, 3_600_000).default(10_000), 'graceful-stop deadline after `SIGTERM`'),
  SUPERVISOR_INTERVAL_MS: doc(
    int(100, 3_600_000).default(1000),
    'supervisor tick: expired leases settled and their pages handed on, runs completed, windows topped up',
  ),
  STALL_MS: doc(
    int(1000, 86_400_000).default(30_000),
    'a running run with no progress for this long gets its unfinished pages enqueued again (lost jobs); a paced run, this plus two of the gaps its pace leaves between sends',
  ),
  STUCK_MS: doc(
    int(1000, 86_400_000).default(300_000),
    "a running run with recipients pending and no progress for this long raises the stuck-run alarm (log, metric, API); a paced run, this plus two of its pace's gaps (a spread over days sends minutes apart)",
  ),
  STAGING_TTL_MS: doc(int(1000, 86_400_000).default(600_000), 'an upload with nothing received for this long is abandoned: its staged rows are dropped'),
  MAX_BODY_BYTES: doc(int(1024, 1024 * 1024 * 1024).default(16 * 1024 * 1024), 'largest JSON body (inline recipients)'),
  MAX_UPLOAD_BYTES: doc(
    int(1024, 64 * 1024 * 1024 * 1024).default(1024 * 1024 * 1024),
    'largest upload (`PUT …/recipients`, `PUT /api/suppressions/:list`): 413 from its `Content-Length`, or as soon as more arrives; rows are at most 64 KiB, a CSV header at most 1,000 columns',
  ),
  MIN_SCHEDULE_INTERVAL_MS: doc(
    int(1000, 86_400_000).default(60_000),
    'a cron that fires more often than this (any two occurrences closer) is refused with 422: each occurrence is a run that sends to everyone again',
  ),
  TRUST_PROXY: doc(
    z
      .string()
      .transform((value, ctx) => {
        const parsed = parseTrustProxy(value);
        if (parsed === null) {
          ctx.addIssue({ code: 'custom', message: 'must be true, false, a number of hops, or comma-separated addresses / CIDR ranges (loopback, 10.0.0.0/8)' });
          return z.NEVER;
        }
        return parsed;
      })
      .default(false),
    'behind a reverse proxy: which hops to believe about the client address (`X-Forwarded-For`), as express `trust proxy`: `true`, a number of hops, or addresses and CIDR ranges (`loopback`, `10.0.0.0/8`). The failed-authentication limiter counts by that address',
    '`false`',
  ),
  RUN_RETENTION_MS: doc(
    int(1000, 100 * 365 * 86_400_000).default(30 * 86_400_000),
    "a finished run (completed, or cancelled) this long after it finished is written to the archive and leaves Redis, keeping its summary; a one-off campaign's list goes with its last run",
    '`2592000000` (30 days)',
  ),
  ARCHIVE_DIR: doc(
    z.string().min(1).default('./data/archive'),
    'where archived runs go when `ARCHIVE_URL` is not set: one gzip NDJSON file and a manifest per run. Every process that serves the API or archives must see the same directory',
  ),
  ARCHIVE_URL: doc(
    z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'must start with postgres:// or postgresql://')
      .optional(),
    'archive to PostgreSQL instead of `ARCHIVE_DIR`: `postgres://user:password@host:5432/db?schema=pushq` (`schema` defaults to `pushq`; tables are created at start)',
  ),
  MEMORY_HIGH_WATERMARK: doc(
    z.coerce.number().min(0.1).max(1).default(0.85),
    'share of Redis memory above which new campaigns, uploads and launches are refused with 507 (running campaigns go on sending); `/readyz` warns from 0.7',
  ),
  MEMORY_LIMIT_BYTES: doc(
    int(1, Number.MAX_SAFE_INTEGER).optional(),
    "Redis memory to measure against where Redis has no `maxmemory` (a managed Redis that hides it, a container's limit); without either, the memory guard is off and `/readyz` says so",
  ),
  SCHEDULE_GRACE_MS: doc(int(0, 30 * 86_400_000).default(3_600_000), 'an occurrence missed (every worker down) by more than this is skipped, not run late'),
  WEBHOOKS_FILE: doc(
    z.string().min(1).optional(),
    'JSON array of webhook endpoints (`name`, `url`, `events`, `secretFile` or `secretEnv`, optional `campaigns`, `tps`, `timeoutMs`; see events out); more can be made through `/api/webhooks`',
  ),
  WEBHOOK_DEAD_LETTER_LIMIT: doc(
    int(1, 10_000_000).default(10_000),
    "dead letters kept per webhook endpoint (deliveries that exhausted their attempts, with their bodies, to replay); past it the oldest go, counted in `pushq_webhook_dead_letters_dropped_total` (the run's results export still has every outcome)",
  ),
  RECEIPT_WINDOW_MS: doc(
    int(60_000, 90 * 86_400_000).default(7 * 86_400_000),
    "how long a provider's own message ids are kept (16 B each) so a receipt naming only that id finds its recipient; receipts naming pushq's idempotency key need nothing kept",
    '`604800000` (7 days)',
  ),
  FREQUENCY_CAPS: doc(
    z
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
    'frequency caps for campaigns without their own, JSON, e.g. `[{"max":2,"per":"24h","kinds":["advertising"]}]`; the first whose kinds include the campaign\'s kind applies (see recipient respect)',
    '`[]`',
  ),
} satisfies Record<string, z.ZodType>;

const PROXY_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal']);

/** TRUST_PROXY as express takes it, or null when it is none of the forms express understands. */
export function parseTrustProxy(value: string): boolean | number | string[] | null {
  const text = value.trim();
  if (text === 'true' || text === 'false') return text === 'true';
  if (/^\d{1,2}$/.test(text)) return Number(text);
  const entries = text.split(',').map((e) => e.trim());
  const valid = (entry: string) => {
    if (PROXY_NAMES.has(entry)) return true;
    const [address = '', bits, ...more] = entry.split('/');
    const family = isIP(address);
    if (family === 0 || more.length > 0) return false;
    return bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128));
  };
  return entries.every(valid) ? entries : null;
}

type Env = { [K in keyof typeof ENV]: z.output<(typeof ENV)[K]> };
/** `LEASE_MS` → `leaseMs`. */
type Camel<S extends string> = S extends `${infer Head}_${infer Tail}` ? `${Lowercase<Head>}${Capitalize<Camel<Tail>>}` : Lowercase<S>;

/** Every variable under its camel-case name. */
type FromEnv = { [K in keyof Env as Camel<K & string>]: Env[K] };

/** Every variable under its camel-case name, and what the process derives from them. */
export type Config = FromEnv & {
  production: boolean;
  /** True when REDIS_URL was not given (the one-machine default may start its own Redis). */
  redisUrlDefaulted: boolean;
  /** REDIS_URL names a Redis Cluster. */
  cluster: boolean;
  /** From PROVIDERS_FILE, or the one default `sim`. */
  providers: ProviderConfig[];
  /** From WEBHOOKS_FILE (none without it). */
  webhooks: WebhookFileEntry[];
};

function camel(name: string): string {
  return name.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

const envSchema = z.object(ENV);

/** Variables whose values are never repeated in an error message. */
const SECRET_VARIABLES = new Set(['ADMIN_TOKEN', 'VIEWER_TOKEN']);

/** A value as an error message may repeat it: any password in it masked, long ones cut. */
export function shownValue(value: string): string {
  // Everything before the last "@" is credentials (user, password, even a raw "/" or "@" in it).
  const masked = value.replace(/^([A-Za-z][A-Za-z0-9+.-]*:?\/\/)?.*@/s, (_, scheme: string | undefined) => `${scheme ?? ''}***@`);
  return JSON.stringify(masked.length > 100 ? `${masked.slice(0, 100)}…` : masked);
}

function describeIssue(issue: z.core.$ZodIssue, input: Record<string, unknown>): string {
  const variable = String(issue.path[0]);
  const got = input[variable];
  const shown = got === undefined || SECRET_VARIABLES.has(variable) ? '' : ` (got ${shownValue(String(got))})`;
  return `${variable} ${issue.message}${shown}`;
}

/** Shortest token a production API accepts: 24 characters of base64 are 144 bits, beyond guessing at any rate. */
export const MIN_PRODUCTION_TOKEN_LENGTH = 24;

/**
 * A process that serves the API needs the admin token in production, and
 * tokens long enough not to be guessed; a worker never uses them, so worker
 * machines need not hold them.
 */
export function requireAdminToken(config: Config): void {
  if (!config.production) return;
  if (!config.adminToken) throw new ConfigError('ADMIN_TOKEN must be set when NODE_ENV=production');
  for (const [name, token] of [
    ['ADMIN_TOKEN', config.adminToken],
    ['VIEWER_TOKEN', config.viewerToken],
  ] as const) {
    if (token !== undefined && token.length < MIN_PRODUCTION_TOKEN_LENGTH) {
      throw new ConfigError(
        `${name} is ${token.length} characters; with NODE_ENV=production it needs at least ${MIN_PRODUCTION_TOKEN_LENGTH} (e.g. openssl rand -base64 24)`,
      );
    }
  }
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const input: Record<string, unknown> = {};
  for (const key of Object.keys(ENV)) {
    const value = env[key];
    if (value !== undefined && value !== '') input[key] = value;
  }
  const parsed = envSchema.safeParse(input);
  if (!parsed.success) throw new ConfigError(describeIssue(parsed.error.issues[0]!, input));
  const fromEnv = Object.fromEntries(Object.entries(parsed.data).map(([key, value]) => [camel(key), value])) as FromEnv;
  const providers = parsed.data.PROVIDERS_FILE ? loadProviders(parsed.data.PROVIDERS_FILE) : DEFAULT_PROVIDERS;
  return {
    ...fromEnv,
    // Whatever LOG_REDACT_FIELDS says, the fields providers read tokens and phone numbers from are never logged.
    logRedactFields: [...new Set([...fromEnv.logRedactFields, ...addressFields(providers)])],
    production: parsed.data.NODE_ENV === 'production',
    redisUrlDefaulted: input.REDIS_URL === undefined,
    cluster: /^rediss?-cluster:/.test(parsed.data.REDIS_URL),
    providers,
    webhooks: parsed.data.WEBHOOKS_FILE ? loadWebhooksFile(parsed.data.WEBHOOKS_FILE) : [],
  };
}

/** The README's configuration table, from ENV (`npm run docs` writes it; a test checks it). */
export function configTable(): string {
  const rows = ['| variable | default | meaning |', '| --- | --- | --- |'];
  for (const [name, schema] of Object.entries(ENV)) {
    const meta = (schema.meta() ?? {}) as { shownDefault?: string };
    let fallback: unknown;
    for (let s: z.ZodType = schema; ;) {
      const def = (s as unknown as { def: { type: string; defaultValue?: unknown; innerType?: z.ZodType; in?: z.ZodType } }).def;
      if (def.type === 'default') {
        fallback = def.defaultValue;
        break;
      }
      const next = def.innerType ?? def.in;
      if (!next) break;
      s = next;
    }
    const shownDefault = meta.shownDefault ?? (fallback === undefined ? 'none' : `\`${String(fallback)}\``);
    rows.push(`| \`${name}\` | ${shownDefault} | ${schema.description ?? ''} |`);
  }
  return rows.join('\n');
}
