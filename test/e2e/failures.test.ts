import { describe, expect, it } from 'vitest';
import { onCleanup } from '../helpers/cleanup.js';
import { startOwnRedis } from '../helpers/redis-server.js';
import { testRedis } from '../helpers/redis.js';
import { createCampaign, launchCampaign, range, stacksPerTest, waitForStatus } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Every failure path, with real processes and a provider on loopback that
 * misbehaves on purpose. Judged at the provider: nobody gets a message twice,
 * and every recipient is accounted for.
 */

/** RFC 4180, enough for the export: quoted fields, doubled quotes, line breaks inside quotes. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i]!;
    if (quoted && c === '"' && text[i + 1] === '"') {
      field += '"';
      i += 1;
    } else if (c === '"') {
      quoted = !quoted;
    } else if (!quoted && c === ',') {
      row.push(field);
      field = '';
    } else if (!quoted && c === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else {
      field += c;
    }
  }
  return rows;
}

const setup = stacksPerTest();

describe('failures at the provider', () => {
  it('exports failures.csv with nothing a spreadsheet would run as a formula (ids and provider text alike)', async () => {
    const hostile = ['=HYPERLINK("http://evil.example","x")', '+1+cmd|calc', '-2+3', '@SUM(A1)', '\tpad', '\rnote'];
    const stack = await setup({ workers: 1, mock: { respond: (body) => ({ status: 400, body: `=cmd|' /C calc'!A0 for ${body.recipient.id}` }) } });
    const id = await launchCampaign(stack.client, [...hostile, 'plain']);
    await waitForStatus(stack.client, id, 'completed');
    const csv = await fetch(`${stack.client.baseUrl}/api/campaigns/${id}/failures.csv`, { headers: { authorization: `Bearer ${stack.env.ADMIN_TOKEN}` } });
    const cells = parseCsv(await csv.text()).slice(1);
    expect(cells).toHaveLength(hostile.length + 1);
    for (const row of cells) {
      for (const cell of row) expect(cell, JSON.stringify(row)).not.toMatch(/^[=+\-@\t\r]/);
    }
    // The text is all there, behind the quote that neutralises it.
    expect(cells.map((r) => r[0]).sort()).toEqual([...hostile.map((h) => `'${h}`), 'plain'].sort());
  });

  it('fails permanent 4xx at once, lists and exports them, and retry-failed sends to exactly them', async () => {
    let fixed = false;
    const stack = await setup({
      workers: 1,
      mock: { respond: (body) => (!fixed && body.recipient.id.startsWith('bad') ? { status: 404, body: 'UNREGISTERED' } : undefined) },
      provider: { tps: 2000 },
    });
    const { client, mock } = stack;
    const bad = range(15, 'bad-');
    const all = [...range(40, 'ok-'), ...bad];
    const id = await launchCampaign(client, all);
    const done = await waitForStatus(client, id, 'completed');
    expect(done.counts).toMatchObject({ total: 55, sent: 40, failed: 15, unknown: 0 });
    const failures = await client.request('GET', `/api/campaigns/${id}/failures?limit=100`);
    expect(failures.body.items.map((f: { recipientId: string }) => f.recipientId).sort()).toEqual([...bad].sort());
    expect(failures.body.items[0]).toMatchObject({ state: 'failed', attempts: 1, error: { code: 'HTTP_404', message: 'UNREGISTERED' } });

    const csv = await fetch(`${client.baseUrl}/api/campaigns/${id}/failures.csv`, { headers: { authorization: `Bearer ${stack.env.ADMIN_TOKEN}` } });
    expect(csv.headers.get('content-type')).toMatch(/^text\/csv/);
    const lines = (await csv.text()).trim().split('\n');
    expect(lines[0]).toBe('recipientId,state,attempts,errorCode,errorMessage,at');
    expect(
      lines
        .slice(1)
        .map((l) => l.split(',')[0])
        .sort(),
    ).toEqual([...bad].sort());

    fixed = true;
    const [first, second] = await Promise.all([
      client.request('POST', `/api/campaigns/${id}/retry-failed`),
      client.request('POST', `/api/campaigns/${id}/retry-failed`),
    ]);
    expect([first.status, second.status].sort()).toEqual([200, 409]);
    const retried = await waitForStatus(client, id, 'completed');
    expect(retried.latestRun.id).toBe('main-r1');
    expect(retried.counts).toMatchObject({ total: 15, sent: 15, failed: 0 });
    const retryArrivals = mock.arrivals.filter((a) => a.runId === 'main-r1');
    expect(retryArrivals.map((a) => a.recipientId).sort()).toEqual([...bad].sort());
    // A retry run has keys of its own.
    const firstKeys = new Set(mock.arrivals.filter((a) => a.runId === 'main').map((a) => a.key));
    for (const a of retryArrivals) expect(firstKeys.has(a.key)).toBe(false);
    const nothingLeft = await client.request('POST', `/api/campaigns/${id}/retry-failed`);
    expect(nothingLeft.status).toBe(409);
  });

  it('rides out 10 % 503s and a provider whose real cap is below the configured one', async () => {
    let n = 0;
    const stack = await setup({
      workers: 2,
      mock: { cap: 250, retryAfterSeconds: 1, respond: () => (++n % 10 === 0 ? { status: 503, body: 'try later' } : undefined) },
      provider: { tps: 400, retryBaseMs: 100, retryMaxMs: 1000 },
    });
    const { client, mock } = stack;
    mock.keepBodies = false;
    const id = await launchCampaign(client, range(1500, 'f'));
    const done = await waitForStatus(client, id, 'completed', 90_000);
    console.info(
      `503/429 test: ${mock.arrivals.length} requests, ${mock.count(503)} answered 503, ${mock.count(429)} answered 429, failed ${done.counts.failed}`,
    );
    expect(done.counts.failed).toBeLessThanOrEqual(15);
    expect(done.counts.sent + done.counts.failed).toBe(1500);
    expect(mock.count(429)).toBeGreaterThan(0);
    expect(mock.duplicates()).toBe(0);
  });
});

describe('workers that die or stop', () => {
  // The SIGKILL churn test runs with the default settings in recovery.test.ts.

  it('resends in-doubt sends with the same key when the provider honours it (inDoubt: resend)', async () => {
    const stack = await setup({ workers: 2, mock: { latencyMs: 40 }, provider: { tps: 400, inDoubt: 'resend' } });
    const { client, mock, workers } = stack;
    const id = await launchCampaign(client, range(2000, 'd'));
    await waitFor(() => mock.arrivals.length >= 500);
    await workers[0]!.kill('SIGKILL');
    const done = await waitForStatus(client, id, 'completed', 90_000);
    expect(done.counts).toMatchObject({ sent: 2000, unknown: 0 });
    // A recipient may have reached the provider twice, but only ever with the same key.
    const keys = new Map<string, Set<string>>();
    for (const a of mock.arrivals) {
      if (!keys.has(a.recipientId)) keys.set(a.recipientId, new Set());
      keys.get(a.recipientId)!.add(a.key!);
    }
    expect(keys.size).toBe(2000);
    for (const set of keys.values()) expect(set.size).toBe(1);
  });

  it('leaves no unknown after a rolling SIGTERM restart of every worker', async () => {
    const stack = await setup({ workers: 3, mock: { latencyMs: 30 }, provider: { tps: 400 } });
    const { client, mock, workers } = stack;
    mock.keepBodies = false;
    const id = await launchCampaign(client, range(3000, 'r'));
    for (let i = 0; i < 3; i += 1) {
      await waitFor(() => mock.arrivals.length >= (i + 1) * 500, { what: `${(i + 1) * 500} deliveries` });
      const replacement = await stack.addWorker();
      const old = workers.shift()!;
      const exit = await old.kill('SIGTERM');
      expect(exit.code).toBe(0);
      expect(replacement.alive).toBe(true);
    }
    const done = await waitForStatus(client, id, 'completed', 90_000);
    expect(done.counts).toMatchObject({ sent: 3000, unknown: 0, failed: 0 });
    expect(mock.duplicates()).toBe(0);
  });
});

describe('Redis trouble', () => {
  it('carries on by itself after Redis is killed and restarted mid-run (AOF, fsync always)', async () => {
    const own = await startOwnRedis(['--appendonly', 'yes', '--appendfsync', 'always']);
    onCleanup(() => own.kill());
    const stack = await setup({ workers: 2, redisUrl: own.url, mock: { latencyMs: 20 }, provider: { tps: 500 } });
    const { client, mock } = stack;
    const id = await launchCampaign(client, range(3000, 'u'));
    await waitFor(() => mock.deliveries().size >= 700, { what: '700 deliveries' });
    await own.kill('SIGKILL');
    await own.start();
    const done = await waitFor(
      async () => {
        const res = await client.request('GET', `/api/campaigns/${id}`);
        return res.status === 200 && res.body.status === 'completed' ? res.body : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 250, what: 'completion after the Redis restart' },
    );
    const delivered = mock.deliveries().size;
    console.info(`Redis restart test: sent ${done.counts.sent}, unknown ${done.counts.unknown}, delivered ${delivered}, duplicates ${mock.duplicates()}`);
    expect(mock.duplicates()).toBe(0);
    expect(done.counts.sent + done.counts.unknown).toBe(3000);
    expect(delivered).toBeGreaterThanOrEqual(done.counts.sent);
    expect(delivered).toBeLessThanOrEqual(done.counts.sent + done.counts.unknown);
  });

  it('refuses new campaigns with 507 before Redis is full, and answers 503 changing nothing once Redis is out of memory', async () => {
    const own = await startOwnRedis(['--maxmemory', '3mb', '--maxmemory-policy', 'noeviction']);
    onCleanup(() => own.kill());
    const stack = await setup({ workers: 0, redisUrl: own.url, provider: { tps: 100 } });
    const { client } = stack;
    const small = await createCampaign(client, ['a']);
    // Campaigns until the memory guard refuses one (MEMORY_HIGH_WATERMARK, 0.85 of maxmemory): never a 503 first.
    let res;
    for (let i = 0; i < 200; i += 1) {
      res = await client.request('POST', '/api/campaigns', {
        name: 'fill',
        provider: 'mock',
        message: { title: 't', body: 'b' },
        recipients: range(2000, `x${i}-`),
      });
      if (res.status !== 201) break;
    }
    expect(res!.status).toBe(507);
    expect(res!.body.error.code).toBe('REDIS_MEMORY_HIGH');
    const before = (await client.request('GET', '/api/campaigns?limit=100')).body.items.length;
    // Something else fills Redis to the brim: a write the guard does not stand before fails whole, with 503.
    const filler = testRedis(own.url);
    onCleanup(() => filler.disconnect());
    for (let i = 0; ; i += 1) {
      const wrote = await filler.set(`filler:${i}`, 'x'.repeat(10_000)).then(
        () => true,
        () => false,
      );
      if (!wrote) break;
    }
    const edit = await client.request('PATCH', `/api/campaigns/${small}`, { name: 'renamed', recipients: range(2000, 'y') });
    expect(edit.status).toBe(503);
    expect(edit.body.error.code).toBe('STORE_UNAVAILABLE');
    expect((await client.request('GET', '/api/campaigns?limit=100')).body.items.length).toBe(before);
    expect(await client.campaign(small)).toMatchObject({ status: 'draft', name: 'c', recipientCount: 1 });
  });
});
