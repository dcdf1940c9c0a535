import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeAlimtalk, type FakeAlimtalk } from '../helpers/fakes/fake-alimtalk.js';
import { startFakeSms, type FakeSms } from '../helpers/fakes/fake-sms.js';
import type { PushqProcess } from '../helpers/processes.js';
import { createCampaign, launchCampaign, stacksPerTest, waitForStatus, type Stack } from '../helpers/stack.js';
import { onCleanup } from '../helpers/cleanup.js';
import { TEST_TOKEN } from '../helpers/fixtures.js';

/**
 * Channel fallback end to end (domain/fallback.ts): alimtalk first, SMS for
 * whoever alimtalk could not reach — real API and worker processes with
 * default settings, the NHN-style alimtalk and SMS servers on loopback. The
 * guarantee under test: a recipient gets the message on one channel at
 * most, whatever answers are lost and whichever workers are SIGKILLed.
 */
const ALIMTALK_SECRET_ENV = 'PUSHQ_E2E_ALIMTALK_SECRET';
const SMS_SECRET_ENV = 'PUSHQ_E2E_SMS_SECRET';
let kakao: FakeAlimtalk;
let sms: FakeSms;
const start = stacksPerTest();

beforeAll(async () => {
  [kakao, sms] = await Promise.all([startFakeAlimtalk(), startFakeSms()]);
});
afterAll(async () => {
  await Promise.all([kakao.close(), sms.close()]);
});

const HOOK_SIGNATURE = 'nhn-console-signature-e2e';
const HOOK_SIGNATURE_ENV = 'PUSHQ_E2E_ALIMTALK_HOOK_SIGNATURE';

function setup(workers: number, kakaoTps = 200, kakaoExtra: Record<string, unknown> = {}): Promise<Stack> {
  return start({
    workers,
    providers: [
      {
        name: 'kakao',
        type: 'alimtalk',
        tps: kakaoTps,
        baseUrl: kakao.url,
        appKey: kakao.appKey,
        secretKeyEnv: ALIMTALK_SECRET_ENV,
        senderKey: kakao.senderKey,
        templateCode: 'WELCOME01',
        batchSize: 10,
        receipts: { secretEnv: HOOK_SIGNATURE_ENV },
        ...kakaoExtra,
      },
      { name: 'sms', type: 'sms', tps: 200, baseUrl: sms.url, appKey: sms.appKey, secretKeyEnv: SMS_SECRET_ENV, sendNo: sms.sendNo, batchSize: 10 },
    ],
    env: { [ALIMTALK_SECRET_ENV]: kakao.secretKey, [SMS_SECRET_ENV]: sms.secretKey, [HOOK_SIGNATURE_ENV]: HOOK_SIGNATURE },
  });
}

const LONG_NOTE = '주문하신 상품이 오늘 출발했습니다. 배송 조회는 앱의 주문 내역에서 하실 수 있습니다. 감사합니다.';

/**
 * `size` recipients from `from`: 20 % not KakaoTalk users (the fake answers
 * -3024 for 0101111…), 5 % without a phone, the rest on KakaoTalk; half
 * with a note that fits an SMS, half one that needs an LMS.
 */
function audience(from: number, size: number) {
  return Array.from({ length: size }, (_, k) => {
    const i = from + k;
    const kind = k % 20 < 4 ? 'sms' : k % 20 === 4 ? 'none' : 'kakao';
    const phone = kind === 'sms' ? `0101111${String(i).padStart(4, '0')}` : kind === 'kakao' ? `0105${String(i).padStart(7, '0')}` : undefined;
    return { id: `f${i}`, kind, ...(phone ? { phone } : {}), note: i % 2 === 0 ? `주문 ${i} 접수` : `${LONG_NOTE} (${i})` };
  });
}

const fallbackToSms = (extra: Record<string, unknown> = {}) => ({
  provider: 'kakao',
  fallback: [{ provider: 'sms', message: { title: '주문 알림', body: '{{ note }}' }, ...extra }],
});

/** Deliveries per phone number on both channels since the marks. */
function deliveriesSince(kakaoFrom: number, smsFrom: number) {
  const byPhone = new Map<string, { kakao: number; sms: number }>();
  const of = (phone: string) => byPhone.get(phone) ?? byPhone.set(phone, { kakao: 0, sms: 0 }).get(phone)!;
  for (const d of kakao.deliveries.slice(kakaoFrom)) of(d.recipientNo).kakao += 1;
  for (const d of sms.deliveries.slice(smsFrom)) of(d.recipientNo).sms += 1;
  return byPhone;
}

describe('channel fallback', () => {
  it('sends exactly the non-KakaoTalk 20 % as SMS or LMS by length, once each; an alimtalk answer lost on the way never falls back', async () => {
    const stack = await setup(2);
    const recipients = audience(0, 1000);
    const [kakaoFrom, smsFrom] = [kakao.deliveries.length, sms.deliveries.length];
    // Two alimtalk requests are processed and their answers lost: those recipients are unknown, and stay so.
    kakao.cutAfterProcessing = 2;
    const id = await launchCampaign(stack.client, recipients, fallbackToSms());
    const done = await waitForStatus(stack.client, id, 'completed');

    // The cut answers: recipients (up to 20, two batches) alimtalk may have reached are unknown, and none of them fell back.
    const failures = (await stack.client.request('GET', `/api/campaigns/${id}/failures?limit=100`)).body.items as Array<{ recipientId: string; state: string }>;
    const unknownIds = new Set(failures.filter((f) => f.state === 'unknown').map((f) => f.recipientId));
    const unknown = done.counts.unknown as number;
    expect(unknownIds.size).toBe(unknown);
    expect(unknown).toBeGreaterThan(0);
    expect(unknown).toBeLessThanOrEqual(20);
    const smsSent = sms.deliveries.slice(smsFrom);
    const expectedSms = recipients.filter((r) => r.kind === 'sms' && !unknownIds.has(r.id));
    expect(smsSent.map((d) => d.recipientNo).sort()).toEqual(expectedSms.map((r) => r.phone).sort());
    for (const d of smsSent) {
      const r = expectedSms.find((x) => x.phone === d.recipientNo)!;
      expect(d.body).toBe(r.note);
      expect(d.type).toBe(r.note === LONG_NOTE || r.note.startsWith(LONG_NOTE) ? 'LMS' : 'SMS');
    }
    expect(new Set(smsSent.map((d) => d.type))).toEqual(new Set(['SMS', 'LMS']));
    for (const [phone, got] of deliveriesSince(kakaoFrom, smsFrom)) expect({ phone, total: got.kakao + got.sms }).toEqual({ phone, total: 1 });

    // Of the unknown, those on KakaoTalk got their alimtalk (the fake processed it); the others got nothing, as nobody could know.
    const lostSms = recipients.filter((r) => r.kind === 'sms' && unknownIds.has(r.id)).length;
    const lostNone = recipients.filter((r) => r.kind === 'none' && unknownIds.has(r.id)).length;
    expect(lostNone).toBe(0);
    expect(done.counts).toMatchObject({ total: 1000, sent: 950 - unknown, failed: 50, skipped: 0 });
    expect(done.counts.byLeg).toEqual([
      { leg: 0, entered: 1000, sent: 750 - (unknown - lostSms), movedOn: 250 - lostSms },
      { leg: 1, entered: 250 - lostSms, sent: 200 - lostSms, movedOn: 0 },
    ]);

    const view = async (r: { id: string }) => (await stack.client.request('GET', `/api/campaigns/${id}/recipients/${r.id}`)).body;
    const settled = recipients.filter((r) => !unknownIds.has(r.id));
    expect(await view(settled.find((r) => r.kind === 'sms')!)).toMatchObject({
      state: 'sent',
      legs: [
        { leg: 0, provider: 'kakao', left: 'failed' },
        { leg: 1, provider: 'sms', state: 'sent' },
      ],
    });
    expect(await view(settled.find((r) => r.kind === 'none')!)).toMatchObject({
      state: 'failed',
      lastError: { code: 'NO_PHONE' },
      legs: [
        { leg: 0, provider: 'kakao', left: 'no-token' },
        { leg: 1, provider: 'sms', state: 'failed' },
      ],
    });
    expect(await view(settled.find((r) => r.kind === 'kakao')!)).toMatchObject({ state: 'sent', legs: [{ leg: 0, provider: 'kakao', state: 'sent' }] });
    expect(await view({ id: [...unknownIds][0]! })).toMatchObject({ state: 'unknown', legs: [{ leg: 0, provider: 'kakao', state: 'unknown' }] });

    // The results export names the channel each recipient ended on.
    const lines = (
      await (await fetch(`${stack.client.baseUrl}/api/campaigns/${id}/runs/main/results`, { headers: { authorization: `Bearer ${TEST_TOKEN}` } })).text()
    )
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { id?: string; state?: string; provider?: string });
    const rows = new Map(lines.filter((l) => l.id).map((l) => [l.id!, l]));
    expect(rows.size).toBe(1000);
    for (const r of settled) {
      expect(rows.get(r.id)).toMatchObject({ provider: r.kind === 'kakao' ? 'kakao' : 'sms', state: r.kind === 'none' ? 'failed' : 'sent' });
    }
  });

  it('stops a fallback leg at exactly its maxMessages; the rest are skipped, reason fallback-budget; a leg message its provider cannot carry refuses the launch', async () => {
    const stack = await setup(2);
    // An emoji in the SMS leg's text: the launch's dry run checks every leg on its own provider, and names the leg.
    const emoji = await createCampaign(stack.client, audience(3000, 20), {
      provider: 'kakao',
      fallback: [{ provider: 'sms', message: { title: '주문 알림', body: '{{ note }} 🎉' } }],
    });
    const refused = await stack.client.request('POST', `/api/campaigns/${emoji}/launch`);
    expect(refused.status).toBe(422);
    expect(refused.body.error).toMatchObject({ code: 'RENDER_FAILED', message: expect.stringContaining('fallback leg 1 (sms)') });
    const dry = await stack.client.request('POST', `/api/campaigns/${emoji}/dry-run`);
    expect(dry.body).toMatchObject({ ok: true, fallback: [{ leg: 1, provider: 'sms', ok: false, failed: 20 }] });

    // A frequency cap of one message a day counts a person once across legs: the SMS is the same message, not a second.
    const capped = audience(2500, 20).filter((r) => r.kind === 'sms');
    const cappedFrom = sms.deliveries.length;
    const cappedId = await launchCampaign(stack.client, capped, { ...fallbackToSms(), frequencyCap: { max: 1, per: '24h' } });
    expect((await waitForStatus(stack.client, cappedId, 'completed')).counts).toMatchObject({ total: 4, sent: 4, skipped: 0 });
    expect(sms.deliveries.length - cappedFrom).toBe(4);

    const recipients = audience(2000, 200).filter((r) => r.kind === 'sms');
    const smsFrom = sms.deliveries.length;
    const id = await launchCampaign(stack.client, recipients, fallbackToSms({ maxMessages: 17 }));
    const done = await waitForStatus(stack.client, id, 'completed');
    expect(sms.deliveries.length - smsFrom).toBe(17);
    expect(done.counts).toMatchObject({ total: 40, sent: 17, skipped: 23, skippedBy: { 'fallback-budget': 23 } });
    expect(done.counts.byLeg[1]).toMatchObject({ entered: 40, sent: 17, messages: 17 });
  });

  it('retry-failed retries each failed recipient on the leg it failed on, never on the first channel again', async () => {
    const stack = await setup(2);
    // 0100000…: a dead number on both channels (alimtalk -3029, SMS -3001): failed on the SMS leg.
    const recipients = [
      ...audience(7000, 20).filter((r) => r.kind !== 'none'),
      ...Array.from({ length: 5 }, (_, i) => ({ id: `dead${i}`, phone: `0100000${String(i).padStart(4, '0')}`, note: '안내' })),
    ];
    const id = await launchCampaign(stack.client, recipients, fallbackToSms());
    const first = await waitForStatus(stack.client, id, 'completed');
    expect(first.counts).toMatchObject({ total: 24, sent: 19, failed: 5 });
    const [kakaoRequests, smsRequests] = [kakao.requests.length, sms.requests.length];
    const retry = await stack.client.request('POST', `/api/campaigns/${id}/retry-failed`);
    expect(retry.status).toBe(200);
    const again = await waitForStatus(stack.client, id, 'completed');
    expect(again.counts).toMatchObject({ total: 5, failed: 5 });
    expect(again.counts.byLeg).toEqual([
      { leg: 0, entered: 0, sent: 0, movedOn: 0 },
      { leg: 1, entered: 5, sent: 0, movedOn: 0 },
    ]);
    expect(kakao.requests.length).toBe(kakaoRequests);
    expect(sms.requests.length).toBeGreaterThan(smsRequests);
    expect((await stack.client.request('GET', `/api/campaigns/${id}/recipients/dead0`)).body).toMatchObject({
      state: 'failed',
      legs: [
        { leg: 0, provider: 'kakao', left: 'failed' },
        { leg: 1, provider: 'sms', state: 'failed' },
      ],
    });
  });

  it("with the alimtalk provider's nativeFallback, NHN re-sends the SMS leg's text itself (SMS or LMS), pushq sends none, and NHN's hooks put the re-sent on the SMS leg", async () => {
    const stack = await setup(2, 200, { nativeFallback: true, resendSendNo: '15880000' });
    const recipients = audience(9000, 100);
    const [smsFrom, resendsFrom, hooksFrom] = [sms.deliveries.length, kakao.resends.length, kakao.hooks.length];
    const id = await launchCampaign(stack.client, recipients, fallbackToSms());
    const done = await waitForStatus(stack.client, id, 'completed');
    // Accepted with the re-send: sent on leg 0; the 5 without a phone fail on both legs (nothing to send to).
    expect(done.counts).toMatchObject({ total: 100, sent: 95, failed: 5 });
    expect(sms.deliveries.length).toBe(smsFrom);
    const resends = kakao.resends.slice(resendsFrom);
    const notKakao = recipients.filter((r) => r.kind === 'sms');
    expect(resends.map((r) => r.recipientNo).sort()).toEqual(notKakao.map((r) => r.phone).sort());
    for (const r of resends) {
      const note = notKakao.find((x) => x.phone === r.recipientNo)!.note;
      expect(r).toMatchObject({ content: note, sendNo: '15880000', type: note.startsWith(LONG_NOTE) ? 'LMS' : 'SMS' });
      if (r.type === 'LMS') expect(r.title).toBe('주문 알림');
    }

    // NHN's MESSAGE_RESULT_UPDATE hooks: delivered by alimtalk, or re-sent as SMS (RSC04).
    const hooks = kakao.hooks.slice(hooksFrom);
    const posted = await fetch(`${stack.client.baseUrl}/api/receipts/kakao`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-toast-webhook-signature': HOOK_SIGNATURE },
      body: JSON.stringify({ event: 'MESSAGE_RESULT_UPDATE', hooks }),
    });
    expect(posted.status).toBe(200);
    const after = (await stack.client.request('GET', `/api/campaigns/${id}`)).body;
    expect(after.counts).toMatchObject({ sent: 95, delivered: 95, failed: 5 });
    expect(after.counts.byLeg).toEqual([
      { leg: 0, entered: 100, sent: 75, movedOn: 25 },
      { leg: 1, entered: 25, sent: 20, movedOn: 0 },
    ]);
    const resent = (await stack.client.request('GET', `/api/campaigns/${id}/recipients/${notKakao[0]!.id}`)).body;
    expect(resent).toMatchObject({
      state: 'sent',
      delivery: 'delivered',
      legs: [
        { leg: 0, provider: 'kakao', left: 'failed' },
        { leg: 1, provider: 'sms', state: 'sent' },
      ],
    });
    // The same hooks again change nothing.
    const again = await fetch(`${stack.client.baseUrl}/api/receipts/kakao`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-toast-webhook-signature': HOOK_SIGNATURE },
      body: JSON.stringify({ event: 'MESSAGE_RESULT_UPDATE', hooks }),
    });
    expect(((await again.json()) as { results: Array<{ outcome: string }> }).results.every((r) => r.outcome === 'already')).toBe(true);
    expect((await stack.client.request('GET', `/api/campaigns/${id}`)).body.counts.byLeg[1]).toMatchObject({ entered: 25, sent: 20 });
  });

  it('with workers SIGKILLed throughout the run, no recipient gets both an alimtalk and an SMS, and the run completes', async () => {
    // 50 alimtalk requests a second (500 recipients): the run lasts well beyond four kills 1.5 s apart plus replacements' start-up.
    const stack = await setup(2, 50);
    const recipients = audience(5000, 1000);
    const [kakaoFrom, smsFrom] = [kakao.deliveries.length, sms.deliveries.length];
    const id = await launchCampaign(stack.client, recipients, fallbackToSms());
    // Kill the oldest worker about every 1.5 s while the run sends (at least 4 times), replacing it at once.
    let kills = 0;
    let last = Date.now();
    const replacements: Array<Promise<PushqProcess>> = [];
    const timer = setInterval(() => {
      if (kills >= 6 || Date.now() - last < 1500 || stack.workers.length < 2) return;
      last = Date.now();
      kills += 1;
      void stack.workers.shift()!.kill('SIGKILL');
      replacements.push(stack.addWorker());
    }, 100);
    onCleanup(() => clearInterval(timer));
    const done = await waitForStatus(stack.client, id, 'completed', 150_000);
    clearInterval(timer);
    await Promise.allSettled(replacements);
    expect(kills).toBeGreaterThanOrEqual(4);

    const both = [...deliveriesSince(kakaoFrom, smsFrom)].filter(([, got]) => got.kakao + got.sms > 1);
    expect(both).toEqual([]);
    // Every SMS went to someone alimtalk could not reach, and most of them got one.
    const smsPhones = new Set(recipients.filter((r) => r.kind === 'sms').map((r) => r.phone));
    const smsSent = sms.deliveries.slice(smsFrom);
    expect(smsSent.every((d) => smsPhones.has(d.recipientNo))).toBe(true);
    expect(smsSent.length).toBeGreaterThan(150);
    expect(done.counts.total).toBe(1000);
    expect(done.counts.pending).toBe(0);
  });
});
