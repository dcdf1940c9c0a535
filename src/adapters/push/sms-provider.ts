import { REDACTED, type OnDeparted, type ProviderRequestPreview, type SendRequest } from '../../app/ports.js';
import { NhnProvider } from './nhn-provider.js';
import type { SendOutcome } from '../../domain/send-outcome.js';
import { departingBody } from './departures.js';
import { classifyRequestError, MAX_ERROR_BODY, noAddress, parseJson, rateLimitedByProvider, readText } from './http-support.js';
import type { SmsProviderConfig } from './provider-config.js';
import { smsText, withAdNotice, type SmsText } from '../../domain/sms-text.js';

interface SmsResponse {
  header?: { resultCode?: number; resultMessage?: string; isSuccessful?: boolean };
  body?: {
    data?: {
      requestId?: string;
      sendResultList?: Array<{ recipientNo?: string; resultCode?: number; resultMessage?: string; recipientSeq?: number; recipientGroupingKey?: string }>;
    };
  };
}

type Ready = Extract<SmsText, { ok: true }> & { ad: boolean };

/** The campaign kind whose messages carry the advertising notice. */
const ADVERTISING = 'advertising';

/** What one recipient's request is: its type, title and body as sent, or why it cannot be sent. */
function prepare(config: SmsProviderConfig, request: SendRequest): Ready | SendOutcome {
  const ad = request.kind === ADVERTISING;
  let body = request.message.body;
  if (ad) {
    if (!config.optOutNumber || !config.adSenderName) {
      return {
        kind: 'permanent',
        code: 'SMS_AD_NO_OPT_OUT',
        message: `an advertising message needs the sender's name and the free opt-out number the law asks for: set adSenderName and optOutNumber on provider ${config.name}`,
      };
    }
    body = withAdNotice(body, config.adSenderName, config.optOutNumber);
  }
  const text = smsText(request.message.title, body);
  if (!text.ok) return { kind: 'permanent', code: text.code, message: text.message };
  return { ...text, ad };
}

const isReady = (value: Ready | SendOutcome): value is Ready => 'type' in value && (value.type === 'SMS' || value.type === 'LMS');

/** NHN SMS v3.0: SMS and LMS (the MMS path without an attachment), each with its advertising twin. */
function smsPath(url: URL, config: SmsProviderConfig, text: Ready): string {
  const kind = `${text.ad ? 'ad-' : ''}${text.type === 'SMS' ? 'sms' : 'mms'}`;
  return `${url.pathname.replace(/\/$/, '')}/sms/v3.0/appKeys/${encodeURIComponent(config.appKey)}/sender/${kind}`;
}

/** (`requests` share one text: sendBatch sees to it.) */
function smsBody(config: SmsProviderConfig, text: Ready, requests: readonly SendRequest[]): string {
  return JSON.stringify({
    ...(text.type === 'LMS' ? { title: text.title } : {}),
    body: text.body,
    sendNo: config.sendNo,
    recipientList: requests.map((r) => ({ recipientNo: r.recipient[config.phoneField], recipientGroupingKey: r.idempotencyKey })),
  });
}

const smsHeaders = (secretKey: string) => ({ 'content-type': 'application/json;charset=UTF-8', 'x-secret-key': secretKey });

/**
 * The request for `request` (one recipient), from the configuration alone
 * (the secret key is not read); for a text it would refuse, the refusal
 * (`refused`: code and why) in place of a body.
 */
export function smsPreview(config: SmsProviderConfig, request: SendRequest): ProviderRequestPreview {
  const url = new URL(config.baseUrl);
  const text = prepare(config, request);
  if (!isReady(text)) {
    const why = text as Extract<SendOutcome, { kind: 'permanent' }>;
    const path = smsPath(url, config, { ok: true, type: 'SMS', body: '', bytes: 0, ad: request.kind === ADVERTISING });
    return { method: 'POST', url: `${url.origin}${path}`, headers: smsHeaders(REDACTED), body: { refused: { code: why.code, message: why.message } } };
  }
  return {
    method: 'POST',
    url: `${url.origin}${smsPath(url, config, text)}`,
    headers: smsHeaders(REDACTED),
    body: JSON.parse(smsBody(config, text, [request])),
  };
}

/** Recipients whose texts are the same go in one request. */
const textKey = (text: Ready) => `${text.ad ? 'ad' : ''}|${text.type}|${text.type === 'LMS' ? text.title : ''}|${text.body}`;

/**
 * A Korean SMS/LMS sender in the shape of NHN Cloud's SMS API v3.0: POST
 * /sms/v3.0/appKeys/{appKey}/sender/{sms|mms|ad-sms|ad-mms} with
 * X-Secret-Key, the registered sender number (`sendNo`), the text and a
 * recipient list (phone numbers from the recipient field `phoneField`; our
 * idempotency key as each one's recipientGroupingKey). The type is chosen
 * per recipient from the rendered text: SMS when it fits 90 bytes of
 * EUC-KR, otherwise LMS with the message's title (up to 2,000 bytes); a
 * character EUC-KR cannot carry (an emoji) fails the recipient rather than
 * reaching the phone as '?'. A campaign of kind `advertising` goes to the
 * advertising path with `(광고)<adSenderName>` first and `무료수신거부
 * <optOutNumber>` last unless its text has them, as Korean law asks.
 *
 * `batchSize` > 1 puts recipients of the same text in one request (the API
 * takes 1,000; see sendBatch for different texts). Per recipient:
 * resultCode 0 sent, another failed (token-invalid when listed in
 * `invalidRecipientCodes`). A request the API refuses fails its recipients,
 * unless its code is one of `accountCodes` (retried, and counted by the
 * circuit breaker); HTTP 429 rate limited; 503 and connection errors
 * transient; a timeout or another 5xx in doubt, and not resent unless
 * `retryTimeouts` (the API has no idempotency key: a resend may be a
 * second message; `inDoubt: "resend"` is refused for this type).
 */
export class SmsProvider extends NhnProvider {
  readonly type = 'sms';
  private readonly accountCodes: Set<number>;

  constructor(protected override readonly config: SmsProviderConfig) {
    super(config);
    this.accountCodes = new Set(config.accountCodes);
  }

  /**
   * One request per text among `requests` when the cap counts messages (a
   * permit each, so any grouping keeps to it: a personalised campaign's
   * recipients each get their own request); when it counts requests, one
   * request, and recipients of another text go back for a later batch.
   */
  async sendBatch(requests: readonly SendRequest[], onDeparted?: OnDeparted): Promise<SendOutcome[]> {
    const outcomes: Array<SendOutcome | undefined> = [];
    const groups = new Map<string, { text: Ready; indexes: number[] }>();
    requests.forEach((r, i) => {
      const prepared = this.address(r.recipient) ? prepare(this.config, r) : noAddress('NO_PHONE', this.config.phoneField);
      if (!isReady(prepared)) {
        outcomes[i] = prepared;
        return;
      }
      const key = textKey(prepared);
      const group = groups.get(key);
      if (group) group.indexes.push(i);
      else if (groups.size === 0 || this.config.countBy === 'message') groups.set(key, { text: prepared, indexes: [i] });
      else outcomes[i] = { kind: 'not-sent', code: 'SMS_TEXT_BATCH', message: 'a text other than the batch’s: sent in a later batch' };
    });
    await Promise.all(
      [...groups.values()].map(async ({ text, indexes }) => {
        const answers = await this.post(
          text,
          indexes.map((i) => requests[i]!),
          onDeparted,
        );
        indexes.forEach((i, k) => (outcomes[i] = answers[k]));
      }),
    );
    return outcomes as SendOutcome[];
  }

  private async post(text: Ready, requests: readonly SendRequest[], onDeparted: OnDeparted | undefined): Promise<SendOutcome[]> {
    const all = (outcome: SendOutcome) => requests.map(() => outcome);
    try {
      const res = await this.pool.request({
        method: 'POST',
        path: smsPath(this.url, this.config, text),
        headers: smsHeaders(this.secretKey),
        body: departingBody(smsBody(this.config, text, requests), onDeparted),
      });
      const body = await readText(res.body, 1_000_000);
      const status = res.statusCode;
      if (status === 429) return all(rateLimitedByProvider(body, res.headers['retry-after']));
      // 503: not taken, try again. Any other 5xx may come from a gateway after the API took the request: in doubt, not resent.
      if (status === 503) return all({ kind: 'transient', code: 'HTTP_503', message: body.slice(0, MAX_ERROR_BODY) || 'HTTP 503' });
      if (status >= 500) return all({ kind: 'in-doubt', code: `HTTP_${status}`, message: body.slice(0, MAX_ERROR_BODY) || `HTTP ${status}`, final: true });
      const answer = parseJson(body) as SmsResponse | undefined;
      if (!answer?.header) {
        return all(
          status >= 200 && status < 300
            ? { kind: 'in-doubt', code: `HTTP_${status}`, message: `unreadable answer: ${body.slice(0, 200)}`, final: true }
            : { kind: 'permanent', code: `HTTP_${status}`, message: `unreadable answer: ${body.slice(0, 200)}` },
        );
      }
      return this.judge(requests, answer, status);
    } catch (err) {
      return all(classifyRequestError(err));
    }
  }

  private judge(requests: readonly SendRequest[], answer: SmsResponse, status: number): SendOutcome[] {
    const header = answer.header!;
    if (!header.isSuccessful) {
      const code = header.resultCode ?? status;
      const message = header.resultMessage ?? `HTTP ${status}`;
      // Our account (app key, secret, quota): retried, and they open the circuit, rather than failing a campaign at full speed.
      const outcome: SendOutcome = this.accountCodes.has(code)
        ? { kind: 'transient', code: `SMS_${code}`, message }
        : { kind: 'permanent', code: `SMS_${code}`, message };
      return requests.map(() => outcome);
    }
    return this.perRecipient(requests, answer.body?.data?.sendResultList ?? [], 'SMS');
  }
}
