import { gaxios, JWT } from 'google-auth-library';
import type { Pool } from 'undici';
import { REDACTED, type OnDeparted, type ProviderRequestPreview, type PushProvider, type SendRequest } from '../../app/ports.js';
import { departingBody } from './departures.js';
import { ConfigError } from '../../config-error.js';
import { providerLimits, readSecret, retryPolicy, type FcmProviderConfig } from './provider-config.js';
import { describeError, type SendOutcome } from '../../domain/send-outcome.js';
import { fcmContent } from '../../domain/message-limits.js';
import { SharedToken } from './access-token.js';
import { classifyRequestError, MAX_ERROR_BODY, noAddress, parseJson, parseRetryAfter, providerPool, readText, recipientAddress } from './http-support.js';

const GOOGLE_TOKEN_URL = 'https://oauth2.googleapis.com/token';
const FCM_SCOPE = 'https://www.googleapis.com/auth/firebase.messaging';

interface ServiceAccount {
  client_email: string;
  private_key: string;
  project_id?: string;
  token_uri?: string;
}

interface FcmErrorBody {
  error?: {
    code?: number;
    status?: string;
    message?: string;
    details?: Array<{ '@type'?: string; errorCode?: string; fieldViolations?: Array<{ field?: string }> }>;
  };
}

function loadServiceAccount(config: FcmProviderConfig): ServiceAccount {
  const text = readSecret(config, 'serviceAccount');
  const parsed = parseJson(text) as Partial<ServiceAccount> | undefined;
  if (!parsed || typeof parsed.client_email !== 'string' || typeof parsed.private_key !== 'string') {
    throw new ConfigError(`provider ${config.name}: the service account is not a JSON key with client_email and private_key`);
  }
  return parsed as ServiceAccount;
}

function fcmPath(url: URL, projectId: string): string {
  return `${url.pathname.replace(/\/$/, '')}/v1/projects/${encodeURIComponent(projectId)}/messages:send`;
}

/** The FCM v1 request body: `message` with the token, `notification` and string-valued `data`. */
function fcmPayload(config: Pick<FcmProviderConfig, 'messageDefaults'>, request: SendRequest, token: string | null): string {
  return JSON.stringify({ message: { ...config.messageDefaults, token, ...fcmContent(request.message) } });
}

/** The request for `request`, from the configuration alone (the service account is not read: without projectId its path names it). */
export function fcmPreview(config: FcmProviderConfig, request: SendRequest): ProviderRequestPreview {
  const url = new URL(config.baseUrl);
  return {
    method: 'POST',
    url: `${url.origin}${fcmPath(url, config.projectId ?? '{project_id of the service account}')}`,
    headers: { authorization: `Bearer ${REDACTED}`, 'content-type': 'application/json; charset=utf-8' },
    body: JSON.parse(fcmPayload(config, request, recipientAddress(request.recipient, config.tokenField) ?? null)),
  };
}

/**
 * Firebase Cloud Messaging, HTTP v1: one POST to
 * `projects/{id}/messages:send` per recipient (its device token in the
 * recipient field `tokenField`), authorised by an OAuth2 access token minted
 * from the service account by google-auth-library — one token per process,
 * shared by all sends, refreshed before it expires and at once when FCM
 * rejects it (that send then goes again on a permit of its own: one request
 * per send, so a permit never carries two).
 *
 * 200 sent · UNREGISTERED / 404, SENDER_ID_MISMATCH and INVALID_ARGUMENT on
 * the token: failed, token invalid · 429 / QUOTA_EXCEEDED: rate limited
 * (Retry-After honoured) · UNAVAILABLE / INTERNAL / 5xx, connection errors:
 * transient · other 4xx: failed. FCM has no idempotency key: a timeout is in
 * doubt and reported, unless the operator sets retryTimeouts.
 */
export class FcmProvider implements PushProvider {
  readonly type = 'fcm';
  readonly name: string;
  readonly limits;
  readonly retry;
  readonly accessToken: SharedToken;
  private readonly pool: Pool;
  private readonly path: string;

  constructor(private readonly config: FcmProviderConfig) {
    this.name = config.name;
    this.limits = providerLimits(config);
    this.retry = retryPolicy(config);
    const account = loadServiceAccount(config);
    const projectId = config.projectId ?? account.project_id;
    if (!projectId) throw new ConfigError(`provider ${config.name}: no projectId, and the service account has no project_id`);
    const url = new URL(config.baseUrl);
    this.path = fcmPath(url, projectId);
    this.pool = providerPool(url.origin, config);

    // The token endpoint is the one the service account names (Google's, or a test server's).
    const transporter = new gaxios.Gaxios({ timeout: config.timeoutMs });
    if (account.token_uri && account.token_uri !== GOOGLE_TOKEN_URL) {
      const tokenUri = account.token_uri;
      transporter.interceptors.request.add({
        resolved: async (options) => {
          if (String(options.url) === GOOGLE_TOKEN_URL) options.url = new URL(tokenUri);
          return options;
        },
      });
    }
    this.accessToken = new SharedToken(async () => {
      // A fresh client each time: the JWT client keeps a token cache of its own, and this one is the single cache.
      const client = new JWT({ email: account.client_email, key: account.private_key, scopes: [FCM_SCOPE], transporter });
      const credentials = await client.authorize();
      if (!credentials.access_token) throw new Error('the token endpoint answered without an access_token');
      return { token: credentials.access_token, expiresAt: credentials.expiry_date ?? Date.now() + 3_600_000 };
    });
  }

  address(recipient: SendRequest['recipient']): string | undefined {
    return recipientAddress(recipient, this.config.tokenField);
  }

  async send(request: SendRequest, onDeparted?: OnDeparted): Promise<SendOutcome> {
    const token = this.address(request.recipient);
    if (!token) return noAddress('NO_TOKEN', this.config.tokenField);
    const payload = fcmPayload(this.config, request, token);
    let bearer: string;
    try {
      bearer = await this.accessToken.get();
    } catch (err) {
      return { kind: 'transient', code: 'FCM_AUTH', message: `could not get an access token: ${describeError(err)}` };
    }
    const answer = await this.post(payload, bearer, onDeparted);
    if (answer !== 'unauthenticated') return answer;
    // A token minted to replace a refused one and refused too: our credentials are wrong (retried; it opens the circuit).
    if (this.accessToken.isReplacement(bearer)) return { kind: 'transient', code: 'FCM_AUTH', message: 'FCM refused a freshly minted access token (401)' };
    // Revoked or expired early: a new token for every send from now on. This send goes again on a
    // permit of its own — a second request on this one could put two in a second on one permit.
    try {
      await this.accessToken.renew(bearer);
    } catch (err) {
      return { kind: 'transient', code: 'FCM_AUTH', message: `could not renew the access token: ${describeError(err)}` };
    }
    return { kind: 'not-sent', code: 'FCM_UNAUTHENTICATED', message: 'FCM refused the access token (401); renewed, sending again' };
  }

  private async post(payload: string, bearer: string, onDeparted: OnDeparted | undefined): Promise<SendOutcome | 'unauthenticated'> {
    try {
      const res = await this.pool.request({
        method: 'POST',
        path: this.path,
        headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json; charset=utf-8' },
        body: departingBody(payload, onDeparted),
      });
      if (res.statusCode >= 200 && res.statusCode < 300) {
        await res.body.dump();
        return { kind: 'sent' };
      }
      // Read enough to parse FCM's JSON error; keep a short message.
      const text = await readText(res.body, 16_000);
      if (res.statusCode === 401) return 'unauthenticated';
      return classifyFcmError(res.statusCode, text, res.headers['retry-after']);
    } catch (err) {
      return classifyRequestError(err);
    }
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}

export function classifyFcmError(status: number, text: string, retryAfter?: string | string[]): SendOutcome {
  const error = (parseJson(text) as FcmErrorBody | undefined)?.error;
  const fcmCode = error?.details?.find((d) => d['@type']?.endsWith('google.firebase.fcm.v1.FcmError'))?.errorCode;
  const code = fcmCode ?? error?.status ?? `HTTP_${status}`;
  const message = (error?.message ?? (text || `HTTP ${status}`)).slice(0, MAX_ERROR_BODY);
  if (status === 429 || code === 'QUOTA_EXCEEDED') return { kind: 'rate-limited', scope: 'provider', code, message, retryAfterMs: parseRetryAfter(retryAfter) };
  if (code === 'UNREGISTERED' || status === 404 || code === 'SENDER_ID_MISMATCH') return { kind: 'permanent', code, message, tokenInvalid: true };
  if (code === 'INVALID_ARGUMENT') {
    // Only a bad token makes the recipient unreachable; another bad field is the message's fault.
    const onToken = (error?.details ?? []).some((d) => d.fieldViolations?.some((v) => v.field === 'message.token')) || /registration token/i.test(message);
    return { kind: 'permanent', code, message, tokenInvalid: onToken };
  }
  if (status >= 500 || code === 'UNAVAILABLE' || code === 'INTERNAL') return { kind: 'transient', code, message };
  return { kind: 'permanent', code, message };
}
