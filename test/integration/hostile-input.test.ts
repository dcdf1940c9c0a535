import { connect } from 'node:net';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningProcess } from '../../src/wiring/main.js';
import { ApiClient } from '../helpers/api-client.js';
import { providersFile, TEST_TOKEN } from '../helpers/fixtures.js';
import { startInProcess } from '../helpers/in-process.js';
import { onCleanup } from '../helpers/cleanup.js';
import { cleanPrefix, deletePrefix, digestPrefix, testRedis, uniquePrefix } from '../helpers/redis.js';

/**
 * The hostile-input review, request by request, against a running API on
 * real Redis: every mistake and every attack gets a documented 4xx, and a
 * refused request changes nothing.
 */
const VIEWER = 'viewer-token-for-tests-0123456789';
const prefix = uniquePrefix('hostile');
const redis = testRedis();
let app: RunningProcess;
let admin: ApiClient;

beforeAll(async () => {
  app = await startInProcess(
    prefix,
    { VIEWER_TOKEN: VIEWER, MAX_UPLOAD_BYTES: String(1024 * 1024), PROVIDERS_FILE: providersFile([{ name: 'sim', type: 'sim', tps: 100 }]) },
    { worker: false },
  );
  admin = new ApiClient(app.url!, TEST_TOKEN);
});
afterAll(async () => {
  await app?.stop();
  await deletePrefix(redis, prefix);
  redis.disconnect();
});

/** What must not change when a request is refused: every key under the prefix (locks and the upload worklist aside). */
const digest = () => digestPrefix(redis, prefix, { skipKeys: [':lock:', ':stagings'] });

const draft = async (recipients: unknown[] = ['a', 'b']) => (await admin.createCampaign({ provider: 'sim', recipients })).id as string;
const basic = (token: string) => `Basic ${Buffer.from(`admin:${token}`).toString('base64')}`;

describe('the progress page refuses cross-site writes (CSRF)', () => {
  it('refuses a form posted from another site with the browser’s cached credentials, and changes nothing', async () => {
    const id = await draft();
    const before = await digest();
    const res = await request(`${app.url}/admin/campaigns/${id}/cancel`, {
      method: 'POST',
      headers: {
        authorization: basic(TEST_TOKEN),
        origin: 'https://evil.example',
        'sec-fetch-site': 'cross-site',
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: '',
    });
    expect(res.statusCode).toBe(403);
    await res.body.dump();
    expect((await admin.campaign(id)).status).toBe('draft');
    expect((await digest()).changedSince(before)).toBe('');
  });

  it('refuses a same-site post without the page’s own header (a form cannot set it), and takes the page’s', async () => {
    const id = await draft();
    const form = await request(`${app.url}/admin/campaigns/${id}/cancel`, {
      method: 'POST',
      headers: { authorization: basic(TEST_TOKEN), 'sec-fetch-site': 'same-origin', 'content-type': 'application/x-www-form-urlencoded' },
      body: '',
    });
    expect(form.statusCode).toBe(403);
    await form.body.dump();
    const page = await request(`${app.url}/admin/campaigns/${id}/cancel`, {
      method: 'POST',
      headers: { authorization: basic(TEST_TOKEN), origin: app.url!, 'sec-fetch-site': 'same-origin', 'x-pushq-page': '1' },
    });
    expect(page.statusCode).toBe(200);
    await page.body.dump();
    expect((await admin.campaign(id)).status).toBe('cancelled');
  });

  it('answers 404 for a page action on an id that cannot be a campaign id', async () => {
    const res = await request(`${app.url}/admin/campaigns/..%2F..%2Fapi/pause`, {
      method: 'POST',
      headers: { authorization: basic(TEST_TOKEN), 'x-pushq-page': '1', origin: app.url! },
    });
    expect(res.statusCode).toBe(404);
    await res.body.dump();
  });

  it('serves the page with a trailing slash too, its assets and its OpenAPI link loading in a browser (Basic auth)', async () => {
    const html = await request(`${app.url}/admin/campaigns/`, { headers: { authorization: basic(TEST_TOKEN) } });
    const text = await html.body.text();
    expect(html.statusCode).toBe(200);
    for (const link of [...text.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!)) {
      const url = new URL(link, `${app.url}/admin/campaigns/`);
      const asset = await request(url, { headers: { authorization: basic(TEST_TOKEN) } });
      expect(asset.statusCode, link).toBe(200);
      await asset.body.dump();
      // Without credentials, a Basic challenge: the browser answers it with the page's cached ones.
      const bare = await request(url);
      expect([bare.statusCode, bare.headers['www-authenticate']], link).toEqual([401, expect.stringMatching(/^Basic /)]);
      await bare.body.dump();
    }
    expect(text).toMatch(/openapi/i);
  });
});

describe('the failed-authentication limiter', () => {
  it('never refuses the right token, however many wrong ones came from the same address (one reverse proxy, many clients)', async () => {
    const dispatcher = new Agent({ localAddress: '127.0.2.1' });
    try {
      for (let i = 0; i < 25; i += 1) {
        const res = await request(`${app.url}/api/campaigns`, { headers: { authorization: 'Bearer wrong-token-guess-000000000' }, dispatcher });
        await res.body.dump();
      }
      const limited = await request(`${app.url}/api/campaigns`, { headers: { authorization: 'Bearer wrong-token-guess-000000000' }, dispatcher });
      expect(limited.statusCode).toBe(429);
      await limited.body.dump();
      const ok = await request(`${app.url}/api/campaigns`, { headers: { authorization: `Bearer ${TEST_TOKEN}` }, dispatcher });
      expect(ok.statusCode).toBe(200);
      await ok.body.dump();
    } finally {
      await dispatcher.close();
    }
  });
});

describe('TRUST_PROXY', () => {
  it('counts failures by the client address the trusted proxy names, and only a trusted proxy is believed', async () => {
    const behind = await startInProcess(cleanPrefix('proxy'), { TRUST_PROXY: 'loopback' }, { worker: false });
    onCleanup(() => behind.stop());
    const direct = app;
    const guess = (base: string, client: string) =>
      request(`${base}/api/campaigns`, { headers: { authorization: 'Bearer wrong-token-guess-000000000', 'x-forwarded-for': client } }).then(async (r) => {
        await r.body.dump();
        return r.statusCode;
      });
    for (let i = 0; i < 25; i += 1) await guess(behind.url!, '203.0.113.5');
    expect(await guess(behind.url!, '203.0.113.5')).toBe(429);
    // Another client behind the same proxy is not locked out.
    expect(await guess(behind.url!, '203.0.113.6')).toBe(401);
    // Without TRUST_PROXY the header is anyone's to write, and ignored: the socket address counts.
    const dispatcher = new Agent({ localAddress: '127.0.3.1' });
    try {
      for (let i = 0; i < 25; i += 1) {
        const r = await request(`${direct.url}/api/campaigns`, {
          headers: { authorization: 'Bearer wrong', 'x-forwarded-for': `198.51.100.${i}` },
          dispatcher,
        });
        await r.body.dump();
      }
      const r = await request(`${direct.url}/api/campaigns`, { headers: { authorization: 'Bearer wrong', 'x-forwarded-for': '198.51.100.200' }, dispatcher });
      expect(r.statusCode).toBe(429);
      await r.body.dump();
    } finally {
      await dispatcher.close();
    }
  });
});

describe("what node's HTTP server answers on its own", () => {
  /** Writes `text` to the API's socket as it is (clients refuse to send these) and reads the answer to its end. */
  const exchange = (text: string) =>
    new Promise<{ head: string; body: string }>((resolve, reject) => {
      const { hostname, port } = new URL(app.url!);
      const socket = connect(Number(port), hostname, () => socket.write(text));
      let raw = '';
      const answer = () => {
        const split = raw.indexOf('\r\n\r\n');
        return split < 0 ? { head: raw, body: '' } : { head: raw.slice(0, split), body: raw.slice(split + 4) };
      };
      socket.on('data', (d: Buffer) => {
        raw += d.toString();
        const { head, body } = answer();
        const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? NaN);
        if (Buffer.byteLength(body) >= length) {
          socket.destroy();
          resolve(answer());
        }
      });
      socket.on('end', () => resolve(answer()));
      socket.on('error', reject);
    });

  // Found by the API fuzzer: node answered these itself, with an empty body or a bare status line.
  it("answers an Expect other than 100-continue, and a request that is not HTTP, in the contract's error shape", async () => {
    const expectation = await exchange(`GET /api/providers HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${TEST_TOKEN}\r\nexpect: x-fancy\r\n\r\n`);
    expect(expectation.head).toMatch(/^HTTP\/1\.1 417 /);
    expect(expectation.head).toMatch(/content-type: application\/json/i);
    expect(JSON.parse(expectation.body || 'null')).toMatchObject({ error: { code: 'EXPECTATION_FAILED', message: expect.any(String) } });

    const garbage = await exchange('NOT HTTP AT ALL\r\n\r\n');
    expect(garbage.head).toMatch(/^HTTP\/1\.1 400 /);
    expect(garbage.head).toMatch(/content-type: application\/json/i);
    expect(JSON.parse(garbage.body || 'null')).toMatchObject({ error: { code: 'MALFORMED_REQUEST', message: expect.any(String) } });
  });
});

describe('/readyz', () => {
  it('says only ready or not without a token, and the details to a token holder', async () => {
    const open = await request(`${app.url}/readyz`);
    const body = (await open.body.json()) as Record<string, unknown>;
    expect(Object.keys(body).sort()).toEqual(['status']);
    const detailed = await request(`${app.url}/readyz`, { headers: { authorization: `Bearer ${VIEWER}` } });
    expect((await detailed.body.json()) as Record<string, unknown>).toMatchObject({ status: 'ready', redis: { reachable: true } });
  });
});

describe('suppression lists', () => {
  it('refuse an empty upload, or one whose ids are all blank, whole: only DELETE empties a list', async () => {
    await admin.request('POST', '/api/suppressions/global', { ids: ['opted-out-1', 'opted-out-2'] });
    const before = await digest();
    for (const [type, body, status] of [
      // No header row: malformed, as a recipient upload.
      ['text/csv', '', 400],
      ['application/x-ndjson', '', 422],
      ['text/csv', 'id\n', 422],
      ['text/csv', 'id\n\n""\n"  "\n', 422],
      ['text/csv', 'id,name\n,someone\n', 422],
      ['application/x-ndjson', '\n\n', 422],
    ] as const) {
      const res = await request(`${app.url}/api/suppressions/global`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': type },
        body,
      });
      expect(res.statusCode, `${type} ${JSON.stringify(body)}`).toBe(status);
      await res.body.dump();
    }
    expect((await digest()).changedSince(before)).toBe('');
    expect((await admin.request('GET', '/api/suppressions/global')).body.size).toBe(2);
  });
});

describe('schedules', () => {
  it('refuse a cron that fires more often than MIN_SCHEDULE_INTERVAL_MS (60 s), naming its next two occurrences', async () => {
    const id = await draft();
    const before = await digest();
    const res = await admin.request('POST', `/api/campaigns/${id}/schedule`, { cron: '* * * * * *', timezone: 'UTC' });
    expect(res.status).toBe(422);
    expect(res.body.error.details.next).toHaveLength(2);
    expect(res.body.error.message).toMatch(/60 s|MIN_SCHEDULE_INTERVAL_MS/);
    expect((await digest()).changedSince(before)).toBe('');
    expect((await admin.request('POST', `/api/campaigns/${id}/schedule`, { cron: '0 * * * * *', timezone: 'UTC' })).status).toBe(200);
  });
});

describe('frequency caps', () => {
  it('refuse a window shorter than a minute or longer than 90 days', async () => {
    const create = (per: string) =>
      admin.request('POST', '/api/campaigns', { name: 'c', provider: 'sim', message: { title: 't', body: 'b' }, frequencyCap: { max: 1, per } });
    for (const per of ['999999999999d', '0s', '30s', '91d']) expect((await create(per)).status, per).toBe(422);
    for (const per of ['1m', '24h', '90d']) expect((await create(per)).status, per).toBe(201);
  });
});

describe('uploads', () => {
  const put = (id: string, type: string, body: string | Buffer) =>
    request(`${app.url}/api/campaigns/${id}/recipients`, { method: 'PUT', headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': type }, body });

  it('refuse a body over MAX_UPLOAD_BYTES with 413', async () => {
    const id = await draft();
    const rows = Array.from({ length: 80_000 }, (_, i) => `recipient-${i}`).join('\n');
    const res = await put(id, 'text/csv', `id\n${rows}\n`);
    expect(res.statusCode).toBe(413);
    await res.body.dump();
  });

  it('refuse a CSV row over 64 KiB and a header of more than 1,000 columns, without holding them whole', async () => {
    const id = await draft();
    const huge = await put(id, 'text/csv', `id,name\na,${'x'.repeat(100 * 1024)}\n`);
    expect(huge.statusCode).toBe(413);
    await huge.body.dump();
    const wide = await put(id, 'text/csv', `id,${Array.from({ length: 2000 }, (_, i) => `c${i}`).join(',')}\na\n`);
    expect(wide.statusCode).toBe(422);
    await wide.body.dump();
  });

  it('refuse the whole file by default when a row is unusable (422 naming the first bad rows); ?invalid=skip skips and reports', async () => {
    const id = await draft();
    const body = 'id\ngood-1\n\n' + `${'y'.repeat(300)}\ngood-2\n`;
    const refused = await put(id, 'text/csv', body);
    expect(refused.statusCode).toBe(422);
    const error = ((await refused.body.json()) as { error: { details: { invalidRows: Array<{ row: number; reason: string }> } } }).error;
    expect(error.details.invalidRows[0]).toMatchObject({ row: 2 });
    const skipped = await request(`${app.url}/api/campaigns/${id}/recipients?invalid=skip`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'text/csv' },
      body,
    });
    expect(skipped.statusCode).toBe(200);
    expect(((await skipped.body.json()) as { accepted: number; invalid: number }).accepted).toBe(2);
  });

  it('refuse an NDJSON row nested too deep with 422, not 500', async () => {
    const id = await draft();
    const deep = `${'{"a":'.repeat(12_000)}1${'}'.repeat(12_000)}`;
    const res = await put(id, 'application/x-ndjson', `{"id":"x","deep":${deep}}\n`);
    expect([400, 413, 422]).toContain(res.statusCode);
    await res.body.dump();
  });
});

describe('campaign bodies', () => {
  it('refuse message data nested 20,000 deep with 422, not 500', async () => {
    const before = await digest();
    const deep = `${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}`;
    const res = await admin.request('POST', '/api/campaigns', `{"name":"c","provider":"sim","message":{"title":"t","body":"b","data":${deep}}}`);
    expect(res.status).toBe(422);
    expect((await digest()).changedSince(before)).toBe('');
  });

  it('refuse inline recipients whole by default when one is unusable (422 naming index and why); ?invalid=skip skips and reports', async () => {
    const before = await digest();
    const refused = await admin.request('POST', '/api/campaigns', {
      name: 'c',
      provider: 'sim',
      message: { title: 't', body: 'b' },
      recipients: ['ok', { id: 5 }, null],
    });
    expect(refused.status).toBe(422);
    expect(refused.body.error.details.invalidRows).toEqual([
      { index: 1, row: 2, reason: expect.stringMatching(/id/) },
      { index: 2, row: 3, reason: expect.any(String) },
    ]);
    expect((await digest()).changedSince(before)).toBe('');
    const skipped = await admin.request('POST', '/api/campaigns?invalid=skip', {
      name: 'c',
      provider: 'sim',
      message: { title: 't', body: 'b' },
      recipients: ['ok', { id: 5 }, null],
    });
    expect(skipped.status).toBe(201);
    expect(skipped.body.ingest).toMatchObject({ accepted: 1, invalid: 2 });
  });
});
