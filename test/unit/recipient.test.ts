import { describe, expect, it } from 'vitest';
import { checkRecipient, MAX_RECIPIENT_BYTES, RecipientCollector } from '../../src/domain/recipient.js';

describe('checkRecipient', () => {
  it('keeps bare ids as strings and records with more fields as objects', () => {
    expect(checkRecipient('abc')).toEqual({ ok: true, recipient: 'abc' });
    expect(checkRecipient({ id: 'abc' })).toEqual({ ok: true, recipient: 'abc' });
    expect(checkRecipient({ id: 'abc', phone: '010' })).toEqual({ ok: true, recipient: { id: 'abc', phone: '010' } });
  });

  it('accepts odd but legal ids', () => {
    for (const id of ['a:b', '{x}', 'with space', '한글', '__proto__', 'x'.repeat(256), '😀'.repeat(256), 'constructor']) {
      expect(checkRecipient(id)).toEqual({ ok: true, recipient: id });
    }
  });

  it('explains why a recipient is unusable', () => {
    expect(checkRecipient('')).toEqual({ ok: false, reason: 'id must not be empty' });
    expect(checkRecipient('x'.repeat(257))).toEqual({ ok: false, reason: 'id is longer than 256 characters' });
    expect(checkRecipient({ id: 7 })).toEqual({ ok: false, reason: 'id must be a string' });
    expect(checkRecipient({ name: 'no id' })).toEqual({ ok: false, reason: 'id is missing' });
    expect(checkRecipient(null)).toMatchObject({ ok: false });
    expect(checkRecipient(['a'])).toMatchObject({ ok: false });
    expect(checkRecipient(12)).toMatchObject({ ok: false });
    expect(checkRecipient({ id: 'big', blob: 'x'.repeat(MAX_RECIPIENT_BYTES) })).toMatchObject({ ok: false });
  });

  it('treats a __proto__ field as data, not as a prototype', () => {
    const parsed = JSON.parse('{"id":"p","__proto__":{"polluted":true}}');
    const check = checkRecipient(parsed);
    expect(check.ok).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('RecipientCollector', () => {
  it('keeps the first of duplicate ids and counts the rest', () => {
    const c = new RecipientCollector();
    for (const r of ['a', { id: 'b', n: 1 }, { id: 'a', n: 2 }, 'b', { nope: true }, 'c']) c.add(r);
    expect(c.recipients).toEqual(['a', { id: 'b', n: 1 }, 'c']);
    expect(c.summary()).toEqual({ accepted: 3, duplicate: 2, invalid: 1, invalidRows: [{ row: 5, index: 4, reason: 'id is missing' }] });
  });

  it('reports only the first hundred invalid rows', () => {
    const c = new RecipientCollector();
    for (let i = 0; i < 250; i += 1) c.add({});
    expect(c.summary().invalid).toBe(250);
    expect(c.summary().invalidRows).toHaveLength(100);
  });
});
