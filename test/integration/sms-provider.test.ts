import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SmsProvider, smsPreview } from '../../src/adapters/push/sms-provider.js';
import type { SendRequest } from '../../src/app/ports.js';
import { providerSchema, type SmsProviderConfig } from '../../src/adapters/push/provider-config.js';
import { SMS_RECIPIENT_CODES, startFakeSms, type FakeSms } from '../helpers/fakes/fake-sms.js';

const SECRET_ENV = 'PUSHQ_TEST_SMS_SECRET';

let seq = 0;
function request(phone: string | undefined, body: string, extra: Partial<SendRequest> = {}): SendRequest {
  seq += 1;
  return {
    idempotencyKey: `7a2c1a52-0c1e-8e1a-9b1c-${seq.toString(16).padStart(12, '0')}`,
    campaignId: 'c1',
    runId: 'main',
    recipient: { id: `u-${seq}`, ...(phone === undefined ? {} : { phone }) },
    message: { title: '주문 안내', body, data: {} },
    ...extra,
  };
}

function config(fake: FakeSms, extra: Record<string, unknown> = {}): SmsProviderConfig {
  return providerSchema.parse({
    name: 'sms',
    type: 'sms',
    tps: 100,
    baseUrl: fake.url,
    appKey: fake.appKey,
    secretKeyEnv: SECRET_ENV,
    sendNo: fake.sendNo,
    invalidRecipientCodes: [SMS_RECIPIENT_CODES.invalidNumber],
    ...extra,
  }) as SmsProviderConfig;
}

describe('the sms provider against a local NHN-style SMS v3.0 API', () => {
  let fake: FakeSms;
  const providers: SmsProvider[] = [];
  const make = (extra: Record<string, unknown> = {}) => {
    const p = new SmsProvider(config(fake, extra));
    providers.push(p);
    return p;
  };

  beforeAll(async () => {
    process.env[SECRET_ENV] = 'sms-secret-key';
    fake = await startFakeSms();
  });
  afterEach(async () => {
    await Promise.all(providers.splice(0).map((p) => p.close()));
  });
  afterAll(async () => {
    delete process.env[SECRET_ENV];
    await fake.close();
  });

  it('sends a text of up to 90 EUC-KR bytes as SMS and a longer one as LMS with its title, each to its own path', async () => {
    const provider = make();
    const short = request('01012340001', '주문하신 상품이 출발했습니다. 감사합니다!');
    expect(await provider.send(short)).toEqual({ kind: 'sent' });
    expect(fake.deliveries.at(-1)).toMatchObject({
      type: 'SMS',
      ad: false,
      title: null,
      recipientNo: '01012340001',
      recipientGroupingKey: short.idempotencyKey,
    });
    const long = request('01012340002', `${'배송 안내: '.repeat(12)}끝`);
    expect(await provider.send(long)).toEqual({ kind: 'sent' });
    expect(fake.deliveries.at(-1)).toMatchObject({ type: 'LMS', title: '주문 안내', body: long.message.body });
    expect(fake.requests.slice(-2).map((r) => r.path.split('/').at(-1))).toEqual(['sms', 'mms']);
  });

  it('refuses, without a request, a text EUC-KR cannot carry, and a recipient without a number', async () => {
    const provider = make();
    const before = fake.requests.length;
    expect(await provider.send(request('01012340003', '오늘만 🎉 할인'))).toMatchObject({ kind: 'permanent', code: 'SMS_UNENCODABLE' });
    expect(await provider.send(request(undefined, '안녕하세요'))).toMatchObject({ kind: 'permanent', code: 'NO_PHONE' });
    expect(fake.requests.length).toBe(before);
  });

  it('sends an advertisement to the advertising path with (광고) first and the free opt-out last, once; refuses one without an opt-out number', async () => {
    const provider = make({ adSenderName: '푸시상점', optOutNumber: '080-123-4567' });
    expect(await provider.send(request('01012340004', '가을 세일 30%', { kind: 'advertising' }))).toEqual({ kind: 'sent' });
    expect(fake.deliveries.at(-1)).toMatchObject({ type: 'SMS', ad: true, body: '(광고)푸시상점\n가을 세일 30%\n무료수신거부 080-123-4567' });
    const written = '(광고)푸시상점 가을 세일\n무료수신거부 0801234567';
    expect(await provider.send(request('01012340005', written, { kind: 'advertising' }))).toEqual({ kind: 'sent' });
    expect(fake.deliveries.at(-1)!.body).toBe(written);
    // A transactional message carries no notice.
    expect(await provider.send(request('01012340006', '인증번호 123456', { kind: 'transactional' }))).toEqual({ kind: 'sent' });
    expect(fake.deliveries.at(-1)).toMatchObject({ ad: false, body: '인증번호 123456' });
    expect(await make().send(request('01012340007', '세일', { kind: 'advertising' }))).toMatchObject({ kind: 'permanent', code: 'SMS_AD_NO_OPT_OUT' });
    // A mention of opting out is not the opt-out line: the notice is added (the fake refuses an advertisement without the 080 line).
    expect(await provider.send(request('01012340008', '(광고)푸시상점 세일\n수신거부 문의는 고객센터로', { kind: 'advertising' }))).toEqual({ kind: 'sent' });
    expect(fake.deliveries.at(-1)!.body.endsWith('\n무료수신거부 080-123-4567')).toBe(true);
  });

  it('sends a personalised batch (every text its own) in one request per text when the cap counts messages; counting requests, one text a request and the rest later', async () => {
    const provider = make({ batchSize: 10 });
    const batch = Array.from({ length: 6 }, (_, i) => request(`0101234005${i}`, `김${'민서준'[i % 3]}님, 주문 ${i}번이 출발했습니다`));
    const before = fake.requests.length;
    expect((await provider.sendBatch(batch)).map((o) => o.kind)).toEqual(Array(6).fill('sent'));
    expect(fake.requests.length - before).toBe(6);
    const byRequest = make({ batchSize: 10, countBy: 'request' });
    const again = Array.from({ length: 3 }, (_, i) => request(`0101234006${i}`, `주문 ${i}번`));
    expect((await byRequest.sendBatch(again)).map((o) => o.kind)).toEqual(['sent', 'not-sent', 'not-sent']);
  });

  it('batches recipients of one text and judges each by its own result code; another text waits for a later batch when the cap counts requests', async () => {
    const provider = make({ batchSize: 10, countBy: 'request' });
    const text = '배송이 시작되었습니다';
    const batch = [
      request('01012340010', text),
      request('01000000011', text),
      request('01033330012', text),
      request('01012340013', '다른 글'),
      request('01012340014', text),
    ];
    const before = fake.requests.length;
    const outcomes = await provider.sendBatch(batch);
    expect(fake.requests.length - before).toBe(1);
    expect(fake.requests.at(-1)!.recipients).toBe(4);
    expect(outcomes.map((o) => o.kind)).toEqual(['sent', 'permanent', 'permanent', 'not-sent', 'sent']);
    expect(outcomes[1]).toMatchObject({ code: `SMS_${SMS_RECIPIENT_CODES.invalidNumber}`, tokenInvalid: true });
    expect(outcomes[2]).toMatchObject({ code: `SMS_${SMS_RECIPIENT_CODES.blocked}`, tokenInvalid: false });
  });

  it('fails the recipients of a request the API refuses (a sender number it does not know); retries what is about our account (a wrong secret)', async () => {
    expect(await make({ sendNo: '0212345678' }).send(request('01012340020', '안녕'))).toMatchObject({ kind: 'permanent', code: 'SMS_-2002' });
    process.env[SECRET_ENV] = 'rotated-and-wrong';
    try {
      expect(await make().send(request('01012340022', '안녕'))).toMatchObject({ kind: 'transient', code: 'SMS_-1001' });
    } finally {
      process.env[SECRET_ENV] = 'sms-secret-key';
    }
  });

  it('never resends what may have gone out: a timeout, a 502/504 after the API took it, a result left out are in doubt; 503 and 429 are retried', async () => {
    const hanging = createServer(() => undefined);
    await new Promise<void>((resolve) => hanging.listen(0, '127.0.0.1', resolve));
    try {
      const silent = make({ baseUrl: `http://127.0.0.1:${(hanging.address() as AddressInfo).port}`, timeoutMs: 200 });
      expect(await silent.send(request('01012340021', '안녕'))).toMatchObject({ kind: 'in-doubt' });
    } finally {
      hanging.close();
    }
    const provider = make();
    const before = fake.deliveries.length;
    fake.failAfterProcessing = { status: 504, count: 1 };
    expect(await provider.send(request('01012340023', '안녕'))).toMatchObject({ kind: 'in-doubt', code: 'HTTP_504', final: true });
    expect(fake.deliveries.length).toBe(before + 1);
    fake.failNext = { status: 503, count: 1 };
    expect(await provider.send(request('01012340024', '안녕'))).toMatchObject({ kind: 'transient', code: 'HTTP_503' });
    fake.failNext = { status: 429, count: 1 };
    expect(await provider.send(request('01012340025', '안녕'))).toMatchObject({ kind: 'rate-limited' });
    expect(await provider.send(request('01099990026', '안녕'))).toMatchObject({ kind: 'in-doubt', code: 'NO_RESULT', final: true });
    expect(provider.retry).toMatchObject({ retryTimeouts: false, inDoubt: 'report' });
  });

  it('refuses a configuration that would resend in doubt, or advertise without both the sender name and the opt-out number', () => {
    expect(() => config(fake, { inDoubt: 'resend' })).toThrow(/idempotency key/);
    expect(() => config(fake, { optOutNumber: '080-123-4567' })).toThrow(/both adSenderName and optOutNumber/);
    expect(() => config(fake, { adSenderName: '상점', optOutNumber: '010-1234-5678' })).toThrow(/080/);
  });

  it('previews the exact request, the secret redacted, and the refusal for a text it would refuse', () => {
    const preview = smsPreview(config(fake), request('01012340030', '안녕하세요'));
    expect(preview).toMatchObject({
      method: 'POST',
      url: `${fake.url}/sms/v3.0/appKeys/${fake.appKey}/sender/sms`,
      headers: { 'x-secret-key': '[redacted]' },
      body: { body: '안녕하세요', sendNo: fake.sendNo, recipientList: [{ recipientNo: '01012340030' }] },
    });
    expect(smsPreview(config(fake), request('01012340031', '🎉'))).toMatchObject({ body: { refused: { code: 'SMS_UNENCODABLE' } } });
  });
});
