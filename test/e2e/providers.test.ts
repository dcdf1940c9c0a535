import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeAlimtalk, type FakeAlimtalk } from '../helpers/fakes/fake-alimtalk.js';
import { startFakeApns, type FakeApns } from '../helpers/fakes/fake-apns.js';
import { startFakeFcm, type FakeFcm } from '../helpers/fakes/fake-fcm.js';
import { SMS_RECIPIENT_CODES, startFakeSms, type FakeSms } from '../helpers/fakes/fake-sms.js';
import { ApiClient } from '../helpers/api-client.js';
import { providersFile, TEST_TOKEN } from '../helpers/fixtures.js';
import { spawnPushq, startApiProcess } from '../helpers/processes.js';
import { testRedis } from '../helpers/redis.js';
import { createCampaign, launchCampaign, stacksPerTest, waitForStatus, type Stack } from '../helpers/stack.js';

/**
 * The real providers through real processes: an API and workers sending to
 * local FCM, APNs and alimtalk servers that speak the wire protocols. What
 * the providers report invalid is skipped by the next campaign; batches are
 * limited by what the provider counts.
 */
const ALIMTALK_SECRET_ENV = 'PUSHQ_E2E_ALIMTALK_SECRET';
const SMS_SECRET_ENV = 'PUSHQ_E2E_SMS_SECRET';
let fcm: FakeFcm;
let apns: FakeApns;
let kakao: FakeAlimtalk;
let sms: FakeSms;
let secretsDir: string;
const start = stacksPerTest();

beforeAll(async () => {
  [fcm, apns, kakao, sms] = await Promise.all([startFakeFcm(), startFakeApns(), startFakeAlimtalk(), startFakeSms()]);
  secretsDir = mkdtempSync(join(tmpdir(), 'pushq-secrets-'));
  writeFileSync(join(secretsDir, 'service-account.json'), JSON.stringify(fcm.serviceAccount));
  writeFileSync(join(secretsDir, 'AuthKey.p8'), apns.privateKeyPem);
});
afterAll(async () => {
  await Promise.all([fcm.close(), apns.close(), kakao.close(), sms.close()]);
});

async function setup(providers: Array<Record<string, unknown>>, workers = 2, env: Record<string, string> = {}): Promise<Stack> {
  return start({ workers, providers, env: { [ALIMTALK_SECRET_ENV]: kakao.secretKey, [SMS_SECRET_ENV]: sms.secretKey, ...env } });
}

const fcmProvider = (extra: Record<string, unknown> = {}) => ({
  name: 'android',
  type: 'fcm',
  tps: 1000,
  baseUrl: fcm.url,
  serviceAccountFile: join(secretsDir, 'service-account.json'),
  ...extra,
});
const apnsProvider = (extra: Record<string, unknown> = {}) => ({
  name: 'ios',
  type: 'apns',
  tps: 1000,
  keyFile: join(secretsDir, 'AuthKey.p8'),
  keyId: apns.keyId,
  teamId: apns.teamId,
  topic: apns.topic,
  baseUrl: apns.url,
  caFile: apns.certFile,
  ...extra,
});
const alimtalkProvider = (extra: Record<string, unknown> = {}) => ({
  name: 'kakao',
  type: 'alimtalk',
  tps: 200,
  baseUrl: kakao.url,
  appKey: kakao.appKey,
  secretKeyEnv: ALIMTALK_SECRET_ENV,
  senderKey: kakao.senderKey,
  templateCode: 'WELCOME01',
  invalidRecipientCodes: [-3029],
  ...extra,
});

const smsProvider = (extra: Record<string, unknown> = {}) => ({
  name: 'sms',
  type: 'sms',
  tps: 200,
  baseUrl: sms.url,
  appKey: sms.appKey,
  secretKeyEnv: SMS_SECRET_ENV,
  sendNo: sms.sendNo,
  invalidRecipientCodes: [SMS_RECIPIENT_CODES.invalidNumber],
  ...extra,
});

async function recipientView(stack: Stack, campaignId: string, recipientId: string) {
  return (await stack.client.request('GET', `/api/campaigns/${campaignId}/recipients/${recipientId}`)).body;
}

describe('invalid tokens', () => {
  it('FCM and APNs tokens reported invalid are skipped by the next campaign until cleared; a new token is sent', async () => {
    const stack = await setup([fcmProvider(), apnsProvider()]);
    const { client } = stack;
    // 300 Android recipients: 20 unregistered, 10 malformed, 5 with a payload FCM refuses (not the token's fault).
    const android = Array.from({ length: 300 }, (_, i) => ({
      id: `a${i}`,
      token: i < 20 ? `unregistered-${i}` : i < 30 ? `malformed-${i}` : i < 35 ? `badpayload-${i}` : `device-${i}`,
    }));
    const ios = Array.from({ length: 100 }, (_, i) => ({ id: `i${i}`, token: i < 10 ? `gone${i}` : i < 15 ? `bad${i}` : `iphone${i}` }));
    const first = await launchCampaign(client, android, { provider: 'android' });
    const firstIos = await launchCampaign(client, ios, { provider: 'ios' });
    expect((await waitForStatus(client, first, 'completed')).counts).toMatchObject({ total: 300, sent: 265, failed: 35, skipped: 0 });
    expect((await waitForStatus(client, firstIos, 'completed')).counts).toMatchObject({ total: 100, sent: 85, failed: 15, skipped: 0 });
    expect(await recipientView(stack, first, 'a3')).toMatchObject({ state: 'failed', lastError: { code: 'UNREGISTERED' } });

    const listed = (await client.request('GET', '/api/suppressions/token-invalid:android?limit=1000')).body;
    expect(listed.size).toBe(30);
    expect(new Set(listed.ids)).toEqual(new Set(android.slice(0, 30).map((r) => r.token)));
    expect((await client.request('GET', '/api/suppressions/token-invalid:ios')).body.size).toBe(15);
    const lists = (await client.request('GET', '/api/suppressions')).body.items;
    expect(lists).toEqual(
      expect.arrayContaining([
        { name: 'token-invalid:android', size: 30 },
        { name: 'token-invalid:ios', size: 15 },
      ]),
    );

    // The next campaign: a0 has reinstalled the app (a new token); the other 29 dead tokens are skipped unsent.
    const sendsBefore = fcm.sends.length;
    const next = android.map((r) => (r.id === 'a0' ? { id: 'a0', token: 'device-fresh-a0' } : r));
    const second = await launchCampaign(client, next, { provider: 'android' });
    expect((await waitForStatus(client, second, 'completed')).counts).toMatchObject({
      total: 300,
      sent: 266,
      failed: 5,
      skipped: 29,
      skippedBy: { 'token-invalid': 29 },
    });
    const sentAgain = fcm.sends.slice(sendsBefore).map((s) => s.message.token);
    expect(sentAgain.filter((t) => t.startsWith('unregistered') || t.startsWith('malformed'))).toEqual([]);
    expect(sentAgain).toContain('device-fresh-a0');
    expect(await recipientView(stack, second, 'a3')).toMatchObject({ state: 'skipped', reason: 'token-invalid' });

    // APNs the same; and the operator clears one token and then the whole list.
    const removed = await client.request('POST', '/api/suppressions/token-invalid:ios/remove', { ids: ['gone0'] });
    expect(removed.body).toMatchObject({ removed: 1, size: 14 });
    const pushesBefore = apns.pushes.length;
    const secondIos = await launchCampaign(client, ios, { provider: 'ios' });
    expect((await waitForStatus(client, secondIos, 'completed')).counts).toMatchObject({ total: 100, sent: 85, failed: 1, skipped: 14 });
    expect(
      apns.pushes
        .slice(pushesBefore)
        .filter((p) => p.deviceToken.startsWith('gone') || p.deviceToken.startsWith('bad'))
        .map((p) => p.deviceToken),
    ).toEqual(['gone0']);

    expect((await client.request('DELETE', '/api/suppressions/token-invalid:android')).status).toBe(200);
    const third = await launchCampaign(client, android.slice(0, 30), { provider: 'android' });
    expect((await waitForStatus(client, third, 'completed')).counts).toMatchObject({ total: 30, failed: 30, skipped: 0 });
  });
});

describe('rate limits that are about one device', () => {
  it('retries a device APNs says gets too many pushes like a transient failure, without pausing or slowing the provider', async () => {
    const stack = await setup([apnsProvider({ retryBaseMs: 20, retryMaxMs: 50, maxAttempts: 3 })]);
    const recipients = Array.from({ length: 60 }, (_, i) => ({ id: `d${i}`, token: i === 0 ? 'toomany-0' : `iphone-d${i}` }));
    const id = await launchCampaign(stack.client, recipients, { provider: 'ios' });
    const done = await waitForStatus(stack.client, id, 'completed', 30_000);
    expect(done.counts).toMatchObject({ total: 60, sent: 59, failed: 1 });
    expect(await recipientView(stack, id, 'd0')).toMatchObject({ state: 'failed', attempts: 3, lastError: { code: 'TooManyRequests' } });
    const provider = (await stack.client.request('GET', '/api/providers/ios')).body;
    expect(provider).toMatchObject({ rate: 1, pausedUntil: null, breaker: 'closed' });
  });
});

describe('secrets', () => {
  it('are read by workers from files and env, never by the API, and never reach Redis', async () => {
    const stack = await setup([fcmProvider(), apnsProvider(), alimtalkProvider()], 1);
    const id = await launchCampaign(stack.client, [{ id: 'k1', phone: '01012345678', name: 'Kim' }], { provider: 'kakao' });
    expect((await waitForStatus(stack.client, id, 'completed')).counts).toMatchObject({ sent: 1 });
    const redis = testRedis();
    try {
      const keys = await redis.keys(`${stack.prefix}*`);
      expect(keys.length).toBeGreaterThan(0);
      const secrets = [kakao.secretKey, fcm.serviceAccount.private_key!.split('\n')[1]!, readFileSync(join(secretsDir, 'AuthKey.p8'), 'utf8').split('\n')[1]!];
      for (const key of keys) {
        const type = await redis.type(key);
        const dump =
          type === 'string'
            ? await redis.getBuffer(key)
            : type === 'hash'
              ? JSON.stringify(await redis.hgetall(key))
              : type === 'list'
                ? JSON.stringify(await redis.lrange(key, 0, -1))
                : type === 'set'
                  ? JSON.stringify(await redis.smembers(key))
                  : type === 'zset'
                    ? JSON.stringify(await redis.zrange(key, 0, -1))
                    : '';
        for (const secret of secrets) expect(String(dump).includes(secret), `${key} holds a secret`).toBe(false);
      }
    } finally {
      redis.disconnect();
    }
    const providers = (await stack.client.request('GET', '/api/providers')).body;
    expect(JSON.stringify(providers)).not.toContain(kakao.secretKey);

    // An API-only process needs none of them: no secret env, no key files on this machine.
    const { [ALIMTALK_SECRET_ENV]: _secret, ...withoutSecret } = stack.env;
    const missing = join(secretsDir, 'not-here');
    const bare = [fcmProvider({ serviceAccountFile: `${missing}.json` }), apnsProvider({ keyFile: `${missing}.p8` }), alimtalkProvider()];
    const api = await startApiProcess({ ...withoutSecret, PROVIDERS_FILE: providersFile(bare) });
    try {
      const names = (await new ApiClient(api.url, TEST_TOKEN).request('GET', '/api/providers')).body.items.map((p: { name: string }) => p.name);
      expect(names).toEqual(expect.arrayContaining(['android', 'ios', 'kakao']));
    } finally {
      await api.process.kill('SIGKILL');
    }
    // A worker without them refuses to start, naming what is missing.
    const worker = spawnPushq('worker', { ...withoutSecret, PROVIDERS_FILE: providersFile(bare) });
    const exit = await worker.exited;
    expect(exit.code).not.toBe(0);
    expect(worker.output).toMatch(/provider android/);
  });
});

describe('alimtalk batches', () => {
  it('carry several recipients per request while the limiter counts messages, as the provider does', async () => {
    const stack = await setup([alimtalkProvider({ tps: 200, batchSize: 50, countBy: 'message' })]);
    const requestsBefore = kakao.requests.length;
    const deliveriesBefore = kakao.deliveries.length;
    const recipients = Array.from({ length: 1200 }, (_, i) => ({
      id: `k${i}`,
      phone: i % 100 === 7 ? `0100000${i}` : `0105${String(i).padStart(7, '0')}`,
      name: `n${i}`,
    }));
    const started = Date.now();
    const id = await launchCampaign(stack.client, recipients, { provider: 'kakao' });
    const done = await waitForStatus(stack.client, id, 'completed');
    const elapsed = Date.now() - started;
    expect(done.counts).toMatchObject({ total: 1200, sent: 1188, failed: 12 });
    const requests = kakao.requests.slice(requestsBefore);
    // Batches, not one request per recipient: permits come a few at a time, so batches are partly full.
    expect(requests.length).toBeLessThanOrEqual(1200 / 5);
    expect(Math.max(...requests.map((r) => r.recipients))).toBeLessThanOrEqual(50);
    // The provider's measure: never more than 200 messages in a sliding second.
    expect(kakao.busiestSecond('message', requestsBefore)).toBeLessThanOrEqual(200);
    // 1,200 messages at 200/s cannot finish in much under 5 s (the first second's worth goes at once).
    expect(elapsed).toBeGreaterThanOrEqual(4500);
    const delivered = kakao.deliveries.slice(deliveriesBefore);
    expect(delivered).toHaveLength(1188);
    expect(new Set(delivered.map((d) => d.recipientGroupingKey)).size).toBe(1188);
    expect(delivered[0]!.templateParameter).toEqual({ name: expect.stringMatching(/^n\d+$/) });
    // The invalid numbers are on the list for next time.
    expect((await stack.client.request('GET', '/api/suppressions/token-invalid:kakao')).body.size).toBe(12);
  });

  it('SMS: an advertising campaign goes out as SMS or LMS by each rendered text, with the notices the law asks for, once each; an emoji refuses the launch (or fails its recipient under onRenderError skip), as does a dead number', async () => {
    const stack = await setup([smsProvider({ batchSize: 10, adSenderName: '푸시상점', optOutNumber: '080-123-4567' })]);
    const phone = (i: number) => `0105${String(i).padStart(7, '0')}`;
    const recipients = [
      ...Array.from({ length: 20 }, (_, i) => ({ id: `s${i}`, phone: phone(i), note: '가을 세일 쿠폰이 도착했어요', nightAdConsent: true })),
      ...Array.from({ length: 10 }, (_, i) => ({
        id: `l${i}`,
        phone: phone(100 + i),
        note: `${'오늘 하루 전 품목 30% 할인, '.repeat(4)}${i}`,
        nightAdConsent: true,
      })),
      { id: 'emoji', phone: phone(200), note: '세일 🎉', nightAdConsent: true },
      { id: 'dead', phone: '01000000099', note: '가을 세일', nightAdConsent: true },
      { id: 'nophone', note: '가을 세일', nightAdConsent: true },
    ];
    const before = sms.deliveries.length;
    const campaign = { provider: 'sms', kind: 'advertising', message: { title: '가을 세일', body: '{{ note }}', data: {} } };
    // The launch's dry run finds the emoji first: the whole launch is refused, naming it, and nothing is sent.
    const refused = await createCampaign(stack.client, recipients, campaign);
    const answer = await stack.client.request('POST', `/api/campaigns/${refused}/launch`);
    expect(answer.status).toBe(422);
    expect(answer.body.error).toMatchObject({ code: 'RENDER_FAILED', message: expect.stringContaining('"🎉" (U+1F389)') });
    expect(sms.deliveries.length).toBe(before);
    // Told to skip what does not render, it sends the rest; the emoji rendered, and the provider refuses it (failed, named).
    const id = await launchCampaign(stack.client, recipients, { ...campaign, onRenderError: 'skip' });
    const done = await waitForStatus(stack.client, id, 'completed');
    expect(done.counts).toMatchObject({ total: 33, sent: 30, failed: 3, skipped: 0, unknown: 0 });
    const delivered = sms.deliveries.slice(before);
    expect(delivered).toHaveLength(30);
    expect(new Set(delivered.map((d) => d.recipientGroupingKey)).size).toBe(30);
    expect(delivered.filter((d) => d.type === 'SMS')).toHaveLength(20);
    expect(delivered.filter((d) => d.type === 'LMS').every((d) => d.title === '가을 세일')).toBe(true);
    for (const d of delivered) {
      expect(d.ad).toBe(true);
      expect(d.body.startsWith('(광고)푸시상점\n')).toBe(true);
      expect(d.body.endsWith('\n무료수신거부 080-123-4567')).toBe(true);
    }
    expect(await recipientView(stack, id, 'emoji')).toMatchObject({ state: 'failed', lastError: { code: 'SMS_UNENCODABLE' } });
    expect(await recipientView(stack, id, 'nophone')).toMatchObject({ state: 'failed', lastError: { code: 'NO_PHONE' } });
    expect(await recipientView(stack, id, 'dead')).toMatchObject({ state: 'failed', lastError: { code: `SMS_${SMS_RECIPIENT_CODES.invalidNumber}` } });
    expect((await stack.client.request('GET', '/api/suppressions/token-invalid:sms')).body.size).toBe(1);
  });

  it('go out full when the limiter counts requests', async () => {
    const stack = await setup([alimtalkProvider({ name: 'kakao-bulk', tps: 4, batchSize: 50, countBy: 'request' })]);
    const requestsBefore = kakao.requests.length;
    const recipients = Array.from({ length: 600 }, (_, i) => ({ id: `b${i}`, phone: `0106${String(i).padStart(7, '0')}` }));
    const started = Date.now();
    const id = await launchCampaign(stack.client, recipients, { provider: 'kakao-bulk' });
    expect((await waitForStatus(stack.client, id, 'completed')).counts).toMatchObject({ total: 600, sent: 600 });
    const requests = kakao.requests.slice(requestsBefore);
    // 600 recipients in 12 requests of 50 (a page boundary could split one).
    expect(requests.length).toBeLessThanOrEqual(13);
    expect(requests.reduce((n, r) => n + r.recipients, 0)).toBe(600);
    expect(kakao.busiestSecond('request', requestsBefore)).toBeLessThanOrEqual(4);
    // 12 requests at 4 per second: the last cannot leave before 2 s.
    expect(Date.now() - started).toBeGreaterThanOrEqual(2000);
  });
});

describe('logs', () => {
  it('never write the device token or phone number, in whatever recipient field the provider reads them from', async () => {
    const stack = await setup([fcmProvider({ tokenField: 'fcmRegistration' }), alimtalkProvider({ phoneField: 'hp' })], 1, { LOG_LEVEL: 'debug' });
    const android = await launchCampaign(stack.client, [{ id: 'a1', fcmRegistration: 'unregistered-secret-device-token-4711' }], { provider: 'android' });
    const kakaoId = await launchCampaign(stack.client, [{ id: 'k1', hp: '01011119876' }, { id: 'k2' }], { provider: 'kakao' });
    await waitForStatus(stack.client, android, 'completed');
    await waitForStatus(stack.client, kakaoId, 'completed');
    const out = stack.workers[0]!.output;
    expect(out).toMatch(/provider did not accept a send/);
    expect(out).toMatch(/"fcmRegistration":"\[redacted\]"/);
    expect(out).not.toContain('unregistered-secret-device-token-4711');
    expect(out).not.toContain('01011119876');
    expect(out).toMatch(/"hp":"\[redacted\]"/);
  });
});

describe('preview', () => {
  it('renders one recipient and shows the exact request each configured provider would make, no secret in it', async () => {
    const stack = await setup([fcmProvider(), apnsProvider(), alimtalkProvider()], 1);
    const message = {
      title: '{{ name }}님',
      body: 'Order {{ order }} shipped',
      data: { templateCode: 'SHIP01', templateParameter: { name: '{{ name }}', order: '{{ order }}' }, link: '/o/{{ order }}' },
      locales: { en: { title: 'Hi {{ name }}' } },
    };
    const recipients = [{ id: 'u1', name: '민수', order: 'A-1', token: 'tok-1', phone: '01012345678' }];
    const created = await stack.client.request('POST', '/api/campaigns', { name: 'ship', provider: 'android', message, recipients });
    const id = created.body.id as string;
    const res = await stack.client.request('POST', `/api/campaigns/${id}/preview`, { recipientId: 'u1' });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ rendered: true, locale: null, message: { title: '민수님', body: 'Order A-1 shipped' } });
    expect(res.body.request.url).toMatch(/\/v1\/projects\/[^/]+\/messages:send$/);
    expect(res.body.request.body).toEqual({
      message: {
        token: 'tok-1',
        notification: { title: '민수님', body: 'Order A-1 shipped' },
        data: { templateCode: 'SHIP01', templateParameter: '{"name":"민수","order":"A-1"}', link: '/o/A-1' },
      },
    });
    const { ios, kakao: talk } = res.body.requests;
    expect(ios).toMatchObject({ type: 'apns', method: 'POST', headers: { authorization: 'bearer [redacted]', 'apns-topic': apns.topic } });
    expect(ios.url).toMatch(/\/3\/device\/tok-1$/);
    expect(ios.body).toMatchObject({ aps: { alert: { title: '민수님', body: 'Order A-1 shipped' } }, link: '/o/A-1' });
    expect(talk).toMatchObject({
      type: 'alimtalk',
      headers: { 'x-secret-key': '[redacted]' },
      body: { templateCode: 'SHIP01', recipientList: [{ recipientNo: '01012345678', templateParameter: { name: '민수', order: 'A-1' } }] },
    });
    expect(JSON.stringify(res.body)).not.toContain(kakao.secretKey);
    // A record typed in, in a locale; one that does not render says why.
    const typed = await stack.client.request('POST', `/api/campaigns/${id}/preview`, { recipient: { id: 'x', name: 'Sam', order: 'B', locale: 'en-US' } });
    expect(typed.body).toMatchObject({ rendered: true, locale: 'en', message: { title: 'Hi Sam' } });
    const missing = await stack.client.request('POST', `/api/campaigns/${id}/preview`, { recipient: { id: 'y', name: 'Sam' } });
    expect(missing.body).toMatchObject({ rendered: false, variable: 'order', error: 'missing variable: order' });
    expect((await stack.client.request('POST', `/api/campaigns/${id}/preview`, { recipientId: 'nobody' })).status).toBe(404);
    expect((await stack.client.request('POST', `/api/campaigns/${id}/preview`, {})).status).toBe(422);
    // What the preview showed is what FCM gets.
    const before = fcm.sends.length;
    await stack.client.launch(id);
    await waitForStatus(stack.client, id, 'completed');
    expect(fcm.sends.slice(before).map((s) => s.message)).toEqual([res.body.request.body.message]);
  });
});
