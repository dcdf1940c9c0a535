import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { nhnAnswers, startNhnServer } from './nhn-server.js';
import iconv from 'iconv-lite';

/**
 * A stand-in for a Korean SMS API on loopback, in the shape of NHN Cloud's
 * SMS v3.0: POST /sms/v3.0/appKeys/{appKey}/sender/{sms|mms|ad-sms|ad-mms}
 * with X-Secret-Key and a JSON body of (title,) body, sendNo and
 * recipientList; the answer's header says whether the request was taken,
 * body.data.sendResultList what happened per recipient (by the number's
 * prefix, see `answer`). It checks what the carriers would: an SMS body
 * over 90 bytes of EUC-KR, an LMS over 2,000 or with a title over 40, a
 * character EUC-KR cannot carry, an advertisement without `(광고)` first
 * or an opt-out line, an unregistered sender number — each refused, so a
 * provider that gets them wrong fails its test.
 */
export interface SmsDelivery {
  recipientNo: string;
  type: 'SMS' | 'LMS';
  ad: boolean;
  title: string | null;
  body: string;
  recipientGroupingKey: string;
  at: number;
}

export const SMS_CODES = { badAppKey: -1000, badSecret: -1001, badSendNo: -2002, tooLong: -2003, unencodable: -2004, adNotice: -2005 } as const;
/** Per-recipient codes this fake answers (see `answer`). */
export const SMS_RECIPIENT_CODES = { invalidNumber: -3001, blocked: -3002 } as const;

/** EUC-KR proper (no CP949 extension: every byte of a two-byte character 0xA1-0xFE), or null. */
function eucKrBytes(text: string): number | null {
  const bytes = iconv.encode(text, 'cp949');
  if (iconv.decode(bytes, 'cp949') !== text) return null;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i]! < 0x80) continue;
    if (bytes[i]! < 0xa1 || bytes[i + 1]! < 0xa1) return null;
    i += 1;
  }
  return bytes.length;
}

export class FakeSms {
  readonly deliveries: SmsDelivery[] = [];
  readonly requests: Array<{ at: number; path: string; recipients: number }> = [];
  readonly refused: number[] = [];
  /** The next requests answer this HTTP status (and are not processed). */
  failNext: { status: number; count: number } | null = null;
  /** The next requests are processed, then answered with this HTTP status (a gateway that lost the answer). */
  failAfterProcessing: { status: number; count: number } | null = null;

  constructor(
    private readonly server: Server,
    readonly url: string,
    readonly appKey: string,
    readonly secretKey: string,
    readonly sendNo: string,
  ) {}

  handle(req: IncomingMessage, res: ServerResponse, raw: string): void {
    const { reply, refuse } = nhnAnswers(res, this.refused);
    const path = /^\/sms\/v3\.0\/appKeys\/([^/]+)\/sender\/(ad-)?(sms|mms)$/.exec(req.url ?? '');
    if (req.method !== 'POST' || !path) return reply(404, { header: { resultCode: 404, resultMessage: 'not found', isSuccessful: false } });
    if (this.failNext && this.failNext.count > 0) {
      this.failNext.count -= 1;
      res.writeHead(this.failNext.status);
      res.end(`status ${this.failNext.status}`);
      return;
    }
    if (decodeURIComponent(path[1]!) !== this.appKey) return refuse(SMS_CODES.badAppKey, 'Invalid appKey');
    if (req.headers['x-secret-key'] !== this.secretKey) return refuse(SMS_CODES.badSecret, 'Invalid secretKey');
    let request: { title?: string; body?: string; sendNo?: string; recipientList?: Array<{ recipientNo?: string; recipientGroupingKey?: string }> };
    try {
      request = JSON.parse(raw);
    } catch {
      return refuse(-9998, 'Invalid JSON');
    }
    const ad = path[2] !== undefined;
    const type = path[3] === 'sms' ? 'SMS' : 'LMS';
    if (request.sendNo !== this.sendNo) return refuse(SMS_CODES.badSendNo, 'Unregistered sender number');
    const body = String(request.body ?? '');
    const bytes = eucKrBytes(body);
    const titleBytes = request.title === undefined ? 0 : eucKrBytes(request.title);
    if (bytes === null || titleBytes === null) return refuse(SMS_CODES.unencodable, 'Text not representable in EUC-KR');
    if ((type === 'SMS' && bytes > 90) || (type === 'LMS' && (bytes > 2000 || titleBytes > 40)))
      return refuse(SMS_CODES.tooLong, `${type} too long: ${bytes} bytes`);
    if (ad && !(body.startsWith('(광고)') && /수신\s*거부\s*080/.test(body))) return refuse(SMS_CODES.adNotice, 'Advertisement without (광고) or opt-out');
    const list = request.recipientList ?? [];
    if (list.length === 0 || list.length > 1000) return refuse(-2001, 'recipientList must hold 1 to 1000 recipients');
    const now = Date.now();
    this.requests.push({ at: now, path: req.url!, recipients: list.length });
    const sendResultList = list.flatMap((r, i) => {
      const recipientNo = String(r.recipientNo ?? '');
      const [resultCode, resultMessage] = answer(recipientNo);
      if (resultCode === 0 || resultCode === null) {
        this.deliveries.push({
          recipientNo,
          type,
          ad,
          title: request.title ?? null,
          body,
          recipientGroupingKey: String(r.recipientGroupingKey ?? ''),
          at: now,
        });
      }
      // Sent, but the answer leaves this one out.
      if (resultCode === null) return [];
      return [{ recipientNo, resultCode, resultMessage, recipientSeq: i + 1, recipientGroupingKey: r.recipientGroupingKey }];
    });
    if (this.failAfterProcessing && this.failAfterProcessing.count > 0) {
      this.failAfterProcessing.count -= 1;
      res.writeHead(this.failAfterProcessing.status);
      res.end(`status ${this.failAfterProcessing.status}`);
      return;
    }
    reply(200, {
      header: { resultCode: 0, resultMessage: 'SUCCESS', isSuccessful: true },
      body: { data: { requestId: `sms-${this.requests.length}`, statusCode: '2', senderGroupingKey: null, sendResultList } },
    });
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** How the fake answers one recipient, chosen by the phone number's prefix (null: sent, left out of the answer). */
function answer(recipientNo: string): [number | null, string] {
  if (recipientNo.startsWith('0109999')) return [null, ''];
  if (recipientNo.startsWith('0100000')) return [SMS_RECIPIENT_CODES.invalidNumber, 'Invalid recipient number'];
  if (recipientNo.startsWith('0103333')) return [SMS_RECIPIENT_CODES.blocked, 'Recipient refused messages'];
  return [0, 'SUCCESS'];
}

export async function startFakeSms(): Promise<FakeSms> {
  let fake: FakeSms | undefined;
  const { server, url } = await startNhnServer((req, res, body) => fake!.handle(req, res, body));
  fake = new FakeSms(server, url, 'sms-app-key', 'sms-secret-key', '15885678');
  return fake;
}
