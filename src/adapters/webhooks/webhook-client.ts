import { Agent, request } from 'undici';
import { Webhook } from 'standardwebhooks';
import type { WebhookAnswer, WebhookClient, WebhookRequest } from '../../app/ports.js';
import { describeError } from '../../domain/send-outcome.js';
import { MAX_ERROR_BODY, readText } from '../push/http-support.js';

/**
 * Delivers webhooks as the Standard Webhooks specification says: a JSON
 * POST with `webhook-id` (the same for every attempt of a delivery),
 * `webhook-timestamp` (this attempt, in seconds) and `webhook-signature`
 * (`v1,` and the base64 HMAC-SHA256 of `id.timestamp.body` under the
 * endpoint's `whsec_` secret, made by the `standardwebhooks` package).
 * Redirects are not followed: a 3xx is a failed attempt.
 */
export class HttpWebhookClient implements WebhookClient {
  private readonly agent = new Agent({ connections: 64, keepAliveTimeout: 30_000, connectTimeout: 10_000 });
  private readonly signers = new Map<string, Webhook>();

  private signer(secret: string): Webhook {
    let signer = this.signers.get(secret);
    if (!signer) {
      if (this.signers.size > 1000) this.signers.clear();
      signer = new Webhook(secret);
      this.signers.set(secret, signer);
    }
    return signer;
  }

  async deliver(req: WebhookRequest): Promise<WebhookAnswer> {
    const now = new Date();
    const headers = {
      'content-type': 'application/json',
      'user-agent': 'pushq-webhooks/1',
      'webhook-id': req.id,
      'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
      'webhook-signature': this.signer(req.secret).sign(req.id, now, req.body),
    };
    try {
      const res = await request(req.url, {
        method: 'POST',
        dispatcher: this.agent,
        headers,
        body: req.body,
        headersTimeout: req.timeoutMs,
        bodyTimeout: req.timeoutMs,
        signal: req.signal ? AbortSignal.any([req.signal, AbortSignal.timeout(req.timeoutMs)]) : AbortSignal.timeout(req.timeoutMs),
      });
      if (res.statusCode >= 200 && res.statusCode < 300) {
        await res.body.dump();
        return { status: res.statusCode, error: null };
      }
      const text = await readText(res.body, MAX_ERROR_BODY);
      return { status: res.statusCode, error: `HTTP ${res.statusCode}${text ? `: ${text}` : ''}` };
    } catch (err) {
      if (req.signal?.aborted) return { status: null, error: 'abandoned before an answer', aborted: true };
      const timedOut = (err as Error).name === 'TimeoutError' || (err as { code?: string }).code === 'UND_ERR_HEADERS_TIMEOUT';
      return { status: null, error: timedOut ? `no answer within ${req.timeoutMs} ms` : describeError(err) };
    }
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}
