import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, requireAdminToken } from '../../src/config.js';
import { providersFile } from '../helpers/fixtures.js';

describe('loadConfig', () => {
  it('has the contract defaults', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      redisUrl: 'redis://127.0.0.1:6379',
      redisUrlDefaulted: true,
      queuePrefix: 'pushq',
      port: 3000,
      host: '127.0.0.1',
      logLevel: 'info',
    });
    expect(config.adminToken).toBeUndefined();
    expect(config.providers).toEqual([expect.objectContaining({ name: 'sim', type: 'sim', tps: 200 })]);
  });

  it('recovers in seconds by default: 3 s leases, a supervisor tick each second, strict WAIT when replicas are asked for', () => {
    expect(loadConfig({})).toMatchObject({
      leaseMs: 3000,
      supervisorIntervalMs: 1000,
      stalledIntervalMs: 5000,
      stallMs: 30_000,
      redisWaitReplicas: 0,
      redisWaitMode: 'strict',
    });
  });

  it('stops on a bad value with one line naming the variable', () => {
    expect(() => loadConfig({ PORT: 'abc' })).toThrow(ConfigError);
    expect(() => loadConfig({ PORT: 'abc' })).toThrow(/^PORT .*\(got "abc"\)$/);
    expect(() => loadConfig({ REDIS_URL: 'localhost:6379' })).toThrow(/^REDIS_URL must start with redis:\/\//);
    expect(() => loadConfig({ QUEUE_PREFIX: 'a:b' })).toThrow(/^QUEUE_PREFIX /);
    expect(() => loadConfig({ LOG_LEVEL: 'loud' })).toThrow(/^LOG_LEVEL /);
  });

  it('reads frequency caps as JSON and refuses a malformed one', () => {
    expect(loadConfig({}).frequencyCaps).toEqual([]);
    expect(loadConfig({ FREQUENCY_CAPS: '[{"max":2,"per":"24h","kinds":["advertising"]}]' }).frequencyCaps).toEqual([
      { max: 2, per: '24h', kinds: ['advertising'] },
    ]);
    expect(() => loadConfig({ FREQUENCY_CAPS: '[{"max":2' })).toThrow(/^FREQUENCY_CAPS is not valid JSON/);
    expect(() => loadConfig({ FREQUENCY_CAPS: '[{"max":2,"per":"a day"}]' })).toThrow(/^FREQUENCY_CAPS .*duration/);
  });

  it('requires an admin token in production where the API is served', () => {
    expect(() => requireAdminToken(loadConfig({ NODE_ENV: 'production' }))).toThrow(/ADMIN_TOKEN must be set/);
    expect(() => requireAdminToken(loadConfig({ NODE_ENV: 'production', ADMIN_TOKEN: 'x'.repeat(24) }))).not.toThrow();
    expect(() => requireAdminToken(loadConfig({ NODE_ENV: 'development' }))).not.toThrow();
  });

  it('refuses tokens shorter than 24 characters in production, admin and viewer alike, without repeating them', () => {
    expect(() => requireAdminToken(loadConfig({ NODE_ENV: 'production', ADMIN_TOKEN: 'short-admin-token-23chrs'.slice(0, 23) }))).toThrow(
      /^ADMIN_TOKEN is 23 characters; with NODE_ENV=production it needs at least 24/,
    );
    const viewer = () => requireAdminToken(loadConfig({ NODE_ENV: 'production', ADMIN_TOKEN: 'a'.repeat(32), VIEWER_TOKEN: 'viewer-secret' }));
    expect(viewer).toThrow(/^VIEWER_TOKEN is 13 characters/);
    expect(viewer).not.toThrow(/viewer-secret/);
    expect(() => requireAdminToken(loadConfig({ ADMIN_TOKEN: 'dev' }))).not.toThrow();
  });

  it('never repeats a password from a malformed REDIS_URL', () => {
    for (const url of ['redis//admin:s3cret@cache:6379', 'http://u:s3cret/with/slash@host', 'tcp://:s3cret@host']) {
      const attempt = () => loadConfig({ REDIS_URL: url });
      expect(attempt, url).toThrow(/^REDIS_URL must start with redis:\/\//);
      expect(attempt, url).not.toThrow(/s3cret/);
    }
  });

  it('takes TRUST_PROXY as express does, and refuses what express would not', () => {
    expect(loadConfig({}).trustProxy).toBe(false);
    expect(loadConfig({ TRUST_PROXY: 'true' }).trustProxy).toBe(true);
    expect(loadConfig({ TRUST_PROXY: '2' }).trustProxy).toBe(2);
    expect(loadConfig({ TRUST_PROXY: 'loopback, 10.0.0.0/8, fd00::/8' }).trustProxy).toEqual(['loopback', '10.0.0.0/8', 'fd00::/8']);
    for (const bad of ['yes', '10.0.0.300', '10.0.0.0/33', 'loopback,,']) expect(() => loadConfig({ TRUST_PROXY: bad }), bad).toThrow(/^TRUST_PROXY /);
  });

  it('adds every provider’s token and phone fields to the fields never logged', () => {
    const file = providersFile([
      { name: 'android', type: 'fcm', tps: 10, serviceAccountEnv: 'SA', tokenField: 'fcmRegistration' },
      { name: 'kakao', type: 'alimtalk', tps: 10, appKey: 'a', secretKeyEnv: 'S', senderKey: 's', templateCode: 'T1', phoneField: 'hp' },
    ]);
    expect(loadConfig({ PROVIDERS_FILE: file, LOG_REDACT_FIELDS: 'email' }).logRedactFields).toEqual(['email', 'fcmRegistration', 'hp']);
  });

  it('reads and checks the providers file', () => {
    const file = providersFile([
      { name: 'alimtalk', type: 'http', url: 'http://127.0.0.1:9999/send', tps: 200, timeoutMs: 5000 },
      { name: 'sim', type: 'sim', tps: 1000, latencyMs: 20, failureRate: 0.01 },
    ]);
    const config = loadConfig({ PROVIDERS_FILE: file });
    expect(config.providers.map((p) => p.name)).toEqual(['alimtalk', 'sim']);
    expect(config.providers[0]).toMatchObject({ maxAttempts: 5, arrivalMarginMs: 10 });
    // No connection count unless the file gives one: the worker's SEND_CONCURRENCY is the ceiling.
    expect(config.providers[0]).not.toHaveProperty('connections');
    expect(config.sendConcurrency).toBe(512);
  });

  it('names the provider entry that is wrong', () => {
    const bad = providersFile([{ name: 'x', type: 'http', url: 'ftp://nope', tps: 10 }]);
    expect(() => loadConfig({ PROVIDERS_FILE: bad })).toThrow(/PROVIDERS_FILE .*at \[0\.url\]/);
    const twice = providersFile([
      { name: 'x', type: 'sim', tps: 1 },
      { name: 'x', type: 'sim', tps: 2 },
    ]);
    expect(() => loadConfig({ PROVIDERS_FILE: twice })).toThrow(/used twice/);
    expect(() => loadConfig({ PROVIDERS_FILE: '/nonexistent/providers.json' })).toThrow(/cannot be read/);
  });

  it('reads WEBHOOKS_FILE and names what is wrong in it', () => {
    const file = (entries: unknown) => {
      const path = join(mkdtempSync(join(tmpdir(), 'pushq-webhooks-')), 'webhooks.json');
      writeFileSync(path, JSON.stringify(entries));
      return path;
    };
    const good = { name: 'crm', url: 'https://crm.example.com/hooks', events: ['run.completed'], secretEnv: 'CRM_SECRET' };
    expect(loadConfig({ WEBHOOKS_FILE: file([good]) }).webhooks).toEqual([
      expect.objectContaining({ name: 'crm', tps: 10, timeoutMs: 10_000, maxAttempts: 50, retryForMs: 86_400_000 }),
    ]);
    expect(loadConfig({}).webhooks).toEqual([]);
    expect(() => loadConfig({ WEBHOOKS_FILE: file([{ ...good, events: ['run.nope'] }]) })).toThrow(/WEBHOOKS_FILE .*at \[0\.events\.0\]/);
    expect(() => loadConfig({ WEBHOOKS_FILE: file([{ ...good, secretEnv: undefined }]) })).toThrow(/exactly one of secretFile or secretEnv/);
    expect(() => loadConfig({ WEBHOOKS_FILE: file([good, good]) })).toThrow(/used twice/);
    expect(() => loadConfig({ WEBHOOKS_FILE: file([{ ...good, secret: 'whsec_inline' }]) })).toThrow(/WEBHOOKS_FILE .*secret/);
    expect(() => loadConfig({ WEBHOOKS_FILE: '/nonexistent/webhooks.json' })).toThrow(/WEBHOOKS_FILE .*cannot be read/);
  });

  it('points at a syntax error in the providers file without quoting the file (it may hold a key)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pushq-providers-'));
    for (const [i, text] of [
      '[{"name":"x","type":"http","headers":{"x-api-key":"sk_live_SECRET"},}]',
      '[{"name":"x", sk_live_SECRET',
      '{"sk_live_SECRET"',
      '[{"tps": sk_live_SECRET}]',
    ].entries()) {
      const file = join(dir, `p${i}.json`);
      writeFileSync(file, text);
      const attempt = () => loadConfig({ PROVIDERS_FILE: file });
      expect(attempt).toThrow(/is not valid JSON/);
      expect(attempt).not.toThrow(/SECRET/);
    }
  });
});
