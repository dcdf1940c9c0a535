import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_TOKEN } from '../helpers/fixtures.js';
import { REPO_ROOT } from '../helpers/processes.js';
import { launchCampaign, range, startStack, type Stack } from '../helpers/stack.js';
import { newWebhookSecret, startWebhookReceiver } from '../helpers/webhook-receiver.js';
import { onCleanup } from '../helpers/cleanup.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const installed = existsSync(CHROMIUM);
const VIEWER_TOKEN = 'viewer-token-console-test-0123456789';
const SHOTS = join(REPO_ROOT, '.artifacts');

/**
 * The operator console in a real (headless) browser: a campaign made from a
 * CSV through the create flow, previewed, dry-run and launched; its page's
 * chart moving while the provider's cap holds it; a viewer who sees no
 * controls and whose forged changes are refused.
 */
describe.skipIf(!installed)('the operator console', () => {
  let stack: Stack;
  let browser: Browser;

  beforeAll(async () => {
    // Recipients whose id starts with "bad" are refused for good (400): the failures table has something to show.
    stack = await startStack({
      workers: 1,
      provider: { tps: 40 },
      mock: { respond: (body) => (body.recipient.id.startsWith('bad') ? { status: 400, body: 'unknown device' } : undefined) },
      env: { VIEWER_TOKEN },
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'] });
    mkdirSync(SHOTS, { recursive: true });
  });

  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
  });

  async function open(token: string, path: string): Promise<Page> {
    const context = await browser.newContext({ httpCredentials: { username: 'operator', password: token }, viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    await page.goto(`${stack.client.baseUrl}${path}`);
    return page;
  }

  it('creates a campaign from a CSV through the form, previews it, launches it after a confirmation naming the count, and shows its chart moving to completed', async () => {
    const page = await open(TEST_TOKEN, '/admin/campaigns/new');
    await page.getByTestId('role').filter({ hasText: 'admin' }).waitFor();
    await page.locator('#f-provider option[value="mock"]').waitFor({ state: 'attached' });
    await page.selectOption('#f-provider', 'mock');
    await page.fill('#f-title', 'Hi');
    await page.fill('#f-body', 'Hello {{ name }}');
    // The API's own schemas check the form: a blank name and a bad quiet-hours zone, each shown beside its field.
    await page.fill('#f-quiet', '21:00-08:00 Mars/Olympus');
    await page.getByTestId('create').click();
    const nameError = page.locator('[data-testid="field-error"][data-field="name"]');
    await nameError.waitFor();
    expect(await page.locator('[data-testid="field-error"][data-field="quietHours"]').textContent()).toMatch(/time zone/i);
    await page.fill('#f-name', 'Console launch');
    await page.fill('#f-quiet', '');
    await page.getByTestId('create').click();
    await page.locator('#campaign[data-id]').waitFor();
    expect(await page.locator('[data-testid="field-error"]').count()).toBe(0);

    // 240 recipients and a duplicate row, counted and hashed in the browser.
    const dir = mkdtempSync(join(tmpdir(), 'pushq-console-'));
    const csv = join(dir, 'recipients.csv');
    writeFileSync(csv, ['id,name', ...range(240, 'u').map((id, i) => `${id},n${i}`), 'u0,again', ''].join('\n'));
    await page.getByTestId('file').setInputFiles(csv);
    const status = page.getByTestId('upload-status');
    await page.locator('[data-testid="upload-status"][data-accepted]').waitFor();
    expect(await status.getAttribute('data-rows')).toBe('241');
    expect(await status.textContent()).toContain('accepted 240, duplicate 1, invalid 0');
    await page.screenshot({ path: join(SHOTS, 'console-create.png'), fullPage: true });

    await page.fill('#p-id', 'u7');
    await page.getByTestId('preview').click();
    await page.getByTestId('preview-out').filter({ hasText: 'Hello n7' }).waitFor();
    await page.getByTestId('dry-run').click();
    await page.locator('[data-testid="dry-run-out"][data-ok="true"]').waitFor();
    // A cron schedule shows its next occurrences in its zone as it is typed (then launching now instead).
    await page.selectOption('#s-kind', 'cron');
    await page.fill('#s-zone', 'Asia/Seoul');
    await page.fill('#s-cron', '0 30 8 * * *');
    await page.locator('[data-testid="schedule-next"][data-count="5"]').waitFor();
    expect(await page.getByTestId('schedule-next').textContent()).toMatch(/08:30 · .*\(Asia\/Seoul\)$/);
    await page.fill('#s-cron', 'not a cron');
    await page.locator('[data-testid="schedule-next"][data-count="0"]').waitFor();
    await page.selectOption('#s-kind', 'now');
    // Readable on a phone: the same page at 375 px.
    await page.setViewportSize({ width: 375, height: 800 });
    await page.screenshot({ path: join(SHOTS, 'console-create-phone.png'), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });

    let asked = '';
    page.once('dialog', (dialog) => {
      asked = dialog.message();
      void dialog.accept();
    });
    await page.getByTestId('launch').click();
    await page.waitForURL(/\/admin\/campaigns\/[0-9a-z]{26}$/);
    expect(asked).toContain('240 recipients');
    const id = page.url().split('/').pop()!;

    // The chart moves at the provider's cap (40/s), and is drawn from the workers' series.
    await page.waitForFunction(() => Number((globalThis as any).document.querySelector('[data-testid="rate-chart"]')?.dataset.sent) >= 40, undefined, {
      timeout: 15_000,
    });
    expect(await page.locator('[data-testid="rate-chart"] canvas').count()).toBeGreaterThan(0);
    // The ETA names its basis: the last ten seconds' rate at the provider.
    await page
      .getByTestId('eta')
      .filter({ hasText: /ETA .* at \d+\/s \(the last 10 s\)/ })
      .waitFor({ timeout: 10_000 });
    await page.screenshot({ path: join(SHOTS, 'console-campaign-running.png'), fullPage: true });
    await page.locator('[data-testid="counts"][data-status="completed"]').waitFor({ timeout: 30_000 });
    expect(await page.getByTestId('counts').textContent()).toContain('240 of 240 final · sent 240');
    // The workers' series adds up to the ledger's sends (the last second lands within a second of the end).
    const readSeries = async () => (await stack.client.request('GET', `/api/campaigns/${id}/runs/main/series`)).body;
    const sentIn = (series: { points: Array<{ counts: { sent: number } }> }) => series.points.reduce((n, p) => n + p.counts.sent, 0);
    await expect.poll(async () => sentIn(await readSeries()), { timeout: 5000 }).toBe(240);
    const series = await readSeries();
    // Counted when answers came back, so a second's bucket can borrow a few from its neighbour: any two seconds hold
    // at most two seconds of the cap, and a little jitter.
    const sent = series.points.map((p: { counts: { sent: number } }) => p.counts.sent);
    for (let i = 1; i < sent.length; i += 1) expect(sent[i - 1] + sent[i]).toBeLessThanOrEqual(2 * 40 + 4);
    expect(await page.getByTestId('runs').textContent()).toContain('main');
    await page.context().close();
  });

  it("counts a file's rows as the server does and hashes it as SHA-256 does, chunk by chunk, in the browser", async () => {
    const page = await open(TEST_TOKEN, '/admin/campaigns/new');
    await page.getByTestId('role').filter({ hasText: 'admin' }).waitFor();
    // SHA-256 of every length around the 64-byte block's edges, fed in uneven chunks.
    const lengths = [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000];
    const hashed = await page.evaluate((lengths) => {
      const out: string[] = [];
      for (const n of lengths) {
        const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 31 + 7) & 255);
        const hash = new (globalThis as any).pushqUpload.Sha256();
        for (let i = 0; i < n; i += 13) hash.update(bytes.subarray(i, i + 13));
        out.push(hash.hex());
      }
      return out;
    }, lengths);
    expect(hashed).toEqual(
      lengths.map((n) =>
        createHash('sha256')
          .update(Uint8Array.from({ length: n }, (_, i) => (i * 31 + 7) & 255))
          .digest('hex'),
      ),
    );

    // Row counts against the server's own parser: CRLF, CR, quoted line breaks, a BOM, blank and whitespace lines.
    const files: Array<[string, string, string]> = [
      ['crlf.csv', 'text/csv', 'id,name\r\na,1\r\nb,2\r\n\r\n'],
      ['cr.csv', 'text/csv', 'id,name\ra,1\rb,2\r'],
      ['quoted.csv', 'text/csv', '\ufeffid,note\na,"two\nlines"\nb,"x"\n\n'],
      ['spaces.csv', 'text/csv', 'id\na\n \nb\n'],
      ['stray.csv', 'text/csv', 'id\na\n\r\nb\n'],
      ['lines.ndjson', 'application/x-ndjson', '\ufeff{"id":"a"}\n\n  \n{"id":"b"}\r\n"c"'],
    ];
    for (const [name, type, body] of files) {
      const counted = await page.evaluate(
        async ([body, csv]) => {
          const counter = new (globalThis as any).pushqUpload.RowCounter(csv);
          const bytes = new TextEncoder().encode(body);
          for (let i = 0; i < bytes.length; i += 3) counter.feed(bytes.subarray(i, i + 3));
          return counter.finish() as number;
        },
        [body, type === 'text/csv'] as const,
      );
      // The server's count: an upload announcing it is taken whole (and refused with one more or one less).
      const draft = (await stack.client.createCampaign({ name: name, provider: 'mock' })).id as string;
      const put = (count: number) =>
        fetch(`${stack.client.baseUrl}/api/campaigns/${draft}/recipients?invalid=skip`, {
          method: 'PUT',
          headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': type, 'x-recipient-count': String(count) },
          body,
        });
      expect((await put(counted + 1)).status, `${name}: ${counted} + 1 rows refused`).toBe(422);
      expect((await put(counted)).status, `${name}: ${counted} rows, as the browser counted`).toBe(200);
    }
    await page.context().close();
  });

  it('shows a viewer no controls and refuses what a viewer or a forged request tries to change', async () => {
    const id = await launchCampaign(stack.client, range(400, 'v'), { name: 'Viewer watch' });
    const page = await open(VIEWER_TOKEN, `/admin/campaigns/${id}`);
    await page.getByTestId('role').filter({ hasText: 'viewer' }).waitFor();
    await page.locator('[data-testid="counts"][data-status]').waitFor();
    expect(await page.getByTestId('controls').locator('button').count()).toBe(0);
    // Forged: the viewer's own credentials, with and without the page's header.
    const base = stack.client.baseUrl;
    expect((await page.request.post(`${base}/admin/api/campaigns/${id}/cancel`, { headers: { 'x-pushq-page': '1' } })).status()).toBe(403);
    expect((await page.request.post(`${base}/admin/api/campaigns/${id}/pause`)).status()).toBe(403);
    // The create form is there to read, not to use.
    await page.goto(`${base}/admin/campaigns/new`);
    await page.getByTestId('role').filter({ hasText: 'viewer' }).waitFor();
    expect(await page.getByTestId('create').isDisabled()).toBe(true);
    await page.context().close();

    // Failures: paged 20 at a time, and found by id.
    const failing = await launchCampaign(stack.client, range(30, 'bad'), { name: 'Failing', priority: 'high' });
    const watch = await open(VIEWER_TOKEN, `/admin/campaigns/${failing}`);
    await watch.locator('[data-testid="counts"][data-status="completed"]').waitFor({ timeout: 30_000 });
    await expect.poll(() => watch.getByTestId('failures').locator('tr').count()).toBe(20);
    await watch.getByTestId('more-failures').click();
    await expect.poll(() => watch.getByTestId('failures').locator('tr').count()).toBe(30);
    await watch.fill('#find-id', 'bad7');
    await watch.getByTestId('find').getByRole('button').click();
    await watch.getByTestId('found').filter({ hasText: '"state": "failed"' }).waitFor();
    expect(await watch.locator('#failures-csv').getAttribute('href')).toBe(`/admin/api/campaigns/${failing}/failures.csv`);
    const csv = await watch.request.get(`${stack.client.baseUrl}/admin/api/campaigns/${failing}/failures.csv`);
    expect((await csv.text()).trim().split('\n')).toHaveLength(31);
    await watch.context().close();

    // Webhook dead letters of this campaign: an endpoint that refuses everything, one attempt each.
    const refusing = await startWebhookReceiver(newWebhookSecret(), () => 500);
    onCleanup(() => refusing.close());
    const made = await stack.client.request('POST', '/api/webhooks', {
      name: 'crm',
      url: refusing.url,
      events: ['run.started', 'run.completed'],
      maxAttempts: 1,
      secret: refusing.secret,
    });
    expect(made.status).toBe(201);
    const hooked = await launchCampaign(stack.client, range(3, 'hook'), { name: 'Hooked' });
    const letters = await open(VIEWER_TOKEN, `/admin/campaigns/${hooked}`);
    await expect.poll(() => letters.getByTestId('dead-letters').locator('tr').count(), { timeout: 30_000 }).toBeGreaterThan(0);
    expect(await letters.getByTestId('dead-letters').textContent()).toContain('crm');
    await letters.context().close();

    // A schedule: its next five occurrences, in the campaign's zone.
    const scheduled = (await stack.client.createCampaign({ name: 'Weekly', provider: 'mock', recipients: ['s1'] })).id as string;
    expect((await stack.client.request('POST', `/api/campaigns/${scheduled}/schedule`, { cron: '0 0 9 * * 1', timezone: 'Asia/Seoul' })).status).toBe(200);
    const schedule = await open(VIEWER_TOKEN, `/admin/campaigns/${scheduled}`);
    await expect.poll(() => schedule.getByTestId('next-runs').locator('li').count()).toBe(5);
    const first = (await schedule.getByTestId('next-runs').locator('li').first().textContent()) ?? '';
    expect(first).toMatch(/09:00 Asia\/Seoul$/);
    await schedule.context().close();
    await stack.client.request('POST', `/api/campaigns/${scheduled}/cancel`);

    // Without credentials nothing is read; from another origin nothing is changed, header or not.
    expect((await fetch(`${base}/admin/api/campaigns/${id}`)).status).toBe(401);
    const evil = await fetch(`${base}/admin/api/campaigns/${id}/pause`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`x:${TEST_TOKEN}`).toString('base64')}`, 'x-pushq-page': '1', origin: 'https://evil.example' },
    });
    expect(evil.status).toBe(403);

    await stack.client.request('POST', `/api/campaigns/${id}/cancel`);
    // An admin's browser is refused too without the page's header (a form another site posts cannot set it).
    // (A campaign of its own, long enough at 40/s to be running whatever the machine's load.)
    const running = await launchCampaign(stack.client, range(4000, 'w'), { name: 'Admin watch' });
    const admin = await open(TEST_TOKEN, `/admin/campaigns/${running}`);
    expect((await admin.request.post(`${base}/admin/api/campaigns/${running}/pause`)).status()).toBe(403);
    await admin.getByTestId('pause').waitFor();
    expect((await stack.client.campaign(running)).status).toBe('running');
    // Cancel asks first, naming who would not be sent.
    let asked = '';
    admin.once('dialog', (dialog) => {
      asked = dialog.message();
      void dialog.dismiss();
    });
    await admin.getByTestId('cancel').click();
    await expect.poll(() => asked).toMatch(/of 4,000 recipients have not been sent/);
    expect((await stack.client.campaign(running)).status).toBe('running');
    await admin.screenshot({ path: join(SHOTS, 'console-campaign-admin.png'), fullPage: true });
    await admin.context().close();
    await stack.client.request('POST', `/api/campaigns/${running}/cancel`);
  });
});
