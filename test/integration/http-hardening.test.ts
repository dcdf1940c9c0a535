import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningProcess } from '../../src/wiring/main.js';
import { startInProcess } from '../helpers/in-process.js';
import { ApiClient } from '../helpers/api-client.js';
import { providersFile, TEST_TOKEN } from '../helpers/fixtures.js';
import { deletePrefix, keysWithPrefix, testRedis, uniquePrefix } from '../helpers/redis.js';

const VIEWER = 'viewer-token-for-tests';

interface Operation {
  method: string;
  path: string;
  'x-access': 'read' | 'write';
  requestBody?: { content: Record<string, unknown> };
  parameters: Array<{ in: string; name: string }>;
}

/**
 * Every route of the API, taken from its own OpenAPI document: auth, roles,
 * and bad input of every kind — and a refused request changes nothing.
 */
describe('every route', () => {
  const prefix = uniquePrefix('hard');
  const redis = testRedis();
  let app: RunningProcess;
  let admin: ApiClient;
  let viewer: ApiClient;
  const operations: Operation[] = [];
  let campaignId = '';

  /** A launched campaign and its run, for the routes that name a run. */
  let launched = { id: '', runId: '' };

  const concrete = (path: string) =>
    path
      .replace('{id}', path.includes('{runId}') ? launched.id : campaignId)
      .replace('{runId}', launched.runId)
      .replace('{recipientId}', 'r1')
      .replace('{name}', 'sim')
      .replace('{list}', 'global');

  /** `{name}` is a provider's name and a webhook endpoint's: one of each named sim (made again where a test deleted it). */
  const simWebhook = async () => {
    const made = await admin.request('POST', '/api/webhooks', { name: 'sim', url: 'http://127.0.0.1:9/hooks', events: ['run.completed'] });
    expect([201, 409]).toContain(made.status);
  };

  beforeAll(async () => {
    app = await startInProcess(
      prefix,
      { VIEWER_TOKEN: VIEWER, MAX_BODY_BYTES: '65536', PROVIDERS_FILE: providersFile([{ name: 'sim', type: 'sim', tps: 100 }]) },
      { worker: false },
    );
    admin = new ApiClient(app.url!, TEST_TOKEN);
    viewer = new ApiClient(app.url!, VIEWER);
    await simWebhook();
    campaignId = (await admin.createCampaign({ provider: 'sim', recipients: ['r1', 'r2'] })).id;
    const run = (await admin.createCampaign({ provider: 'sim', recipients: ['r1'] })).id;
    await admin.launch(run);
    launched = { id: run, runId: (await admin.campaign(run)).latestRun.id };
    const doc = (await admin.request('GET', '/api/openapi.json')).body;
    for (const [path, methods] of Object.entries(doc.paths as Record<string, Record<string, Omit<Operation, 'method' | 'path'>>>)) {
      for (const [method, op] of Object.entries(methods)) operations.push({ ...op, method: method.toUpperCase(), path });
    }
  });

  afterAll(async () => {
    await app?.stop();
    await deletePrefix(redis, prefix);
    redis.disconnect();
  });

  it('is documented in OpenAPI 3.1, from the schemas that validate it', async () => {
    const doc = (await admin.request('GET', '/api/openapi.json')).body;
    expect(doc.openapi).toBe('3.1.0');
    const documented = new Set(operations.map((o) => `${o.method} ${o.path}`));
    for (const expected of [
      'POST /api/campaigns',
      'GET /api/campaigns',
      'GET /api/campaigns/{id}',
      'PATCH /api/campaigns/{id}',
      'PUT /api/campaigns/{id}/recipients',
      'POST /api/campaigns/{id}/launch',
      'POST /api/campaigns/{id}/schedule',
      'POST /api/campaigns/{id}/pause',
      'POST /api/campaigns/{id}/resume',
      'POST /api/campaigns/{id}/cancel',
      'POST /api/campaigns/{id}/retry-failed',
      'POST /api/campaigns/{id}/clone',
      'GET /api/campaigns/{id}/runs',
      'GET /api/campaigns/{id}/recipients/{recipientId}',
      'GET /api/campaigns/{id}/failures',
      'GET /api/campaigns/{id}/failures.csv',
      'GET /api/campaigns/{id}/runs/{runId}/results',
      'GET /api/providers',
      'GET /api/providers/{name}',
    ]) {
      expect(documented, expected).toContain(expected);
    }
    // Every operation is named, once (client generators name their methods after it).
    const ids = operations.map((o) => (o as unknown as { operationId?: string }).operationId);
    expect(
      ids.filter((id) => !id),
      'operations without an operationId',
    ).toEqual([]);
    expect(new Set(ids).size).toBe(ids.length);
    const create = doc.paths['/api/campaigns'].post.requestBody.content['application/json'].schema;
    expect(create.required).toEqual(expect.arrayContaining(['name', 'provider', 'message']));
    expect(create.properties.priority.enum).toEqual(['high', 'normal', 'low']);
    // Every documented operation exists (a route that does not is a 404 NOT_FOUND), tried on a throwaway campaign.
    const throwaway = (await admin.createCampaign({ provider: 'sim', recipients: ['t1'] })).id;
    for (const op of operations) {
      const path = op.path.replace('{id}', throwaway).replace('{recipientId}', 't1').replace('{name}', 'sim');
      const res = await admin.request(op.method, path, op.method === 'GET' ? undefined : op.requestBody?.content['application/json'] ? {} : undefined);
      expect(res.body?.error?.code, `${op.method} ${op.path}`).not.toBe('NOT_FOUND');
    }
  });

  it('refuses every route without a valid token, and every change with the viewer token', async () => {
    await simWebhook();
    for (const [i, op] of operations.entries()) {
      // Failed authentications slow an address down (tested below): probe each route from an address of its own.
      const dispatcher = new Agent({ localAddress: `127.0.1.${i + 1}` });
      try {
        const res = await request(`${app.url}${concrete(op.path)}`, { method: op.method as 'GET', dispatcher });
        expect(res.statusCode, `${op.method} ${op.path}`).toBe(401);
        await res.body.dump();
        const bad = await request(`${app.url}${concrete(op.path)}`, { method: op.method as 'GET', headers: { authorization: 'Bearer nope' }, dispatcher });
        expect(bad.statusCode, `${op.method} ${op.path}`).toBe(401);
        await bad.body.dump();
      } finally {
        await dispatcher.close();
      }
      if (op['x-access'] === 'write') {
        const asViewer = await viewer.request(op.method, concrete(op.path), op.requestBody ? {} : undefined);
        expect(asViewer.status, `${op.method} ${op.path} ${JSON.stringify(asViewer.body)}`).toBe(403);
        expect(asViewer.body.error.code).toBe('FORBIDDEN');
      } else {
        // A read that needs its question asked (a schedule to preview) gets one.
        const query = op.path.endsWith('/schedules/next') ? '?cron=0+0+9+*+*+*&timezone=UTC' : '';
        expect((await viewer.request(op.method, concrete(op.path) + query)).status, `${op.method} ${op.path}`).toBeLessThan(400);
      }
    }
  });

  it('answers bad input with the right status and changes nothing in Redis', async () => {
    const before = await keysWithPrefix(redis, prefix);
    const meta = await redis.hgetall(`${prefix}:{c:${campaignId}}:meta`);
    for (const op of operations.filter((o) => o['x-access'] === 'write')) {
      const where = `${op.method} ${op.path}`;
      const json = op.requestBody?.content['application/json'];
      // Unknown id (or name): 404 (or 422 first, when the empty body is not valid for the route).
      const unknown = (await admin.request(op.method, op.path.replace('{id}', '01aaaaaaaaaaaaaaaaaaaaaaaa').replace('{name}', 'nobody'), json ? {} : undefined))
        .status;
      expect(op.path.includes('{id}') || op.path.includes('{name}') ? [404, ...(json ? [422] : [])] : [422], where).toContain(unknown);
      // Unknown query parameter: 422 naming it.
      const query = await admin.request(op.method, `${concrete(op.path)}?bogus=1`, json ? {} : undefined);
      expect(query.status, where).toBe(422);
      expect(JSON.stringify(query.body.error.details), where).toContain('query');
      if (json) {
        expect((await admin.request(op.method, concrete(op.path), '{"broken":', { 'content-type': 'application/json' })).status, where).toBe(400);
        expect((await admin.request(op.method, concrete(op.path), 'a=b', { 'content-type': 'application/x-www-form-urlencoded' })).status, where).toBe(415);
        const invalid = await admin.request(op.method, concrete(op.path), { bogusField: 1 });
        expect(invalid.status, where).toBe(422);
        expect(invalid.body.error.details.issues.length, where).toBeGreaterThan(0);
        const huge = await admin.request(op.method, concrete(op.path), { name: 'x'.repeat(70_000) });
        expect(huge.status, where).toBe(413);
      }
    }
    expect((await admin.request('PUT', `/api/campaigns/${campaignId}/recipients`, 'id\na\n', { 'content-type': 'text/plain' })).status).toBe(415);
    expect((await admin.request('GET', '/api/campaigns?limit=0')).status).toBe(422);
    expect(await keysWithPrefix(redis, prefix)).toEqual(before);
    expect(await redis.hgetall(`${prefix}:{c:${campaignId}}:meta`)).toEqual(meta);
  });

  it('never shows a stack trace or an internal message', async () => {
    const res = await admin.request('GET', `/api/campaigns/${campaignId}/recipients/${'%E0%A4%A'}`);
    expect(res.status).toBeLessThan(500);
    expect(JSON.stringify(res.body)).not.toMatch(/\.ts:|at .*\(/);
  });

  it('guards Bull Board and the progress page, read-only for viewers', async () => {
    const basic = (token: string) => ({ authorization: `Basic ${Buffer.from(`x:${token}`).toString('base64')}` });
    for (const path of ['/admin/queues', '/admin/campaigns', '/admin/campaigns/data']) {
      expect((await fetch(`${app.url}${path}`)).status, path).toBe(401);
      expect((await fetch(`${app.url}${path}`, { headers: basic(VIEWER) })).status, path).toBe(200);
    }
    const page = await fetch(`${app.url}/admin/campaigns`, { headers: basic(TEST_TOKEN) });
    expect(page.headers.get('content-security-policy')).toContain("default-src 'self'");
    expect(page.headers.get('x-content-type-options')).toBe('nosniff');
    const data = (await (await fetch(`${app.url}/admin/campaigns/data`, { headers: basic(VIEWER) })).json()) as { role: string };
    expect(data.role).toBe('viewer');
    expect((await fetch(`${app.url}/admin/campaigns/${campaignId}/cancel`, { method: 'POST', headers: basic(VIEWER) })).status).toBe(403);
    const boardWrite = await fetch(`${app.url}/admin/queues/api/queues/send/clean/completed`, { method: 'PUT', headers: basic(VIEWER) });
    expect(boardWrite.status).toBe(403);
    const queues = await (await fetch(`${app.url}/admin/queues/api/queues`, { headers: basic(VIEWER) })).json();
    expect(JSON.stringify(queues)).toMatch(/"readOnlyMode":true/);
    expect((await admin.request('GET', `/api/campaigns/${campaignId}`)).body.status).toBe('draft');
  });

  it('slows down an address that keeps guessing the token, and never the right token', async () => {
    let last: Response | undefined;
    for (let i = 0; i < 25; i += 1) last = await fetch(`${app.url}/api/campaigns`, { headers: { authorization: `Bearer guess-${i}` } });
    expect(last!.status).toBe(429);
    expect(Number(last!.headers.get('retry-after'))).toBeGreaterThan(0);
    const right = await fetch(`${app.url}/api/campaigns`, { headers: { authorization: `Bearer ${TEST_TOKEN}` } });
    expect(right.status).toBe(200);
  });
});
