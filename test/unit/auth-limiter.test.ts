import { describe, expect, it } from 'vitest';
import { clientKey, FailedAuthLimiter } from '../../src/adapters/http/auth.js';

/** The failed-authentication limiter with a chosen clock: bounded, and not evaded by rotating addresses. */
describe('FailedAuthLimiter', () => {
  const t0 = 1_800_000_000_000;

  it('counts IPv6 clients by their /64 and IPv4-mapped addresses as IPv4', () => {
    expect(clientKey('2001:db8:1:2:aaaa::1')).toBe(clientKey('2001:0db8:0001:0002:ffff:ffff:ffff:ffff'));
    expect(clientKey('2001:db8:1:2::1')).not.toBe(clientKey('2001:db8:1:3::1'));
    expect(clientKey('::ffff:203.0.113.9')).toBe('203.0.113.9');
    expect(clientKey('fe80::1%eth0')).toBe(clientKey('fe80::2'));
    expect(clientKey(undefined)).toBe('unknown');
  });

  it('limits an address past 20 failures a minute, lets it in again as its failures age', () => {
    const limiter = new FailedAuthLimiter();
    for (let i = 0; i < 20; i += 1) limiter.fail('198.51.100.1', t0 + i);
    expect(limiter.blockedFor('198.51.100.1', t0 + 100)).toBeGreaterThan(0);
    expect(limiter.blockedFor('198.51.100.2', t0 + 100)).toBe(0);
    expect(limiter.blockedFor('198.51.100.1', t0 + 120_001)).toBe(0);
  });

  it('is not evaded by a fresh IPv6 address for each guess: within a /64 they are one client', () => {
    const limiter = new FailedAuthLimiter();
    for (let i = 0; i < 25; i += 1) limiter.fail(clientKey(`2001:db8:42:7:${i.toString(16)}::1`), t0 + i);
    expect(limiter.blockedFor(clientKey('2001:db8:42:7:ffff::9'), t0 + 30)).toBeGreaterThan(0);
  });

  it('is not evaded by rotating through more prefixes than it tracks: the total is limited too, and memory stays bounded', () => {
    const limiter = new FailedAuthLimiter({ maxAddresses: 1000, global: 1000 });
    for (let i = 0; i < 50_000; i += 1) limiter.fail(clientKey(`2001:db8:${(i >> 16) & 0xffff}:${i & 0xffff}::1`), t0 + i);
    expect(limiter.trackedAddresses).toBe(1000);
    expect(limiter.blockedFor(clientKey('2001:db8:ffff:ffff::1'), t0 + 50_001)).toBeGreaterThan(0);
  });
});
