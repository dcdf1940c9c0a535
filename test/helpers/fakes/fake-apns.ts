import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import http2, { type Http2SecureServer, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { verifyJwt } from './jwt.js';
import { selfSignedCertificate } from './tls.js';

/**
 * A stand-in for APNs on loopback: HTTP/2 over TLS with a self-signed
 * certificate, checking what Apple checks — the provider token's ES256
 * signature with the key's public half, its key id and team id, the topic,
 * the apns-id — and answering per device token the way APNs does (see
 * `answer`). It can expire provider tokens and send GOAWAY.
 */
export interface ApnsPush {
  deviceToken: string;
  apnsId: string;
  topic: string;
  pushType: string;
  priority: string;
  expiration: string;
  jwt: string;
  payload: { aps: { alert: { title: string; body: string } }; [k: string]: unknown };
  session: number;
}

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

export class FakeApns {
  readonly pushes: ApnsPush[] = [];
  readonly refused: string[] = [];
  sessions = 0;
  /** Provider tokens Apple considers expired (answered 403 ExpiredProviderToken). */
  readonly expired = new Set<string>();
  /** Send GOAWAY on a session after it has carried this many streams. */
  goawayAfter = 0;
  private readonly liveSessions = new Set<ServerHttp2Session>();

  constructor(
    private readonly server: Http2SecureServer,
    readonly url: string,
    readonly certFile: string,
    readonly privateKeyPem: string,
    private readonly publicKey: KeyObject,
    readonly keyId: string,
    readonly teamId: string,
    readonly topic: string,
  ) {
    server.on('session', (session) => {
      this.sessions += 1;
      const id = this.sessions;
      let streams = 0;
      /** The last stream this session took before GOAWAY: later ones are refused, never processed (HTTP/2 semantics). */
      let lastStream: number | null = null;
      this.liveSessions.add(session);
      session.on('close', () => this.liveSessions.delete(session));
      session.on('error', () => undefined);
      session.on('stream', (stream, headers) => {
        streams += 1;
        stream.on('error', () => undefined);
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          const streamId = stream.id ?? 0;
          if (lastStream !== null && streamId > lastStream) return;
          this.handle(stream, headers, Buffer.concat(chunks).toString('utf8'), id);
          if (this.goawayAfter > 0 && streams >= this.goawayAfter && lastStream === null) {
            lastStream = streamId;
            session.goaway(http2.constants.NGHTTP2_NO_ERROR, streamId);
          }
        });
      });
    });
  }

  private handle(stream: ServerHttp2Stream, headers: http2.IncomingHttpHeaders, body: string, session: number): void {
    const reply = (status: number, reason?: string) => {
      if (reason) this.refused.push(reason);
      if (stream.destroyed) return;
      stream.respond({ ':status': status, 'apns-id': String(headers['apns-id'] ?? ''), ...(reason ? { 'content-type': 'application/json' } : {}) });
      stream.end(reason ? JSON.stringify({ reason, ...(status === 410 ? { timestamp: Date.now() } : {}) }) : undefined);
    };
    const path = /^\/3\/device\/([^/]+)$/.exec(String(headers[':path']));
    if (headers[':method'] !== 'POST' || !path) return reply(404, 'BadPath');
    const jwt = /^bearer (.+)$/.exec(String(headers.authorization ?? ''))?.[1];
    if (!jwt) return reply(403, 'MissingProviderToken');
    const checked = verifyJwt(jwt, this.publicKey, 'ES256');
    if (!checked.ok || checked.header.kid !== this.keyId || checked.claims.iss !== this.teamId) return reply(403, 'InvalidProviderToken');
    if (this.expired.has(jwt) || Number(checked.claims.iat) * 1000 < Date.now() - 3_600_000) return reply(403, 'ExpiredProviderToken');
    if (headers['apns-topic'] !== this.topic) return reply(400, 'TopicDisallowed');
    const apnsId = String(headers['apns-id'] ?? '');
    if (!UUID.test(apnsId)) return reply(400, 'BadMessageId');
    const deviceToken = decodeURIComponent(path[1]!);
    this.pushes.push({
      deviceToken,
      apnsId,
      topic: String(headers['apns-topic']),
      pushType: String(headers['apns-push-type']),
      priority: String(headers['apns-priority']),
      expiration: String(headers['apns-expiration']),
      jwt,
      payload: JSON.parse(body),
      session,
    });
    const [status, reason] = answer(deviceToken);
    reply(status, reason);
  }

  /** Pushes per apns-id that APNs accepted (200). */
  accepted(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const p of this.pushes) if (answer(p.deviceToken)[0] === 200) counts.set(p.apnsId, (counts.get(p.apnsId) ?? 0) + 1);
    return counts;
  }

  close(): Promise<void> {
    for (const session of this.liveSessions) session.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** How APNs answers, chosen by the device token's prefix. */
function answer(deviceToken: string): [number, string?] {
  if (deviceToken.startsWith('gone')) return [410, 'Unregistered'];
  if (deviceToken.startsWith('bad')) return [400, 'BadDeviceToken'];
  if (deviceToken.startsWith('othertopic')) return [400, 'DeviceTokenNotForTopic'];
  // Apple's one 429 about a device: too many pushes to this token in a row.
  if (deviceToken.startsWith('toomany')) return [429, 'TooManyRequests'];
  if (deviceToken.startsWith('busy')) return [429, 'TooManyProviderRequests'];
  if (deviceToken.startsWith('down')) return [503, 'ServiceUnavailable'];
  if (deviceToken.startsWith('oops')) return [500, 'InternalServerError'];
  if (deviceToken.startsWith('huge')) return [413, 'PayloadTooLarge'];
  return [200];
}

export async function startFakeApns(): Promise<FakeApns> {
  const { key, cert, certFile } = selfSignedCertificate();
  const server = http2.createSecureServer({ key, cert });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return new FakeApns(
    server,
    url,
    certFile,
    privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKey,
    'ABC123DEFG',
    'TEAM123456',
    'com.example.app',
  );
}
