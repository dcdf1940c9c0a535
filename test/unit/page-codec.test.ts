import { describe, expect, it } from 'vitest';
import { decodePage, encodePage } from '../../src/adapters/redis/page-codec.js';

describe('the page codec', () => {
  it('round-trips bare ids, records with fields in any order, and records with null fields', () => {
    const page = [
      'bare',
      { id: 'a', phone: '010', name: 'Kim' },
      { id: 'b', name: 'Lee' },
      { id: 'c', nested: { deep: [1, 2] }, n: 3 },
      { id: 'd', token: null },
      { id: 'e', __proto__: 'data' } as unknown as { id: string },
    ];
    expect(decodePage(encodePage(page))).toEqual(page);
    const proto = decodePage(encodePage([JSON.parse('{"id":"p","__proto__":{"x":1}}')]))[0] as Record<string, unknown>;
    expect(Object.prototype.hasOwnProperty.call(proto, '__proto__')).toBe(true);
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  it('writes field names once per page, not once per recipient', () => {
    const page = Array.from({ length: 100 }, (_, i) => ({ id: `user-${i}`, phone: `010-${i}`, name: `Kim ${i}` }));
    const compact = encodePage(page).length;
    expect(compact).toBeLessThan(JSON.stringify(page).length * 0.75);
  });

  it('still reads pages stored as a plain JSON array', () => {
    expect(decodePage(JSON.stringify(['a', { id: 'b', x: 1 }]))).toEqual(['a', { id: 'b', x: 1 }]);
  });
});
