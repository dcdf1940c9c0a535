import iconv from 'iconv-lite';

/**
 * Korean SMS text as carriers count it: EUC-KR bytes, an ASCII character
 * one byte and a KS X 1001 character (the 2,350 common Hangul syllables,
 * jamo, hanja, symbols) two. What EUC-KR cannot carry is refused, never
 * replaced by '?' on the way to the phone: emoji, accented Latin, most
 * other scripts, and the Hangul syllables only CP949 (Windows' extension)
 * has — 똠, 햏, 뷁 — which phones and carriers are known to show broken.
 * Nor the two signs KS X 1001 only gained in 1998 (€ and ®): decoders
 * disagree on them (ICU 78's EUC-KR table has neither), so a phone may too.
 */

/** An SMS carries at most this many bytes; a longer text goes as LMS. */
export const SMS_MAX_BYTES = 90;
/** An LMS body, and its title. */
export const LMS_MAX_BYTES = 2000;
export const LMS_TITLE_MAX_BYTES = 40;

/** What Korean law (정보통신망법 제50조) asks of an advertising message: this first... */
export const AD_PREFIX = '(광고)';
/** ...and a free way to opt out, at the end. */
export const OPT_OUT_LABEL = '무료수신거부';

export type EncodedLength = { ok: true; bytes: number } | { ok: false; char: string; index: number };

/** Bytes of each non-ASCII character seen so far (0: cannot be carried). Bounded by the characters CP949 and the refusals meet. */
const widths = new Map<string, number>();
const MAX_WIDTHS = 20_000;

/** KS X 1001:1998's additions (A2E6, A2E7): not every EUC-KR decoder knows them. */
const LATE_ADDITIONS = new Set(['\u20ac', '\u00ae']);

function widthOf(char: string): number {
  if (LATE_ADDITIONS.has(char)) return 0;
  let width = widths.get(char);
  if (width === undefined) {
    const encoded = iconv.encode(char, 'cp949');
    // EUC-KR proper: both bytes 0xA1-0xFE (CP949's extension uses lower ones; '?' is what iconv gives for none).
    width = encoded.length === 2 && encoded[0]! >= 0xa1 && encoded[1]! >= 0xa1 ? 2 : 0;
    if (widths.size < MAX_WIDTHS) widths.set(char, width);
  }
  return width;
}

/** Bytes `text` takes as Korean SMS text, or the first character it cannot carry (and its UTF-16 index). */
export function eucKrLength(text: string): EncodedLength {
  let bytes = 0;
  let index = 0;
  for (const char of text) {
    const width = char.charCodeAt(0) < 0x80 ? 1 : widthOf(char);
    if (width === 0) return { ok: false, char, index };
    bytes += width;
    index += char.length;
  }
  return { ok: true, bytes };
}

/**
 * An advertising message as the law wants it: `(광고)` and the sender's name
 * first, `무료수신거부 <080 number>` last — each added only when the text
 * does not already have it (a template written for SMS usually does).
 */
export function withAdNotice(body: string, senderName: string, optOutNumber: string): string {
  let out = body.trimStart();
  if (!out.startsWith(AD_PREFIX)) out = `${AD_PREFIX}${senderName}\n${out}`;
  // An opt-out line is one that gives the free number, not any mention of opting out.
  if (!/수신\s*거부\s*:?\s*080/.test(out)) out = `${out}\n${OPT_OUT_LABEL} ${optOutNumber}`;
  return out;
}

export type SmsText =
  | { ok: true; type: 'SMS'; body: string; bytes: number }
  | { ok: true; type: 'LMS'; title: string; body: string; bytes: number }
  | { ok: false; code: 'SMS_UNENCODABLE' | 'SMS_TOO_LONG' | 'SMS_TITLE_TOO_LONG' | 'SMS_NO_TITLE'; message: string };

/** Describes a character for an error message: itself and its code point. */
function describe(char: string): string {
  return `"${char}" (U+${char.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')})`;
}

/**
 * SMS when the body fits 90 bytes, else LMS with the title (the title is
 * dropped from an SMS, which has none); refused when a character cannot be
 * carried or the LMS limits are passed.
 */
export function smsText(title: string, body: string): SmsText {
  const length = eucKrLength(body);
  if (!length.ok) {
    return { ok: false, code: 'SMS_UNENCODABLE', message: `the text has ${describe(length.char)} at ${length.index}, which SMS (EUC-KR) cannot carry` };
  }
  if (length.bytes <= SMS_MAX_BYTES) return { ok: true, type: 'SMS', body, bytes: length.bytes };
  if (length.bytes > LMS_MAX_BYTES)
    return { ok: false, code: 'SMS_TOO_LONG', message: `the text is ${length.bytes} bytes in EUC-KR; an LMS takes ${LMS_MAX_BYTES}` };
  if (title.trim() === '')
    return { ok: false, code: 'SMS_NO_TITLE', message: `the text is ${length.bytes} bytes, an LMS, and an LMS needs the message's title` };
  const titled = eucKrLength(title);
  if (!titled.ok) {
    return { ok: false, code: 'SMS_UNENCODABLE', message: `the title has ${describe(titled.char)} at ${titled.index}, which LMS (EUC-KR) cannot carry` };
  }
  if (titled.bytes > LMS_TITLE_MAX_BYTES) {
    return { ok: false, code: 'SMS_TITLE_TOO_LONG', message: `the title is ${titled.bytes} bytes in EUC-KR; an LMS title takes ${LMS_TITLE_MAX_BYTES}` };
  }
  return { ok: true, type: 'LMS', title, body, bytes: length.bytes };
}
