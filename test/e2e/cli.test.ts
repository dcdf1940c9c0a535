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
    return cliWith({ PUSHQ_TOKEN: TEST_TOKEN }, ...args);
  }

  function cliWith(env: Record<string, string>, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const child = spawn(process.execPath, ['bin/pushq.mjs', ...args], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH, PUSHQ_URL: stack.client.baseUrl, ...env },
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

    // Its results, checked whole by the CLI against the count and checksum the server sent.
    const exported = await cli('results', id, '--format', 'csv');
    expect(exported.code, exported.stderr).toBe(0);
    expect(exported.stderr).toMatch(/301 recipients, sha256 [0-9a-f]{64}/);
    const lines = exported.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^id,state,attempts,/);
    expect(lines.filter((l) => /^p\d+,sent,1,/.test(l))).toHaveLength(300);
    const ndjson = await cli('results', id);
    expect(ndjson.code, ndjson.stderr).toBe(0);
    expect(JSON.parse(ndjson.stdout.trimEnd().split('\n').at(-1)!)).toMatchObject({ summary: { count: 301 } });
  });

  it('creates a templated campaign, dry-runs it (exit 2 naming who would fail), previews one recipient and test-sends to a seed list', async () => {
    const file = join(dir, 'renewals.ndjson');
    writeFileSync(file, `${JSON.stringify({ id: 'r1', name: 'Kim', plan: 'gold', locale: 'ko' })}\n${JSON.stringify({ id: 'r2', name: 'Sam' })}\n`);
    const created = await cli(
      'create',
      '--name',
      'tpl',
      '--provider',
      'mock',
      '--title',
      'Hi {{ name }}',
      '--body',
      '{{ plan }} plan',
      '--locales',
      '{"ko":{"title":"{{ name }}님"}}',
      '--file',
      file,
    );
    expect(created.code, created.stderr).toBe(0);
    const id = created.stdout.trim().split('\n').at(-1)!;
    const dry = await cli('dry-run', id);
    expect(dry.code).toBe(2);
    expect(dry.stdout).toMatch(/^1 of 2 render; 1 would not\n {2}1 without plan: r2\n/);
    expect(dry.stdout).toMatch(/locale ko: 1 recipient\(s\), 0 would fail/);
    const preview = JSON.parse((await cli('preview', id, '--recipient', 'r1')).stdout);
    expect(preview).toMatchObject({ rendered: true, locale: 'ko', message: { title: 'Kim님', body: 'gold plan' } });
    const typed = JSON.parse((await cli('preview', id, '--record', '{"id":"x","name":"Lee","plan":"p"}')).stdout);
    expect(typed.message).toMatchObject({ title: 'Hi Lee' });
    const seedsFile = join(dir, 'seeds.ndjson');
    writeFileSync(seedsFile, '{"id":"qa","name":"QA","plan":"test"}\n');
    const sent = await cli('test-send', id, '--to-file', seedsFile);
    expect(sent.code, sent.stderr).toBe(0);
    expect(JSON.parse(sent.stdout)).toMatchObject({ runId: 'test-1', complete: true, results: [{ id: 'qa', state: 'sent' }] });
    expect(stack.mock.bodies.filter((b) => b.campaignId === id).map((b) => [b.recipient.id, b.message.title])).toEqual([['qa', 'Hi QA']]);
    const launch = await cli('launch', id);
    expect(launch.code).toBe(1);
    expect(launch.stderr).toMatch(/^pushq: 422 RENDER_FAILED: .*1 without plan \(first: r2\)/);
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

  it('prints names as text, never as terminal control sequences', async () => {
    const name = 'evil\u001b]0;pwned\u0007\u001b[2J\u009b31m\u202eoot\nsecond line';
    const created = await stack.client.request('POST', '/api/campaigns', { name, provider: 'mock', message: { title: 't', body: 'b' } });
    expect(created.status).toBe(201);
    const listed = await cli('list');
    expect(listed.code).toBe(0);
    const line = listed.stdout.split('\n').find((l) => l.includes(created.body.id))!;
    expect(line).toContain('evil\\u001b]0;pwned\\u0007\\u001b[2J\\u009b31m\\u202eoot\\nsecond line');
    // eslint-disable-next-line no-control-regex -- no control character may reach the terminal
    expect(listed.stdout).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/);
    const status = await cli('status', created.body.id);
    // eslint-disable-next-line no-control-regex -- no control character may reach the terminal
    expect(status.stdout).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/);
    expect(JSON.parse(status.stdout).name).toBe(name);
  });

  it('takes the token from a file or the environment, and warns that --token shows in ps', async () => {
    const file = join(dir, 'token');
    writeFileSync(file, `${TEST_TOKEN}\n`, { mode: 0o600 });
    const fromFile = await cliWith({}, 'list', '--token-file', file);
    expect([fromFile.code, fromFile.stderr]).toEqual([0, '']);
    const fromEnv = await cliWith({ PUSHQ_TOKEN: TEST_TOKEN }, 'list');
    expect([fromEnv.code, fromEnv.stderr]).toEqual([0, '']);
    const inline = await cliWith({}, 'list', '--token', TEST_TOKEN);
    expect(inline.code).toBe(0);
    expect(inline.stderr).toMatch(/--token is visible to other users in ps/);
  });
});
