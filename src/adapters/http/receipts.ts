import { createHash, timingSafeEqual } from 'node:crypto';
import express, { Router, type Request, type Response } from 'express';
import { Webhook } from 'standardwebhooks';
import { z } from 'zod';
import type { Receipt, ReceiptResult, Receipts } from '../../app/receipts.js';
import { DomainError, ErrorCodes } from '../../domain/errors.js';
import { clientKey, type FailedAuthLimiter } from './auth.js';
import { sendError, validationError } from './errors.js';

/**
 * `POST /api/receipts/:provider`: delivery receipts, in each provider's own
 * format, authenticated as that provider does it (not with pushq's tokens:
 * the provider calls it).
 *
 * - `http`: Standard Webhooks (`webhook-id`, `webhook-timestamp`,
 *   `webhook-signature` with the provider's `whsec_` receipts secret). The
 *   body is one receipt `{ "idempotencyKey" | "messageId", "status":
 *   "delivered" | "undelivered", "at"? }`, an array of them, or
 *   `{ "receipts": [...] }`. One receipt for an id nobody sent answers 404.
 * - `alimtalk`: NHN Cloud's KakaoTalk Bizmessage webhook — the signature set
 *   in its console in `X-Toast-Webhook-Signature`, `MESSAGE_RESULT_UPDATE`
 *   events whose hooks carry the `recipientGroupingKey` pushq sent (the
 *   idempotency key) and a `resultCode` (`1000` or `MRC01`: delivered;
 *   anything else: undelivered). A message NHN re-sent by SMS itself
 *   (nativeFallback) carries a `resendStatus`: `RSC04` the SMS went out
 *   (delivered, on the SMS leg), `RSC05` it failed (undelivered, on the SMS
 *   leg); `RSC02`/`RSC03` (waiting, in progress) are not final and wait for
 *   the next hook. Other events are acknowledged and ignored.
 */
export interface ReceiptSource {
  type: 'http' | 'alimtalk';
  secret: string;
}

const MAX_RECEIPTS = 1000;

const genericReceipt = z
  .strictObject({
    idempotencyKey: z.string().min(1).max(100).optional(),
    messageId: z.string().min(1).max(256).optional(),
    status: z.enum(['delivered', 'undelivered']),
    at: z.iso.datetime({ offset: true }).optional(),
  })
  .refine((r) => (r.idempotencyKey === undefined) !== (r.messageId === undefined), 'give one of idempotencyKey or messageId');

const genericBody = z.union([
  genericReceipt,
  z.array(genericReceipt).min(1).max(MAX_RECEIPTS),
  z.strictObject({ receipts: z.array(genericReceipt).min(1).max(MAX_RECEIPTS) }),
]);

/** NHN's hook: only what pushq reads is required; NHN may add fields. */
const nhnHook = z.looseObject({
  recipientGroupingKey: z.string().max(100).nullish(),
  resultCode: z.union([z.string(), z.number()]).nullish(),
  resendStatus: z.string().nullish(),
  receiveDate: z.string().nullish(),
  createDate: z.string().nullish(),
});
const nhnBody = z.looseObject({ event: z.string(), hooks: z.array(z.unknown()).max(10_000).default([]) });

/** NHN's result codes that mean the message reached the phone. */
const NHN_DELIVERED = new Set(['1000', 'MRC01']);
/** NHN's re-send (대체 발송) statuses: done by SMS, failed; waiting and in progress are not final. */
const NHN_RESENT = { done: 'RSC04', failed: 'RSC05', pending: new Set(['RSC02', 'RSC03']) } as const;

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/** An NHN date (`2024-04-29T20:58:04`, `2023-06-01 12:00:00`: Korea's time when it names no zone). */
function nhnTime(value: string | null | undefined, fallback: number): number {
  if (!value) return fallback;
  const iso = value.includes('T') ? value : value.replace(' ', 'T');
  const at = Date.parse(/[zZ]|[+-]\d\d:?\d\d$/.test(iso) ? iso : `${iso}+09:00`);
  return Number.isFinite(at) ? at : fallback;
}

function parseJson(raw: Buffer): unknown {
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch {
    throw new DomainError(ErrorCodes.MALFORMED_REQUEST, 'the body is not JSON');
  }
}

function parse<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const result = schema.safeParse(value);
  if (!result.success) throw validationError(result.error, 'body');
  return result.data;
}

export function receiptsRouter(deps: { receipts: Receipts; sources: ReadonlyMap<string, ReceiptSource>; failedAuth: FailedAuthLimiter }): Router {
  const router = Router();
  const signers = new Map<string, Webhook>();
  const refuse = (req: Request, res: Response, why: string) => {
    const key = clientKey(req.ip);
    const wait = deps.failedAuth.blockedFor(key);
    if (wait > 0) {
      res.setHeader('Retry-After', String(Math.max(1, Math.ceil(wait / 1000))));
      return sendError(res, ErrorCodes.TOO_MANY_REQUESTS, 'too many failed authentications from this address; try again later');
    }
    deps.failedAuth.fail(key);
    return sendError(res, ErrorCodes.UNAUTHORIZED, why);
  };

  router.post('/receipts/:provider', express.raw({ type: () => true, limit: '2mb' }), async (req, res) => {
    const provider = String(req.params.provider);
    const source = deps.sources.get(provider);
    if (!source)
      throw new DomainError(ErrorCodes.NOT_FOUND, `provider ${JSON.stringify(provider.slice(0, 64))} takes no receipts (its "receipts" in PROVIDERS_FILE)`);
    const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    let receipts: Receipt[];
    let single = false;
    if (source.type === 'http') {
      let signer = signers.get(provider);
      if (!signer) signers.set(provider, (signer = new Webhook(source.secret)));
      try {
        signer.verify(raw, {
          'webhook-id': String(req.headers['webhook-id'] ?? ''),
          'webhook-timestamp': String(req.headers['webhook-timestamp'] ?? ''),
          'webhook-signature': String(req.headers['webhook-signature'] ?? ''),
        });
      } catch (err) {
        return refuse(req, res, `receipt signature refused: ${(err as Error).message}`);
      }
      const body = parse(genericBody, parseJson(raw));
      single = !Array.isArray(body) && !('receipts' in body);
      const list = Array.isArray(body) ? body : 'receipts' in body ? body.receipts : [body];
      const now = Date.now();
      receipts = list.map((r) => {
        const common = { delivered: r.status === 'delivered', at: r.at ? Date.parse(r.at) : now };
        return r.idempotencyKey !== undefined ? { key: r.idempotencyKey, ...common } : { messageId: r.messageId!, ...common };
      });
    } else {
      const given = req.headers['x-toast-webhook-signature'];
      if (typeof given !== 'string' || !timingSafeEqual(digest(given), digest(source.secret))) {
        return refuse(req, res, 'X-Toast-Webhook-Signature is missing or not the signature set for this provider');
      }
      const body = parse(nhnBody, parseJson(raw));
      if (body.event !== 'MESSAGE_RESULT_UPDATE') return res.json({ ignored: body.event, results: [] });
      const now = Date.now();
      receipts = [];
      for (const item of body.hooks) {
        const hook = nhnHook.safeParse(item);
        if (!hook.success || !hook.data.recipientGroupingKey) continue;
        const delivered = NHN_DELIVERED.has(String(hook.data.resultCode ?? ''));
        const resend = hook.data.resendStatus ?? '';
        // The alimtalk failed and NHN's SMS is on its way: the next hook says how it went.
        if (!delivered && NHN_RESENT.pending.has(resend)) continue;
        const resent = !delivered && (resend === NHN_RESENT.done || resend === NHN_RESENT.failed);
        receipts.push({
          key: hook.data.recipientGroupingKey,
          delivered: delivered || resend === NHN_RESENT.done,
          at: nhnTime(hook.data.receiveDate ?? hook.data.createDate, now),
          ...(resent ? { resent } : {}),
        });
      }
    }
    const results: ReceiptResult[] = await deps.receipts.apply(provider, receipts);
    if (single && results[0]!.outcome === 'unknown') {
      throw new DomainError(ErrorCodes.RECIPIENT_NOT_FOUND, 'no message of this provider was sent under that id (or its run has left Redis)');
    }
    res.json(single ? results[0] : { results, unknown: results.filter((r) => r.outcome === 'unknown').length });
  });
  return router;
}
