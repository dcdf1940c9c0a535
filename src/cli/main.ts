import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { Api, CliError } from './api.js';
import { printable, printableJson } from './printable.js';
import { bar, duration, Progress } from './progress.js';
import { results } from './results.js';
import { upload } from './upload.js';

const USAGE = `pushq — the command line of the pushq API

  pushq create --name N --provider P --title T --body B [--data JSON] [--locales JSON] [--on-render-error refuse|skip]
               [--priority high|normal|low] [--file F]     title, body and data strings are Liquid templates
  pushq upload <campaign> <file.csv|file.ndjson> [--format csv|ndjson] [--invalid reject|skip]
  pushq launch|pause|resume|cancel|retry-failed <campaign>
  pushq schedule <campaign> --at ISO-8601 | --cron "0 0 9 * * *" [--timezone Asia/Seoul]
  pushq dry-run <campaign>       render every recipient: who would not get a whole message (exit 2 when anyone)
  pushq preview <campaign> --recipient ID | --record JSON
                                 one recipient rendered, and the request each provider would make
  pushq test-send <campaign> --to JSON | --to-file F
                                 send now to a seed list only (up to 50: a JSON array, or a file of one per line)
  pushq status <campaign>        the campaign as JSON
  pushq watch <campaign>         live progress until the run ends
  pushq results <campaign> [--run R] [--format ndjson|csv] > file
                                 every recipient of the run (the latest by default), checked whole at the end
  pushq list

Options: --url (or PUSHQ_URL, default http://127.0.0.1:3000); the token from PUSHQ_TOKEN (or ADMIN_TOKEN),
or --token-file F (a file holding it). --token T works too, but other users of the machine can read it in ps.
An upload computes the row count and SHA-256 of the file first; the server refuses it whole if they do not match,
and refuses it whole if a row is invalid unless --invalid skip says to skip and report such rows.`;

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    url: { type: 'string' },
    token: { type: 'string' },
    'token-file': { type: 'string' },
    name: { type: 'string' },
    provider: { type: 'string' },
    title: { type: 'string' },
    body: { type: 'string' },
    data: { type: 'string' },
    priority: { type: 'string' },
    file: { type: 'string' },
    format: { type: 'string' },
    invalid: { type: 'string' },
    at: { type: 'string' },
    cron: { type: 'string' },
    timezone: { type: 'string' },
    interval: { type: 'string' },
    run: { type: 'string' },
    locales: { type: 'string' },
    'on-render-error': { type: 'string' },
    recipient: { type: 'string' },
    record: { type: 'string' },
    to: { type: 'string' },
    'to-file': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});

/** Our own text as it is; anything else as terminal-safe JSON. */
const print = (value: unknown): void => {
  process.stdout.write(`${typeof value === 'string' ? value : printableJson(value)}\n`);
};

/** The API token: a file (--token-file), the environment, or (visible in ps, so warned about) --token. */
function apiToken(): string | undefined {
  if (values['token-file']) {
    try {
      return readFileSync(values['token-file'], 'utf8').trim();
    } catch (err) {
      throw new CliError(`cannot read --token-file ${values['token-file']} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
  if (values.token) {
    process.stderr.write('pushq: --token is visible to other users in ps; prefer PUSHQ_TOKEN or --token-file\n');
    return values.token;
  }
  return process.env.PUSHQ_TOKEN ?? process.env.ADMIN_TOKEN;
}

function invalidOption(value: string | undefined): 'reject' | 'skip' | undefined {
  if (value === undefined || value === 'reject' || value === 'skip') return value;
  throw new CliError(`--invalid is reject or skip, not ${JSON.stringify(value)}`);
}

function json(value: string, what: string): unknown {
  try {
    return JSON.parse(value);
  } catch {
    throw new CliError(`${what} is not JSON`);
  }
}

/** Seed recipients: a JSON array (--to), or a file of one JSON record or id per line (--to-file). */
function seeds(): unknown[] {
  if (values.to) {
    const list = json(values.to, '--to');
    if (!Array.isArray(list)) throw new CliError('--to is a JSON array of recipients');
    return list;
  }
  const file = need(values['to-file'], '--to or --to-file');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read --to-file ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l) => (l.startsWith('{') || l.startsWith('"') ? json(l, `a line of ${file}`) : l));
}

/** The dry run as an operator reads it: counts, then who and why. */
function dryRunText(r: any): string {
  const lines = [
    `${r.rendered.toLocaleString('en')} of ${r.recipients.toLocaleString('en')} render${r.failed ? `; ${r.failed.toLocaleString('en')} would not` : ''}`,
  ];
  for (const m of r.missingVariables) lines.push(`  ${m.count} without ${m.variable}: ${m.examples.join(', ')}${m.count > m.examples.length ? ', …' : ''}`);
  for (const t of r.tooLong) lines.push(`  ${t.count} too long for ${t.limit} (${t.example}): ${t.examples.join(', ')}`);
  for (const e of r.errors) lines.push(`  ${e.count}: ${e.error}`);
  for (const [locale, c] of Object.entries(r.locales as Record<string, { recipients: number; failed: number }>)) {
    lines.push(`  locale ${locale}: ${c.recipients} recipient(s), ${c.failed} would fail`);
  }
  return lines.map(printable).join('\n');
}

function need(value: string | undefined, what: string): string {
  if (!value) throw new CliError(`missing ${what} (pushq help)`);
  return value;
}

/** Polls the campaign and draws its latest run: bar, counts, rate, ETA. Answers the final campaign. */
async function watch(api: Api, id: string, intervalMs: number): Promise<any> {
  const progress = new Progress();
  let previous: { at: number; done: number } | null = null;
  let rate = 0;
  for (;;) {
    const campaign = await api.call('GET', `/api/campaigns/${id}`);
    const c = campaign.counts;
    const done = c.sent + c.failed + c.unknown + c.skipped;
    const now = Date.now();
    if (previous && now > previous.at) rate = ((done - previous.done) * 1000) / (now - previous.at);
    previous = { at: now, done };
    const line = `${campaign.status.padEnd(9)} ${bar(c.total ? done / c.total : 0)} ${done.toLocaleString('en')}/${c.total.toLocaleString('en')}  sent ${c.sent} failed ${c.failed} unknown ${c.unknown} skipped ${c.skipped}  ${rate.toFixed(0)}/s  ETA ${rate > 0 ? duration(c.pending / rate) : '?'}`;
    const running = campaign.status === 'running' || (campaign.latestRun?.status === 'running' && campaign.status !== 'cancelled');
    if (!running && campaign.status !== 'paused') {
      progress.done(line);
      return campaign;
    }
    progress.update(line);
    await sleep(intervalMs);
  }
}

async function main(): Promise<void> {
  const [command, id, file] = positionals;
  if (values.help || !command || command === 'help') return print(USAGE);
  const api = new Api(values.url ?? process.env.PUSHQ_URL ?? 'http://127.0.0.1:3000', need(apiToken(), 'the API token (PUSHQ_TOKEN or --token-file)'));
  switch (command) {
    case 'create': {
      const created = await api.call('POST', '/api/campaigns', {
        name: need(values.name, '--name'),
        provider: need(values.provider, '--provider'),
        message: {
          title: need(values.title, '--title'),
          body: need(values.body, '--body'),
          data: values.data ? json(values.data, '--data') : {},
          ...(values.locales ? { locales: json(values.locales, '--locales') } : {}),
        },
        ...(values.priority ? { priority: values.priority } : {}),
        ...(values['on-render-error'] ? { onRenderError: values['on-render-error'] } : {}),
      });
      if (values.file) print(await upload(api, created.id, values.file, { format: values.format, invalid: invalidOption(values.invalid) }));
      return print(created.id);
    }
    case 'upload':
      return print(await upload(api, need(id, 'the campaign id'), need(file, 'the file'), { format: values.format, invalid: invalidOption(values.invalid) }));
    case 'launch':
    case 'pause':
    case 'resume':
    case 'cancel':
    case 'retry-failed':
      return print(await api.call('POST', `/api/campaigns/${need(id, 'the campaign id')}/${command}`));
    case 'schedule':
      return print(
        await api.call(
          'POST',
          `/api/campaigns/${need(id, 'the campaign id')}/schedule`,
          values.at ? { at: values.at } : { cron: need(values.cron, '--at or --cron'), ...(values.timezone ? { timezone: values.timezone } : {}) },
        ),
      );
    case 'dry-run': {
      const report = await api.call('POST', `/api/campaigns/${need(id, 'the campaign id')}/dry-run`);
      print(dryRunText(report));
      if (!report.ok) process.exitCode = 2;
      return;
    }
    case 'preview':
      return print(
        await api.call(
          'POST',
          `/api/campaigns/${need(id, 'the campaign id')}/preview`,
          values.record ? { recipient: json(values.record, '--record') } : { recipientId: need(values.recipient, '--recipient or --record') },
        ),
      );
    case 'test-send':
      return print(await api.call('POST', `/api/campaigns/${need(id, 'the campaign id')}/test-send`, { recipients: seeds() }));
    case 'status':
      return print(await api.call('GET', `/api/campaigns/${need(id, 'the campaign id')}`));
    case 'watch': {
      const final = await watch(api, need(id, 'the campaign id'), Number(values.interval ?? 1000));
      return print(`${printable(final.id)}: ${printable(final.status)}`);
    }
    case 'results':
      await results(api, need(id, 'the campaign id'), { run: values.run, format: values.format });
      return;
    case 'list':
      return print(
        (await api.call('GET', '/api/campaigns?limit=100')).items
          .map((c: { id: string; status: string; name: string }) => `${printable(c.id)}  ${printable(c.status).padEnd(9)}  ${printable(c.name)}`)
          .join('\n'),
      );
    default:
      throw new CliError(`unknown command ${JSON.stringify(command)} (pushq help)`);
  }
}

main().catch((err: Error) => {
  process.stderr.write(`pushq: ${printable(err.message)}\n`);
  process.exit(1);
});
