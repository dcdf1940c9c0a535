import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { countPerKey, nhnAnswers, startNhnServer } from './nhn-server.js';

/**
 * A stand-in for an alimtalk (KakaoTalk business message) API on loopback,
 * in the shape of NHN Cloud's Bizmessage v2.3: POST
 * /alimtalk/v2.3/appkeys/{appKey}/messages with X-Secret-Key, a JSON body
 * of senderKey, templateCode and recipientList, and an answer whose header
 * says whether the request was taken and whose sendResults say, per
 * recipient, what happened (see `answer`). Like NHN it honours
 * X-NC-API-IDEMPOTENCY-KEY: a key seen in the last 10 minutes is refused
 * with -1005 and nothing is sent.
 */
export interface AlimtalkDelivery {
  recipientNo: string;
  templateCode: string;
  templateParameter: Record<string, string>;
  recipientGroupingKey: string;
  idempotencyKey: string;
  /** Arrival time (ms) of the request that carried it. */
  at: number;
}

export interface AlimtalkRequestSeen {
  at: number;
  recipients: number;
  idempotencyKey: string;
}

/** An SMS or LMS NHN sent itself for an alimtalk that could not be delivered (resendParameter, 대체 발송). */
export interface AlimtalkResend {
  recipientNo: string;
  type: 'SMS' | 'LMS';
  title: string | null;
  content: string;
  sendNo: string;
  recipientGroupingKey: string;
}

export const ACCOUNT_CODES = { badAppKey: -1000, badSecret: -1001 } as const;
export const REPLAYED = -1005;
export const BAD_TEMPLATE = -3006;
/** Per-recipient codes this fake answers (see `answer`). */
export const RECIPIENT_CODES = { notKakaoUser: -3024, invalidNumber: -3029, blockedByUser: -3030 } as const;

export class FakeAlimtalk {
  readonly deliveries: AlimtalkDelivery[] = [];
  /** What NHN re-sent by SMS itself: a recipient who is not a KakaoTalk user, when the request carried a resendParameter. */
  readonly resends: AlimtalkResend[] = [];
  /** The MESSAGE_RESULT_UPDATE hooks NHN would post for what it took: delivered (MRC01), or re-sent (RSC04). */
  readonly hooks: Array<Record<string, unknown>> = [];
  readonly requests: AlimtalkRequestSeen[] = [];
  /** Result codes of refused requests, in order. */
  readonly refused: number[] = [];
  /** The next requests answer this HTTP status (and are not processed). */
  failNext: { status: number; count: number; retryAfter?: string } | null = null;
  /** The next requests are processed, then the connection is cut before the answer. */
  cutAfterProcessing = 0;
  private readonly seenKeys = new Map<string, number>();

  constructor(
    private readonly server: Server,
    readonly url: string,
    readonly appKey: string,
    readonly secretKey: string,
    readonly senderKey: string,
    readonly templates: ReadonlySet<string>,
  ) {}

  handle(req: IncomingMessage, res: ServerResponse, body: string): void {
    const now = Date.now();
    const { reply, refuse } = nhnAnswers(res, this.refused);
    const path = /^\/alimtalk\/v2\.3\/appkeys\/([^/]+)\/messages$/.exec(req.url ?? '');
    if (req.method !== 'POST' || !path) return reply(404, { header: { resultCode: 404, resultMessage: 'not found', isSuccessful: false } });
    if (this.failNext && this.failNext.count > 0) {
      this.failNext.count -= 1;
      const { status, retryAfter } = this.failNext;
      res.writeHead(status, retryAfter ? { 'retry-after': retryAfter } : {});
      res.end(`status ${status}`);
      return;
    }
    if (decodeURIComponent(path[1]!) !== this.appKey) return refuse(ACCOUNT_CODES.badAppKey, 'Invalid appKey');
    if (req.headers['x-secret-key'] !== this.secretKey) return refuse(ACCOUNT_CODES.badSecret, 'Invalid secretKey');
    const idempotencyKey = String(req.headers['x-nc-api-idempotency-key'] ?? '');
    if (idempotencyKey) {
      const seen = this.seenKeys.get(idempotencyKey);
      if (seen !== undefined && now - seen < 600_000) return refuse(REPLAYED, 'Duplicated request (idempotency key)');
    }
    let request: {
      senderKey?: string;
      templateCode?: string;
      recipientList?: Array<{
        recipientNo?: string;
        templateParameter?: Record<string, string>;
        recipientGroupingKey?: string;
        resendParameter?: { isResend?: boolean; resendType?: 'SMS' | 'LMS'; resendTitle?: string; resendContent?: string; resendSendNo?: string };
      }>;
    };
    try {
      request = JSON.parse(body);
    } catch {
      return refuse(-9998, 'Invalid JSON');
    }
    if (request.senderKey !== this.senderKey) return refuse(-1006, 'Invalid sender key');
    if (!request.templateCode || !this.templates.has(request.templateCode)) return refuse(BAD_TEMPLATE, 'Unknown template');
    const list = request.recipientList ?? [];
    if (list.length === 0 || list.length > 1000) return refuse(-2001, 'recipientList must hold 1 to 1000 recipients');
    if (idempotencyKey) this.seenKeys.set(idempotencyKey, now);
    this.requests.push({ at: now, recipients: list.length, idempotencyKey });
    const sendResults = list.map((r, i) => {
      const recipientNo = String(r.recipientNo ?? '');
      const recipientGroupingKey = String(r.recipientGroupingKey ?? '');
      const resend = r.resendParameter;
      // Not a KakaoTalk user, but a re-send was asked for: NHN takes it, and sends the text as SMS or LMS itself.
      if (resend?.isResend && recipientNo.startsWith(NOT_KAKAO_PREFIX)) {
        if (!resend.resendContent || !resend.resendSendNo || (resend.resendType !== 'SMS' && resend.resendType !== 'LMS')) {
          return { recipientSeq: i + 1, recipientNo, resultCode: -2010, resultMessage: 'Invalid resendParameter', recipientGroupingKey };
        }
        this.resends.push({
          recipientNo,
          type: resend.resendType,
          title: resend.resendTitle ?? null,
          content: resend.resendContent,
          sendNo: resend.resendSendNo,
          recipientGroupingKey,
        });
        this.hooks.push({ recipientNo, recipientGroupingKey, resultCode: 'MRC02', resendStatus: 'RSC04', receiveDate: '2026-12-06 09:00:00' });
        return { recipientSeq: i + 1, recipientNo, resultCode: 0, resultMessage: 'SUCCESS', recipientGroupingKey };
      }
      const [resultCode, resultMessage] = answer(recipientNo);
      if (resultCode === 0) this.hooks.push({ recipientNo, recipientGroupingKey, resultCode: 'MRC01', receiveDate: '2026-12-06 09:00:00' });
      if (resultCode === 0) {
        this.deliveries.push({
          recipientNo,
          templateCode: request.templateCode!,
          templateParameter: r.templateParameter ?? {},
          recipientGroupingKey: String(r.recipientGroupingKey ?? ''),
          idempotencyKey,
          at: now,
        });
      }
      return { recipientSeq: i + 1, recipientNo, resultCode, resultMessage, recipientGroupingKey: r.recipientGroupingKey };
    });
    if (this.cutAfterProcessing > 0) {
      this.cutAfterProcessing -= 1;
      req.socket.destroy();
      return;
    }
    reply(200, {
      header: { resultCode: 0, resultMessage: 'SUCCESS', isSuccessful: true },
      message: { requestId: `req-${this.requests.length}`, senderGroupingKey: null, sendResults },
    });
  }

  /** Deliveries per recipientGroupingKey (our idempotency key). */
  deliveredPerKey(): Map<string, number> {
    return countPerKey(this.deliveries);
  }

  /** The most messages (recipients), or requests, in any sliding second, judged by arrival. */
  busiestSecond(count: 'message' | 'request' = 'message', since = 0): number {
    const requests = this.requests.slice(since);
    const times = (count === 'message' ? requests.flatMap((r) => Array<number>(r.recipients).fill(r.at)) : requests.map((r) => r.at)).sort((a, b) => a - b);
    let best = 0;
    for (let lo = 0, hi = 0; hi < times.length; hi++) {
      while (times[hi]! - times[lo]! >= 1000) lo++;
      best = Math.max(best, hi - lo + 1);
    }
    return best;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** Numbers of people who are not KakaoTalk users. */
const NOT_KAKAO_PREFIX = '0101111';

/** How the fake answers one recipient, chosen by the phone number's prefix. */
function answer(recipientNo: string): [number, string] {
  if (recipientNo.startsWith('0100000')) return [RECIPIENT_CODES.invalidNumber, 'Invalid recipient number'];
  if (recipientNo.startsWith(NOT_KAKAO_PREFIX)) return [RECIPIENT_CODES.notKakaoUser, 'Not a KakaoTalk user'];
  if (recipientNo.startsWith('0102222')) return [RECIPIENT_CODES.blockedByUser, 'The user blocked the channel'];
  return [0, 'SUCCESS'];
}

export async function startFakeAlimtalk(templates: readonly string[] = ['WELCOME01']): Promise<FakeAlimtalk> {
  let fake: FakeAlimtalk | undefined;
  const { server, url } = await startNhnServer((req, res, body) => fake!.handle(req, res, body));
  fake = new FakeAlimtalk(server, url, 'app-key-test', 'secret-key-test', 'sender-key-test', new Set(templates));
  return fake;
}
