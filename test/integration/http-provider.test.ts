import { performance } from 'node:perf_hooks';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpProvider } from '../../src/adapters/push/http-provider.js';
import { providerSchema, type HttpProviderConfig } from '../../src/adapters/push/provider-config.js';
import type { SendRequest } from '../../src/app/ports.js';
import { startMockProvider, type MockProvider } from '../helpers/mock-provider.js';
import { freePort } from '../helpers/redis-server.js';

const request: SendRequest = {
  idempotencyKey: '6f1c1a52-0c1e-8e1a-9b1c-0123456789ab',
  campaignId: 'c1',
  runId: 'main',
  recipient: { id: 'r1', phone: '010-0000-0000' },
  message: { title: 'T', body: 'B', data: { deep: { link: '/x' } } },
};

function provider(url: string, extra: Record<string, unknown> = {}): HttpProvider {
  return new HttpProvider(providerSchema.parse({ name: 'p', type: 'http', url, tps: 100, timeoutMs: 300, ...extra }) as HttpProviderConfig);
}

describe('the http provider against a real server on loopback', () => {
  let mock: MockProvider;
  let p: HttpProvider;
  let reply: { status: number; body?: string; headers?: Record<string, string>; delayMs?: number } = { status: 200 };

  beforeAll(async () => {
    mock = await startMockProvider({ respond: () => reply });
    p = provider(mock.url, { headers: { 'x-api-key': 'k' } });
  });
  afterAll(async () => {
    await p.close();
    await mock.close();
  });

  it('posts the contract wire format with the idempotency key in header and body', async () => {
    reply = { status: 202 };
    expect(await p.send(request)).toEqual({ kind: 'sent' });
    const headers = mock.headers.at(-1)!;
    expect(headers['idempotency-key']).toBe(request.idempotencyKey);
    expect(headers['content-type']).toBe('application/json');
    expect(headers['x-api-key']).toBe('k');
    expect(mock.bodies.at(-1)).toEqual(request);
  });

  it("reports a request's departure once the server reads its connection, never for a connection's first request", async () => {
    reply = { status: 200, delayMs: 50 };
    const fresh = provider(mock.url, { connections: 1 });
    try {
      const departures: number[] = [];
      const before = performance.now();
      expect(await fresh.send(request, (at) => departures.push(at))).toEqual({ kind: 'sent' });
      // A new connection: the server may not have read it yet, so its permit rests from the answer.
      expect(departures).toEqual([]);
      const sentAt = performance.now();
      expect(await fresh.send(request, (at) => departures.push(at))).toEqual({ kind: 'sent' });
      const answeredAt = performance.now();
      expect(departures).toHaveLength(1);
      // Taken after the body was written, before the answer (50 ms later) came.
      expect(departures[0]).toBeGreaterThanOrEqual(sentAt);
      expect(departures[0]).toBeLessThan(answeredAt - 40);
      expect(before).toBeLessThan(sentAt);
    } finally {
      await fresh.close();
    }
  });

  it('adds headers kept out of the providers file (headersFile, headersEnv), and says which one is wrong without its content', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pushq-headers-'));
    const file = join(dir, 'headers.json');
    writeFileSync(file, JSON.stringify({ authorization: 'Bearer from-a-file' }));
    const config = (extra: Record<string, unknown>) =>
      providerSchema.parse({ name: 'p', type: 'http', url: mock.url, tps: 100, ...extra }) as HttpProviderConfig;
    const fromFile = new HttpProvider(config({ headers: { 'x-app': 'a' }, headersFile: file }));
    const fromEnv = new HttpProvider(config({ headersEnv: 'PROVIDER_HEADERS' }), { PROVIDER_HEADERS: '{"x-api-key":"from-the-env"}' });
    try {
      reply = { status: 200 };
      await fromFile.send(request);
      expect(mock.headers.at(-1)).toMatchObject({ authorization: 'Bearer from-a-file', 'x-app': 'a' });
      await fromEnv.send(request);
      expect(mock.headers.at(-1)).toMatchObject({ 'x-api-key': 'from-the-env' });
    } finally {
      await Promise.all([fromFile.close(), fromEnv.close()]);
    }
    writeFileSync(file, '{"authorization": Bearer sk_live_SECRET}');
    expect(() => new HttpProvider(config({ headersFile: file }))).toThrow(/headersFile .* is not a JSON object of headers/);
    expect(() => new HttpProvider(config({ headersFile: file }))).not.toThrow(/SECRET/);
    expect(() => new HttpProvider(config({ headersEnv: 'PROVIDER_HEADERS' }), { PROVIDER_HEADERS: '{"x":"a\\nb"}' })).toThrow(
      /not a JSON object of header names/,
    );
    expect(() => providerSchema.parse({ name: 'p', type: 'http', url: mock.url, tps: 1, headersFile: file, headersEnv: 'X' })).toThrow(/not both/);
  });

  it('classifies answers: 429 rate limited with Retry-After, other 4xx permanent, 5xx transient', async () => {
    reply = { status: 429, headers: { 'retry-after': '3' }, body: 'slow down' };
    expect(await p.send(request)).toEqual({ kind: 'rate-limited', scope: 'provider', code: 'HTTP_429', message: 'slow down', retryAfterMs: 3000 });
    reply = { status: 404, body: '{"error":"UNREGISTERED"}' };
    expect(await p.send(request)).toEqual({ kind: 'permanent', code: 'HTTP_404', message: '{"error":"UNREGISTERED"}' });
    reply = { status: 503, body: '' };
    expect(await p.send(request)).toEqual({ kind: 'transient', code: 'HTTP_503', message: 'HTTP 503' });
    reply = { status: 400, body: 'x'.repeat(5000) };
    const long = await p.send(request);
    expect(long.kind).toBe('permanent');
    expect((long as { message: string }).message.length).toBe(500);
  });

  it('treats a timeout as in doubt (the provider may have it)', async () => {
    reply = { status: 200, delayMs: 1000 };
    expect(await p.send(request)).toMatchObject({ kind: 'in-doubt', code: 'TIMEOUT' });
  });

  it('treats a refused connection as transient', async () => {
    const closed = provider(`http://127.0.0.1:${await freePort()}/send`);
    try {
      expect(await closed.send(request)).toMatchObject({ kind: 'transient', code: 'ECONNREFUSED' });
    } finally {
      await closed.close();
    }
  });
});
