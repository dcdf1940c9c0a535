import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_TOKEN } from '../helpers/fixtures.js';
import { REPO_ROOT } from '../helpers/processes.js';
import { launchCampaign, range, startStack, type Stack } from '../helpers/stack.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const installed = existsSync(CHROMIUM);
if (!installed) console.warn(`progress page test skipped: no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH; .ci/run installs it)`);

/** The campaign progress page in a real (headless) browser, as an operator uses it. */
describe.skipIf(!installed)('the campaign progress page', () => {
  let stack: Stack;
  let browser: Browser;

  beforeAll(async () => {
    stack = await startStack({ workers: 1, provider: { tps: 40 } });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  });

  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
  });

  it('shows a running campaign moving, and pauses it at the press of a button', async () => {
    const id = await launchCampaign(stack.client, range(400, 'b'), { name: 'Browser test' });
    const context = await browser.newContext({ httpCredentials: { username: 'admin', password: TEST_TOKEN }, viewport: { width: 1400, height: 500 } });
    const page = await context.newPage();
    await page.goto(`${stack.client.baseUrl}/admin/campaigns`);
    const row = page.locator(`tr[data-id="${id}"]`);
    await row.waitFor();
    expect(await page.getByTestId('role').textContent()).toContain('admin');
    const done = async () => Number(await row.getByTestId('bar').getAttribute('data-done'));
    const first = await done();
    await page.waitForFunction(
      // Runs in the page: `document` is the page's.
      ([rowId, before]) =>
        Number((globalThis as any).document.querySelector(`tr[data-id="${rowId}"] [data-testid="bar"]`)?.getAttribute('data-done')) > Number(before),
      [id, first] as const,
    );
    expect(await done()).toBeGreaterThan(first);
    const shots = join(REPO_ROOT, '.artifacts');
    mkdirSync(shots, { recursive: true });
    const shot = join(shots, 'progress-page.png');
    await page.screenshot({ path: shot });
    console.info(`progress page screenshot: ${shot}`);

    await row.getByTestId('pause').click();
    await page.locator(`tr[data-id="${id}"][data-status="paused"]`).waitFor();
    expect((await stack.client.campaign(id)).status).toBe('paused');
    await row.getByTestId('resume').click();
    await page.locator(`tr[data-id="${id}"][data-status="running"]`).waitFor();

    // Bull Board, behind the same credentials, shows the queues.
    await page.goto(`${stack.client.baseUrl}/admin/queues`);
    await page.getByText('send', { exact: true }).first().waitFor();
    await page.screenshot({ path: join(shots, 'bull-board.png') });
    await context.close();
  });

  it('shows the local-time waves of a campaign, and its deferred recipients by reason', async () => {
    // 09:00 in each recipient's zone, hours away in both: two waves, nothing due.
    const localTime = new Intl.DateTimeFormat('en-GB', { timeZone: 'Asia/Seoul', hourCycle: 'h23', hour: '2-digit', minute: '2-digit' }).format(
      new Date(Date.now() + 3 * 3_600_000),
    );
    const recipients = [...range(3, 'kr').map((id) => ({ id, timezone: 'Asia/Seoul' })), ...range(2, 'uk').map((id) => ({ id, timezone: 'Europe/London' }))];
    const id = await launchCampaign(stack.client, recipients, { name: 'Waves', deliverAt: { localTime, timezone: 'Asia/Seoul' } });
    const context = await browser.newContext({ httpCredentials: { username: 'admin', password: TEST_TOKEN }, viewport: { width: 1400, height: 500 } });
    const page = await context.newPage();
    await page.goto(`${stack.client.baseUrl}/admin/campaigns`);
    const waves = page.locator(`tr[data-id="${id}"] [data-testid="waves"]`);
    await waves.waitFor();
    const shown = (await waves.textContent()) ?? '';
    const api = (await stack.client.campaign(id)).latestRun.waves as Array<{ at: string; recipients: number }>;
    expect(api.map((w) => w.recipients)).toEqual([3, 2]);
    for (const w of api) expect(shown).toContain(`${w.at.slice(5, 16).replace('T', ' ')}Z ${w.recipients}`);
    expect(await page.locator(`tr[data-id="${id}"]`).textContent()).toContain('local time 5');
    await context.close();
    await stack.client.request('POST', `/api/campaigns/${id}/cancel`);
  });
});
