import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { verifyJwt } from './jwt.js';

/**
 * A stand-in for Google's OAuth token endpoint and FCM HTTP v1 on loopback,
 * speaking their wire formats: the token endpoint checks the service
 * account's RS256 assertion (signature, issuer, audience, scope) and mints
 * short access tokens; messages:send accepts only a live token and answers
 * per device token the way FCM does (see `answer`).
 */
export interface FcmSend {
  bearer: string;
  projectId: string;
  message: { token: string; notification?: { title: string; body: string }; data?: Record<string, string>; [k: string]: unknown };
}

export class FakeFcm {
  readonly sends: FcmSend[] = [];
  /** Access tokens issued, in order. */
  readonly issued: string[] = [];
  readonly refusedAssertions: string[] = [];
  /** Every messages:send request, answered or refused. */
  requests = 0;
  /** Seconds the next access tokens live. */
  expiresIn = 3600;
  private readonly live = new Map<string, number>();

  constructor(
    private readonly server: Server,
    readonly url: string,
    readonly serviceAccount: Record<string, string>,
    private readonly publicKey: KeyObject,
  ) {}

  /** As if Google revoked every token issued so far. */
  revokeAll(): void {
    this.live.clear();
  }

  handle(req: IncomingMessage, res: ServerResponse, body: string): void {
    const json = (status: number, value: unknown, headers: Record<string, string> = {}): void => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(value));
    };
    if (req.method === 'POST' && req.url === '/token') {
      const form = new URLSearchParams(body);
      const checked = verifyJwt(form.get('assertion') ?? '', this.publicKey, 'RS256');
      const claims = checked.ok ? checked.claims : {};
      const problem = !checked.ok
        ? checked.why
        : form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer'
          ? 'grant_type'
          : claims.iss !== this.serviceAccount.client_email
            ? 'iss'
            : claims.aud !== 'https://oauth2.googleapis.com/token'
              ? 'aud'
              : !String(claims.scope).includes('https://www.googleapis.com/auth/firebase.messaging')
                ? 'scope'
                : Number(claims.exp) * 1000 < Date.now()
                  ? 'exp'
                  : null;
      if (problem) {
        this.refusedAssertions.push(problem);
        return json(400, { error: 'invalid_grant', error_description: problem });
      }
      const token = `ya29.fake-${this.issued.length + 1}`;
      this.issued.push(token);
      this.live.set(token, Date.now() + this.expiresIn * 1000);
      return json(200, { access_token: token, expires_in: this.expiresIn, token_type: 'Bearer' });
    }
    const match = /^\/v1\/projects\/([^/]+)\/messages:send$/.exec(req.url ?? '');
    if (req.method !== 'POST' || !match) return json(404, { error: { code: 404, status: 'NOT_FOUND', message: 'no such method' } });
    this.requests += 1;
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
    const until = this.live.get(bearer);
    if (until === undefined || until < Date.now()) {
      return json(401, { error: { code: 401, status: 'UNAUTHENTICATED', message: 'Request had invalid authentication credentials.' } });
    }
    const { message } = JSON.parse(body) as { message: FcmSend['message'] };
    this.sends.push({ bearer, projectId: decodeURIComponent(match[1]!), message });
    const [status, value, headers] = answer(message.token);
    json(status, value, headers);
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

const fcmError = (code: number, status: string, message: string, extra: object[] = []) => ({ error: { code, status, message, details: extra } });
const fcmCode = (errorCode: string) => ({ '@type': 'type.googleapis.com/google.firebase.fcm.v1.FcmError', errorCode });

/** How FCM answers, chosen by the device token's prefix. */
function answer(token: string): [number, unknown, Record<string, string>?] {
  if (token.startsWith('unregistered')) return [404, fcmError(404, 'NOT_FOUND', 'Requested entity was not found.', [fcmCode('UNREGISTERED')])];
  if (token.startsWith('malformed')) {
    return [
      400,
      fcmError(400, 'INVALID_ARGUMENT', 'The registration token is not a valid FCM registration token', [
        fcmCode('INVALID_ARGUMENT'),
        { '@type': 'type.googleapis.com/google.rpc.BadRequest', fieldViolations: [{ field: 'message.token', description: 'Invalid registration token' }] },
      ]),
    ];
  }
  if (token.startsWith('badpayload')) return [400, fcmError(400, 'INVALID_ARGUMENT', 'Invalid value at message.data', [fcmCode('INVALID_ARGUMENT')])];
  if (token.startsWith('mismatch')) return [403, fcmError(403, 'PERMISSION_DENIED', 'SenderId mismatch', [fcmCode('SENDER_ID_MISMATCH')])];
  if (token.startsWith('quota')) return [429, fcmError(429, 'RESOURCE_EXHAUSTED', 'Quota exceeded.', [fcmCode('QUOTA_EXCEEDED')]), { 'retry-after': '2' }];
  if (token.startsWith('unavailable')) return [503, fcmError(503, 'UNAVAILABLE', 'The service is currently unavailable.', [fcmCode('UNAVAILABLE')])];
  if (token.startsWith('internal')) return [500, fcmError(500, 'INTERNAL', 'Internal error encountered.', [fcmCode('INTERNAL')])];
  return [200, { name: `projects/p/messages/${Math.floor(Math.random() * 1e12)}` }];
}

export async function startFakeFcm(projectId = 'pushq-test'): Promise<FakeFcm> {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  let fake: FakeFcm | undefined;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => fake!.handle(req, res, Buffer.concat(chunks).toString('utf8')));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const serviceAccount = {
    type: 'service_account',
    project_id: projectId,
    private_key_id: 'k1',
    private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    client_email: `pushq@${projectId}.iam.gserviceaccount.com`,
    client_id: '1',
    token_uri: `${url}/token`,
  };
  fake = new FakeFcm(server, url, serviceAccount, publicKey);
  return fake;
}
