import { describe, expect, it } from 'vitest';
import { CAMPAIGN_ID_PATTERN, idempotencyKey, newId, receiptKey } from '../../src/domain/ids.js';

describe('newId', () => {
  it('sorts by creation time as a plain string', () => {
    const a = newId(1_700_000_000_000);
    const b = newId(1_700_000_000_001);
    const c = newId(1_800_000_000_000);
    expect([c, a, b].sort()).toEqual([a, b, c]);
    for (const id of [a, b, c]) expect(id).toMatch(CAMPAIGN_ID_PATTERN);
  });

  it('is unique within one millisecond', () => {
    const ids = new Set(Array.from({ length: 1000 }, () => newId(5)));
    expect(ids.size).toBe(1000);
  });
});

describe('idempotencyKey', () => {
  it('is stable for the same recipient of the same run and differs otherwise', () => {
    const key = idempotencyKey('c1', 'main', 'r1');
    expect(idempotencyKey('c1', 'main', 'r1')).toBe(key);
    const others = [idempotencyKey('c1', 'main', 'r2'), idempotencyKey('c1', 'retry-1', 'r1'), idempotencyKey('c2', 'main', 'r1')];
    expect(new Set([key, ...others]).size).toBe(4);
  });

  it('cannot be forged by moving characters across fields', () => {
    expect(idempotencyKey('c1', 'ab', 'c')).not.toBe(idempotencyKey('c1', 'a', 'bc'));
  });

  it('has the UUID form', () => {
    expect(idempotencyKey('c', 'r', '한글 id')).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});

describe('keys across versions', () => {
  // A run restarted by a newer version sends with the keys the older one used: a provider that honours them drops the repeat.
  // These are what the first implementation (hashing the parts in turn) gave; any change of derivation fails here.
  it('gives the same idempotency and receipt keys as every earlier version', () => {
    const c = '01m94y24wxkj0vbvt1qb1tc5tr';
    const r = '01m94y24wxkj0vbvt1qb1tc5ts';
    expect(idempotencyKey(c, r, 'user-1')).toBe('b494c947-c849-8c92-8b1e-7064571b0cba');
    expect(receiptKey(12, 345, c, r, 'user-1')).toBe('00000000-0c79-817e-9600-0001593c55e0');
    expect(idempotencyKey(c, r, '김철수', 1)).toBe('7c2cef52-f10d-8cab-860e-27caa7c42e1f');
    expect(receiptKey(12, 345, c, r, '김철수', 1)).toBe('00000000-0c0a-84cd-bc00-000159eea5af');
  });
});
