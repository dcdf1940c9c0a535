import { readFileSync } from 'node:fs';
import { createPrivateKey, sign, type KeyObject } from 'node:crypto';
import http2, { type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { performance } from 'node:perf_hooks';
import { REDACTED, type OnDeparted, type ProviderRequestPreview, type PushProvider, type SendRequest } from '../../app/ports.js';
import { ConfigError } from '../../config-error.js';
import { apnsBaseUrl, providerLimits, readSecret, retryPolicy, type ApnsProviderConfig } from './provider-config.js';
import { describeError, type SendOutcome } from '../../domain/send-outcome.js';
import { apnsContent } from '../../domain/message-limits.js';
import { MAX_ERROR_BODY, noAddress, parseJson, parseRetryAfter, recipientAddress } from './http-support.js';

const base64url = (value: string | Buffer) => Buffer.from(value).toString('base64url');

/**
 * The APNs provider token: an ES256 JWT (key id, team id, issued-at) signed
 * with the .p8 key. Apple rejects one older than an hour and refuses updates
 * more often than every 20 minutes, so one token is shared by every request
 * and replaced after `ttlMs` — or at once when Apple says it expired.
 */
export class ProviderToken {
  #token = '';
  private issuedAt = 0;
  private replacement = false;
  /** Tokens signed so far. */
  signed = 0;

  constructor(
    private readonly key: KeyObject,
    private readonly keyId: string,
    private readonly teamId: string,
    private readonly ttlMs: number,
  ) {}

  current(now = Date.now()): string {
    if (!this.#token || now - this.issuedAt >= this.ttlMs) this.issue(now, false);
    return this.#token;
  }

  /** Whether `token` was signed to replace one Apple said expired (refused too, it is not stale: something else is wrong). */
  isReplacement(token: string): boolean {
    return this.#token === token && this.replacement;
  }

  /** Apple said `rejected` expired: a new one, unless another request renewed it already. */
  renew(rejected: string, now = Date.now()): string {
    if (this.#token === rejected) this.issue(now, true);
    return this.#token;
  }

  private issue(now: number, replacement: boolean): void {
    this.replacement = replacement;
    const header = base64url(JSON.stringify({ alg: 'ES256', kid: this.keyId }));
    const claims = base64url(JSON.stringify({ iss: this.teamId, iat: Math.floor(now / 1000) }));
    const signature = sign('sha256', Buffer.from(`${header}.${claims}`), { key: this.key, dsaEncoding: 'ieee-p1363' });
    this.#token = `${header}.${claims}.${base64url(signature)}`;
    this.issuedAt = now;
    this.signed += 1;
  }
}

type Answer = SendOutcome | 'expired-token';

/** The APNs payload: `data` at the top level, `aps.alert` from the title and body. */
function apnsPayload(request: SendRequest): string {
  return JSON.stringify(apnsContent(request.message));
}

function apnsHeaders(config: ApnsProviderConfig, token: string, jwt: string, apnsId: string): Record<string, string> {
  return {
    ':method': 'POST',
    ':path': `/3/device/${encodeURIComponent(token)}`,
    authorization: `bearer ${jwt}`,
    'apns-topic': config.topic,
    'apns-push-type': config.pushType,
    'apns-priority': String(config.priority),
    'apns-expiration': String(config.expirationSeconds === 0 ? 0 : Math.floor(Date.now() / 1000) + config.expirationSeconds),
    'apns-id': apnsId,
    'content-type': 'application/json',
  };
}

/** The request for `request`, from the configuration alone (the signing key is not read: the provider token shows as redacted). */
export function apnsPreview(config: ApnsProviderConfig, request: SendRequest): ProviderRequestPreview {
  const token = recipientAddress(request.recipient, config.tokenField) ?? '';
  const { ':method': method, ':path': path, ...headers } = apnsHeaders(config, token, REDACTED, request.idempotencyKey);
  return { method: method!, url: `${apnsBaseUrl(config)}${path}`, headers, body: JSON.parse(apnsPayload(request)) };
}

/**
 * Apple Push Notification service over HTTP/2: one multiplexed TLS session
 * per provider and process, replaced when Apple sends GOAWAY (requests in
 * flight on the old one finish there; refused ones go again at once, as
 * never sent). Provider-token auth (ES256 JWT, see ProviderToken); `apns-id`
 * is the recipient's idempotency key, so Apple's logs and ours name the same
 * push.
 *
 * 200 sent · 410 Unregistered, 400 BadDeviceToken / DeviceTokenNotForTopic:
 * failed, token invalid · 429 TooManyRequests: that device's limit, retried
 * like a transient failure · other 429: rate limited (every worker slows) ·
 * 403 ExpiredProviderToken: a new JWT, and the push goes again on a permit
 * of its own · 403 InvalidProviderToken and 5xx, connection errors:
 * transient (they open the circuit; the recipient is not blamed) · other
 * 4xx: failed. APNs does not deduplicate by apns-id: a timeout is in doubt and
 * reported, unless the operator sets retryTimeouts.
 */
export class ApnsProvider implements PushProvider {
  readonly type = 'apns';
  readonly name: string;
  readonly limits;
  readonly retry;
  readonly jwt: ProviderToken;
  /** Sessions opened so far (a GOAWAY or a broken connection opens the next). */
  sessionsOpened = 0;
  private session: ClientHttp2Session | null = null;
  /** Sessions that have carried an answer: the server is reading them. */
  private readonly answering = new WeakSet<ClientHttp2Session>();
  private readonly origin: string;
  private readonly ca: string | undefined;

  constructor(private readonly config: ApnsProviderConfig) {
    this.name = config.name;
    this.limits = providerLimits(config);
    this.retry = retryPolicy(config);
    let key: KeyObject;
    try {
      key = createPrivateKey(readSecret(config, 'key'));
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      throw new ConfigError(`provider ${config.name}: the key is not a PEM private key (.p8)`);
    }
    if (key.asymmetricKeyType !== 'ec') throw new ConfigError(`provider ${config.name}: the key is not an EC (P-256) key`);
    this.jwt = new ProviderToken(key, config.keyId, config.teamId, config.tokenTtlMinutes * 60_000);
    this.origin = apnsBaseUrl(config);
    try {
      this.ca = config.caFile ? readFileSync(config.caFile, 'utf8') : undefined;
    } catch (err) {
      throw new ConfigError(`provider ${config.name}: caFile ${config.caFile} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }

  address(recipient: SendRequest['recipient']): string | undefined {
    return recipientAddress(recipient, this.config.tokenField);
  }

  async send(request: SendRequest, onDeparted?: OnDeparted): Promise<SendOutcome> {
    const token = this.address(request.recipient);
    if (!token) return noAddress('NO_TOKEN', this.config.tokenField);
    const payload = apnsPayload(request);
    const jwt = this.jwt.current();
    const answer = await this.post(token, payload, jwt, request.idempotencyKey, onDeparted);
    if (answer !== 'expired-token') return answer;
    if (this.jwt.isReplacement(jwt)) return { kind: 'transient', code: 'ExpiredProviderToken', message: 'APNs refused a freshly signed provider token' };
    // A new token for every push from now on; this one goes again on a permit of its own (one request per send).
    this.jwt.renew(jwt);
    return { kind: 'not-sent', code: 'ExpiredProviderToken', message: 'APNs said the provider token expired; signed a new one, sending again' };
  }

  private currentSession(): ClientHttp2Session {
    const live = this.session;
    if (live && !live.closed && !live.destroyed) return live;
    const session = http2.connect(this.origin, this.ca ? { ca: this.ca } : {});
    this.sessionsOpened += 1;
    const forget = () => {
      if (this.session === session) this.session = null;
    };
    // GOAWAY: no new streams here; the ones Apple took finish, the next request opens a new session.
    session.on('goaway', () => {
      forget();
      session.close();
    });
    session.on('error', forget);
    session.on('close', forget);
    this.session = session;
    return session;
  }

  private post(token: string, payload: string, jwt: string, apnsId: string, onDeparted: OnDeparted | undefined): Promise<Answer> {
    return new Promise((resolve) => {
      let settled = false;
      const done = (answer: Answer) => {
        if (settled) return;
        settled = true;
        resolve(answer);
      };
      let session: ClientHttp2Session;
      let stream: ClientHttp2Stream;
      try {
        session = this.currentSession();
        stream = session.request(apnsHeaders(this.config, token, jwt, apnsId));
      } catch (err) {
        // The session is going away or gone: this request never left.
        done({ kind: 'not-sent', code: (err as { code?: string }).code ?? 'HTTP2_SESSION', message: describeError(err) });
        return;
      }
      let status = 0;
      let headers: http2.IncomingHttpHeaders = {};
      let text = '';
      stream.setEncoding('utf8');
      stream.setTimeout(this.config.timeoutMs, () => {
        stream.close(http2.constants.NGHTTP2_CANCEL);
        done({ kind: 'in-doubt', code: 'TIMEOUT', message: `no answer from APNs in ${this.config.timeoutMs} ms` });
      });
      stream.on('response', (h) => {
        this.answering.add(session);
        headers = h;
        status = Number(h[':status']);
      });
      stream.on('data', (chunk: string) => {
        if (text.length < MAX_ERROR_BODY) text += chunk;
      });
      stream.on('end', () => done(status === 0 ? this.lost(session, 'the stream ended without an answer') : classifyApns(status, text, headers)));
      stream.on('error', (err) => done(this.streamError(session, err, status)));
      stream.on('close', () => {
        // Closed without 'end' or 'error': refused (GOAWAY / RST_STREAM REFUSED_STREAM) or cut.
        if (stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM) done(refused());
        else done(status === 0 ? this.lost(session, `the stream closed (code ${stream.rstCode})`) : classifyApns(status, text, headers));
      });
      // 'finish': the last DATA frame (END_STREAM) went to the session's socket — a
      // departure worth reporting once Apple answers on this session (departures.ts says why).
      if (onDeparted && this.answering.has(session)) stream.once('finish', () => onDeparted(performance.now()));
      stream.end(payload);
    });
  }

  /** The connection broke before an answer: never sent if it never connected, else in doubt. */
  private lost(session: ClientHttp2Session, message: string): SendOutcome {
    if (session.connecting || !session.socket) return { kind: 'transient', code: 'CONNECTION_FAILED', message };
    return { kind: 'in-doubt', code: 'CONNECTION_LOST', message };
  }

  private streamError(session: ClientHttp2Session, err: Error, status: number): SendOutcome {
    const code = (err as { code?: string }).code ?? 'HTTP2_ERROR';
    if (/REFUSED_STREAM/.test(err.message) || code === 'ERR_HTTP2_GOAWAY_SESSION') return refused();
    if (status !== 0) return { kind: 'in-doubt', code, message: `the answer was cut: ${err.message}` };
    return this.lost(session, `${code}: ${err.message}`);
  }

  async close(): Promise<void> {
    const session = this.session;
    this.session = null;
    if (!session || session.destroyed) return;
    // Let streams in flight finish, but never wait on a peer that stopped answering.
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        session.destroy();
        resolve();
      }, this.config.timeoutMs);
      timer.unref();
      session.close(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

function refused(): SendOutcome {
  return { kind: 'not-sent', code: 'REFUSED_STREAM', message: 'APNs refused the stream before processing it (GOAWAY); sending it again' };
}

export function classifyApns(status: number, text: string, headers: http2.IncomingHttpHeaders = {}): Answer {
  if (status === 200) return { kind: 'sent' };
  const reason = (parseJson(text) as { reason?: string } | undefined)?.reason ?? `HTTP_${status}`;
  const message = `APNs ${status} ${reason}`;
  if (status === 403 && reason === 'ExpiredProviderToken') return 'expired-token';
  if (status === 410 || reason === 'BadDeviceToken' || reason === 'DeviceTokenNotForTopic' || reason === 'Unregistered') {
    return { kind: 'permanent', code: reason, message, tokenInvalid: true };
  }
  if (status === 429) {
    // TooManyRequests is Apple's limit on one device token (too many pushes to it in a row), not on us.
    const scope = reason === 'TooManyRequests' ? 'recipient' : 'provider';
    return { kind: 'rate-limited', scope, code: reason, message, retryAfterMs: parseRetryAfter(headers['retry-after']) };
  }
  // Our credentials, not the recipient: retried, and the circuit opens while they are wrong.
  if (status === 403 && /ProviderToken|Forbidden/.test(reason)) return { kind: 'transient', code: reason, message };
  if (status >= 500) return { kind: 'transient', code: reason, message };
  return { kind: 'permanent', code: reason, message };
}
