import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { eucKrLength, smsText, withAdNotice } from '../../src/domain/sms-text.js';

/**
 * The characters EUC-KR carries in two bytes, from another implementation
 * (ICU's WHATWG decoder, not iconv-lite): every pair of bytes 0xA1-0xFE.
 */
const EUC_KR = (() => {
  const decoder = new TextDecoder('euc-kr', { fatal: true });
  const chars = new Set<string>();
  for (let lead = 0xa1; lead <= 0xfe; lead++) {
    for (let trail = 0xa1; trail <= 0xfe; trail++) {
      try {
        chars.add(decoder.decode(Uint8Array.from([lead, trail])));
      } catch {
        // not a character
      }
    }
  }
  return chars;
})();

/** EUC-KR bytes by that table (null: not representable). */
function oracleBytes(text: string): number | null {
  let bytes = 0;
  for (const char of text) {
    if (char.charCodeAt(0) < 0x80) bytes += 1;
    else if (EUC_KR.has(char)) bytes += 2;
    else return null;
  }
  return bytes;
}

describe('Korean SMS text', () => {
  it('counts EUC-KR bytes: ASCII one, Hangul and other KS X 1001 characters two', () => {
    expect(eucKrLength('hello')).toEqual({ ok: true, bytes: 5 });
    expect(eucKrLength('안녕하세요')).toEqual({ ok: true, bytes: 10 });
    expect(eucKrLength('주문 123번이 출발했습니다.')).toEqual({ ok: true, bytes: 2 * 10 + 6 });
    expect(eucKrLength('방각하')).toEqual({ ok: true, bytes: 6 });
    expect(eucKrLength('ㄱ※漢')).toEqual({ ok: true, bytes: 6 });
    // KS X 1001:1998's two additions: decoders disagree on them, so they are refused.
    expect(eucKrLength('ㄱ€')).toEqual({ ok: false, char: '€', index: 1 });
    expect(eucKrLength('®')).toEqual({ ok: false, char: '®', index: 0 });
  });

  it('names the first character EUC-KR cannot carry: an emoji, an accented letter, a no-break space, a syllable only CP949 has', () => {
    expect(eucKrLength('할인 🎉 오늘만')).toEqual({ ok: false, char: '🎉', index: 3 });
    expect(eucKrLength('café')).toEqual({ ok: false, char: 'é', index: 3 });
    expect(eucKrLength('a\u00a0b')).toEqual({ ok: false, char: '\u00a0', index: 1 });
    // 똠 is not among KS X 1001's 2,350 syllables: CP949 has it, and phones are known to show such syllables broken.
    expect(eucKrLength('똠방각하')).toEqual({ ok: false, char: '똠', index: 0 });
  });

  it("agrees with another implementation's EUC-KR table on random mixed text (Hangul, ASCII, emoji, Latin-1, CJK)", () => {
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
        const expected = oracleBytes(text);
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
    // A short SMS does not care what its (dropped) title holds; an LMS needs one.
    expect(smsText('🎁', '짧은 글')).toMatchObject({ ok: true, type: 'SMS' });
    expect(smsText(' ', 'x'.repeat(100))).toMatchObject({ ok: false, code: 'SMS_NO_TITLE' });
    expect(smsText('제'.repeat(20), 'x'.repeat(100))).toMatchObject({ ok: true, type: 'LMS' });
  });

  it('puts (광고) and the sender first and the free opt-out last on an advertisement, unless the text has them', () => {
    expect(withAdNotice('가을 세일 30%', '푸시상점', '080-123-4567')).toBe('(광고)푸시상점\n가을 세일 30%\n무료수신거부 080-123-4567');
    const ready = '(광고)푸시상점\n가을 세일\n무료 수신거부 0801234567';
    expect(withAdNotice(ready, '푸시상점', '080-123-4567')).toBe(ready);
    expect(withAdNotice('  (광고) 세일', '푸시상점', '080-123-4567')).toBe('(광고) 세일\n무료수신거부 080-123-4567');
    // A mention of opting out is not the free number the law asks for.
    expect(withAdNotice('(광고)푸시상점 세일\n수신거부 문의는 고객센터로', '푸시상점', '080-123-4567')).toBe(
      '(광고)푸시상점 세일\n수신거부 문의는 고객센터로\n무료수신거부 080-123-4567',
    );
    // The notices can turn an SMS into an LMS.
    const body = '가'.repeat(40);
    expect(smsText('세일', body)).toMatchObject({ type: 'SMS' });
    expect(smsText('세일', withAdNotice(body, '푸시상점', '080-123-4567'))).toMatchObject({ type: 'LMS' });
  });
});
