import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_TOKEN } from '../helpers/fixtures.js';
import { REPO_ROOT } from '../helpers/processes.js';
import { startStack, type Stack } from '../helpers/stack.js';

/** The command line against the running app, as an operator would use it. */
describe('the pushq command line', () => {
  let stack: Stack;
  const dir = mkdtempSync(join(tmpdir(), 'pushq-cli-'));

  beforeAll(async () => {
    stack = await startStack({ workers: 1, provider: { tps: 2000 } });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  function cli(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const child = spawn(process.execPath, ['bin/pushq.mjs', ...args], {
      cwd: REPO_ROOT,
      env: { ...process.env, PUSHQ_URL: stack.client.baseUrl, PUSHQ_TOKEN: TEST_TOKEN },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr })));
  }

  it('creates a campaign from a CSV (count and hash computed by the CLI), launches it and watches it to the end', async () => {
    const file = join(dir, 'people.csv');
    const rows = Array.from({ length: 300 }, (_, i) => `p${i},"Kim, ${i}"`);
    // A quoted line break: one row, not two, for the count.
    writeFileSync(file, `\uFEFFid,name\n${rows.join('\n')}\nlast,"two\nlines"\n`);
    const created = await cli('create', '--name', 'cli', '--provider', 'mock', '--title', 'Hi', '--body', 'There', '--file', file);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toMatch(/"accepted": 301/);
    expect(created.stderr).toMatch(/uploaded 301 rows/);
    const id = created.stdout.trim().split('\n').at(-1)!;

    expect((await cli('launch', id)).code).toBe(0);
    const watched = await cli('watch', id, '--interval', '200');
    expect(watched.code).toBe(0);
    expect(watched.stdout.trim()).toBe(`${id}: completed`);
    expect(watched.stderr).toMatch(/sent 301/);
    const status = JSON.parse((await cli('status', id)).stdout);
    expect(status.counts).toMatchObject({ total: 301, sent: 301 });
    expect(stack.mock.arrivals.filter((a) => a.campaignId === id)).toHaveLength(301);
  });

  it('says what went wrong in one line and exits non-zero', async () => {
    const result = await cli('launch', '01aaaaaaaaaaaaaaaaaaaaaaaa');
    expect(result.code).toBe(1);
    expect(result.stderr.trim()).toMatch(/^pushq: 404 CAMPAIGN_NOT_FOUND: /);
    const noToken = spawn(process.execPath, ['bin/pushq.mjs', 'list'], { cwd: REPO_ROOT, env: { PATH: process.env.PATH } });
    let err = '';
    noToken.stderr.on('data', (d: Buffer) => (err += d.toString()));
    expect(await new Promise((resolve) => noToken.on('exit', resolve))).toBe(1);
    expect(err).toMatch(/missing the API token/);
  });
});
