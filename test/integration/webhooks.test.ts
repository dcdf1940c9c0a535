import { describe, expect, it } from 'vitest';
import { ApiClient } from '../helpers/api-client.js';
import { onCleanup, testPrefix } from '../helpers/cleanup.js';
import { providersFile, TEST_TOKEN } from '../helpers/fixtures.js';
import { startInProcess } from '../helpers/in-process.js';
import { startMockProvider } from '../helpers/mock-provider.js';
import { deletePrefix, testRedis } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';
import { RedisLedger } from '../../src/adapters/redis/redis-ledger.js';
import { REASONS } from '../../src/domain/respect.js';
import { acquireOptions, redisHarness } from '../helpers/harness.js';
import { startWebhookReceiver, webhooksFile, type WebhookReceiver } from '../helpers/webhook-receiver.js';

async function pushqWith(receiver: WebhookReceiver | null, endpoint: Record<string, unknown>, providerRespond?: (id: string) => number) {
  const prefix = testPrefix('wh');
  const redis = testRedis();
  onCleanup(async () => {
    await deletePrefix(redis, prefix);
    redis.disconnect();
  });
  const mock = await startMockProvider({ respond: providerRespond ? (body) => ({ status: providerRespond(body.recipient.id) }) : undefined });
  onCleanup(() => mock.close());
  const running = await startInProcess(prefix, {
    PROVIDERS_FILE: providersFile([{ name: 'mock', type: 'http', url: mock.url, tps: 2000, maxAttempts: 2, retryBaseMs: 10, retryMaxMs: 20 }]),
    ...(receiver ? { WEBHOOKS_FILE: webhooksFile([{ name: 'crm', url: receiver.url, secret: receiver.secret, ...endpoint }]) } : {}),
  });
  onCleanup(() => running.stop());
  return { client: new ApiClient(running.url!, TEST_TOKEN), mock, prefix, redis };
}

async function receiver(reply?: Parameters<typeof startWebhookReceiver>[1]): Promise<WebhookReceiver> {
  const r = await startWebhookReceiver(undefined, reply);
  onCleanup(() => r.close());
  return r;
}

async function campaign(client: ApiClient, recipients: string[]): Promise<string> {
  const res = await client.request('POST', '/api/campaigns', { name: 'w', provider: 'mock', message: { title: 't', body: 'b' }, recipients });
  expect(res.status).toBe(201);
  return res.body.id as string;
}

const ids = (n: number, label = 'r') => Array.from({ length: n }, (_, i) => `${label}${i}`);

describe('webhooks', () => {
  it('deliver run events and the failed recipients, signed, in order', async () => {
    const hooks = await receiver();
    const { client } = await pushqWith(hooks, { events: ['run.started', 'run.completed', 'recipient.failed'] }, (id) => (id.endsWith('7') ? 400 : 200));
    const recipients = ids(100);
    const id = await campaign(client, recipients);
    await client.launch(id);
    await waitFor(() => hooks.accepted.some((d) => d.type === 'run.completed'), { what: 'run.completed delivered' });
    expect(hooks.attempts.every((a) => a.verified)).toBe(true);
    const types = hooks.accepted.map((d) => d.type);
    expect(types[0]).toBe('run.started');
    expect(types.at(-1)).toBe('run.completed');
    const failed = hooks.recipientEvents(id).sort();
    expect(failed).toEqual(
      recipients
        .filter((r) => r.endsWith('7'))
        .map((r) => `recipient.failed|main|${r}`)
        .sort(),
    );
    const first = hooks.accepted.find((d) => d.type === 'recipient.failed')!;
    expect(first.data.recipients![0]).toMatchObject({ error: { code: 'HTTP_400' }, attempts: 1 });
  });

  it('write recipient.sent only while an endpoint takes it, and trim recipient entries once delivered (run events stay)', async () => {
    const hooks = await receiver();
    const { client, prefix, redis } = await pushqWith(hooks, { events: ['run.completed', 'recipient.failed'] }, (id) => (id === 'r3' ? 400 : 200));
    const first = await campaign(client, ids(50));
    await client.launch(first);
    await waitFor(() => hooks.accepted.some((d) => d.type === 'run.completed' && d.data.campaignId === first), { what: 'run.completed' });
    const stream = `${prefix}:{c:${first}}:events`;
    const kinds = async () => (await redis.xrange(stream, '-', '+')).map(([, f]) => f[1]);
    // Nobody takes sent events: none written; the failed one, delivered, leaves the outbox (within the trim's age).
    await waitFor(async () => !(await kinds()).includes('recipients'), { what: 'recipient entries trimmed', timeoutMs: 30_000 });
    expect(await kinds()).toEqual(['run.started', 'run.completed']);
    expect(hooks.recipientEvents(first)).toEqual(['recipient.failed|main|r3']);

    // An endpoint made through the API that takes recipient.sent: from then on sends are events, delivered to it.
    const other = await startWebhookReceiver();
    onCleanup(() => other.close());
    const made = await client.request('POST', '/api/webhooks', { name: 'warehouse', url: other.url, events: ['recipient.sent'], secret: other.secret });
    expect(made.status).toBe(201);
    await new Promise((r) => setTimeout(r, 1500)); // the workers' registry reloads within a second
    const second = await campaign(client, ids(30, 's'));
    await client.launch(second);
    await waitFor(() => other.recipientEvents(second).length === 30, { what: 'every send reported to warehouse', timeoutMs: 30_000 });
    expect(other.recipientEvents(second).sort()).toEqual(
      ids(30, 's')
        .map((r) => `recipient.sent|main|${r}`)
        .sort(),
    );
    expect(other.attempts.every((a) => a.verified)).toBe(true);
    // crm (run.completed and failed only) never saw a sent event.
    expect(hooks.accepted.filter((d) => d.type === 'recipient.sent')).toEqual([]);
  });

  it('manages endpoints through the API: secret shown once, file endpoints read-only, 404 and 409', async () => {
    const hooks = await receiver();
    const { client } = await pushqWith(hooks, { events: ['run.completed'] });
    const made = await client.request('POST', '/api/webhooks', { name: 'ops', url: 'http://127.0.0.1:9/x', events: ['run.stuck', 'run.cancelled'] });
    expect(made.status).toBe(201);
    expect(made.body.secret).toMatch(/^whsec_[A-Za-z0-9+/=]{40,}$/);
    expect(made.body).toMatchObject({ name: 'ops', source: 'api', enabled: true, tps: 10, timeoutMs: 10_000, deadLetters: 0 });
    const list = await client.request('GET', '/api/webhooks');
    expect(list.body.items.map((w: { name: string }) => w.name).sort()).toEqual(['crm', 'ops']);
    expect(JSON.stringify(list.body)).not.toContain('whsec_');
    expect((await client.request('GET', '/api/webhooks/ops')).body).not.toHaveProperty('secret');
    expect((await client.request('POST', '/api/webhooks', { name: 'ops', url: 'http://127.0.0.1:9/y', events: ['run.started'] })).status).toBe(409);
    expect((await client.request('POST', '/api/webhooks', { name: 'crm', url: 'http://127.0.0.1:9/y', events: ['run.started'] })).status).toBe(409);
    expect((await client.request('POST', '/api/webhooks', { name: 'bad', url: 'ftp://x', events: ['run.started'] })).status).toBe(422);
    expect((await client.request('POST', '/api/webhooks', { name: 'bad', url: 'http://x', events: ['run.nope'] })).status).toBe(422);
    expect((await client.request('POST', '/api/webhooks', { name: 'bad', url: 'http://x', events: ['run.started'], secret: 'plain' })).status).toBe(422);
    const patched = await client.request('PATCH', '/api/webhooks/ops', { tps: 5, events: ['run.completed'] });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ tps: 5, events: ['run.completed'] });
    expect((await client.request('PATCH', '/api/webhooks/crm', { tps: 5 })).status).toBe(409);
    expect((await client.request('PATCH', '/api/webhooks/crm', { enabled: false })).body).toMatchObject({
      enabled: false,
      disabled: { reason: 'disabled through the API' },
    });
    expect((await client.request('PATCH', '/api/webhooks/crm', { enabled: true })).body).toMatchObject({ enabled: true, disabled: null });
    expect((await client.request('DELETE', '/api/webhooks/crm')).status).toBe(409);
    expect((await client.request('DELETE', '/api/webhooks/ops')).status).toBe(200);
    expect((await client.request('GET', '/api/webhooks/ops')).status).toBe(404);
    expect((await client.request('GET', '/api/webhooks/..%2Fx')).status).toBe(404);
    expect((await client.request('GET', '/api/webhooks/nope/dead-letters')).status).toBe(404);
  });

  it('keep what exhausted its attempts as a dead letter, and replay it', async () => {
    let down = true;
    const hooks = await receiver(({ type }) => (down && type === 'recipient.failed' ? 500 : 200));
    const { client } = await pushqWith(hooks, { events: ['run.completed', 'recipient.failed'], maxAttempts: 3, retryBaseMs: 20, retryMaxMs: 50 }, (id) =>
      id === 'r1' ? 400 : 200,
    );
    const id = await campaign(client, ids(5));
    await client.launch(id);
    // The failed event fails 3 times, becomes a dead letter, and what follows it goes on.
    await waitFor(() => hooks.accepted.some((d) => d.type === 'run.completed'), { what: 'run.completed after the dead letter' });
    expect(hooks.attempts.filter((a) => JSON.parse(a.body).type === 'recipient.failed').map((a) => a.answered)).toEqual([500, 500, 500]);
    const dead = await client.request('GET', '/api/webhooks/crm/dead-letters?payload=true');
    expect(dead.body.total).toBe(1);
    expect(dead.body.items[0]).toMatchObject({ type: 'recipient.failed', campaignId: id, runId: 'main', count: 1, attempts: 3, lastStatus: 500, replay: null });
    expect(dead.body.items[0].payload.data.recipients).toEqual([expect.objectContaining({ id: 'r1' })]);
    expect((await client.request('GET', '/api/webhooks/crm')).body.deadLetters).toBe(1);
    down = false;
    expect((await client.request('POST', '/api/webhooks/crm/dead-letters/replay', {})).body).toEqual({ replaying: 1 });
    await waitFor(async () => (await client.request('GET', '/api/webhooks/crm/dead-letters')).body.total === 0, { what: 'the replay delivered' });
    // The same id as every attempt, so a receiver drops repeats.
    const ids_ = hooks.attempts.filter((a) => JSON.parse(a.body).type === 'recipient.failed').map((a) => a.id);
    expect(new Set(ids_).size).toBe(1);
    expect(hooks.recipientEvents(id)).toEqual(['recipient.failed|main|r1']);
    const metrics = await (await fetch(`${client.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/pushq_webhook_deliveries_total\{endpoint="crm",outcome="dead"\} 1/);
  });

  it('disable an endpoint that answers 410, and start again from now once enabled', async () => {
    let gone = true;
    const hooks = await receiver(() => (gone ? 410 : 200));
    const { client } = await pushqWith(hooks, { events: ['run.started', 'run.completed'] });
    const first = await campaign(client, ids(3));
    await client.launch(first);
    await waitFor(async () => (await client.request('GET', '/api/webhooks/crm')).body.enabled === false, { what: 'crm disabled' });
    expect((await client.request('GET', '/api/webhooks/crm')).body.disabled.reason).toMatch(/410/);
    await waitFor(async () => (await client.campaign(first)).status === 'completed', { what: 'first completed' });
    const tried = hooks.attempts.length;
    gone = false;
    expect((await client.request('PATCH', '/api/webhooks/crm', { enabled: true })).body.enabled).toBe(true);
    await new Promise((r) => setTimeout(r, 1500));
    const second = await campaign(client, ids(3));
    await client.launch(second);
    await waitFor(() => hooks.accepted.some((d) => d.type === 'run.completed' && d.data.campaignId === second), { what: 'second run.completed' });
    // Nothing of the first campaign (it happened while disabled) reached it after the 410.
    expect(hooks.attempts.slice(tried).every((a) => JSON.parse(a.body).data.campaignId === second)).toBe(true);
  });

  it('tell an endpoint that fell behind the outbox bound what it missed (outbox.overflowed), counted, then go on', async () => {
    let down = true;
    const hooks = await receiver(() => (down ? 500 : 200));
    const { client, prefix, redis } = await pushqWith(hooks, { events: ['recipient.skipped'], maxAttempts: 1000, retryBaseMs: 100, retryMaxMs: 200 });
    // A run written straight to the ledger (no worker sends it): 10,100 skips, one ledger step each.
    const h = redisHarness('overflow', { redis, prefix });
    const ledger = new RedisLedger(redis, h.keys, h.scripts, undefined, { maskFor: () => 'k' });
    const size = 10_100;
    const campaignId = await h.createCampaign(ids(size), 10_000);
    const runId = await h.startRun(campaignId);
    await redis.zincrby(h.keys.outboxCampaigns(), 1, campaignId);
    const skip = async (position: number) => {
      const ref = { campaignId, runId, page: Math.floor(position / 10_000) };
      await ledger.acquirePage(ref, 'w', acquireOptions(60_000));
      await ledger.claim(ref, 'w', 60_000, [{ index: position % 10_000, op: 'skip', reason: REASONS.suppressed, detail: 'global' }]);
    };
    await skip(0);
    // The endpoint is down: its first delivery is tried again and again while the outbox fills past its bound.
    await waitFor(() => hooks.attempts.length >= 2, { what: 'the first delivery refused twice' });
    for (let position = 1; position < size; position += 1) await skip(position);
    expect(await redis.xlen(`${prefix}:{c:${campaignId}}:events`)).toBeLessThanOrEqual(10_000);
    down = false;
    await waitFor(() => hooks.accepted.some((d) => d.type === 'outbox.overflowed'), { what: 'outbox.overflowed', timeoutMs: 30_000 });
    const overflow = hooks.accepted.find((d) => d.type === 'outbox.overflowed')!;
    expect(overflow.data).toMatchObject({ campaignId, message: expect.stringContaining('/results') });
    // What the outbox still held after the loss reaches it, in order, after the notice.
    await waitFor(() => hooks.recipientEvents(campaignId).includes(`recipient.skipped|main|r${size - 1}`), {
      what: 'the last skip delivered',
      timeoutMs: 30_000,
    });
    const after = hooks.accepted
      .slice(hooks.accepted.indexOf(overflow) + 1)
      .flatMap((d) => (d.data.recipients ?? []).map((r) => Number(String(r.id).slice(1))));
    expect(after).toEqual([...after].sort((a, b) => a - b));
    expect(after.length).toBeGreaterThan(9000);
    const metrics = await (await fetch(`${client.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/pushq_webhook_events_lost_total\{endpoint="crm"\} 1/);
  }, 120_000);
});
