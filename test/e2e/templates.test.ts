import { describe, expect, it } from 'vitest';
import { Keys } from '../../src/adapters/redis/keys.js';
import { onCleanup } from '../helpers/cleanup.js';
import { TEST_TOKEN } from '../helpers/fixtures.js';
import { testRedis } from '../helpers/redis.js';
import { createCampaign, range, stacksPerTest, waitForStatus } from '../helpers/stack.js';

/**
 * Personalised messages end to end, default settings: a pushq API and worker
 * process, the contract's http provider against a loopback mock.
 */
const start = stacksPerTest();

const message = {
  title: 'Hi {{ name }}',
  body: 'Your {{ plan }} plan renews on {{ renews }}',
  data: { url: 'https://example.com/u/{{ id }}', campaign: '{{ campaign.name }}' },
  locales: {
    ko: { title: '{{ name }}님 안녕하세요', body: '{{ plan }} 요금제가 {{ renews }}에 갱신됩니다' },
    en: { title: 'Hello {{ name }}' },
  },
};

function people(n: number) {
  return range(n, 'p').map((id, i) => ({
    id,
    name: i % 3 === 0 ? `김민수${i}` : `Sam ${i}`,
    plan: i % 2 ? 'gold' : 'basic',
    renews: `2027-01-${String((i % 28) + 1).padStart(2, '0')}`,
    ...(i % 3 === 0 ? { locale: 'ko-KR' } : i % 3 === 1 ? { locale: 'en-GB' } : {}),
  }));
}

describe('templates', () => {
  it('send each recipient their own rendered text in their locale, once', async () => {
    const { client, mock } = await start({ workers: 1, provider: { tps: 2000 } });
    const recipients = people(300);
    const id = await createCampaign(client, recipients, { name: 'Renewals', message });
    const dry = await client.request('POST', `/api/campaigns/${id}/dry-run`);
    expect(dry.status).toBe(200);
    expect(dry.body).toMatchObject({ recipients: 300, rendered: 300, failed: 0, ok: true, missingVariables: [] });
    expect(dry.body.locales).toEqual({
      ko: { recipients: 100, rendered: 100, failed: 0 },
      en: { recipients: 100, rendered: 100, failed: 0 },
      default: { recipients: 100, rendered: 100, failed: 0 },
    });
    await client.launch(id);
    const done = await waitForStatus(client, id, 'completed');
    expect(done.counts).toMatchObject({ total: 300, sent: 300 });
    expect(mock.duplicates()).toBe(0);
    expect(mock.bodies).toHaveLength(300);
    const byId = new Map(mock.bodies.map((b) => [b.recipient.id, b.message]));
    recipients.forEach((r, i) => {
      const got = byId.get(r.id)!;
      const expected =
        i % 3 === 0
          ? { title: `${r.name}님 안녕하세요`, body: `${r.plan} 요금제가 ${r.renews}에 갱신됩니다` }
          : i % 3 === 1
            ? { title: `Hello ${r.name}`, body: `Your ${r.plan} plan renews on ${r.renews}` }
            : { title: `Hi ${r.name}`, body: `Your ${r.plan} plan renews on ${r.renews}` };
      expect(got).toEqual({ ...expected, data: { url: `https://example.com/u/${r.id}`, campaign: 'Renewals' } });
    });
    // The ledger records the variant each was sent in.
    expect((await client.request('GET', `/api/campaigns/${id}/recipients/p0`)).body).toMatchObject({ state: 'sent', locale: 'ko' });
    expect((await client.request('GET', `/api/campaigns/${id}/recipients/p1`)).body).toMatchObject({ state: 'sent', locale: 'en' });
    expect((await client.request('GET', `/api/campaigns/${id}/recipients/p2`)).body).not.toHaveProperty('locale');
    const results = await fetch(`${client.baseUrl}/api/campaigns/${id}/runs/main/results`, { headers: { authorization: `Bearer ${TEST_TOKEN}` } });
    const rows = (await results.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id?: string; locale?: string });
    const locales = rows.filter((r) => r.id).map((r) => r.locale ?? 'default');
    expect(locales.filter((l) => l === 'ko')).toHaveLength(100);
    expect(locales.filter((l) => l === 'en')).toHaveLength(100);
    expect(locales.filter((l) => l === 'default')).toHaveLength(100);
  });

  it('refuse a launch when someone lacks a variable, naming the variable and the ids, and change nothing', async () => {
    const { client, mock } = await start({ workers: 1, provider: { tps: 2000 } });
    const recipients: Array<Record<string, unknown>> = people(200);
    for (const i of [7, 70, 140]) delete recipients[i]!.plan;
    const id = await createCampaign(client, recipients, { message });
    const launch = await client.request('POST', `/api/campaigns/${id}/launch`);
    expect(launch.status).toBe(422);
    expect(launch.body.error.code).toBe('RENDER_FAILED');
    expect(launch.body.error.message).toMatch(/would not render for 3 of 200 recipient\(s\): 3 without plan \(first: p7\)/);
    expect(launch.body.error.details).toMatchObject({ failed: 3, missingVariables: [{ variable: 'plan', count: 3, examples: ['p7', 'p70', 'p140'] }] });
    const after = await client.campaign(id);
    expect(after).toMatchObject({ status: 'draft', latestRun: null });
    const scheduled = await client.request('POST', `/api/campaigns/${id}/schedule`, { at: new Date(Date.now() + 3_600_000).toISOString() });
    expect(scheduled.status).toBe(422);
    expect((await client.campaign(id)).status).toBe('draft');
    expect(mock.arrivals).toHaveLength(0);
  });

  it('with onRenderError skip, skip those recipients (reason render-error, the variable named) and send the rest', async () => {
    const { client, mock } = await start({ workers: 1, provider: { tps: 2000 } });
    const recipients: Array<Record<string, unknown>> = people(100);
    delete recipients[5]!.renews;
    const id = await createCampaign(client, recipients, { message, onRenderError: 'skip' });
    await client.launch(id);
    const done = await waitForStatus(client, id, 'completed');
    expect(done.counts).toMatchObject({ total: 100, sent: 99, skipped: 1, skippedBy: { 'render-error': 1 } });
    const entry = await client.request('GET', `/api/campaigns/${id}/recipients/p5`);
    expect(entry.body).toMatchObject({ state: 'skipped', reason: 'render-error' });
    expect(JSON.stringify(entry.body)).toMatch(/missing variable: renews/);
    expect(mock.arrivals.some((a) => a.recipientId === 'p5')).toBe(false);
    expect(mock.deliveries().size).toBe(99);
  });

  it('refuse a template that does not parse at create and at PATCH, with the field, line and column', async () => {
    const { client } = await start({ workers: 0 });
    const bad = await client.request('POST', '/api/campaigns', {
      name: 'x',
      provider: 'mock',
      message: { title: 'ok', body: 'Hi\n{{ name ' },
    });
    expect(bad.status).toBe(422);
    expect(JSON.stringify(bad.body.error)).toMatch(/not a valid template \(line 2, column 1\)/);
    expect(JSON.stringify(bad.body.error.details)).toMatch(/"message","body"|message\.body/);
    const id = await createCampaign(client, ['a']);
    const patch = await client.request('PATCH', `/api/campaigns/${id}`, { message: { title: 't', body: 'b', locales: { ko: { title: '{% if x %}' } } } });
    expect(patch.status).toBe(422);
    expect(JSON.stringify(patch.body.error)).toMatch(/locales.*ko.*title|not a valid template \(line 1, column 1\)/);
  });

  it('test-send to a seed list only: rendered, through the real provider, as a run aside that never touches the campaign; frequency caps still count', async () => {
    const { client, mock } = await start({ workers: 1, provider: { tps: 2000 } });
    const id = await createCampaign(client, people(100), { message, frequencyCap: { max: 1, per: '1d' } });
    const seeds = [
      { id: 'qa-1', name: 'QA', plan: 'gold', renews: 'tomorrow', locale: 'ko' },
      { id: 'qa-2', name: 'QA two' },
    ];
    const first = await client.request('POST', `/api/campaigns/${id}/test-send`, { recipients: seeds });
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ campaignId: id, runId: 'test-1', complete: true });
    expect(first.body.results).toEqual([
      expect.objectContaining({ id: 'qa-1', state: 'sent', locale: 'ko' }),
      expect.objectContaining({ id: 'qa-2', state: 'skipped', reason: 'render-error', reasonDetail: 'missing variable: plan' }),
    ]);
    expect(mock.bodies.map((b) => [b.recipient.id, b.runId, b.message.title])).toEqual([['qa-1', 'test-1', 'QA님 안녕하세요']]);
    // The campaign is as it was: a draft, no run, its own list untouched.
    expect(await client.campaign(id)).toMatchObject({ status: 'draft', latestRun: null, recipientCount: 100, counts: { total: 100, pending: 100, sent: 0 } });
    // A second test send is a run of its own, with its own keys; the frequency cap counted the first.
    const second = await client.request('POST', `/api/campaigns/${id}/test-send`, {
      recipients: [seeds[0], { id: 'qa-3', name: 'N', plan: 'p', renews: 'r' }],
    });
    expect(second.body.runId).toBe('test-2');
    expect(second.body.results).toEqual([
      expect.objectContaining({ id: 'qa-1', state: 'skipped', reason: 'frequency-cap' }),
      expect.objectContaining({ id: 'qa-3', state: 'sent' }),
    ]);
    expect(mock.arrivals.map((a) => a.recipientId)).toEqual(['qa-1', 'qa-3']);
    expect(new Set(mock.bodies.map((b) => b.idempotencyKey)).size).toBe(2);
    // The campaign then launches as if nothing happened (the seeds are not in its list).
    await client.launch(id);
    const done = await waitForStatus(client, id, 'completed');
    expect(done.counts).toMatchObject({ total: 100, sent: 100 });
    expect(mock.duplicates()).toBe(0);
    const cancelled = await createCampaign(client, ['x']);
    await client.request('POST', `/api/campaigns/${cancelled}/cancel`);
    const refused = await client.request('POST', `/api/campaigns/${cancelled}/test-send`, { recipients: [{ id: 'qa-1' }] });
    expect(refused.status).toBe(409);
    expect((await client.request('POST', `/api/campaigns/${id}/test-send`, { recipients: range(51, 's') })).status).toBe(422);
  });

  it('warn on the campaign when a template names a field no recipient of the list has: at create, upload and PATCH', async () => {
    const { client } = await start({ workers: 0 });
    const id = await createCampaign(client, [{ id: 'a', name: 'A' }], { message: { title: 'Hi {{ name }}', body: '{{ plan }} {% if vip %}★{% endif %}' } });
    expect((await client.campaign(id)).warnings).toEqual([
      'no recipient of the list has the field plan (used in message.body)',
      'no recipient of the list has the field vip (used in message.body)',
    ]);
    const upload = await fetch(`${client.baseUrl}/api/campaigns/${id}/recipients`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/x-ndjson' },
      body: '{"id":"a","name":"A","plan":"gold"}\n{"id":"b","vip":true}\n',
    });
    expect(upload.status).toBe(200);
    expect((await client.campaign(id)).warnings).toEqual([]);
    const patched = await client.request('PATCH', `/api/campaigns/${id}`, { message: { title: 'Hi {{ recipient.nickname | default: name }}', body: 'b' } });
    expect(patched.body.warnings).toEqual(['no recipient of the list has the field nickname (used in message.title)']);
    // A list of bare ids has no fields: every named field is warned about.
    const bare = await createCampaign(client, ['x', 'y'], { message: { title: '{{ name }}', body: 'b' } });
    expect((await client.campaign(bare)).warnings).toEqual(['no recipient of the list has the field name (used in message.title)']);
  });

  it('send a campaign stored before templates existed as its text reads, braces and all, until its message is PATCHed', async () => {
    const stack = await start({ workers: 1, provider: { tps: 2000 } });
    const { client, mock } = stack;
    const id = await createCampaign(client, [{ id: 'a', name: 'Kim' }], { message: { title: 'Use code {{PROMO}}', body: 'Hi {{ name }}' } });
    // As an older version stored it: no `templated` mark.
    const redis = testRedis();
    onCleanup(() => redis.quit());
    await redis.hdel(new Keys(stack.prefix).campaign(id).meta(), 'templated');
    expect((await client.request('POST', `/api/campaigns/${id}/dry-run`)).body).toMatchObject({ ok: true, fixed: true });
    await client.launch(id);
    await waitForStatus(client, id, 'completed');
    expect(mock.bodies.map((b) => b.message)).toEqual([{ title: 'Use code {{PROMO}}', body: 'Hi {{ name }}', data: {} }]);
    // Cloned, it stays as it was; PATCHed, it is a template from then on.
    const clone = (await client.request('POST', `/api/campaigns/${id}/clone`, {})).body.id as string;
    expect((await client.request('POST', `/api/campaigns/${clone}/preview`, { recipientId: 'a' })).body.message).toMatchObject({ body: 'Hi {{ name }}' });
    await client.request('PATCH', `/api/campaigns/${clone}`, { message: { title: 't', body: 'Hi {{ name }}' } });
    expect((await client.request('POST', `/api/campaigns/${clone}/preview`, { recipientId: 'a' })).body.message).toMatchObject({ body: 'Hi Kim' });
  });
});
