import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FcmProvider } from '../../src/adapters/push/fcm-provider.js';
import type { SendRequest } from '../../src/app/ports.js';
import { ConfigError } from '../../src/config-error.js';
import { providerSchema, type FcmProviderConfig } from '../../src/adapters/push/provider-config.js';
import { startFakeFcm, type FakeFcm } from '../helpers/fakes/fake-fcm.js';
import { waitFor } from '../helpers/wait.js';

const send = (token: string, data: Record<string, unknown> = {}): SendRequest => ({
  idempotencyKey: '6f1c1a52-0c1e-8e1a-9b1c-0123456789ab',
  campaignId: 'c1',
  runId: 'main',
  recipient: { id: `u-${token}`, token },
  message: { title: 'Hello', body: 'World', data },
});

function accountFile(account: object): string {
  const file = join(mkdtempSync(join(tmpdir(), 'pushq-fcm-')), 'service-account.json');
  writeFileSync(file, JSON.stringify(account));
  return file;
}

function fcm(fake: FakeFcm, extra: Record<string, unknown> = {}): FcmProvider {
  const config = providerSchema.parse({
    name: 'fcm',
    type: 'fcm',
    tps: 100,
    baseUrl: fake.url,
    serviceAccountFile: accountFile(fake.serviceAccount),
    ...extra,
  });
  return new FcmProvider(config as FcmProviderConfig);
}

describe('the FCM HTTP v1 provider against a local FCM and token endpoint', () => {
  let fake: FakeFcm;
  let provider: FcmProvider;

  beforeAll(async () => {
    fake = await startFakeFcm();
  });
  beforeEach(() => {
    provider = fcm(fake, { messageDefaults: { android: { priority: 'high' } } });
  });
  afterAll(async () => {
    await provider?.close();
    await fake.close();
  });

  it('sends with a token minted from the service account, shared by concurrent sends', async () => {
    const issuedBefore = fake.issued.length;
    const outcomes = await Promise.all(Array.from({ length: 20 }, (_, i) => provider.send(send(`device-${i}`, { n: 1, s: 'x' }))));
    expect(outcomes.every((o) => o.kind === 'sent')).toBe(true);
    expect(fake.issued.length).toBe(issuedBefore + 1);
    expect(fake.refusedAssertions).toEqual([]);
    const last = fake.sends.at(-1)!;
    expect(last.projectId).toBe('pushq-test');
    expect(last.bearer).toBe(fake.issued.at(-1));
    expect(last.message).toMatchObject({ notification: { title: 'Hello', body: 'World' }, data: { n: '1', s: 'x' }, android: { priority: 'high' } });
    // Neither the access token nor the service account key shows when the provider is logged or inspected.
    const shown = inspect(provider, { depth: 8 });
    expect(shown).not.toContain(last.bearer);
    expect(shown).not.toContain('PRIVATE KEY');
  });

  it('maps every FCM error the way the issue says', async () => {
    expect(await provider.send(send('unregistered-1'))).toMatchObject({ kind: 'permanent', code: 'UNREGISTERED', tokenInvalid: true });
    expect(await provider.send(send('malformed-1'))).toMatchObject({ kind: 'permanent', code: 'INVALID_ARGUMENT', tokenInvalid: true });
    expect(await provider.send(send('badpayload-1'))).toMatchObject({ kind: 'permanent', code: 'INVALID_ARGUMENT', tokenInvalid: false });
    expect(await provider.send(send('mismatch-1'))).toMatchObject({ kind: 'permanent', code: 'SENDER_ID_MISMATCH', tokenInvalid: true });
    expect(await provider.send(send('quota-1'))).toMatchObject({ kind: 'rate-limited', code: 'QUOTA_EXCEEDED', retryAfterMs: 2000 });
    expect(await provider.send(send('unavailable-1'))).toMatchObject({ kind: 'transient', code: 'UNAVAILABLE' });
    expect(await provider.send(send('internal-1'))).toMatchObject({ kind: 'transient', code: 'INTERNAL' });
    expect(await provider.send({ ...send('x'), recipient: { id: 'no-token' } })).toMatchObject({ kind: 'permanent', code: 'NO_TOKEN' });
  });

  it('gets one new access token when FCM rejects the current one, however many sends were refused, and fails over to transient when the new one is refused too', async () => {
    expect((await provider.send(send('device-a'))).kind).toBe('sent');
    const before = fake.issued.length;
    fake.revokeAll();
    const outcomes = await Promise.all([provider.send(send('device-b')), provider.send(send('device-c'))]);
    expect(outcomes).toMatchObject([
      { kind: 'not-sent', code: 'FCM_UNAUTHENTICATED' },
      { kind: 'not-sent', code: 'FCM_UNAUTHENTICATED' },
    ]);
    expect(fake.issued.length).toBe(before + 1);
    expect(await Promise.all([provider.send(send('device-b')), provider.send(send('device-c'))])).toEqual([{ kind: 'sent' }, { kind: 'sent' }]);
    expect(fake.sends.at(-1)!.bearer).toBe(fake.issued.at(-1));
    // Revoked again before any other send: the token minted to replace a refused one is refused too.
    fake.revokeAll();
    await provider.accessToken.renew(fake.issued.at(-1)!);
    fake.revokeAll();
    expect(await provider.send(send('device-d'))).toMatchObject({ kind: 'transient', code: 'FCM_AUTH' });
  });

  it('makes one request per send, so a permit carries one request: a rejected token is renewed and the send goes again on a permit of its own', async () => {
    expect((await provider.send(send('device-r1'))).kind).toBe('sent');
    fake.revokeAll();
    const before = fake.requests;
    const outcome = await provider.send(send('device-r2'));
    expect(fake.requests - before, 'requests made by one send').toBe(1);
    // Not the recipient's fault, and fixed now: again at once, without spending an attempt.
    expect(outcome).toMatchObject({ kind: 'not-sent' });
    expect(await provider.send(send('device-r2'))).toEqual({ kind: 'sent' });
  });

  it('refreshes the token before it expires', async () => {
    fake.expiresIn = 3;
    try {
      expect((await provider.send(send('device-d'))).kind).toBe('sent');
      const first = fake.issued.at(-1)!;
      // A 3 s token is replaced in its last fifth: sends keep going with the next one, none refused.
      await waitFor(async () => (await provider.send(send('device-e'))).kind === 'sent' && fake.sends.at(-1)!.bearer !== first, {
        timeoutMs: 5000,
        intervalMs: 100,
        what: 'a refreshed token',
      });
      expect(provider.accessToken.issued).toBe(2);
    } finally {
      fake.expiresIn = 3600;
    }
  });

  it('treats a token endpoint that refuses as transient (nothing was sent), and a timeout as in doubt', async () => {
    const stranger = fcm(fake, { serviceAccountFile: accountFile({ ...fake.serviceAccount, client_email: 'someone@else.iam.gserviceaccount.com' }) });
    try {
      expect(await stranger.send(send('device-f'))).toMatchObject({ kind: 'transient', code: 'FCM_AUTH' });
      expect(fake.refusedAssertions).toContain('iss');
    } finally {
      await stranger.close();
    }
    expect(provider.retry).toMatchObject({ retryTimeouts: false, inDoubt: 'report' });
  });

  it('refuses a missing or broken service account with one line naming the provider, never its content', () => {
    expect(() => fcm(fake, { serviceAccountFile: '/nonexistent/sa.json' })).toThrow(ConfigError);
    expect(() => fcm(fake, { serviceAccountFile: '/nonexistent/sa.json' })).toThrow(
      /^provider fcm: serviceAccountFile \/nonexistent\/sa.json cannot be read \(ENOENT\)$/,
    );
    expect(() => fcm(fake, { serviceAccountFile: accountFile({ private_key: 'secret-material' }) })).toThrow(
      /^provider fcm: the service account is not a JSON key/,
    );
    expect(() => fcm(fake, { serviceAccountFile: undefined, serviceAccountEnv: 'PUSHQ_TEST_UNSET_SA' })).toThrow(/environment variable PUSHQ_TEST_UNSET_SA/);
    expect(() => providerSchema.parse({ name: 'f', type: 'fcm', tps: 1 })).toThrow(/exactly one of serviceAccountFile or serviceAccountEnv/);
  });
});
