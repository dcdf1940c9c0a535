import { Pool, errors as undiciErrors } from 'undici';
import type { Readable } from 'node:stream';
import type { PushProvider, SendRequest } from '../../app/ports.js';
import { providerLimits, retryPolicy, type HttpProviderConfig } from '../../config.js';
import { describeError, type SendOutcome } from '../../domain/send-outcome.js';

const MAX_ERROR_BODY = 500;
const MAX_RETRY_AFTER_MS = 3_600_000;

/** Retry-After in seconds or as an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | string[] | undefined, now: number = Date.now()): number | undefined {
  const raw = Array.isArray(value) ? value[0] : value;
  if (!raw) return undefined;
  const ms = /^\s*\d+(\.\d+)?\s*$/.test(raw) ? Number(raw) * 1000 : Date.parse(raw) - now;
  if (!Number.isFinite(ms)) return undefined;
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(0, Math.round(ms)));
}

async function readText(body: Readable & { dump(): Promise<void> }, limit: number): Promise<string> {
  let out = '';
  for await (const chunk of body) {
    out += String(chunk);
    if (out.length >= limit) break;
  }
  await body.dump().catch(() => undefined);
  return out.slice(0, limit).trim();
}

function classifyError(err: unknown): SendOutcome {
  const code = (err as { code?: string }).code ?? (err as Error).name ?? 'ERROR';
  if (err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError || (err as Error).name === 'TimeoutError') {
    return { kind: 'in-doubt', code: 'TIMEOUT', message: `no complete answer from the provider in time (${code})` };
  }
  return { kind: 'transient', code: code === 'UND_ERR_SOCKET' ? 'CONNECTION_LOST' : code, message: describeError(err) };
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

  constructor(private readonly config: HttpProviderConfig) {
    this.name = config.name;
    this.limits = providerLimits(config);
    this.retry = retryPolicy(config);
    const url = new URL(config.url);
    this.path = `${url.pathname}${url.search}`;
    this.pool = new Pool(url.origin, {
      connections: config.connections,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      headersTimeout: config.timeoutMs,
      bodyTimeout: config.timeoutMs,
      connectTimeout: Math.min(config.timeoutMs, 10_000),
    });
  }

  async send(request: SendRequest): Promise<SendOutcome> {
    const body = JSON.stringify({
      idempotencyKey: request.idempotencyKey,
      campaignId: request.campaignId,
      runId: request.runId,
      recipient: request.recipient,
      message: request.message,
    });
    try {
      const res = await this.pool.request({
        method: 'POST',
        path: this.path,
        headers: {
          ...this.config.headers,
          'content-type': 'application/json',
          'idempotency-key': request.idempotencyKey,
        },
        body,
      });
      const status = res.statusCode;
      if (status >= 200 && status < 300) {
        await res.body.dump();
        return { kind: 'sent' };
      }
      const text = await readText(res.body, MAX_ERROR_BODY);
      const message = text || `HTTP ${status}`;
      if (status === 429) {
        return { kind: 'rate-limited', code: 'HTTP_429', message, retryAfterMs: parseRetryAfter(res.headers['retry-after']) };
      }
      if (status >= 400 && status < 500) return { kind: 'permanent', code: `HTTP_${status}`, message };
      return { kind: 'transient', code: `HTTP_${status}`, message };
    } catch (err) {
      return classifyError(err);
    }
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
