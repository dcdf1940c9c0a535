import { describe, expect, it } from 'vitest';
import type { ApiClient } from '../helpers/api-client.js';
import type { PushqProcess } from '../helpers/processes.js';
import { createCampaign, range, stacksPerTest, waitForStatus, type Stack } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';
import { startWebhookReceiver, webhooksFile, type WebhookReceiver } from '../helpers/webhook-receiver.js';
import { onCleanup } from '../helpers/cleanup.js';
import { CODE_ORDER } from '../../src/domain/outbox.js';
import { EVENT_CODES, type RecipientEventType } from '../../src/domain/webhooks.js';

/**
 * Events out, end to end: real API and worker processes, a webhook receiver
 * on loopback that fails a share of deliveries, and workers SIGKILLed while
 * they deliver. Every event the ledger implies reaches the receiver at
 * least once (or is a dead letter), signed, in each campaign's order, and
 * nothing else does.
 */
const start = stacksPerTest();

const SUBSCRIBED = ['run.started', 'run.completed', 'recipient.failed', 'recipient.skipped', 'recipient.unknown', 'recipient.sent'];

/** What each run's results export says each recipient's events are: `type|runId|id`, and the run events. */
async function impliedEvents(client: ApiClient, campaignId: string): Promise<string[]> {
  const res = await client.request('GET', `/api/campaigns/${campaignId}/runs/main/results`);
  expect(res.status).toBe(200);
  const rows = String(res.body)
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { id?: string; state?: string; reason?: string; summary?: unknown })
    .filter((row) => row.summary === undefined);
  const out = [`run.started|main|`, `run.completed|main|`];
  for (const row of rows) {
    if (row.state === 'skipped' && row.reason === 'cancelled') continue;
    if (['sent', 'failed', 'unknown', 'skipped'].includes(row.state!)) out.push(`recipient.${row.state}|main|${row.id}`);
  }
  return out.sort();
}

/** What reached the receiver (first acceptance of each delivery) and what became dead letters, as `type|runId|id`. */
async function reportedEvents(client: ApiClient, hooks: WebhookReceiver, campaignId: string): Promise<{ accepted: string[]; dead: string[] }> {
  const accepted = hooks.accepted
    .filter((d) => d.data.campaignId === campaignId)
    .flatMap((d) =>
      d.type.startsWith('recipient.') ? (d.data.recipients ?? []).map((r) => `${d.type}|${d.data.runId}|${String(r.id)}`) : [`${d.type}|${d.data.runId}|`],
    );
  const dead: string[] = [];
  let cursor: string | null = null;
  do {
    const page: {
      status: number;
      body: {
        items: Array<{ campaignId: string; payload: { type: string; data: { runId: string; recipients?: Array<{ id: string }> } } }>;
        nextCursor: string | null;
      };
    } = await client.request('GET', `/api/webhooks/hooks/dead-letters?payload=true&limit=100${cursor ? `&cursor=${cursor}` : ''}`);
    for (const letter of page.body.items.filter((l) => l.campaignId === campaignId)) {
      const { type, data } = letter.payload;
      if (type.startsWith('recipient.')) dead.push(...(data.recipients ?? []).map((r) => `${type}|${data.runId}|${r.id}`));
      else dead.push(`${type}|${data.runId}|`);
    }
    cursor = page.body.nextCursor;
  } while (cursor);
  return { accepted, dead };
}

/** A delivery's place in its campaign's outbox, from its id (`evt_<campaign>_<stream id>_<off>_<type>`): stream order, then type order within a window. */
function placeOf(id: string): [number, number, number, number] {
  const [, , streamId, off, type] = id.split('_');
  const [ms, seq] = streamId!.split('-').map(Number) as [number, number];
  const code = EVENT_CODES[`recipient.${type}` as RecipientEventType];
  return [ms, seq, Number(off), code ? CODE_ORDER.indexOf(code as (typeof CODE_ORDER)[number]) : -1];
}

function inOrder(ids: string[]): boolean {
  for (let i = 1; i < ids.length; i += 1) {
    const a = placeOf(ids[i - 1]!);
    const b = placeOf(ids[i]!);
    const cmp = a[0] - b[0] || a[1] - b[1] || a[2] - b[2] || a[3] - b[3];
    if (cmp > 0) return false;
  }
  return true;
}

/** The worker processes, SIGKILLed one at a time (oldest first) every `everyMs` while `until` says go on, each replaced at once. */
function churn(stack: Stack, everyMs: number, times: number): { kills: () => number; done: Promise<void> } {
  let kills = 0;
  const replacements: Array<Promise<PushqProcess>> = [];
  let timer: NodeJS.Timeout;
  const done = new Promise<void>((resolve) => {
    timer = setInterval(() => {
      if (kills >= times) {
        clearInterval(timer);
        void Promise.allSettled(replacements).then(() => resolve());
        return;
      }
      if (stack.workers.length < 2) return;
      void stack.workers.shift()!.kill('SIGKILL');
      kills += 1;
      replacements.push(stack.addWorker());
    }, everyMs);
  });
  onCleanup(() => clearInterval(timer));
  return { kills: () => kills, done };
}

async function twoCampaigns(client: ApiClient, size: number): Promise<string[]> {
  const ids: string[] = [];
  for (const label of ['a', 'b']) {
    const recipients = range(size, label).map((id) => ({ id }));
    ids.push(await createCampaign(client, recipients));
  }
  // A few on a suppression list: skipped events too.
  await client.request('POST', '/api/suppressions/global', { ids: ['a3', 'a33', 'b5'] });
  for (const id of ids) await client.launch(id);
  return ids;
}

describe('webhooks end to end', () => {
  it('deliver every event the ledger implies at least once, signed and in order, through 30 % failures, 5 % timeouts and SIGKILLed workers; the dead letters are what exhausted its attempts', async () => {
    const MAX_ATTEMPTS = 4;
    let seed = 20261205;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const hooks = await startWebhookReceiver(undefined, ({ type }) => {
      // Skipped-recipient deliveries are always refused: they exhaust their attempts, whatever else happens.
      if (type === 'recipient.skipped') return 503;
      const r = random();
      // 30 % answered 500, 5 % never answered (the sender's timeout).
      return r < 0.3 ? 500 : r < 0.35 ? 'hang' : 200;
    });
    onCleanup(() => hooks.close());
    const stack = await start({
      workers: 3,
      mock: { respond: (body) => (body.recipient.id.endsWith('9') ? { status: 400, body: 'bad token' } : undefined) },
      provider: { tps: 1000 },
      env: {
        WEBHOOKS_FILE: webhooksFile([
          {
            name: 'hooks',
            url: hooks.url,
            secret: hooks.secret,
            events: SUBSCRIBED,
            tps: 100,
            timeoutMs: 1000,
            maxAttempts: MAX_ATTEMPTS,
            retryBaseMs: 50,
            retryMaxMs: 400,
          },
        ]),
      },
    });
    const { client } = stack;
    const campaigns = await twoCampaigns(client, 1500);
    // Kill workers while they deliver.
    await waitFor(() => hooks.attempts.length > 0, { what: 'the first delivery attempt' });
    const killing = churn(stack, 1500, 4);
    for (const id of campaigns) await waitForStatus(client, id, 'completed', 60_000);
    await killing.done;
    expect(killing.kills()).toBe(4);

    for (const id of campaigns) {
      const implied = await impliedEvents(client, id);
      // Everything implied reaches the receiver or the dead letters; nothing else does.
      const reported = await waitFor(
        async () => {
          const r = await reportedEvents(client, hooks, id);
          const all = new Set([...r.accepted, ...r.dead]);
          return implied.every((e) => all.has(e)) ? r : undefined;
        },
        { timeoutMs: 90_000, intervalMs: 500, what: `every event of ${id} delivered or dead` },
      );
      expect([...new Set([...reported.accepted, ...reported.dead])].sort()).toEqual(implied);
      // In the campaign's order, by first acceptance — of what the sender saw delivered: a dead letter's last attempt,
      // abandoned at the sender's timeout, can still be handled by a starved receiver after the next delivery
      // (no sender can take back bytes it sent; pushq moved on only once it had given that attempt up).
      const dead = new Set(((await client.request('GET', '/api/webhooks/hooks/dead-letters?limit=100')).body.items as Array<{ id: string }>).map((l) => l.id));
      const ids = hooks.accepted.filter((d) => d.data.campaignId === id && !dead.has(d.id)).map((d) => d.id);
      expect(inOrder(ids), 'deliveries accepted in outbox order').toBe(true);
      expect(hooks.accepted.filter((d) => d.data.campaignId === id)[0]!.type).toBe('run.started');
    }
    // Every attempt was signed as Standard Webhooks says (verified with the standardwebhooks package).
    expect(hooks.attempts.length).toBeGreaterThan(0);
    expect(hooks.attempts.every((a) => a.verified)).toBe(true);
    // The dead letters: exactly the deliveries whose attempts all failed as the sender saw them (refused, or no answer
    // in time: a receiver may still handle one it answered too late); everything else was accepted.
    const letters = (await client.request('GET', '/api/webhooks/hooks/dead-letters?limit=100')).body.items as Array<{ id: string; attempts: number }>;
    expect(letters.length).toBeGreaterThanOrEqual(2);
    const acceptedIds = new Set(hooks.accepted.map((d) => d.id));
    const triedIds = new Set(hooks.attempts.map((a) => a.id));
    const neverAccepted = [...triedIds].filter((id) => !acceptedIds.has(id)).sort();
    expect(letters.map((l) => l.id).sort()).toEqual(expect.arrayContaining(neverAccepted));
    for (const letter of letters) {
      expect(letter.attempts).toBe(MAX_ATTEMPTS);
      const answers = hooks.attempts.filter((a) => a.id === letter.id).map((a) => a.answered);
      expect(answers.length).toBeGreaterThanOrEqual(MAX_ATTEMPTS);
      // Refused or unanswered, but for attempts the receiver handled after the sender's timeout (it cannot tell those apart).
      expect(answers.filter((s) => s === 'hang' || s >= 300).length).toBeGreaterThan(0);
    }
    console.info(
      `webhooks e2e: ${hooks.attempts.length} attempts, ${hooks.accepted.length} deliveries accepted, ${letters.length} dead letters, ${killing.kills()} workers killed`,
    );
  }, 240_000);

  it('with default settings, deliver every event at least once and in order while a worker is SIGKILLed mid-delivery', async () => {
    const hooks = await startWebhookReceiver();
    onCleanup(() => hooks.close());
    const stack = await start({
      workers: 2,
      mock: { respond: (body) => (body.recipient.id.endsWith('9') ? { status: 400 } : undefined) },
      env: { WEBHOOKS_FILE: webhooksFile([{ name: 'hooks', url: hooks.url, secret: hooks.secret, events: SUBSCRIBED }]) },
    });
    const { client } = stack;
    const campaigns = await twoCampaigns(client, 1000);
    await waitFor(() => hooks.attempts.length > 0, { what: 'the first delivery attempt' });
    await stack.workers[0]!.kill('SIGKILL');
    for (const id of campaigns) await waitForStatus(client, id, 'completed', 60_000);
    for (const id of campaigns) {
      const implied = await impliedEvents(client, id);
      await waitFor(
        async () => {
          const { accepted } = await reportedEvents(client, hooks, id);
          return implied.every((e) => accepted.includes(e));
        },
        { timeoutMs: 60_000, intervalMs: 500, what: `every event of ${id} delivered` },
      );
      expect([...new Set((await reportedEvents(client, hooks, id)).accepted)].sort()).toEqual(implied);
      expect(inOrder(hooks.accepted.filter((d) => d.data.campaignId === id).map((d) => d.id))).toBe(true);
    }
    expect(hooks.attempts.every((a) => a.verified)).toBe(true);
  }, 180_000);
});
