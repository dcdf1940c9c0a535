import type { Pool } from 'undici';
import { REDACTED, type OnDeparted, type ProviderRequestPreview, type PushProvider, type SendRequest } from '../../app/ports.js';
import { departingBody } from './departures.js';
import { providerLimits, retryPolicy, secretHeaders, type HttpProviderConfig } from './provider-config.js';
import type { SendOutcome } from '../../domain/send-outcome.js';
import { classifyRequestError, MAX_ERROR_BODY, parseJson, parseRetryAfter, providerPool, readText } from './http-support.js';

/** The provider's own id for a message it took, from its 2xx answer (`{"messageId": "..."}`), when it sends receipts naming it. */
function messageIdOf(text: string): string | undefined {
  const body = parseJson(text) as { messageId?: unknown } | undefined;
  return typeof body?.messageId === 'string' && body.messageId.length > 0 && body.messageId.length <= 256 ? body.messageId : undefined;
}

/** The contract's wire body. */
function httpBody(request: SendRequest): string {
  return JSON.stringify({
    idempotencyKey: request.idempotencyKey,
    campaignId: request.campaignId,
    runId: request.runId,
    recipient: request.recipient,
    message: request.message,
  });
}

function httpHeaders(request: SendRequest, headers: Record<string, string>): Record<string, string> {
  return { ...headers, 'content-type': 'application/json', 'idempotency-key': request.idempotencyKey };
}

/** The request for `request`, from the configuration alone (no secret read: headers from headersFile / headersEnv show as redacted). */
export function httpPreview(config: HttpProviderConfig, request: SendRequest): ProviderRequestPreview {
  const url = new URL(config.url);
  const secret =
    config.headersFile !== undefined || config.headersEnv !== undefined ? { [`(${config.headersFile ? 'headersFile' : 'headersEnv'})`]: REDACTED } : {};
  return {
    method: 'POST',
    url: `${url.origin}${url.pathname}${url.search}`,
    headers: httpHeaders(request, { ...config.headers, ...secret }),
    body: JSON.parse(httpBody(request)),
  };
}

/**
 * The contract's `http` provider: one JSON POST per recipient, with the
 * idempotency key in a header and in the body, over a keep-alive undici Pool.
 * 2xx sent · 429 rate limited (Retry-After honoured) · other 4xx permanent ·
 * 5xx, connection errors and timeouts transient.
 */
export class HttpProvider implements PushProvider {
  readonly type = 'http';
  readonly name: string;
  readonly limits;
  readonly retry;
  private readonly pool: Pool;
  private readonly path: string;
  private readonly headers: Record<string, string>;
  /** It sends receipts: its answers' message ids are kept (a receipt may name only that). */
  private readonly receipts: boolean;

  constructor(config: HttpProviderConfig, env: NodeJS.ProcessEnv = process.env) {
    this.receipts = config.receipts !== undefined;
    this.name = config.name;
    this.headers = { ...config.headers, ...secretHeaders(config, env) };
    this.limits = providerLimits(config);
    this.retry = retryPolicy(config);
    const url = new URL(config.url);
    this.path = `${url.pathname}${url.search}`;
    this.pool = providerPool(url.origin, config);
  }

  async send(request: SendRequest, onDeparted?: OnDeparted): Promise<SendOutcome> {
    const body = departingBody(httpBody(request), onDeparted);
    try {
      const res = await this.pool.request({
        method: 'POST',
        path: this.path,
        headers: httpHeaders(request, this.headers),
        body,
      });
      const status = res.statusCode;
      if (status >= 200 && status < 300) {
        if (!this.receipts) {
          await res.body.dump();
          return { kind: 'sent' };
        }
        const messageId = messageIdOf(await readText(res.body, 1024));
        return messageId ? { kind: 'sent', messageId } : { kind: 'sent' };
      }
      const text = await readText(res.body, MAX_ERROR_BODY);
      const message = text || `HTTP ${status}`;
      if (status === 429) {
        return { kind: 'rate-limited', scope: 'provider', code: 'HTTP_429', message, retryAfterMs: parseRetryAfter(res.headers['retry-after']) };
      }
      if (status >= 400 && status < 500) return { kind: 'permanent', code: `HTTP_${status}`, message };
      return { kind: 'transient', code: `HTTP_${status}`, message };
    } catch (err) {
      return classifyRequestError(err);
    }
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
