import type { Readable } from 'node:stream';
import { Pool, errors as undiciErrors } from 'undici';
import { describeError, type SendOutcome } from '../../domain/send-outcome.js';

/** What HTTP providers keep of an error body: enough to explain, never a whole page. */
export const MAX_ERROR_BODY = 500;
const MAX_RETRY_AFTER_MS = 3_600_000;

/** Retry-After in seconds or as an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | string[] | undefined, now: number = Date.now()): number | undefined {
  const raw = Array.isArray(value) ? value[0] : value;
  if (!raw) return undefined;
  const ms = /^\s*\d+(\.\d+)?\s*$/.test(raw) ? Number(raw) * 1000 : Date.parse(raw) - now;
  if (!Number.isFinite(ms)) return undefined;
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(0, Math.round(ms)));
}

/** Reads at most `limit` characters of a body and discards the rest. */
export async function readText(body: Readable & { dump(): Promise<void> }, limit: number = MAX_ERROR_BODY): Promise<string> {
  let out = '';
  for await (const chunk of body) {
    out += String(chunk);
    if (out.length >= limit) break;
  }
  await body.dump().catch(() => undefined);
  return out.slice(0, limit).trim();
}

export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * A request that failed without an answer. A timeout or a connection that
 * broke after the request went out may have reached the provider: in doubt
 * (resent only where the provider's retry policy says timeouts are safe to
 * retry). A connection that was never made is worth a retry.
 */
export function classifyRequestError(err: unknown): SendOutcome {
  const code = (err as { code?: string }).code ?? (err as Error).name ?? 'ERROR';
  if (err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError || (err as Error).name === 'TimeoutError') {
    return { kind: 'in-doubt', code: 'TIMEOUT', message: `no complete answer from the provider in time (${code})` };
  }
  if (code === 'UND_ERR_SOCKET') return { kind: 'in-doubt', code: 'CONNECTION_LOST', message: describeError(err) };
  return { kind: 'transient', code, message: describeError(err) };
}

/** A recipient's device token or phone number: the non-empty string in `field`. */
export function recipientAddress(recipient: Record<string, unknown>, field: string): string | undefined {
  const value = recipient[field];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** The answer for a recipient without one: nothing to send to, ever. */
export function noAddress(code: 'NO_TOKEN' | 'NO_PHONE', field: string): SendOutcome {
  return { kind: 'permanent', code, message: `the recipient has no ${field} field`, noAddress: true };
}

/**
 * Connections a pool may open when the providers file does not say: as many
 * as a worker may have requests in flight (workers fill in their
 * SEND_CONCURRENCY, whose default this is).
 * undici opens them only as requests wait, so a pool settles at what the
 * provider's cap and answer time need — about tps × latency across workers.
 */
export const DEFAULT_POOL_CONNECTIONS = 512;

/** A keep-alive connection pool to one origin, with the provider's timeouts. */
export function providerPool(origin: string, options: { connections?: number | undefined; timeoutMs: number }): Pool {
  return new Pool(origin, {
    connections: options.connections ?? DEFAULT_POOL_CONNECTIONS,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs,
    connectTimeout: Math.min(options.timeoutMs, 10_000),
  });
}

/** An HTTP 429 for a whole request: the provider's cap, slowed for every worker, its Retry-After honoured. */
export function rateLimitedByProvider(body: string, retryAfter: string | string[] | undefined): SendOutcome {
  return {
    kind: 'rate-limited',
    scope: 'provider',
    code: 'HTTP_429',
    message: body.slice(0, MAX_ERROR_BODY) || 'HTTP 429',
    retryAfterMs: parseRetryAfter(retryAfter),
  };
}

/** One recipient's entry in an NHN-style answer (alimtalk, SMS): by our key (recipientGroupingKey), else by its place in the request. */
export function resultOf<T extends { recipientSeq?: number; recipientGroupingKey?: string }>(results: readonly T[], key: string, index: number): T | undefined {
  return results.find((r) => r.recipientGroupingKey === key) ?? results.find((r) => r.recipientSeq === index + 1);
}

/** An accepted request whose answer says nothing of this recipient: it may have gone out. */
export const NO_RESULT: SendOutcome = {
  kind: 'in-doubt',
  code: 'NO_RESULT',
  message: 'the request was accepted without a result for this recipient',
  final: true,
};
