import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ApnsProvider } from '../../src/adapters/push/apns-provider.js';
import type { SendRequest } from '../../src/app/ports.js';
import { idempotencyKey } from '../../src/domain/ids.js';
import { providerSchema, type ApnsProviderConfig } from '../../src/adapters/push/provider-config.js';
import { startFakeApns, type FakeApns } from '../helpers/fakes/fake-apns.js';

const send = (token: string, data: Record<string, unknown> = {}): SendRequest => ({
  idempotencyKey: idempotencyKey('c1', 'main', `u-${token}`),
  campaignId: 'c1',
  runId: 'main',
  recipient: { id: `u-${token}`, token },
  message: { title: 'Hello', body: 'World', data },
});

describe('the APNs provider against a local HTTP/2 TLS server', () => {
  let fake: FakeApns;
  let keyFile: string;
  const providers: ApnsProvider[] = [];

  beforeAll(async () => {
    fake = await startFakeApns();
    keyFile = join(mkdtempSync(join(tmpdir(), 'pushq-apns-')), 'AuthKey.p8');
    writeFileSync(keyFile, fake.privateKeyPem);
  });
  afterEach(async () => {
    for (const p of providers.splice(0)) await p.close();
    fake.goawayAfter = 0;
    fake.expired.clear();
  });
  afterAll(async () => {
    await fake.close();
  });

  function apns(extra: Record<string, unknown> = {}): ApnsProvider {
    const config = providerSchema.parse({
      name: 'ios',
      type: 'apns',
      tps: 1000,
      keyFile,
      keyId: fake.keyId,
      teamId: fake.teamId,
      topic: fake.topic,
      baseUrl: fake.url,
      caFile: fake.certFile,
      ...extra,
    });
    const provider = new ApnsProvider(config as ApnsProviderConfig);
    providers.push(provider);
    return provider;
  }

  it('sends over one HTTP/2 session with a verified ES256 token, the topic and apns-id from the idempotency key', async () => {
    const provider = apns({ priority: 5, expirationSeconds: 3600, pushType: 'background' });
    const outcomes = await Promise.all(Array.from({ length: 50 }, (_, i) => provider.send(send(`device${i}`, { deep: '/x', aps: { sound: 'ding' } }))));
    expect(outcomes.every((o) => o.kind === 'sent')).toBe(true);
    expect(provider.sessionsOpened).toBe(1);
    const push = fake.pushes.find((p) => p.deviceToken === 'device7')!;
    expect(push.apnsId).toBe(idempotencyKey('c1', 'main', 'u-device7'));
    expect(push).toMatchObject({ topic: 'com.example.app', pushType: 'background', priority: '5' });
    expect(Number(push.expiration)).toBeGreaterThan(Date.now() / 1000 + 3000);
    expect(push.payload).toEqual({ deep: '/x', aps: { sound: 'ding', alert: { title: 'Hello', body: 'World' } } });
    // One provider token for all of them (Apple refuses updates more often than every 20 minutes).
    expect(new Set(fake.pushes.slice(-50).map((p) => p.jwt)).size).toBe(1);
    expect(provider.jwt.signed).toBe(1);
    // Neither the token nor the key shows when the provider is logged or inspected.
    const shown = inspect(provider, { depth: 8 });
    expect(shown).not.toContain(push.jwt);
    expect(shown).not.toContain('PRIVATE KEY');
  });

  it('maps every APNs error the way the issue says', async () => {
    const provider = apns();
    expect(await provider.send(send('gone1'))).toMatchObject({ kind: 'permanent', code: 'Unregistered', tokenInvalid: true });
    expect(await provider.send(send('bad1'))).toMatchObject({ kind: 'permanent', code: 'BadDeviceToken', tokenInvalid: true });
    expect(await provider.send(send('othertopic1'))).toMatchObject({ kind: 'permanent', code: 'DeviceTokenNotForTopic', tokenInvalid: true });
    expect(await provider.send(send('busy1'))).toMatchObject({ kind: 'rate-limited', code: 'TooManyProviderRequests' });
    expect(await provider.send(send('down1'))).toMatchObject({ kind: 'transient', code: 'ServiceUnavailable' });
    expect(await provider.send(send('oops1'))).toMatchObject({ kind: 'transient', code: 'InternalServerError' });
    expect(await provider.send(send('huge1'))).toMatchObject({ kind: 'permanent', code: 'PayloadTooLarge' });
    expect(await provider.send({ ...send('x'), recipient: { id: 'none' } })).toMatchObject({ kind: 'permanent', code: 'NO_TOKEN' });
    const wrongTopic = apns({ topic: 'com.other.app' });
    expect(await wrongTopic.send(send('device1'))).toMatchObject({ kind: 'permanent', code: 'TopicDisallowed' });
    const wrongTeam = apns({ teamId: 'OTHERTEAM1' });
    expect(await wrongTeam.send(send('device1'))).toMatchObject({ kind: 'transient', code: 'InvalidProviderToken' });
  });

  it('signs a new provider token when APNs says the token expired, and makes one request per send (the send goes again on a permit of its own)', async () => {
    const provider = apns();
    expect((await provider.send(send('device-a'))).kind).toBe('sent');
    const old = fake.pushes.at(-1)!.jwt;
    // Apple now says the token in use expired.
    fake.expired.add(old);
    const requests = () => fake.pushes.length + fake.refused.length;
    const before = requests();
    const outcomes = await Promise.all([provider.send(send('device-b')), provider.send(send('device-c'))]);
    expect(requests() - before, 'requests made by two sends').toBe(2);
    expect(outcomes).toMatchObject([
      { kind: 'not-sent', code: 'ExpiredProviderToken' },
      { kind: 'not-sent', code: 'ExpiredProviderToken' },
    ]);
    expect(await Promise.all([provider.send(send('device-b')), provider.send(send('device-c'))])).toEqual([{ kind: 'sent' }, { kind: 'sent' }]);
    expect(fake.pushes.at(-1)!.jwt).not.toBe(old);
    expect(provider.jwt.signed).toBe(2);
  });

  it('tells a device that gets too many pushes (429 TooManyRequests) from a provider that is overloaded', async () => {
    const provider = apns();
    // One device: retried later like a transient failure, without slowing the provider for everyone.
    expect(await provider.send(send('toomany-1'))).toMatchObject({ kind: 'rate-limited', code: 'TooManyRequests', scope: 'recipient' });
    expect(await provider.send(send('busy-1'))).toMatchObject({ kind: 'rate-limited', scope: 'provider' });
  });

  it('opens a new session after GOAWAY and loses or repeats nothing', async () => {
    const provider = apns();
    fake.goawayAfter = 7;
    const sessionsBefore = fake.sessions;
    const ids = Array.from({ length: 60 }, (_, i) => `goaway${i}`);
    const pending = new Set(ids);
    // Like the worker: a few at a time, and whatever was not sent (refused streams) goes again.
    for (let round = 0; round < 100 && pending.size > 0; round += 1) {
      const batch = [...pending].slice(0, 5);
      const outcomes = await Promise.all(batch.map((token) => provider.send(send(token))));
      batch.forEach((token, i) => {
        if (outcomes[i]!.kind === 'sent') pending.delete(token);
        else expect(outcomes[i]!.kind, JSON.stringify(outcomes[i])).toBe('not-sent');
      });
    }
    expect(pending.size).toBe(0);
    expect(fake.sessions - sessionsBefore).toBeGreaterThan(1);
    expect(provider.sessionsOpened).toBe(fake.sessions - sessionsBefore);
    const accepted = fake.accepted();
    for (const token of ids) expect(accepted.get(idempotencyKey('c1', 'main', `u-${token}`))).toBe(1);
  });

  it('refuses a key that is not an EC private key', () => {
    const rsa = join(mkdtempSync(join(tmpdir(), 'pushq-apns-')), 'bad.p8');
    writeFileSync(rsa, 'not a key');
    expect(() => apns({ keyFile: rsa })).toThrow(/^provider ios: the key is not a PEM private key \(\.p8\)$/);
    expect(() => providerSchema.parse({ name: 'i', type: 'apns', tps: 1, keyFile: rsa, keyId: 'short', teamId: 'TEAM123456', topic: 't' })).toThrow(/keyId/);
  });
});
