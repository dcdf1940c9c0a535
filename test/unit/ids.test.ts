import { describe, expect, it } from 'vitest';
import { CAMPAIGN_ID_PATTERN, idempotencyKey, newId } from '../../src/domain/ids.js';

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
