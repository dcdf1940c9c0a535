import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningProcess } from '../../src/wiring/main.js';
import { startInProcess } from '../helpers/in-process.js';
import { ApiClient } from '../helpers/api-client.js';
import { providersFile, TEST_TOKEN } from '../helpers/fixtures.js';
import { startMockProvider, type MockProvider } from '../helpers/mock-provider.js';
import { deletePrefix, keysWithPrefix, testRedis, uniquePrefix } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The REST API in-process against real Redis, with a worker in the same
 * process (the `npm start` shape) sending to a loopback provider.
 */
describe('REST API', () => {
  const prefix = uniquePrefix('api');
  const redis = testRedis();
  let mock: MockProvider;
  let app: RunningProcess;
  let api: ApiClient;

  beforeAll(async () => {
    mock = await startMockProvider({
      respond: (body) => (body.recipient.id.startsWith('bad') ? { status: 400, body: 'unregistered token' } : undefined),
    });
    app = await startInProcess(prefix, {
      PAGE_SIZE: '7',
      PROVIDERS_FILE: providersFile([
        { name: 'mock', type: 'http', url: mock.url, tps: 2000, timeoutMs: 2000 },
        { name: 'sim', type: 'sim', tps: 10, latencyMs: 1 },
      ]),
    });
    api = new ApiClient(app.url!, TEST_TOKEN);
  });

  afterAll(async () => {
    await app?.stop();
    await mock?.close();
    await deletePrefix(redis, prefix);
    redis.disconnect();
  });

  describe('auth', () => {
    it('refuses /api without the token, with a bad token, and with another scheme', async () => {
      for (const authorization of [undefined, 'Bearer wrong', `Token ${TEST_TOKEN}`, 'Bearer']) {
        const res = await fetch(`${app.url}/api/campaigns`, { headers: authorization ? { authorization } : {} });
        expect(res.status).toBe(401);
        expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
        expect(((await res.json()) as { error: { code: string } }).error.code).toBe('UNAUTHORIZED');
      }
    });

    it('guards Bull Board, and lets a browser in with the token as Basic password', async () => {
      const anonymous = await fetch(`${app.url}/admin/queues`);
      expect(anonymous.status).toBe(401);
      expect(anonymous.headers.get('www-authenticate')).toMatch(/^Basic/);
      const basic = await fetch(`${app.url}/admin/queues`, {
        headers: { authorization: `Basic ${Buffer.from(`admin:${TEST_TOKEN}`).toString('base64')}` },
      });
      expect(basic.status).toBe(200);
      expect(await basic.text()).toMatch(/<html/i);
      const queues = await fetch(`${app.url}/admin/queues/api/queues`, { headers: { authorization: `Bearer ${TEST_TOKEN}` } });
      expect(queues.status).toBe(200);
      expect(JSON.stringify(await queues.json())).toContain('"send"');
      const sneaky = await fetch(`${app.url}/admin/queues/api/queues`);
      expect(sneaky.status).toBe(401);
    });

    it('keeps health and metrics open', async () => {
      expect((await fetch(`${app.url}/healthz`)).status).toBe(200);
      const open = await fetch(`${app.url}/readyz`);
      expect([open.status, await open.json()]).toEqual([200, { status: 'ready' }]);
      const ready = await fetch(`${app.url}/readyz`, { headers: { authorization: `Bearer ${TEST_TOKEN}` } });
      expect(ready.status).toBe(200);
      expect(await ready.json()).toMatchObject({
        status: 'ready',
        redis: { reachable: true, maxmemoryPolicy: 'noeviction', persistence: { aof: expect.any(Boolean), rdb: expect.any(Boolean) } },
        warnings: expect.any(Array),
      });
      const metrics = await fetch(`${app.url}/metrics`);
      expect(await metrics.text()).toContain('pushq_sends_total');
    });
  });

  describe('errors', () => {
    it('answers malformed JSON with 400, a non-JSON body with 415, and an invalid body with 422 and the paths', async () => {
      expect((await api.request('POST', '/api/campaigns', '{"name":')).status).toBe(400);
      const text = await api.request('POST', '/api/campaigns', 'name=x', { 'content-type': 'text/plain' });
      expect(text.status).toBe(415);
      const invalid = await api.request('POST', '/api/campaigns', { name: '', provider: 'mock', message: { title: 1 }, recipient: ['a'] });
      expect(invalid.status).toBe(422);
      expect(invalid.body.error.code).toBe('VALIDATION_FAILED');
      const paths = invalid.body.error.details.issues.map((i: { path: string }) => i.path);
      expect(paths).toEqual(expect.arrayContaining(['body.name', 'body.message.title', 'body.message.body', 'body']));
    });

    it('refuses a body over the limit with 413 and points to the upload endpoint', async () => {
      const huge = JSON.stringify({ name: 'x', provider: 'mock', message: { title: 't', body: 'b' }, recipients: ['y'.repeat(17 * 1024 * 1024)] });
      const res = await api.request('POST', '/api/campaigns', huge);
      expect(res.status).toBe(413);
      expect(res.body.error.code).toBe('PAYLOAD_TOO_LARGE');
      expect(res.body.error.message).toMatch(/PUT \/api\/campaigns\/:id\/recipients/);
    });

    it('refuses an unknown provider with 422 and lists the known ones', async () => {
      const res = await api.request('POST', '/api/campaigns', { name: 'x', provider: 'nope', message: { title: 't', body: 'b' } });
      expect(res.status).toBe(422);
      expect(res.body.error).toMatchObject({ code: 'UNKNOWN_PROVIDER', details: { known: ['mock', 'sim'] } });
    });

    it('answers unknown ids and routes with 404', async () => {
      expect((await api.request('GET', '/api/campaigns/01aaaaaaaaaaaaaaaaaaaaaaaa')).status).toBe(404);
      expect((await api.request('GET', '/api/campaigns/not-an-id')).status).toBe(404);
      expect((await api.request('POST', '/api/campaigns/not-an-id/launch')).status).toBe(404);
      const route = await api.request('GET', '/api/nothing-here');
      expect(route.status).toBe(404);
      expect(route.body.error.code).toBe('NOT_FOUND');
    });

    it('changes nothing in Redis when it refuses a request', async () => {
      const before = await keysWithPrefix(redis, prefix);
      await api.request('POST', '/api/campaigns', { name: 'x', provider: 'nope', message: { title: 't', body: 'b' }, recipients: ['a'] });
      await api.request('POST', '/api/campaigns', { name: 'x', provider: 'mock', message: { title: 't', body: 'b' }, recipients: ['a', 5] });
      await api.request('POST', '/api/campaigns', '{"name":');
      expect(await keysWithPrefix(redis, prefix)).toEqual(before);
    });
  });

  describe('campaigns', () => {
    it('creates with inline recipients: deduplicated, first wins, invalid ones reported (?invalid=skip)', async () => {
      const res = await api.request('POST', '/api/campaigns?invalid=skip', {
        name: '  Spring sale  ',
        provider: 'mock',
        message: { title: 'T', body: 'B' },
        recipients: ['a', { id: 'b', phone: '010-1' }, { id: 'a', phone: 'dup' }, { nope: 1 }, ''],
      });
      expect(res.status).toBe(201);
      expect(res.headers.get('location')).toBe(`/api/campaigns/${res.body.id}`);
      expect(res.body).toMatchObject({
        name: 'Spring sale',
        provider: 'mock',
        status: 'draft',
        message: { title: 'T', body: 'B', data: {} },
        recipientCount: 2,
        counts: { total: 2, pending: 2, inflight: 0, sent: 0, failed: 0, unknown: 0, skipped: 0 },
        latestRun: null,
        ingest: { accepted: 2, duplicate: 1, invalid: 2 },
      });
      expect(res.body.ingest.invalidRows).toEqual([
        { row: 4, index: 3, reason: 'id is missing' },
        { row: 5, index: 4, reason: 'id must not be empty' },
      ]);
    });

    it('lists newest first with a cursor', async () => {
      const made = [];
      for (let i = 0; i < 5; i += 1) made.push((await api.createCampaign({ name: `list-${i}`, recipients: ['x'] })).id);
      const first = await api.request('GET', '/api/campaigns?limit=3');
      expect(first.status).toBe(200);
      expect(first.body.items.map((c: { id: string }) => c.id)).toEqual([made[4], made[3], made[2]]);
      const second = await api.request('GET', `/api/campaigns?limit=3&cursor=${first.body.nextCursor}`);
      expect(second.body.items.slice(0, 2).map((c: { id: string }) => c.id)).toEqual([made[1], made[0]]);
      expect((await api.request('GET', '/api/campaigns?limit=1000')).status).toBe(422);
    });

    it('finds recipients with odd ids in the ledger', async () => {
      const odd = ['a:b', '{x}', 'a/b', 'with space', '한글', '__proto__', 'x'.repeat(256), '?&#%'];
      const campaign = await api.createCampaign({ recipients: [...odd.map((id) => ({ id, tag: id.length })), 'plain'] });
      for (const id of odd) {
        const res = await api.request('GET', `/api/campaigns/${campaign.id}/recipients/${encodeURIComponent(id)}`);
        expect(res.status, id).toBe(200);
        expect(res.body).toMatchObject({ recipient: { id, tag: id.length }, state: 'pending', attempts: 0, runId: null });
      }
      const missing = await api.request('GET', `/api/campaigns/${campaign.id}/recipients/nobody`);
      expect(missing.status).toBe(404);
      expect(missing.body.error.code).toBe('RECIPIENT_NOT_FOUND');
    });

    it('launches once: concurrent launches make one run, later ones get 409 with advice', async () => {
      const campaign = await api.createCampaign({ recipients: ['l1', 'l2', 'l3'] });
      const answers = await Promise.all(Array.from({ length: 10 }, () => api.request('POST', `/api/campaigns/${campaign.id}/launch`)));
      expect(answers.filter((a) => a.status === 200)).toHaveLength(1);
      expect(answers.filter((a) => a.status === 409)).toHaveLength(9);
      await waitFor(async () => (await api.campaign(campaign.id)).status === 'completed');
      const again = await api.request('POST', `/api/campaigns/${campaign.id}/launch`);
      expect(again.status).toBe(409);
      expect(again.body.error.message).toMatch(/retry-failed|clone/);
      expect(mock.arrivals.filter((a) => a.campaignId === campaign.id)).toHaveLength(3);
    });

    it('refuses to launch a campaign without recipients', async () => {
      const draft = await api.createCampaign({});
      const res = await api.request('POST', `/api/campaigns/${draft.id}/launch`);
      expect(res.status).toBe(409);
      expect(res.body.error.code).toBe('NO_RECIPIENTS');
      expect((await api.campaign(draft.id)).status).toBe('draft');
    });

    it('reports permanent failures with the provider error, paginated', async () => {
      const recipients = [...Array.from({ length: 12 }, (_, i) => `bad-${i}`), ...Array.from({ length: 20 }, (_, i) => `good-${i}`)];
      const campaign = await api.createCampaign({ recipients });
      await api.launch(campaign.id);
      const done = await waitFor(async () => {
        const c = await api.campaign(campaign.id);
        return c.status === 'completed' ? c : undefined;
      });
      expect(done.counts).toEqual({
        total: 32,
        pending: 0,
        inflight: 0,
        sent: 20,
        failed: 12,
        unknown: 0,
        skipped: 0,
        deferred: 0,
        deferredBy: {},
        deferredUntil: null,
        skippedBy: {},
        expired: 0,
        pace: null,
      });
      const first = await api.request('GET', `/api/campaigns/${campaign.id}/failures?limit=5`);
      expect(first.body.items).toHaveLength(5);
      expect(first.body.items[0]).toMatchObject({
        recipientId: 'bad-0',
        state: 'failed',
        attempts: 1,
        error: { code: 'HTTP_400', message: 'unregistered token' },
      });
      const all = [...first.body.items];
      let cursor = first.body.nextCursor;
      while (cursor) {
        const page = await api.request('GET', `/api/campaigns/${campaign.id}/failures?limit=5&cursor=${cursor}`);
        all.push(...page.body.items);
        cursor = page.body.nextCursor;
      }
      expect(all.map((f) => f.recipientId).sort()).toEqual(recipients.slice(0, 12).sort());
      const entry = await api.request('GET', `/api/campaigns/${campaign.id}/recipients/bad-3`);
      expect(entry.body).toMatchObject({ state: 'failed', attempts: 1, lastError: { code: 'HTTP_400' } });
    });

    it('accepts an inline body of 10 MB (100,000 recipients with fields)', async () => {
      const recipients = Array.from({ length: 100_000 }, (_, i) => ({ id: `big-${i}`, token: `t${i}`.padEnd(80, 'x') }));
      const body = JSON.stringify({ name: 'big', provider: 'sim', message: { title: 't', body: 'b' }, recipients });
      expect(body.length).toBeGreaterThan(10_000_000);
      const res = await api.request('POST', '/api/campaigns', body);
      expect(res.status).toBe(201);
      expect(res.body.recipientCount).toBe(100_000);
      const entry = await api.request('GET', `/api/campaigns/${res.body.id}/recipients/big-99999`);
      expect(entry.body.recipient).toEqual(recipients[99_999]);
    });
  });
});
