import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from '../../config-error.js';
import { jsonPosition, loadJsonFile } from '../config-file.js';

/**
 * The providers file (PROVIDERS_FILE): one zod schema per provider type,
 * and what every type derives from its entry for the limiter and the ledger.
 * Each provider adapter in this folder takes its own entry's type.
 */
/** See `arrivalMarginMs`: held every row of the limiter bench and the CPU-load test (5 ms did too; 0 did not). */
export const DEFAULT_ARRIVAL_MARGIN_MS = 10;

const common = {
  name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'lower-case letters, digits, "-" and "_", starting with a letter or digit'),
  tps: z.number().int().min(1).max(100_000),
  maxAttempts: z.number().int().min(1).max(100).default(5),
  /** Times a recipient may be handed back unsent at the provider's word (429, a refused stream, renewed credentials) before it fails. */
  maxRequeues: z.number().int().min(1).max(1000).default(50),
  retryBaseMs: z.number().int().min(1).max(3_600_000).default(1000),
  retryMaxMs: z.number().int().min(1).max(86_400_000).default(60_000),
  /**
   * How much later than the fastest request a request may be counted by the
   * provider once it left this process, beyond what its answer time shows
   * (permit-limiter.ts `restFrom`). A permit rests one second from its
   * request's departure plus this — later when the answer came late, never
   * later than the answer: at least `timeoutMs` rests every permit from the
   * answer.
   */
  arrivalMarginMs: z.number().int().min(0).max(300_000).default(DEFAULT_ARRIVAL_MARGIN_MS),
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

const simProvider = z.object({
  ...common,
  type: z.literal('sim'),
  latencyMs: z.number().min(0).max(60_000).default(20),
  failureRate: z.number().min(0).max(1).default(0),
  timeoutMs: z.number().int().min(1).max(300_000).default(5000),
  /** A recipient field it sends to (a device token, a phone number): a recipient without one fails, NO_TOKEN, as a real provider would. */
  tokenField: z.string().min(1).max(64).optional(),
});

/**
 * A secret (key, service account) comes from a file or an environment
 * variable, named in the providers file — never the secret itself, so the
 * providers file can be shared and logged. It is read once at start and kept
 * in memory only: never logged, never written to Redis.
 */
function secretFields<K extends string>(name: K) {
  return {
    [`${name}File`]: z.string().min(1).optional(),
    [`${name}Env`]: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name')
      .optional(),
  } as { [P in `${K}File` | `${K}Env`]: z.ZodOptional<z.ZodString> };
}

/** A secret given once: exactly one of its file and variable, or (`optional`) at most one. */
function oneSecret(name: string, options: { optional?: boolean } = {}) {
  return (value: Record<string, unknown>, ctx: z.RefinementCtx) => {
    const given = [value[`${name}File`], value[`${name}Env`]].filter((v) => v !== undefined).length;
    if (given > 1 && options.optional) ctx.addIssue({ code: 'custom', message: `give ${name}File or ${name}Env, not both`, path: [`${name}File`] });
    else if (given !== 1 && !options.optional)
      ctx.addIssue({ code: 'custom', message: `give exactly one of ${name}File or ${name}Env`, path: [`${name}File`] });
  };
}

/**
 * Delivery receipts a provider sends back to `POST /api/receipts/<name>`,
 * authenticated with a secret from a file or variable: for `http`, a
 * Standard Webhooks `whsec_` secret the provider signs its receipts with;
 * for `alimtalk`, the signature string set in NHN's webhook settings (sent
 * back as X-Toast-Webhook-Signature).
 */
const receiptsConfig = z.strictObject({ ...secretFields('secret') }).refine((r) => (r.secretFile === undefined) !== (r.secretEnv === undefined), {
  message: 'give exactly one of secretFile or secretEnv',
  path: ['secretFile'],
});

const headerName = z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/, 'an HTTP header name');
const headerValue = z.string().regex(/^[\t\x20-\x7e\x80-\xff]{0,8192}$/, 'an HTTP header value (no line breaks)');
const headerMap = z.record(headerName, headerValue);

const httpProvider = z
  .object({
    ...common,
    type: z.literal('http'),
    url: z.url({ protocol: /^https?$/ }),
    timeoutMs: z.number().int().min(1).max(300_000).default(5000),
    /** Most keep-alive connections to the provider per worker process; SEND_CONCURRENCY when not set (opened as needed). */
    connections: z.number().int().min(1).max(100_000).optional(),
    /** Headers sent with every request, in the file itself: nothing secret. */
    headers: headerMap.default({}),
    /** More headers (an API key), as a JSON object in a file or an environment variable, kept out of the providers file. */
    ...secretFields('headers'),
    /** The contract: a timeout is transient, retried with the same Idempotency-Key. `false` reports it as in doubt instead. */
    retryTimeouts: z.boolean().default(true),
    receipts: receiptsConfig.optional(),
  })
  .superRefine(oneSecret('headers', { optional: true }));

/**
 * The secret headers of an http provider (headersFile / headersEnv): a JSON
 * object of header names and values. Read once at start, in worker processes
 * only; an error names the file or variable, never its content.
 */
export function secretHeaders(config: HttpProviderConfig, env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  if (config.headersFile === undefined && config.headersEnv === undefined) return {};
  const where = config.headersFile !== undefined ? `headersFile ${config.headersFile}` : `headersEnv ${config.headersEnv}`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readSecret(config, 'headers', env));
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`provider ${config.name}: ${where} is not a JSON object of headers (${jsonPosition(err)})`);
  }
  const headers = headerMap.safeParse(parsed);
  if (!headers.success) throw new ConfigError(`provider ${config.name}: ${where} is not a JSON object of header names and values`);
  return headers.data;
}

/** Recipient field holding the device token (FCM, APNs) or phone number (alimtalk). */
const fieldName = z.string().min(1).max(64);

const fcmProvider = z
  .object({
    ...common,
    type: z.literal('fcm'),
    ...secretFields('serviceAccount'),
    /** Defaults to the service account's project_id. */
    projectId: z.string().min(1).optional(),
    baseUrl: z.url({ protocol: /^https?$/ }).default('https://fcm.googleapis.com'),
    timeoutMs: z.number().int().min(1).max(300_000).default(5000),
    connections: z.number().int().min(1).max(100_000).optional(),
    tokenField: fieldName.default('token'),
    /** Merged into every `message` (e.g. {"android": {"priority": "high"}}). */
    messageDefaults: z.record(z.string(), z.unknown()).default({}),
    /** FCM has no idempotency: a timeout is in doubt (reported) unless this says to resend. */
    retryTimeouts: z.boolean().default(false),
  })
  .superRefine(oneSecret('serviceAccount'));

const APNS_HOSTS = { production: 'https://api.push.apple.com', development: 'https://api.sandbox.push.apple.com' } as const;

const apnsProvider = z
  .object({
    ...common,
    type: z.literal('apns'),
    /** The .p8 signing key (provider-token auth). */
    ...secretFields('key'),
    keyId: z.string().regex(/^[A-Z0-9]{10}$/, '10 upper-case letters or digits'),
    teamId: z.string().regex(/^[A-Z0-9]{10}$/, '10 upper-case letters or digits'),
    /** The app's bundle id (apns-topic). */
    topic: z.string().min(1),
    environment: z.enum(['production', 'development']).default('production'),
    /** Overrides the environment's host (tests, proxies). */
    baseUrl: z.url({ protocol: /^https$/ }).optional(),
    /** PEM file of a CA to trust besides the system ones (a test server, a TLS-inspecting proxy). */
    caFile: z.string().min(1).optional(),
    pushType: z.enum(['alert', 'background', 'voip', 'complication', 'fileprovider', 'mdm', 'liveactivity', 'location', 'pushtotalk']).default('alert'),
    priority: z.union([z.literal(10), z.literal(5), z.literal(1)]).default(10),
    /** apns-expiration: seconds the push may wait for an offline device; 0 delivers once or never. */
    expirationSeconds: z
      .number()
      .int()
      .min(0)
      .max(30 * 86_400)
      .default(0),
    /** Apple wants the provider token refreshed no more often than every 20 minutes, and at least every 60. */
    tokenTtlMinutes: z.number().int().min(20).max(50).default(40),
    tokenField: fieldName.default('token'),
    timeoutMs: z.number().int().min(1).max(300_000).default(5000),
    /** APNs does not deduplicate by apns-id: a timeout is in doubt (reported) unless this says to resend. */
    retryTimeouts: z.boolean().default(false),
  })
  .superRefine(oneSecret('key'));

/**
 * What NHN Cloud's alimtalk and SMS senders share (adapters/push/nhn-provider.ts):
 * the app key and X-Secret-Key, the phone field, recipients per request, what
 * `tps` counts, the result codes of dead numbers, timeouts and connections.
 */
const nhnFields = {
  appKey: z.string().min(1),
  /** X-Secret-Key. */
  ...secretFields('secretKey'),
  phoneField: fieldName.default('phone'),
  /** Recipients per request (the API takes up to 1,000). */
  batchSize: z.number().int().min(1).max(1000).default(1),
  /** What `tps` counts: requests, or messages (recipients) — as the provider's contract counts them. */
  countBy: z.enum(['request', 'message']).default('message'),
  /** Per-recipient result codes that mean the phone number can never receive: its id goes on token-invalid:<name>. */
  invalidRecipientCodes: z.array(z.number().int()).default([]),
  timeoutMs: z.number().int().min(1).max(300_000).default(5000),
  connections: z.number().int().min(1).max(100_000).optional(),
};

/** A sender number registered with NHN. */
const senderNumber = z.string().regex(/^\d{3,20}$/, 'the registered sender number, digits only');

const alimtalkProvider = z
  .object({
    ...common,
    type: z.literal('alimtalk'),
    baseUrl: z.url({ protocol: /^https?$/ }).default('https://api-alimtalk.cloud.toast.com'),
    ...nhnFields,
    senderKey: z.string().min(1),
    /** A campaign's `message.data.templateCode` overrides it. */
    templateCode: z.string().min(1).max(20),
    /** Recipient fields passed as template parameters; all its other text fields when omitted. */
    templateParameters: z.array(fieldName).optional(),
    /**
     * The API refuses a key it saw in the last 10 minutes, so a timed-out
     * request is safely retried with its key — when the retry carries the
     * same recipients, i.e. without batching. Defaults to batchSize == 1.
     */
    retryTimeouts: z.boolean().optional(),
    receipts: receiptsConfig.optional(),
    /**
     * NHN's own SMS re-send (대체 발송, resendParameter): a campaign whose
     * first fallback leg is an `sms` provider sends that leg's text with each
     * alimtalk, and NHN sends it as SMS or LMS when the alimtalk cannot be
     * delivered; its receipts say which (src/domain/fallback.ts).
     */
    nativeFallback: z.boolean().default(false),
    /** The sender number NHN re-sends from (registered with NHN's SMS service): required with nativeFallback. */
    resendSendNo: senderNumber.optional(),
  })
  .superRefine(oneSecret('secretKey'))
  .superRefine((config, ctx) => {
    if (config.nativeFallback && !config.resendSendNo) {
      ctx.addIssue({ code: 'custom', path: ['resendSendNo'], message: 'nativeFallback needs the sender number NHN re-sends from' });
    }
  });

const smsProvider = z
  .object({
    ...common,
    type: z.literal('sms'),
    baseUrl: z.url({ protocol: /^https?$/ }).default('https://api-sms.cloud.toast.com'),
    /** (Recipients of one text share a request.) */
    ...nhnFields,
    /** The sender number registered with the provider. */
    sendNo: senderNumber,
    /** Request-level result codes about our account (bad app key or secret, quota): retried and counted by the circuit breaker. */
    accountCodes: z.array(z.number().int()).default([-1000, -1001]),
    /** Advertising messages: the name after `(광고)`, and the free 080 opt-out number the law asks for (without both they are refused). */
    adSenderName: z.string().min(1).max(30).optional(),
    optOutNumber: z
      .string()
      .regex(/^080-?\d{3,4}-?\d{4}$/, 'a free 080 number, such as 080-123-4567')
      .optional(),
    /** The API takes no idempotency key: a timed-out request resent may be a second message, so it is reported unless this says to resend. */
    retryTimeouts: z.boolean().default(false),
  })
  .superRefine(oneSecret('secretKey'))
  .superRefine((config, ctx) => {
    if (config.inDoubt === 'resend') {
      ctx.addIssue({
        code: 'custom',
        path: ['inDoubt'],
        message: 'the SMS API takes no idempotency key: resending what may have gone out is a second paid message; use "report"',
      });
    }
    if ((config.adSenderName === undefined) !== (config.optOutNumber === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['optOutNumber'], message: 'advertising needs both adSenderName and optOutNumber' });
    }
  });

export const providerSchema = z.discriminatedUnion('type', [httpProvider, simProvider, fcmProvider, apnsProvider, alimtalkProvider, smsProvider]);
export type ProviderConfig = z.infer<typeof providerSchema>;
export type HttpProviderConfig = z.infer<typeof httpProvider>;
export type SimProviderConfig = z.infer<typeof simProvider>;
export type FcmProviderConfig = z.infer<typeof fcmProvider>;
export type ApnsProviderConfig = z.infer<typeof apnsProvider>;
export type AlimtalkProviderConfig = z.infer<typeof alimtalkProvider>;
export type SmsProviderConfig = z.infer<typeof smsProvider>;

export function apnsBaseUrl(config: ApnsProviderConfig): string {
  return config.baseUrl ?? APNS_HOSTS[config.environment];
}

/** Reads a provider's secret from the file or environment variable its config names. */
export function readSecret(config: ProviderConfig & Record<string, unknown>, name: string, env: NodeJS.ProcessEnv = process.env): string {
  const file = config[`${name}File`] as string | undefined;
  const variable = config[`${name}Env`] as string | undefined;
  let value: string | undefined;
  if (file !== undefined) {
    try {
      value = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(`provider ${config.name}: ${name}File ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  } else {
    value = env[variable!];
    if (value === undefined || value === '') throw new ConfigError(`provider ${config.name}: environment variable ${variable} (${name}Env) is not set`);
  }
  if (value.trim() === '') throw new ConfigError(`provider ${config.name}: its ${name} is empty`);
  return value.trim();
}

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
  return { name: config.name, tps: config.tps, timeoutMs: config.timeoutMs, arrivalMarginMs: config.arrivalMarginMs, breaker: config.breaker };
}

function retryTimeouts(config: ProviderConfig): boolean {
  switch (config.type) {
    case 'sim':
      return true;
    case 'alimtalk':
      return config.retryTimeouts ?? config.batchSize === 1;
    default:
      return config.retryTimeouts;
  }
}

/** The retry policy every provider type hands to the ledger. */
export function retryPolicy(config: ProviderConfig) {
  return {
    maxAttempts: config.maxAttempts,
    maxRequeues: config.maxRequeues,
    baseMs: config.retryBaseMs,
    maxMs: config.retryMaxMs,
    inDoubt: config.inDoubt,
    retryTimeouts: retryTimeouts(config),
  };
}

export const DEFAULT_PROVIDERS: ProviderConfig[] = [providerSchema.parse({ name: 'sim', type: 'sim', tps: 200 })];

/**
 * The secret a provider's receipts are checked with (its `receipts` entry),
 * or null when it sends none. Read by the processes that serve the API.
 */
export function receiptSecret(config: ProviderConfig, env: NodeJS.ProcessEnv = process.env): string | null {
  if ((config.type !== 'http' && config.type !== 'alimtalk') || !config.receipts) return null;
  const { secretFile, secretEnv } = config.receipts;
  return readSecret({ ...config, secretFile, secretEnv } as ProviderConfig & Record<string, unknown>, 'secret', env);
}

/** The recipient fields providers read a device token or phone number from: never written to a log. */
export function addressFields(providers: readonly ProviderConfig[]): string[] {
  return providers.flatMap((p) =>
    p.type === 'fcm' || p.type === 'apns'
      ? [p.tokenField]
      : p.type === 'alimtalk' || p.type === 'sms'
        ? [p.phoneField]
        : p.type === 'sim' && p.tokenField
          ? [p.tokenField]
          : [],
  );
}

export function loadProviders(file: string): ProviderConfig[] {
  return loadJsonFile('PROVIDERS_FILE', file, providersSchema);
}
