import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { ApiClient } from '../helpers/api-client.js';
import { onCleanup, testPrefix } from '../helpers/cleanup.js';
import { startFakeAlimtalk } from '../helpers/fakes/fake-alimtalk.js';
import { providersFile, TEST_TOKEN } from '../helpers/fixtures.js';
import { startInProcess } from '../helpers/in-process.js';
import { startMockProvider, type MockProviderOptions } from '../helpers/mock-provider.js';
import { deletePrefix, testRedis } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';
import { newWebhookSecret, startWebhookReceiver, webhooksFile } from '../helpers/webhook-receiver.js';
import { acquireOptions, confirmPolicy, ids, redisHarness } from '../helpers/harness.js';

/**
 * Receipts in: a provider's later word that a message was delivered (or
 * not), recorded in the ledger as one more atomic step with its counts and
 * its event. Repeated and out-of-order receipts leave one delivered; an
 * unknown id answers 404 and changes nothing; a bad signature 401.
 */
function secretFile(secret: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'pushq-receipts-')), 'secret');
  writeFileSync(file, secret);
  return file;
}

async function pushq(options: { mock?: MockProviderOptions; alimtalk?: boolean } = {}) {
  const prefix = testPrefix('rcpt');
  const redis = testRedis();
  onCleanup(async () => {
    await deletePrefix(redis, prefix);
    redis.disconnect();
  });
  const mock = await startMockProvider(options.mock ?? {});
  onCleanup(() => mock.close());
  const kakao = options.alimtalk ? await startFakeAlimtalk() : null;
  if (kakao) onCleanup(() => kakao.close());
  const receiptSecret = newWebhookSecret();
  const signature = 'nhn-console-signature-0123';
  const hooks = await startWebhookReceiver();
  onCleanup(() => hooks.close());
  const providers: Array<Record<string, unknown>> = [
    {
      name: 'mock',
      type: 'http',
      url: mock.url,
      tps: 2000,
      timeoutMs: 1000,
      retryBaseMs: 10,
      retryMaxMs: 20,
      receipts: { secretFile: secretFile(receiptSecret) },
    },
  ];
  if (kakao) {
    providers.push({
      name: 'kakao',
      type: 'alimtalk',
      tps: 200,
      baseUrl: kakao.url,
      appKey: kakao.appKey,
      secretKeyFile: secretFile(kakao.secretKey),
      senderKey: kakao.senderKey,
      templateCode: 'WELCOME01',
      receipts: { secretFile: secretFile(signature) },
    });
  }
  const running = await startInProcess(prefix, {
    PROVIDERS_FILE: providersFile(providers),
    WEBHOOKS_FILE: webhooksFile([{ name: 'crm', url: hooks.url, secret: hooks.secret, events: ['recipient.delivered', 'recipient.undelivered'] }]),
  });
  onCleanup(() => running.stop());
  const client = new ApiClient(running.url!, TEST_TOKEN);
  const signer = new Webhook(receiptSecret);
  /** POSTs a receipt body as the provider would, signed (or with `headers` of the caller's own). */
  const post = async (provider: string, body: unknown, headers?: Record<string, string>) => {
    const text = JSON.stringify(body);
    const id = `msg_${Math.random().toString(36).slice(2)}`;
    const now = new Date();
    const signed = headers ?? {
      'webhook-id': id,
      'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
      'webhook-signature': signer.sign(id, now, text),
    };
    const res = await fetch(`${running.url}/api/receipts/${provider}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...signed },
      body: text,
    });
    return { status: res.status, body: (await res.json()) as Record<string, any> };
  };
  return { client, mock, kakao, hooks, post, signature, url: running.url! };
}

async function sentCampaign(client: ApiClient, recipients: unknown[], provider = 'mock'): Promise<string> {
  const res = await client.request('POST', '/api/campaigns', { name: 'r', provider, message: { title: 't', body: 'b' }, recipients });
  expect(res.status).toBe(201);
  const id = res.body.id as string;
  await client.launch(id);
  await waitFor(async () => (await client.campaign(id)).status === 'completed', { what: 'the run to complete' });
  return id;
}

describe('receipts', () => {
  it('record delivered once however often and in whatever order they come, with counts and events; an unknown id is 404, a bad signature 401', async () => {
    const { client, mock, hooks, post } = await pushq();
    const id = await sentCampaign(client, ['a', 'b', 'c', 'd']);
    const keyOf = (r: string) => mock.bodies.find((b) => b.recipient.id === r)!.idempotencyKey;
    // Keys of runs made since receipts exist name the run and the recipient; they differ across recipients.
    expect(new Set(['a', 'b', 'c', 'd'].map(keyOf)).size).toBe(4);

    // Duplicated: a delivered receipt three times.
    for (let i = 0; i < 3; i += 1) expect((await post('mock', { idempotencyKey: keyOf('a'), status: 'delivered' })).status).toBe(200);
    // Out of order: undelivered, then delivered (a late success), then undelivered again (stale).
    expect((await post('mock', { idempotencyKey: keyOf('b'), status: 'undelivered', at: '2026-12-05T10:00:00Z' })).body).toMatchObject({ outcome: 'applied' });
    expect((await post('mock', [{ idempotencyKey: keyOf('b'), status: 'delivered' }])).body.results).toEqual([{ key: keyOf('b'), outcome: 'applied' }]);
    expect((await post('mock', { idempotencyKey: keyOf('b'), status: 'undelivered' })).body).toMatchObject({ outcome: 'already' });
    // One that stays undelivered.
    expect((await post('mock', { receipts: [{ idempotencyKey: keyOf('c'), status: 'undelivered' }] })).status).toBe(200);

    const before = (await client.campaign(id)).counts;
    expect(before).toMatchObject({ total: 4, sent: 4, delivered: 2, undelivered: 1 });
    // Unknown ids, forged keys and keys of another provider change nothing: 404.
    const forged = keyOf('d').replace(/.$/, (c) => (c === '0' ? '1' : '0'));
    expect((await post('mock', { idempotencyKey: forged, status: 'delivered' })).status).toBe(404);
    expect((await post('mock', { idempotencyKey: '00000000-0000-8000-8000-000000000000', status: 'delivered' })).status).toBe(404);
    expect((await post('mock', { messageId: 'never-sent', status: 'delivered' })).status).toBe(404);
    // Bad or missing signatures: 401, nothing read.
    expect(
      (await post('mock', { idempotencyKey: keyOf('d'), status: 'delivered' }, { 'webhook-id': 'x', 'webhook-timestamp': '1', 'webhook-signature': 'v1,AAAA' }))
        .status,
    ).toBe(401);
    expect((await post('mock', { idempotencyKey: keyOf('d'), status: 'delivered' }, {})).status).toBe(401);
    expect((await post('nope', { idempotencyKey: keyOf('d'), status: 'delivered' })).status).toBe(404);
    expect((await post('mock', { status: 'delivered' })).status).toBe(422);
    expect((await client.campaign(id)).counts).toEqual(before);

    // The ledger entry and the results export say so; the events went out, one per recipient.
    expect((await client.request('GET', `/api/campaigns/${id}/recipients/a`)).body).toMatchObject({ state: 'sent', delivery: 'delivered' });
    expect((await client.request('GET', `/api/campaigns/${id}/recipients/c`)).body).toMatchObject({ state: 'sent', delivery: 'undelivered' });
    expect((await client.request('GET', `/api/campaigns/${id}/recipients/d`)).body).not.toHaveProperty('delivery');
    const csv = String((await client.request('GET', `/api/campaigns/${id}/runs/main/results?format=csv`)).body);
    expect(csv.split('\n')[0]).toMatch(/,delivery,provider$/);
    await waitFor(() => hooks.recipientEvents(id).length === 4, { what: 'the delivery events' });
    expect(hooks.recipientEvents(id).sort()).toEqual([
      'recipient.delivered|main|a',
      'recipient.delivered|main|b',
      'recipient.undelivered|main|b',
      'recipient.undelivered|main|c',
    ]);
    const delivered = hooks.accepted.find((d) => d.type === 'recipient.delivered' && d.data.recipients![0]!.id === 'a')!;
    expect(delivered.data.recipients![0]).toMatchObject({ deliveredAt: expect.stringMatching(/^\d{4}-/) });
  });

  it('find a message by the provider’s own id, and settle an unknown recipient the provider says it delivered', async () => {
    const { client, post, mock } = await pushq({
      mock: {
        // The provider names its messages; `slow` never answers in time (the worker cannot know: unknown).
        respond: (body) =>
          body.recipient.id === 'slow' ? { status: 200, delayMs: 3000 } : { status: 200, body: JSON.stringify({ messageId: `m-${body.recipient.id}` }) },
      },
    });
    const res = await client.request('POST', '/api/campaigns', {
      name: 'r',
      provider: 'mock',
      message: { title: 't', body: 'b' },
      recipients: ['x', 'slow'],
      maxAttempts: 1,
    });
    const id = res.body.id as string;
    await client.launch(id);
    await waitFor(async () => (await client.campaign(id)).status === 'completed', { what: 'the run to complete', timeoutMs: 30_000 });
    expect((await post('mock', { messageId: 'm-x', status: 'delivered' })).body).toMatchObject({ messageId: 'm-x', outcome: 'applied' });
    expect((await client.request('GET', `/api/campaigns/${id}/recipients/x`)).body).toMatchObject({ delivery: 'delivered' });
    expect((await client.campaign(id)).counts).toMatchObject({ sent: 1, unknown: 1 });
    expect((await client.request('GET', `/api/campaigns/${id}/failures`)).body.items.map((f: { recipientId: string }) => f.recipientId)).toEqual(['slow']);
    // The provider did have `slow`: its receipt says delivered. Sent now, and no longer among the failures.
    const slowKey = mock.bodies.find((b) => b.recipient.id === 'slow')!.idempotencyKey;
    expect((await post('mock', { idempotencyKey: slowKey, status: 'delivered' })).body).toMatchObject({ outcome: 'applied' });
    expect((await client.campaign(id)).counts).toMatchObject({ sent: 2, unknown: 0, delivered: 2 });
    expect((await client.request('GET', `/api/campaigns/${id}/failures`)).body.items).toEqual([]);
  }, 60_000);

  it('apply a receipt that comes before the worker recorded the send', async () => {
    let signer: ((key: string) => Promise<unknown>) | null = null;
    const { client, post } = await pushq({
      mock: {
        // The provider reports delivery before it answers the send itself.
        respond: (body) => {
          void signer?.(body.idempotencyKey);
          return { status: 200, delayMs: 300 };
        },
      },
    });
    const early: string[] = [];
    signer = async (key) => early.push(String((await post('mock', { idempotencyKey: key, status: 'delivered' })).body.outcome));
    const id = await sentCampaign(client, ['e1', 'e2', 'e3']);
    expect(early.sort()).toEqual(['early', 'early', 'early']);
    expect((await client.campaign(id)).counts).toMatchObject({ sent: 3, delivered: 3 });
  });

  it('take NHN’s KakaoTalk Bizmessage message-result webhook, checked by its signature', async () => {
    const { client, kakao, signature, url } = await pushq({ alimtalk: true });
    const id = await sentCampaign(
      client,
      [
        { id: 'k1', phone: '01055551111' },
        { id: 'k2', phone: '01066662222' },
        { id: 'k3', phone: '01077773333' },
      ],
      'kakao',
    );
    expect((await client.campaign(id)).counts).toMatchObject({ sent: 3 });
    const keyOf = (phone: string) => kakao!.deliveries.find((d) => d.recipientNo === phone)!.recipientGroupingKey;
    const hook = (phone: string, resultCode: string) => ({
      kakaoMessageType: 'ALIMTALK_NORMAL',
      requestId: '20261205-abc',
      recipientSeq: 1,
      recipientNo: phone,
      resultCode,
      receiveDate: '2026-12-05 21:00:00',
      senderGroupingKey: null,
      recipientGroupingKey: keyOf(phone),
      hookId: 'h1',
    });
    const body = {
      hooksId: 'hooks-1',
      webhookConfigId: 'cfg',
      productName: 'KakaoTalk Bizmessage',
      appKey: kakao!.appKey,
      event: 'MESSAGE_RESULT_UPDATE',
      hooks: [hook('01055551111', '1000'), hook('01066662222', 'MRC02'), hook('01055551111', '1000')],
    };
    const send = (headers: Record<string, string>, payload: unknown = body) =>
      fetch(`${url}/api/receipts/kakao`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(payload) });
    expect((await send({ 'x-toast-webhook-signature': 'wrong' })).status).toBe(401);
    const ok = await send({ 'x-toast-webhook-signature': signature });
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { results: Array<{ outcome: string }> }).results.map((r) => r.outcome)).toEqual(['applied', 'applied', 'already']);
    expect((await client.campaign(id)).counts).toMatchObject({ sent: 3, delivered: 1, undelivered: 1 });
    // Other events (template reviews) are acknowledged and change nothing.
    expect((await send({ 'x-toast-webhook-signature': signature }, { event: 'TEMPLATE_STATUS_UPDATE', hooks: [{}] })).status).toBe(200);
  });

  it('keep a receipt that beat the confirm, and never send again a recipient it covers: not after a retry, not after a failure, not after its worker died', async () => {
    const h = redisHarness('early');
    const campaignId = await h.createCampaign(ids(4), 10);
    const runId = await h.startRun(campaignId);
    const run = (await h.runs.getRun(campaignId, runId))!;
    const ref = { campaignId, runId, page: 0 };
    await h.ledger.acquirePage(ref, 'w', acquireOptions(60_000));
    await h.ledger.claim(
      ref,
      'w',
      60_000,
      [0, 1, 2, 3].map((index) => ({ index, op: 'claim' as const })),
    );
    // Undelivered then delivered before any confirm: delivered wins.
    const receipt = (position: number, delivered: boolean) => h.ledger.receipts(campaignId, runId, run.no!, 10, [{ position, delivered, at: Date.now() }]);
    expect(await receipt(0, false)).toEqual(['early']);
    expect(await receipt(0, true)).toEqual(['early']);
    expect(await receipt(1, true)).toEqual(['early']);
    expect(await receipt(2, false)).toEqual(['early']);
    // The worker's answers: a timeout to retry, a permanent failure, nothing (it dies; the lease runs out).
    const entry = (index: number, outcome: 'retry' | 'failed') => ({ index, attempt: 1, outcome, delayMs: 0, code: 'X', message: 'm' });
    await h.ledger.confirm(ref, 'w', 60_000, confirmPolicy(5), [entry(0, 'retry'), entry(1, 'failed')]);
    await h.abandonLease(ref);
    await h.ledger.expireLeases(campaignId, runId, { inDoubt: 'resend', maxAttempts: 5 });
    const entries = await h.ledger.readPageEntries(campaignId, runId, 0, 10, 4);
    expect(entries.map((e) => [e.record.state, e.record.delivery])).toEqual([
      ['sent', 'delivered'],
      ['sent', 'delivered'],
      ['sent', 'undelivered'],
      // No receipt, its worker gone, `resend`: pending again, to go out with the same key.
      ['pending', null],
    ]);
    expect((await h.runs.getRun(campaignId, runId))!.counts).toMatchObject({ sent: 3, pending: 1, inflight: 0, delivered: 2, undelivered: 1 });
    expect(await h.redis.hget(h.keys.campaign(campaignId).run(runId).run, 'early')).toBe('0');
  });
});
