import { smsText } from '../../domain/sms-text.js';
import { createHash } from 'node:crypto';
import { REDACTED, type OnDeparted, type ProviderRequestPreview, type SendRequest } from '../../app/ports.js';
import { NhnProvider } from './nhn-provider.js';
import { departingBody } from './departures.js';
import type { AlimtalkProviderConfig } from './provider-config.js';
import type { SendOutcome } from '../../domain/send-outcome.js';
import { classifyRequestError, MAX_ERROR_BODY, noAddress, parseJson, rateLimitedByProvider, readText } from './http-support.js';

/** Fields of a recipient that are about delivery, never template text. */
const NOT_PARAMETERS = new Set(['id', 'timezone', 'nightAdConsent', 'token']);

interface AlimtalkResponse {
  header?: { resultCode?: number; resultMessage?: string; isSuccessful?: boolean };
  message?: {
    requestId?: string;
    sendResults?: Array<{ recipientSeq?: number; recipientNo?: string; resultCode?: number; resultMessage?: string; recipientGroupingKey?: string }>;
  };
}

/** Request-level result codes that are about our account, not the recipients: retried, and they open the circuit. */
const ACCOUNT_CODES = new Set([-1000, -1001, -1006, -1017, -1027]);
/** The API saw this X-NC-API-IDEMPOTENCY-KEY in the last 10 minutes: the first request may have gone out. */
const REPLAYED = -1005;

/** A key the same for the same recipients of the same run, whatever their order. */
export function batchIdempotencyKey(requests: readonly SendRequest[]): string {
  if (requests.length === 1) return requests[0]!.idempotencyKey;
  const hash = createHash('sha256');
  for (const key of requests.map((r) => r.idempotencyKey).sort()) hash.update(key).update('\n');
  const hex = hash.digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/**
 * A recipient's template parameters: the rendered `message.data.templateParameter`
 * when the campaign gives one (`{ "name": "{{ name }}", "orderNo": "{{ order.no }}" }`),
 * otherwise the recipient's own fields (or the configured `templateParameters` of them).
 */
function templateParameters(config: AlimtalkProviderConfig, { recipient, message }: Pick<SendRequest, 'recipient' | 'message'>): Record<string, string> {
  const given = message.data.templateParameter;
  if (typeof given === 'object' && given !== null && !Array.isArray(given)) {
    return Object.fromEntries(
      Object.entries(given as Record<string, unknown>)
        .filter(([, v]) => v !== undefined && v !== null)
        .map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]),
    );
  }
  const names = config.templateParameters ?? Object.keys(recipient).filter((k) => !NOT_PARAMETERS.has(k) && k !== config.phoneField);
  const out: Record<string, string> = {};
  for (const name of names) {
    const value = recipient[name];
    if (value === undefined || value === null || typeof value === 'object') continue;
    out[name] = String(value);
  }
  return out;
}

function alimtalkPath(url: URL, config: AlimtalkProviderConfig): string {
  return `${url.pathname.replace(/\/$/, '')}/alimtalk/v2.3/appkeys/${encodeURIComponent(config.appKey)}/messages`;
}

/** The NHN alimtalk v2.3 body: sender key, template code, one entry per recipient with its template parameters. */
function templateCodeOf(config: AlimtalkProviderConfig, request: SendRequest): string {
  const code = request.message.data.templateCode;
  return typeof code === 'string' ? code : config.templateCode;
}

/** (`requests` share one template code: sendBatch sees to it.) */
function alimtalkBody(config: AlimtalkProviderConfig, requests: readonly SendRequest[]): string {
  return JSON.stringify({
    senderKey: config.senderKey,
    templateCode: templateCodeOf(config, requests[0]!),
    recipientList: requests.map((r) => ({
      recipientNo: r.recipient[config.phoneField],
      templateParameter: templateParameters(config, r),
      recipientGroupingKey: r.idempotencyKey,
      ...resendParameter(config, r),
    })),
  });
}

/**
 * NHN's re-send by SMS (nativeFallback): the fallback leg's text as SMS when
 * it fits 90 bytes of EUC-KR, else as LMS with its title. A text SMS cannot
 * carry (an emoji) is not handed over: the recipient's alimtalk goes without
 * it, and a refusal falls back through pushq's own SMS leg.
 */
function resendParameter(config: AlimtalkProviderConfig, request: SendRequest): { resendParameter?: Record<string, unknown> } {
  if (!config.nativeFallback || !request.fallback) return {};
  const text = smsText(request.fallback.title, request.fallback.body);
  if (!text.ok) return {};
  return {
    resendParameter: {
      isResend: true,
      resendType: text.type,
      ...(text.type === 'LMS' ? { resendTitle: text.title } : {}),
      resendContent: text.body,
      resendSendNo: config.resendSendNo,
    },
  };
}

function alimtalkHeaders(requests: readonly SendRequest[], secretKey: string): Record<string, string> {
  return { 'content-type': 'application/json;charset=UTF-8', 'x-secret-key': secretKey, 'x-nc-api-idempotency-key': batchIdempotencyKey(requests) };
}

/** The request for `request` (one recipient), from the configuration alone (the secret key is not read). */
export function alimtalkPreview(config: AlimtalkProviderConfig, request: SendRequest): ProviderRequestPreview {
  const url = new URL(config.baseUrl);
  return {
    method: 'POST',
    url: `${url.origin}${alimtalkPath(url, config)}`,
    headers: alimtalkHeaders([request], REDACTED),
    body: JSON.parse(alimtalkBody(config, [request])),
  };
}

/**
 * A KakaoTalk AlimTalk sender in the shape of NHN Cloud's KakaoTalk
 * Bizmessage API v2.3: POST /alimtalk/v2.3/appkeys/{appKey}/messages with
 * X-Secret-Key, a sender key and template code, and per recipient its phone
 * number (recipient field `phoneField`) and template parameters taken from
 * its fields. `batchSize` > 1 puts that many recipients in one request (the
 * API takes 1,000); the limiter counts requests or messages (`countBy`), as
 * the provider's contract does.
 *
 * The answer is judged per recipient from the body's sendResults, not from
 * the HTTP status: resultCode 0 sent, another failed (token-invalid when
 * listed in `invalidRecipientCodes`). A request-level failure applies to all
 * its recipients: account problems (bad app key or secret, blocked sender,
 * daily volume) transient; -1005 (key replayed within 10 minutes) in doubt
 * and reported; others failed. HTTP 429 rate limited; 5xx, connection errors
 * transient; timeouts in doubt.
 */
export class AlimtalkProvider extends NhnProvider {
  readonly type = 'alimtalk';
  private readonly path: string;
  readonly nativeFallback: boolean;

  constructor(protected override readonly config: AlimtalkProviderConfig) {
    super(config);
    this.nativeFallback = config.nativeFallback;
    this.path = alimtalkPath(this.url, config);
  }

  async sendBatch(requests: readonly SendRequest[], onDeparted?: OnDeparted): Promise<SendOutcome[]> {
    const outcomes: Array<SendOutcome | undefined> = requests.map((r) =>
      this.address(r.recipient) ? undefined : noAddress('NO_PHONE', this.config.phoneField),
    );
    // One request carries one template: recipients rendered to another template code (a locale variant's) go in a later batch.
    const code = requests.map((r) => templateCodeOf(this.config, r));
    const first = outcomes.findIndex((o) => o === undefined);
    outcomes.forEach((o, i) => {
      if (o === undefined && first >= 0 && code[i] !== code[first]) {
        outcomes[i] = { kind: 'not-sent', code: 'TEMPLATE_CODE_BATCH', message: `template ${code[i]}, not the batch's ${code[first]}: sent in a later batch` };
      }
    });
    const sendable = requests.filter((_, i) => outcomes[i] === undefined);
    if (sendable.length > 0) {
      const answers = await this.post(sendable, onDeparted);
      let next = 0;
      outcomes.forEach((o, i) => {
        if (o === undefined) outcomes[i] = answers[next++];
      });
    }
    return outcomes as SendOutcome[];
  }

  private async post(requests: readonly SendRequest[], onDeparted: OnDeparted | undefined): Promise<SendOutcome[]> {
    const all = (outcome: SendOutcome) => requests.map(() => outcome);
    const body = alimtalkBody(this.config, requests);
    try {
      const res = await this.pool.request({
        method: 'POST',
        path: this.path,
        headers: alimtalkHeaders(requests, this.secretKey),
        body: departingBody(body, onDeparted),
      });
      const text = await readText(res.body, 1_000_000);
      const status = res.statusCode;
      if (status === 429) return all(rateLimitedByProvider(text, res.headers['retry-after']));
      const answer = parseJson(text) as AlimtalkResponse | undefined;
      if (status >= 500) return all({ kind: 'transient', code: `HTTP_${status}`, message: text.slice(0, MAX_ERROR_BODY) || `HTTP ${status}` });
      if (!answer?.header) {
        const kind = status >= 200 && status < 300 ? 'in-doubt' : 'permanent';
        return all({
          kind,
          code: `HTTP_${status}`,
          message: `unreadable answer: ${text.slice(0, 200)}`,
          ...(kind === 'in-doubt' ? { final: true } : {}),
        } as SendOutcome);
      }
      return this.judge(requests, answer, status);
    } catch (err) {
      return all(classifyRequestError(err));
    }
  }

  private judge(requests: readonly SendRequest[], answer: AlimtalkResponse, status: number): SendOutcome[] {
    const header = answer.header!;
    const code = header.resultCode ?? status;
    const message = header.resultMessage ?? `HTTP ${status}`;
    if (!header.isSuccessful) {
      const outcome: SendOutcome =
        code === REPLAYED
          ? { kind: 'in-doubt', code: 'IDEMPOTENT_REPLAY', message: `${message} (a request with this key went out before)`, final: true }
          : ACCOUNT_CODES.has(code)
            ? { kind: 'transient', code: `ALIMTALK_${code}`, message }
            : { kind: 'permanent', code: `ALIMTALK_${code}`, message };
      return requests.map(() => outcome);
    }
    return this.perRecipient(requests, answer.message?.sendResults ?? [], 'ALIMTALK');
  }
}
