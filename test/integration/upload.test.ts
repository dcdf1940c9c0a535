import { createHash } from 'node:crypto';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningProcess } from '../../src/wiring/main.js';
import { startInProcess } from '../helpers/in-process.js';
import { ApiClient } from '../helpers/api-client.js';
import { providersFile, TEST_TOKEN } from '../helpers/fixtures.js';
import { startMockProvider, type MockProvider } from '../helpers/mock-provider.js';
import { deletePrefix, keysWithPrefix, testRedis, uniquePrefix } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Uploads over real HTTP against the real app on real Redis: whole and
 * announced correctly, or refused whole with nothing kept.
 */
describe('PUT /api/campaigns/:id/recipients', () => {
  const prefix = uniquePrefix('upload');
  const redis = testRedis();
  let mock: MockProvider;
  let app: RunningProcess;
  let api: ApiClient;

  beforeAll(async () => {
    mock = await startMockProvider();
    app = await startInProcess(prefix, {
      PAGE_SIZE: '100',
      PROVIDERS_FILE: providersFile([{ name: 'mock', type: 'http', url: mock.url, tps: 5000, timeoutMs: 2000 }]),
    });
    api = new ApiClient(app.url!, TEST_TOKEN);
  });

  afterAll(async () => {
    await app?.stop();
    await mock?.close();
    await deletePrefix(redis, prefix);
    redis.disconnect();
  });

  const sha256 = (body: string | Buffer) => createHash('sha256').update(body).digest('hex');

  async function upload(id: string, body: string | Buffer, type: string, headers: Record<string, string> = {}, query = '') {
    const res = await fetch(`${app.url}/api/campaigns/${id}/recipients${query}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': type, ...headers },
      body,
    });
    return { status: res.status, body: (await res.json()) as any };
  }

  async function draft(recipients: unknown[] = []): Promise<string> {
    return (await api.createCampaign({ provider: 'mock', recipients: recipients.length ? recipients : undefined })).id;
  }

  /** Keys of lists being staged, and the staging index: all empty once an upload is over, whatever its fate. */
  async function stagedLeftovers(): Promise<string[]> {
    const keys = await keysWithPrefix(redis, prefix);
    return keys.filter((k) => k.includes(':stage:') || k.endsWith(':stagings'));
  }

  async function listOf(id: string): Promise<number> {
    return (await api.campaign(id)).recipientCount;
  }

  it('takes a CSV with a header, quotes, line breaks in fields and a BOM, and checks count and hash', async () => {
    const id = await draft();
    const csv = '\uFEFFid,name,phone\n' + 'u1,"Kim, Minji","010-1"\n' + 'u2,"two\nlines",\n' + '"u""3",plain,010-3\n' + 'u1,dup,\n' + ',no id,\n';
    const res = await upload(id, csv, 'text/csv', { 'x-recipient-count': '5', 'x-content-sha256': sha256(csv) }, '?invalid=skip');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ accepted: 3, duplicate: 1, invalid: 1, rows: 5, sha256: sha256(csv), bytes: Buffer.byteLength(csv) });
    expect(res.body.invalidRows).toEqual([{ row: 5, reason: 'id is missing' }]);
    expect(res.body.campaign.recipientCount).toBe(3);
    expect((await api.request('GET', `/api/campaigns/${id}/recipients/u1`)).body.recipient).toEqual({ id: 'u1', name: 'Kim, Minji', phone: '010-1' });
    expect((await api.request('GET', `/api/campaigns/${id}/recipients/u2`)).body.recipient).toEqual({ id: 'u2', name: 'two\nlines' });
    expect((await api.request('GET', `/api/campaigns/${id}/recipients/${encodeURIComponent('u"3')}`)).status).toBe(200);
    expect(await stagedLeftovers()).toEqual([]);
  });

  it('takes NDJSON of objects and bare ids, and replaces the list whole', async () => {
    const id = await draft(['old-1', 'old-2']);
    const ndjson = '{"id":"n1","token":"abc"}\r\n"n2"\n\n{"id":"n3"}\n';
    const res = await upload(id, ndjson, 'application/x-ndjson', { 'x-recipient-count': '3' });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ accepted: 3, duplicate: 0, invalid: 0, rows: 3 });
    expect((await api.request('GET', `/api/campaigns/${id}/recipients/old-1`)).status).toBe(404);
    expect((await api.request('GET', `/api/campaigns/${id}/recipients/n1`)).body.recipient).toEqual({ id: 'n1', token: 'abc' });
  });

  it('refuses the whole upload when the count or the hash does not match, keeping the old list', async () => {
    const id = await draft(['keep-me']);
    const body = 'id\na\nb\nc\n';
    const count = await upload(id, body, 'text/csv', { 'x-recipient-count': '4' });
    expect(count.status).toBe(422);
    expect(count.body.error).toMatchObject({ code: 'INTEGRITY_FAILED', details: { rows: 3 } });
    const hash = await upload(id, body, 'text/csv', { 'x-content-sha256': sha256('id\na\nb\n') });
    expect(hash.status).toBe(422);
    expect(hash.body.error.message).toMatch(/X-Content-SHA256/);
    expect(await listOf(id)).toBe(1);
    expect((await api.request('GET', `/api/campaigns/${id}/recipients/keep-me`)).status).toBe(200);
    expect(await stagedLeftovers()).toEqual([]);
  });

  it('refuses malformed CSV, a CSV without an id column and a non-JSON line with 400', async () => {
    const id = await draft(['keep-me']);
    expect((await upload(id, 'id,name\n"unclosed,x\n', 'text/csv')).status).toBe(400);
    expect((await upload(id, 'id,name\na,b,c\n', 'text/csv')).status).toBe(400);
    const noId = await upload(id, 'name\nx\n', 'text/csv');
    expect(noId.status).toBe(400);
    expect(noId.body.error.message).toMatch(/"id" column/);
    const notJson = await upload(id, '{"id":"a"}\n{oops\n', 'application/x-ndjson');
    expect(notJson.status).toBe(400);
    expect(notJson.body.error.message).toMatch(/line 2/);
    expect((await upload(id, 'id\n', 'text/plain')).status).toBe(415);
    expect(await listOf(id)).toBe(1);
    expect(await stagedLeftovers()).toEqual([]);
  });

  it('keeps nothing of a body cut short (the client vanishes mid-stream), and leaves no staged data', async () => {
    const id = await draft(['keep-me']);
    const { port } = new URL(app.url!);
    const rows = Array.from({ length: 5000 }, (_, i) => `cut-${i}`).join('\n');
    const socket = connect(Number(port), '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    socket.write(
      `PUT /api/campaigns/${id}/recipients HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TEST_TOKEN}\r\nContent-Type: text/csv\r\nContent-Length: ${rows.length * 3}\r\n\r\nid\n${rows}`,
    );
    // Enough for the server to stage some of it, then the client is gone.
    await waitFor(async () => (await redis.zcard(`${prefix}:stagings`)) > 0 || undefined, { what: 'the upload to start' });
    socket.destroy();
    await waitFor(async () => (await stagedLeftovers()).length === 0, { what: 'the staged rows to be dropped' });
    expect(await listOf(id)).toBe(1);
    expect((await keysWithPrefix(redis, prefix)).filter((k) => k.includes(`{c:${id}}:pg:`))).toHaveLength(1);
  });

  it('refuses the whole file with ?invalid=reject when a row is unusable', async () => {
    const id = await draft(['keep-me']);
    const res = await upload(id, '"a"\n{"name":"no id"}\n"c"\n', 'application/x-ndjson', {}, '?invalid=reject');
    expect(res.status).toBe(422);
    expect(res.body.error.message).toMatch(/row 2/);
    expect(await listOf(id)).toBe(1);
  });

  it('deduplicates a 50,000-row file, first one wins', async () => {
    const id = await draft();
    const lines = ['id,n'];
    for (let i = 0; i < 50_000; i += 1) lines.push(`r${i % 40_000},${i}`);
    const body = `${lines.join('\n')}\n`;
    const res = await upload(id, body, 'text/csv', { 'x-recipient-count': '50000', 'x-content-sha256': sha256(body) });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ accepted: 40_000, duplicate: 10_000, invalid: 0 });
    expect((await api.request('GET', `/api/campaigns/${id}/recipients/r123`)).body.recipient).toEqual({ id: 'r123', n: '123' });
  });

  it('delivers recipients with odd ids once each, and refuses uploads once a run started', async () => {
    const id = await draft();
    const odd = ['a:b', '{x}', 'with space', '한글', '__proto__', 'x'.repeat(256), 'a/b?c#d', 'constructor'];
    const body = odd.map((o) => JSON.stringify({ id: o, tag: 't' })).join('\n');
    expect((await upload(id, body, 'application/x-ndjson', { 'x-recipient-count': String(odd.length) })).status).toBe(200);
    await api.launch(id);
    await waitFor(async () => (await api.campaign(id)).status === 'completed');
    const got = mock.arrivals.filter((a) => a.campaignId === id).map((a) => a.recipientId);
    expect(got.sort()).toEqual([...odd].sort());
    const late = await upload(id, '"z"\n', 'application/x-ndjson');
    expect(late.status).toBe(409);
  });

  describe('suppression lists', () => {
    async function uploadList(name: string, body: string, type: string, headers: Record<string, string> = {}) {
      const res = await fetch(`${app.url}/api/suppressions/${encodeURIComponent(name)}`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': type, ...headers },
        body,
      });
      return { status: res.status, body: (await res.json()) as any };
    }

    it('are replaced by an upload under the same integrity rules, and managed id by id', async () => {
      const csv = 'id,note\nb1,x\nb2,\nb1,again\n';
      const refused = await uploadList('vip-optout', csv, 'text/csv', { 'x-recipient-count': '4' });
      expect(refused.status).toBe(422);
      expect(refused.body.error.code).toBe('INTEGRITY_FAILED');
      expect((await api.request('GET', '/api/suppressions')).body.items.find((l: { name: string }) => l.name === 'vip-optout')).toBeUndefined();

      const res = await uploadList('vip-optout', csv, 'text/csv', { 'x-recipient-count': '3', 'x-content-sha256': sha256(csv) });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ name: 'vip-optout', size: 2, accepted: 2, duplicate: 1, rows: 3 });
      expect((await api.request('GET', '/api/suppressions')).body.items).toContainEqual({ name: 'vip-optout', size: 2 });

      // A cut or malformed body keeps the list as it was.
      expect((await uploadList('vip-optout', '"c1"\n{"id":', 'application/x-ndjson')).status).toBe(400);
      expect((await api.request('GET', '/api/suppressions/vip-optout/b1')).body).toEqual({ name: 'vip-optout', id: 'b1', suppressed: true });

      expect((await api.request('POST', '/api/suppressions/vip-optout', { ids: ['b3', 'b1'] })).body).toEqual({ name: 'vip-optout', size: 3, added: 1 });
      expect((await api.request('POST', '/api/suppressions/vip-optout/remove', { ids: ['b1'] })).body).toEqual({ name: 'vip-optout', size: 2, removed: 1 });
      expect((await api.request('GET', '/api/suppressions/vip-optout/b1')).body.suppressed).toBe(false);
      const members = await api.request('GET', '/api/suppressions/vip-optout?limit=1000');
      expect(members.body.ids.sort()).toEqual(['b2', 'b3']);
      expect(members.body.nextCursor).toBeNull();

      expect((await api.request('DELETE', '/api/suppressions/vip-optout')).body).toEqual({ name: 'vip-optout', size: 0 });
      expect((await api.request('GET', '/api/suppressions/vip-optout/b2')).body.suppressed).toBe(false);
    });

    it('refuses bad list names and bodies with 422', async () => {
      expect((await api.request('POST', '/api/suppressions/Bad%20Name', { ids: ['a'] })).status).toBe(422);
      expect((await api.request('POST', '/api/suppressions/ok', { ids: [] })).status).toBe(422);
      expect((await api.request('POST', '/api/suppressions/ok', { id: 'a' })).status).toBe(422);
    });
  });
});
