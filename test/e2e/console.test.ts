import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_TOKEN } from '../helpers/fixtures.js';
import { REPO_ROOT } from '../helpers/processes.js';
import { launchCampaign, range, startStack, type Stack } from '../helpers/stack.js';

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
    const series = (await stack.client.request('GET', `/api/campaigns/${id}/runs/main/series`)).body;
    expect(series.points.reduce((n: number, p: { counts: { sent: number } }) => n + p.counts.sent, 0)).toBe(240);
    // At most the cap in any second the workers counted.
    expect(Math.max(...series.points.map((p: { counts: { sent: number } }) => p.counts.sent))).toBeLessThanOrEqual(40);
    expect(await page.getByTestId('runs').textContent()).toContain('main');
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

    // A schedule: its next five occurrences, in the campaign's zone.
    const scheduled = (await stack.client.createCampaign({ name: 'Weekly', provider: 'mock', recipients: ['s1'] })).id as string;
    expect((await stack.client.request('POST', `/api/campaigns/${scheduled}/schedule`, { cron: '0 0 9 * * 1', timezone: 'Asia/Seoul' })).status).toBe(200);
    const schedule = await open(VIEWER_TOKEN, `/admin/campaigns/${scheduled}`);
    await expect.poll(() => schedule.getByTestId('next-runs').locator('li').count()).toBe(5);
    const first = (await schedule.getByTestId('next-runs').locator('li').first().textContent()) ?? '';
    expect(first).toMatch(/09:00 Asia\/Seoul$/);
    await schedule.context().close();
    await stack.client.request('POST', `/api/campaigns/${scheduled}/cancel`);

    // An admin's browser is refused too without the page's header (a form another site posts cannot set it).
    const admin = await open(TEST_TOKEN, `/admin/campaigns/${id}`);
    expect((await admin.request.post(`${base}/admin/api/campaigns/${id}/pause`)).status()).toBe(403);
    await admin.getByTestId('pause').waitFor();
    expect((await stack.client.campaign(id)).status).toBe('running');
    // Cancel asks first, naming who would not be sent.
    let asked = '';
    admin.once('dialog', (dialog) => {
      asked = dialog.message();
      void dialog.dismiss();
    });
    await admin.getByTestId('cancel').click();
    await expect.poll(() => asked).toMatch(/of 400 recipients have not been sent/);
    expect((await stack.client.campaign(id)).status).toBe('running');
    await admin.screenshot({ path: join(SHOTS, 'console-campaign-admin.png'), fullPage: true });
    await admin.context().close();
    await stack.client.request('POST', `/api/campaigns/${id}/cancel`);
  });
});
