import { describe, expect, it } from 'vitest';
import { ApiClient } from '../helpers/api-client.js';
import { onCleanup, testPrefix } from '../helpers/cleanup.js';
import { providersFile, TEST_TOKEN } from '../helpers/fixtures.js';
import { startInProcess } from '../helpers/in-process.js';
import { deletePrefix, testRedis } from '../helpers/redis.js';

/**
 * The whole-list dry run, against a real Redis, with the API in this
 * process: every recipient rendered page by page, and exactly those who
 * would fail reported.
 */
const SIM = [{ name: 'sim', type: 'sim', tps: 1000 }];

/** pushq in this process under a prefix of its own (`worker`: also sending, as npm start does), and a client of its API. */
async function pushq(label: string, providers: Array<Record<string, unknown>>, roles: { worker: boolean }): Promise<ApiClient> {
  const prefix = testPrefix(label);
  const redis = testRedis();
  onCleanup(() => deletePrefix(redis, prefix));
  const running = await startInProcess(prefix, { PROVIDERS_FILE: providersFile(providers) }, roles);
  onCleanup(() => running.stop());
  return new ApiClient(running.url!, TEST_TOKEN);
}

describe('dry run', () => {
  it('over 100,000 recipients with 1 % missing a field reports exactly those ids (NDJSON), by variable and locale', async () => {
    const client = await pushq('dry', SIM, { worker: false });

    const total = 100_000;
    const lines: string[] = [];
    const missingPlan = new Set<string>();
    const missingName = new Set<string>();
    for (let i = 0; i < total; i += 1) {
      const id = `r${i}`;
      const row: Record<string, unknown> = { id, name: `N${i}`, plan: i % 2 ? 'gold' : 'basic', locale: i % 4 === 0 ? 'ko-KR' : 'en' };
      // 1 %: 900 without a plan, 100 without a name (the ko variant does not use the name).
      if (i % 100 === 7) {
        if (i % 1000 === 7) {
          delete row.name;
          if (row.locale !== 'ko-KR') missingName.add(id);
        } else {
          delete row.plan;
          missingPlan.add(id);
        }
      }
      lines.push(JSON.stringify(row));
    }
    const created = await client.request('POST', '/api/campaigns', {
      name: 'dry',
      provider: 'sim',
      message: { title: 'Hi {{ name }}', body: '{{ plan }} plan', locales: { ko: { title: '안녕하세요', body: '{{ plan }} 요금제' } } },
    });
    const id = created.body.id as string;
    const upload = await fetch(`${client.baseUrl}/api/campaigns/${id}/recipients`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/x-ndjson', 'x-recipient-count': String(total) },
      body: `${lines.join('\n')}\n`,
    });
    expect(upload.status).toBe(200);

    const res = await fetch(`${client.baseUrl}/api/campaigns/${id}/dry-run?format=ndjson`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_TOKEN}` },
    });
    expect(res.status).toBe(200);
    const rows = (await res.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, any>);
    const last = rows.pop()!;
    expect(last).toHaveProperty('summary');
    const summary = last.summary;
    const byVariable = (variable: string) =>
      new Set(rows.filter((r) => r.outcome === 'missing-variable' && r.variable === variable).map((r) => r.id as string));
    expect(rows).toHaveLength(missingPlan.size + missingName.size);
    expect(byVariable('plan')).toEqual(missingPlan);
    expect(byVariable('name')).toEqual(missingName);
    expect(summary).toMatchObject({
      recipients: total,
      failed: missingPlan.size + missingName.size,
      rendered: total - missingPlan.size - missingName.size,
      ok: false,
    });
    expect(summary.missingVariables).toEqual([
      { variable: 'plan', count: missingPlan.size, examples: [...missingPlan].slice(0, 20) },
      { variable: 'name', count: missingName.size, examples: [...missingName].slice(0, 20) },
    ]);
    const koFailing = [...missingPlan].filter((r) => Number(r.slice(1)) % 4 === 0).length;
    expect(summary.locales.ko).toEqual({ recipients: total / 4, rendered: total / 4 - koFailing, failed: koFailing });
    expect(summary.locales.default.recipients).toBe((total * 3) / 4);

    // The JSON answer is the same summary; a launch refuses with it and changes nothing.
    const json = await client.request('POST', `/api/campaigns/${id}/dry-run`);
    expect({ ...json.body, durationMs: 0 }).toEqual({ ...summary, durationMs: 0 });
    const launch = await client.request('POST', `/api/campaigns/${id}/launch`);
    expect(launch.status).toBe(422);
    expect(launch.body.error).toMatchObject({ code: 'RENDER_FAILED', details: { failed: summary.failed } });
    expect((await client.campaign(id)).status).toBe('draft');
  }, 120_000);

  it('previews in a process that also sends (npm start: connected providers) as in an API-only one', async () => {
    const client = await pushq('prev', [...SIM, { name: 'hook', type: 'http', url: 'http://127.0.0.1:9/push', tps: 10, headers: { 'x-team': 'a' } }], {
      worker: true,
    });
    const created = await client.request('POST', '/api/campaigns', { name: 'p', provider: 'hook', message: { title: 'Hi {{ name }}', body: 'b' } });
    const res = await client.request('POST', `/api/campaigns/${created.body.id}/preview`, { recipient: { id: 'x', name: 'Kim' } });
    expect(res.body.request).toMatchObject({
      method: 'POST',
      url: 'http://127.0.0.1:9/push',
      headers: { 'x-team': 'a', 'content-type': 'application/json' },
      body: { runId: 'preview', recipient: { id: 'x', name: 'Kim' }, message: { title: 'Hi Kim', body: 'b', data: {} } },
    });
    expect(Object.keys(res.body.requests)).toEqual(['sim', 'hook']);
  });

  it('a launch right after a clean dry run trusts it only for the same message, provider and list', async () => {
    const client = await pushq('dryc', SIM, { worker: false });
    const message = { title: 'Hi {{ name }}', body: 'b' };
    const id = (await client.request('POST', '/api/campaigns', { name: 'c', provider: 'sim', message, recipients: [{ id: 'a', name: 'A' }] })).body
      .id as string;
    expect((await client.request('POST', `/api/campaigns/${id}/dry-run`)).body.ok).toBe(true);
    // A new list (a new version) without the field: the clean answer does not carry over.
    const upload = await fetch(`${client.baseUrl}/api/campaigns/${id}/recipients`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/x-ndjson' },
      body: '{"id":"a","name":"A"}\n{"id":"b"}\n',
    });
    expect(upload.status).toBe(200);
    expect((await client.request('POST', `/api/campaigns/${id}/launch`)).body.error.code).toBe('RENDER_FAILED');
    // Nor does it to another message over a list it was clean for.
    expect((await client.request('PATCH', `/api/campaigns/${id}`, { recipients: [{ id: 'a', name: 'A' }] })).status).toBe(200);
    expect((await client.request('POST', `/api/campaigns/${id}/dry-run`)).body.ok).toBe(true);
    expect((await client.request('PATCH', `/api/campaigns/${id}`, { message: { title: 'Hi {{ nickname }}', body: 'b' } })).status).toBe(200);
    expect((await client.request('POST', `/api/campaigns/${id}/launch`)).body.error.code).toBe('RENDER_FAILED');
    expect((await client.request('PATCH', `/api/campaigns/${id}`, { message })).status).toBe(200);
    expect((await client.request('POST', `/api/campaigns/${id}/launch`)).status).toBe(200);
  });
});
