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
    expect(() => requireAdminToken(loadConfig({ NODE_ENV: 'production', ADMIN_TOKEN: 'x'.repeat(20) }))).not.toThrow();
    expect(() => requireAdminToken(loadConfig({ NODE_ENV: 'development' }))).not.toThrow();
  });

  it('reads and checks the providers file', () => {
    const file = providersFile([
      { name: 'alimtalk', type: 'http', url: 'http://127.0.0.1:9999/send', tps: 200, timeoutMs: 5000 },
      { name: 'sim', type: 'sim', tps: 1000, latencyMs: 20, failureRate: 0.01 },
    ]);
    const config = loadConfig({ PROVIDERS_FILE: file });
    expect(config.providers.map((p) => p.name)).toEqual(['alimtalk', 'sim']);
    expect(config.providers[0]).toMatchObject({ maxAttempts: 5, connections: 64 });
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
});
