import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AlimtalkProvider, batchIdempotencyKey } from '../../src/adapters/push/alimtalk-provider.js';
import type { SendRequest } from '../../src/app/ports.js';
import { ConfigError } from '../../src/config-error.js';
import { providerSchema, retryPolicy, type AlimtalkProviderConfig } from '../../src/adapters/push/provider-config.js';
import { settlement } from '../../src/domain/send-rules.js';
import { RECIPIENT_CODES, REPLAYED, startFakeAlimtalk, type FakeAlimtalk } from '../helpers/fakes/fake-alimtalk.js';

const SECRET_ENV = 'PUSHQ_TEST_ALIMTALK_SECRET';

let seq = 0;
function request(phone: string, fields: Record<string, unknown> = {}, data: Record<string, unknown> = {}): SendRequest {
  seq += 1;
  const hex = seq.toString(16).padStart(12, '0');
  return {
    idempotencyKey: `6f1c1a52-0c1e-8e1a-9b1c-${hex}`,
    campaignId: 'c1',
    runId: 'main',
    recipient: { id: `u-${seq}`, phone, ...fields },
    message: { title: 'Hello', body: 'World', data },
  };
}

function config(fake: FakeAlimtalk, extra: Record<string, unknown> = {}): AlimtalkProviderConfig {
  return providerSchema.parse({
    name: 'kakao',
    type: 'alimtalk',
    tps: 100,
    baseUrl: fake.url,
    appKey: fake.appKey,
    secretKeyEnv: SECRET_ENV,
    senderKey: fake.senderKey,
    templateCode: 'WELCOME01',
    invalidRecipientCodes: [RECIPIENT_CODES.invalidNumber, RECIPIENT_CODES.notKakaoUser],
    ...extra,
  }) as AlimtalkProviderConfig;
}

describe('the alimtalk provider against a local NHN-style Bizmessage API', () => {
  let fake: FakeAlimtalk;
  const providers: AlimtalkProvider[] = [];
  const make = (extra: Record<string, unknown> = {}) => {
    const p = new AlimtalkProvider(config(fake, extra));
    providers.push(p);
    return p;
  };

  beforeAll(async () => {
    process.env[SECRET_ENV] = 'secret-key-test';
    fake = await startFakeAlimtalk(['WELCOME01', 'COUPON02']);
  });
  afterEach(async () => {
    await Promise.all(providers.splice(0).map((p) => p.close()));
  });
  afterAll(async () => {
    delete process.env[SECRET_ENV];
    await fake.close();
  });

  it('sends with the secret header, sender key, template and the recipient fields as template parameters', async () => {
    const provider = make();
    const r = request('01012345678', { name: 'Kim', points: 1200, timezone: 'Asia/Seoul', nightAdConsent: true });
    expect(await provider.send(r)).toEqual({ kind: 'sent' });
    const d = fake.deliveries.at(-1)!;
    expect(d).toMatchObject({
      recipientNo: '01012345678',
      templateCode: 'WELCOME01',
      recipientGroupingKey: r.idempotencyKey,
      idempotencyKey: r.idempotencyKey,
    });
    // Delivery fields (id, timezone, consent) and the phone number are not template text.
    expect(d.templateParameter).toEqual({ name: 'Kim', points: '1200' });

    const named = make({ templateParameters: ['name'] });
    expect(await named.send(request('01012345679', { name: 'Lee', secretNote: 'x' }, { templateCode: 'COUPON02' }))).toEqual({ kind: 'sent' });
    expect(fake.deliveries.at(-1)).toMatchObject({ templateCode: 'COUPON02', templateParameter: { name: 'Lee' } });
  });

  it('judges each recipient of a batch by its own result code, not by the HTTP status', async () => {
    const provider = make({ batchSize: 5 });
    expect(provider.batch).toEqual({ size: 5, countBy: 'message' });
    const requests = [request('01012340001'), request('01000001234'), request('01011112222'), request('01022223333'), request('', {})];
    const before = fake.requests.length;
    const outcomes = await provider.sendBatch(requests);
    expect(fake.requests.length).toBe(before + 1);
    expect(fake.requests.at(-1)).toMatchObject({ recipients: 4, idempotencyKey: batchIdempotencyKey(requests.slice(0, 4)) });
    expect(outcomes[0]).toEqual({ kind: 'sent' });
    expect(outcomes[1]).toMatchObject({ kind: 'permanent', code: `ALIMTALK_${RECIPIENT_CODES.invalidNumber}`, tokenInvalid: true });
    expect(outcomes[2]).toMatchObject({ kind: 'permanent', code: `ALIMTALK_${RECIPIENT_CODES.notKakaoUser}`, tokenInvalid: true });
    // Blocked by the user: failed, but the number itself is fine (not in invalidRecipientCodes).
    expect(outcomes[3]).toMatchObject({ kind: 'permanent', code: `ALIMTALK_${RECIPIENT_CODES.blockedByUser}`, tokenInvalid: false });
    expect(outcomes[4]).toMatchObject({ kind: 'permanent', code: 'NO_PHONE' });
  });

  it('sends one template per request: recipients rendered to another template code (a locale variant) wait for a later batch', async () => {
    const provider = make({ batchSize: 5 });
    const requests = [
      request('01012340001', {}, { templateCode: 'WELCOME01' }),
      request('01012340002', {}, { templateCode: 'COUPON02' }),
      request('01012340003', {}, { templateCode: 'WELCOME01' }),
    ];
    const before = fake.requests.length;
    const outcomes = await provider.sendBatch(requests);
    expect(fake.requests.length).toBe(before + 1);
    expect(fake.deliveries.slice(-2).map((d) => d.templateCode)).toEqual(['WELCOME01', 'WELCOME01']);
    expect(outcomes[0]).toEqual({ kind: 'sent' });
    expect(outcomes[1]).toMatchObject({ kind: 'not-sent', code: 'TEMPLATE_CODE_BATCH' });
    expect(outcomes[2]).toEqual({ kind: 'sent' });
    // Not sent: handed back unsent, with the attempt given back (a requeue).
    expect(settlement(outcomes[1]!, 1, retryPolicy(config(fake, { batchSize: 5 })))).toMatchObject({ outcome: 'requeue' });
  });

  it('the batch key is the same for the same recipients in any order, and differs for others', () => {
    const [a, b, c] = [request('1'), request('2'), request('3')];
    expect(batchIdempotencyKey([a!, b!])).toBe(batchIdempotencyKey([b!, a!]));
    expect(batchIdempotencyKey([a!, b!])).not.toBe(batchIdempotencyKey([a!, c!]));
    expect(batchIdempotencyKey([a!, b!])).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-a[0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(batchIdempotencyKey([a!])).toBe(a!.idempotencyKey);
  });

  it('a request processed but unanswered is in doubt; its retry with the same key is refused by the API and never delivered twice', async () => {
    const provider = make();
    const r = request('01055556666');
    fake.cutAfterProcessing = 1;
    const first = await provider.send(r);
    expect(first).toMatchObject({ kind: 'in-doubt', code: 'CONNECTION_LOST' });
    // Unbatched, the key makes a retry safe: the ledger retries it.
    expect(settlement(first, 1, provider.retry).outcome).toBe('retry');
    const second = await provider.send(r);
    expect(second).toMatchObject({ kind: 'in-doubt', code: 'IDEMPOTENT_REPLAY', final: true });
    // ...and the replay's answer is final: recorded unknown, never retried.
    expect(settlement(second, 2, provider.retry).outcome).toBe('unknown');
    expect(fake.refused.at(-1)).toBe(REPLAYED);
    expect(fake.deliveredPerKey().get(r.idempotencyKey)).toBe(1);
    // Batched, a retry may carry other recipients under another key: timeouts stay in doubt.
    expect(make({ batchSize: 10 }).retry.retryTimeouts).toBe(false);
  });

  it('maps request-level failures: account problems transient, template errors failed, 429 rate limited, 5xx transient', async () => {
    const wrongSecret = make();
    process.env[SECRET_ENV] = 'not-the-secret';
    const refusedSecret = new AlimtalkProvider(config(fake));
    providers.push(refusedSecret);
    process.env[SECRET_ENV] = 'secret-key-test';
    expect(await refusedSecret.send(request('01012340002'))).toMatchObject({ kind: 'transient', code: 'ALIMTALK_-1001' });
    expect(await make({ appKey: 'other-app' }).send(request('01012340003'))).toMatchObject({ kind: 'transient', code: 'ALIMTALK_-1000' });
    expect(await make({ templateCode: 'NOPE' }).send(request('01012340004'))).toMatchObject({ kind: 'permanent', code: 'ALIMTALK_-3006' });

    fake.failNext = { status: 429, count: 1, retryAfter: '3' };
    expect(await wrongSecret.send(request('01012340005'))).toMatchObject({ kind: 'rate-limited', retryAfterMs: 3000 });
    fake.failNext = { status: 503, count: 1 };
    expect(await wrongSecret.send(request('01012340006'))).toMatchObject({ kind: 'transient', code: 'HTTP_503' });
    fake.failNext = null;
    expect(await wrongSecret.send(request('01012340007'))).toEqual({ kind: 'sent' });
  });

  it('a connection that never opens is a plain retry, never a failure of the recipient', async () => {
    const provider = make({ baseUrl: 'http://127.0.0.1:1' });
    expect(await provider.send(request('01012340008'))).toMatchObject({ kind: 'transient', code: 'ECONNREFUSED' });
  });

  it('refuses a configuration without its secret, naming the provider and never the secret', () => {
    delete process.env[SECRET_ENV];
    try {
      expect(() => new AlimtalkProvider(config(fake))).toThrow(ConfigError);
      expect(() => new AlimtalkProvider(config(fake))).toThrow(/kakao/);
      expect(() => providerSchema.parse({ ...config(fake), secretKeyFile: '/x' })).toThrow();
    } finally {
      process.env[SECRET_ENV] = 'secret-key-test';
    }
    const provider = make();
    // Nothing that serialises the provider (a log line, an error report) can carry the secret.
    expect(JSON.stringify(provider)).not.toContain('secret-key-test');
    expect(JSON.stringify(provider)).toContain(SECRET_ENV);
    expect(retryPolicy(config(fake)).retryTimeouts).toBe(true);
  });
});
