import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchCampaign, startStack, waitForStatus, type Stack } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';

/** What an operator sees at 3 a.m.: metrics of the whole deployment from one scrape, logs without secrets. */
describe('observability', () => {
  let stack: Stack;
  const secretToken = 'fcm-device-token-SECRET-0123456789';
  const secretPhone = '010-9999-8888';

  beforeAll(async () => {
    stack = await startStack({
      workers: 2,
      provider: { tps: 500 },
      mock: { respond: (body) => (body.recipient.id.startsWith('reject') ? { status: 400, body: 'bad token' } : undefined) },
      env: { LOG_LEVEL: 'debug' },
    });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('serves the workers’ metrics, the queues and the providers from the API, and logs no device token or phone number', async () => {
    const recipients = [
      ...Array.from({ length: 300 }, (_, i) => ({ id: `ok-${i}`, deviceToken: secretToken, phone: secretPhone })),
      ...Array.from({ length: 20 }, (_, i) => ({ id: `reject-${i}`, deviceToken: secretToken, phone: secretPhone })),
    ];
    const id = await launchCampaign(stack.client, recipients);
    await waitForStatus(stack.client, id, 'completed');
    const metrics = await waitFor(async () => {
      const text = await (await fetch(`${stack.client.baseUrl}/metrics`)).text();
      // Workers push every few seconds: wait until their last sends are in.
      const sent = Number(/^pushq_sends_total\{provider="mock",outcome="sent"\} (\d+)/m.exec(text)?.[1] ?? 0);
      return sent === 300 ? text : undefined;
    });
    expect(metrics).toMatch(/^pushq_sends_total\{provider="mock",outcome="permanent"\} 20$/m);
    expect(metrics).toMatch(/^pushq_ledger_transitions_total\{to="sent"\} 300$/m);
    expect(metrics).toMatch(/^pushq_ledger_transitions_total\{to="claimed"\} 320$/m);
    expect(metrics).toMatch(/^pushq_limiter_wait_seconds_count\{provider="mock"\} \d+/m);
    expect(metrics).toMatch(/^pushq_send_duration_seconds_bucket\{le="0\.1",provider="mock"\} \d+/m);
    expect(metrics).toMatch(/^pushq_queue_jobs\{queue="send",state="completed"\} \d+/m);
    expect(metrics).toMatch(/^pushq_provider_breaker_state\{provider="mock"\} 0/m);
    expect(metrics).toMatch(/^pushq_runs_active\{status="stuck"\} 0/m);
    // No label carries a campaign or recipient id.
    expect(metrics).not.toContain(id);
    expect(metrics).not.toContain('ok-1');

    // The details are for token holders (an anonymous probe learns ready or not).
    const ready = (await stack.client.request('GET', '/readyz')).body as { workers: { seen: number } };
    expect(ready.workers.seen).toBe(2);

    const logs = [stack.api, ...stack.workers].map((p) => p.output).join('\n');
    expect(logs).toContain('"msg":"provider did not accept a send"');
    expect(logs).toContain('"deviceToken":"[redacted]"');
    expect(logs).not.toContain(secretToken);
    expect(logs).not.toContain(secretPhone);
    expect(logs).not.toContain(stack.env.ADMIN_TOKEN);
    // One line per API request, by route pattern.
    expect(logs).toMatch(/"route":"\/api\/campaigns\/:id","status":200/);
  });
});
