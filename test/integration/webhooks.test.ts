import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ApiClient } from '../helpers/api-client.js';
import { onCleanup, testPrefix } from '../helpers/cleanup.js';
import { providersFile, TEST_TOKEN } from '../helpers/fixtures.js';
import { startInProcess } from '../helpers/in-process.js';
import { startMockProvider } from '../helpers/mock-provider.js';
import { deletePrefix, testRedis } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';

/** A WEBHOOKS_FILE for `endpoints` (each with its secret written to a file of its own). */
export function webhooksFile(endpoints: Array<Record<string, unknown> & { secret: string }>): string {
  const dir = mkdtempSync(join(tmpdir(), 'pushq-webhooks-'));
  const entries = endpoints.map(({ secret, ...rest }, i) => {
    const secretFile = join(dir, `secret-${i}`);
    writeFileSync(secretFile, secret);
    return { ...rest, secretFile };
  });
  const file = join(dir, 'webhooks.json');
  writeFileSync(file, JSON.stringify(entries));
  return file;
}

async function pushqWith(receiver: WebhookReceiver, endpoint: Record<string, unknown>, providerRespond?: (id: string) => number) {
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
    LOG_LEVEL: 'warn',
    WEBHOOKS_FILE: webhooksFile([{ name: 'crm', url: receiver.url, secret: receiver.secret, ...endpoint }]),
  });
  onCleanup(() => running.stop());
  return { client: new ApiClient(running.url!, TEST_TOKEN), mock };
}

describe('webhooks', () => {
  it('deliver run events and the failed recipients, signed, in order', async () => {
    const receiver = await startWebhookReceiver();
    onCleanup(() => receiver.close());
    const { client } = await pushqWith(receiver, { events: ['run.started', 'run.completed', 'recipient.failed'] }, (id) => (id.endsWith('7') ? 400 : 200));
    const recipients = Array.from({ length: 100 }, (_, i) => `r${i}`);
    const id = (await client.request('POST', '/api/campaigns', { name: 'w', provider: 'mock', message: { title: 't', body: 'b' }, recipients })).body
      .id as string;
    await client.launch(id);
    await waitFor(() => receiver.accepted.some((d) => d.type === 'run.completed'), { what: 'run.completed delivered', timeoutMs: 30_000 });
    expect(receiver.attempts.every((a) => a.verified)).toBe(true);
    const types = receiver.accepted.map((d) => d.type);
    expect(types[0]).toBe('run.started');
    expect(types.at(-1)).toBe('run.completed');
    const failed = receiver.recipientEvents(id).sort();
    expect(failed).toEqual(
      recipients
        .filter((r) => r.endsWith('7'))
        .map((r) => `recipient.failed|main|${r}`)
        .sort(),
    );
    const first = receiver.accepted.find((d) => d.type === 'recipient.failed')!;
    expect(first.data.recipients![0]).toMatchObject({ error: { code: 'HTTP_400' }, attempts: 1 });
  });
});
