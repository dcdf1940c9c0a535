import fc from 'fast-check';
import iconv from 'iconv-lite';
import { describe, expect, it } from 'vitest';
import { eucKrLength, smsText, withAdNotice } from '../../src/domain/sms-text.js';

/** EUC-KR bytes as an independent encoder counts them (null: not representable). */
function encoderBytes(text: string): number | null {
  const bytes = iconv.encode(text, 'cp949');
  return iconv.decode(bytes, 'cp949') === text ? bytes.length : null;
}

describe('Korean SMS text', () => {
  it('counts EUC-KR bytes: ASCII one, Hangul and other KS X 1001 characters two, CP949 syllables too', () => {
    expect(eucKrLength('hello')).toEqual({ ok: true, bytes: 5 });
    expect(eucKrLength('안녕하세요')).toEqual({ ok: true, bytes: 10 });
    expect(eucKrLength('주문 123번이 출발했습니다.')).toEqual({ ok: true, bytes: 2 * 10 + 6 });
    // 똠 is not among KS X 1001's 2,350 syllables; CP949, which carriers take as EUC-KR, has it.
    expect(eucKrLength('똠방각하')).toEqual({ ok: true, bytes: 8 });
    expect(eucKrLength('ㄱ€漢')).toEqual({ ok: true, bytes: 6 });
  });

  it('names the first character EUC-KR cannot carry: an emoji, an accented letter, a no-break space', () => {
    expect(eucKrLength('할인 🎉 오늘만')).toEqual({ ok: false, char: '🎉', index: 3 });
    expect(eucKrLength('café')).toEqual({ ok: false, char: 'é', index: 3 });
    expect(eucKrLength('a\u00a0b')).toEqual({ ok: false, char: '\u00a0', index: 1 });
  });

  it('agrees with an encoder on random mixed text (Hangul, ASCII, emoji, Latin-1, CJK)', () => {
    const char = fc.oneof(
      fc.integer({ min: 0x20, max: 0x7e }),
      fc.integer({ min: 0xac00, max: 0xd7a3 }),
      fc.integer({ min: 0x3131, max: 0x318e }),
      fc.integer({ min: 0xa0, max: 0xff }),
      fc.integer({ min: 0x4e00, max: 0x9fff }),
      fc.integer({ min: 0x1f300, max: 0x1faff }),
    );
    fc.assert(
      fc.property(fc.array(char, { maxLength: 60 }), (points) => {
        const text = String.fromCodePoint(...points);
        const counted = eucKrLength(text);
        const expected = encoderBytes(text);
        if (expected === null) expect(counted.ok).toBe(false);
        else expect(counted).toEqual({ ok: true, bytes: expected });
      }),
      { numRuns: 500 },
    );
  });

  it('is an SMS up to 90 bytes and an LMS with its title above, refused past 2,000 bytes, a 40-byte title or an emoji', () => {
    expect(smsText('제목', '가'.repeat(45))).toEqual({ ok: true, type: 'SMS', body: '가'.repeat(45), bytes: 90 });
    expect(smsText('제목', `${'가'.repeat(45)}a`)).toEqual({ ok: true, type: 'LMS', title: '제목', body: `${'가'.repeat(45)}a`, bytes: 91 });
    expect(smsText('t', 'x'.repeat(2000))).toMatchObject({ ok: true, type: 'LMS', bytes: 2000 });
    expect(smsText('t', '가'.repeat(1001))).toMatchObject({ ok: false, code: 'SMS_TOO_LONG' });
    expect(smsText('제'.repeat(21), 'x'.repeat(100))).toMatchObject({ ok: false, code: 'SMS_TITLE_TOO_LONG' });
    // An emoji is refused whatever the length, never sent as '?' (nor moved to LMS: LMS is EUC-KR too).
    expect(smsText('t', '좋아요 👍')).toEqual({
      ok: false,
      code: 'SMS_UNENCODABLE',
      message: 'the text has "👍" (U+1F44D) at 4, which SMS (EUC-KR) cannot carry',
    });
    expect(smsText('🎁 선물', 'x'.repeat(100))).toMatchObject({ ok: false, code: 'SMS_UNENCODABLE' });
    // A short SMS does not care what its (dropped) title holds.
    expect(smsText('🎁', '짧은 글')).toMatchObject({ ok: true, type: 'SMS' });
  });

  it('puts (광고) and the sender first and the free opt-out last on an advertisement, unless the text has them', () => {
    expect(withAdNotice('가을 세일 30%', '푸시상점', '080-123-4567')).toBe('(광고)푸시상점\n가을 세일 30%\n무료수신거부 080-123-4567');
    const ready = '(광고)푸시상점\n가을 세일\n무료 수신거부 0801234567';
    expect(withAdNotice(ready, '푸시상점', '080-123-4567')).toBe(ready);
    expect(withAdNotice('(광고) 세일', undefined, '080-123-4567')).toBe('(광고) 세일\n무료수신거부 080-123-4567');
    // The notices can turn an SMS into an LMS.
    const body = '가'.repeat(40);
    expect(smsText('세일', body)).toMatchObject({ type: 'SMS' });
    expect(smsText('세일', withAdNotice(body, '푸시상점', '080-123-4567'))).toMatchObject({ type: 'LMS' });
  });
});
