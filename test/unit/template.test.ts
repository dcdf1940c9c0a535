import fc from 'fast-check';
import { Liquid } from 'liquidjs';
import { describe, expect, it } from 'vitest';
import type { Message } from '../../src/domain/campaign.js';
import { DomainError } from '../../src/domain/errors.js';
import { assertTemplatesParse, chooseLocale, CompiledMessage, isoInZone, type RenderContext } from '../../src/domain/template.js';

const context: RenderContext = {
  campaign: { id: 'c1', name: 'Winter sale' },
  run: { id: 'main', occurrence: null },
  timezone: 'UTC',
  now: Date.parse('2026-12-02T00:05:00Z'),
};

function compiled(message: Partial<Message>): CompiledMessage {
  const result = CompiledMessage.compile({ title: '', body: '', data: {}, ...message });
  if (!result.ok) throw new Error(JSON.stringify(result.problems));
  return result.compiled;
}

function body(message: Partial<Message>, recipient: Record<string, unknown>): string {
  const r = compiled(message).render({ id: 'r1', ...recipient }, context);
  if (!r.ok) throw new Error(r.error);
  return r.message.body;
}

describe('templates', () => {
  it('render recipient fields (bare and as recipient.x), campaign and run, and every string of data, nested', () => {
    const c = compiled({
      title: 'For {{ recipient.name }}',
      body: 'Hi {{ name }}, {{ campaign.name }} ({{ run.id }}) {{ points | plus: 1 }}',
      data: { url: 'https://x/{{ id }}', nested: { list: ['{{ name | upcase }}', 3] }, n: 5 },
    });
    const r = c.render({ id: 'u1', name: '민수', points: 41 }, context);
    expect(r).toEqual({
      ok: true,
      locale: null,
      message: {
        title: 'For 민수',
        body: 'Hi 민수, Winter sale (main) 42',
        data: { url: 'https://x/u1', nested: { list: ['민수', 3] }, n: 5 },
      },
    });
    expect(c.fixed).toBe(false);
    expect(compiled({ title: 'a', body: 'b', data: { k: 'v' } }).fixed).toBe(true);
  });

  it('are strict: a missing variable is an error naming it, never an empty string; unknown filters do not parse', () => {
    const c = compiled({ body: 'Hi {{ name }}' });
    expect(c.render({ id: 'r' }, context)).toMatchObject({ ok: false, variable: 'name', error: 'missing variable: name' });
    const deep = compiled({ body: 'Hi {% if vip %}{{ recipient.tier.name }}{% endif %}' });
    expect(deep.render({ id: 'r', vip: true, tier: {} }, context)).toMatchObject({ ok: false, variable: 'recipient.tier.name' });
    expect(deep.render({ id: 'r', vip: false }, context)).toMatchObject({ ok: true });
    // default and if ask about a missing field on purpose.
    expect(body({ body: 'Hi {{ name | default: "there" }}' }, {})).toBe('Hi there');
    expect(body({ body: '{% if nickname %}{{ nickname }}{% else %}you{% endif %}' }, {})).toBe('you');
    expect(compiled({ body: 'Hi {{ name | upcase }}' }).render({ id: 'r' }, context)).toMatchObject({ ok: false, variable: 'name' });
    expect(CompiledMessage.compile({ title: '', body: '{{ x | nosuchfilter }}', data: {} })).toMatchObject({ ok: false });
  });

  it('refuse at the door a template that does not parse, naming the field, line and column', () => {
    const message: Message = { title: 'ok', body: 'line one\nHi {{ name ', data: {}, locales: { ko: { body: '{% if x %}' } } };
    let error: unknown;
    try {
      assertTemplatesParse(message);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(DomainError);
    expect((error as DomainError).message).toMatch(/^message\.body is not a valid template \(line 2, column 4\): output "\{\{ name " not closed/);
    expect((error as DomainError).details).toMatchObject({
      templates: [
        { path: 'message.body', line: 2, column: 4 },
        { path: 'message.locales.ko.body', line: 1, column: 1 },
      ],
    });
  });

  it('cannot read files, loop for ever or blow memory', () => {
    expect(CompiledMessage.compile({ title: '', body: "{% include '/etc/passwd' %}", data: {} }).ok).toBe(true);
    expect(compiled({ body: "{% include '/etc/passwd' %}" }).render({ id: 'r' }, context)).toMatchObject({ ok: false });
    const started = performance.now();
    const loop = compiled({ body: '{% for i in (1..1000000000) %}x{% endfor %}' }).render({ id: 'r' }, context);
    const nested = compiled({ body: '{% for i in (1..100000) %}{% for j in (1..100000) %}{{ i }}{% endfor %}{% endfor %}' }).render({ id: 'r' }, context);
    expect(loop).toMatchObject({ ok: false, variable: null });
    expect(nested).toMatchObject({ ok: false, variable: null });
    expect(performance.now() - started).toBeLessThan(10_000);
    expect(CompiledMessage.compile({ title: '', body: 'x'.repeat(70_000) + '{{ a }}', data: {} }).ok).toBe(false);
  });

  it('pick the locale variant by BCP 47 fallback (en-US → en → default), case-insensitive; a variant inherits what it leaves out', () => {
    const c = compiled({
      title: 'T',
      body: 'Hello {{ name }}',
      data: { k: 'v' },
      locales: { ko: { body: '안녕하세요 {{ name }}님' }, en: { title: 'Title' }, 'zh-Hant': { body: '你好' } },
    });
    const render = (locale: unknown) => c.render({ id: 'r', name: 'Kim', locale }, context);
    expect(render('ko-KR')).toMatchObject({ ok: true, locale: 'ko', message: { title: 'T', body: '안녕하세요 Kim님', data: { k: 'v' } } });
    expect(render('en-US')).toMatchObject({ locale: 'en', message: { title: 'Title', body: 'Hello Kim' } });
    expect(render('ZH-hant-TW')).toMatchObject({ locale: 'zh-Hant', message: { body: '你好' } });
    expect(render('fr')).toMatchObject({ locale: null, message: { body: 'Hello Kim' } });
    expect(render(undefined)).toMatchObject({ locale: null });
    const tags = new Map([['de', 'de']]);
    expect(chooseLocale('de-DE-x-private', tags)).toBe('de');
    expect(chooseLocale('de_AT', tags)).toBe('de');
  });

  it('give now in the recipient’s time zone, and money and dates in a locale', () => {
    expect(isoInZone(Date.parse('2026-12-02T00:05:07Z'), 'Asia/Seoul')).toBe('2026-12-02T09:05:07+09:00');
    expect(isoInZone(Date.parse('2026-07-01T12:00:00Z'), 'America/New_York')).toBe('2026-07-01T08:00:00-04:00');
    expect(isoInZone(Date.parse('2026-07-01T12:00:00Z'), 'Asia/Kolkata')).toBe('2026-07-01T17:30:00+05:30');
    expect(body({ body: '{{ now | date: "%H:%M" }}' }, { timezone: 'Asia/Seoul' })).toBe('09:05');
    expect(body({ body: '{{ now | date: "%H:%M" }}' }, { timezone: 'Not/AZone' })).toBe('00:05');
    expect(body({ body: '{{ now }}' }, {})).toBe('2026-12-02T00:05:00+00:00');
    expect(body({ body: '{{ price | money: "KRW", "ko-KR" }}' }, { price: 12000 })).toBe('₩12,000');
    expect(body({ body: '{{ price | money: "USD", "en-US" }}' }, { price: 12.5 })).toBe('$12.50');
    expect(body({ body: '{{ now | local_date: "ko-KR", "long" }}' }, { timezone: 'Asia/Seoul' })).toBe('2026년 12월 2일');
    expect(body({ body: '{{ now | local_date: "en-US", "long" }}' }, { timezone: 'America/Los_Angeles' })).toBe('December 1, 2026');
  });

  it('render plain outputs exactly as Liquid does (property: the fast path against liquidjs)', () => {
    const oracle = new Liquid({ strictVariables: true, ownPropertyOnly: true });
    const name = fc.constantFrom('name', 'city', 'n', 'flag', 'nil', 'obj', 'list', 'missing');
    const part = fc.oneof(
      fc.string({ maxLength: 8 }).filter((s) => !/[{}%]/.test(s)),
      name.map((n) => `{{ ${n} }}`),
      name.map((n) => `{{${n}}}`),
      fc.constantFrom('{{ recipient.name }}', '{{ obj.a }}', '{{ obj.b.c }}', '{{ list.first }}', '{{ campaign.id }}'),
    );
    const value = fc.oneof(fc.string({ maxLength: 6 }), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null));
    fc.assert(
      fc.property(fc.array(part, { maxLength: 6 }), value, value, value, (parts, v1, v2, v3) => {
        const source = parts.join('');
        const recipient = { id: 'r', name: v1, city: v2, n: v3, flag: true, nil: null, obj: { a: v1, b: { c: v2 } }, list: [v1, v2] };
        const scope = { ...recipient, recipient, campaign: context.campaign, run: context.run, locale: null };
        let expected: string | Error;
        try {
          expected = String(oracle.parseAndRenderSync(source, scope));
        } catch (err) {
          expected = err as Error;
        }
        const got = compiled({ body: source }).render(recipient, context);
        if (expected instanceof Error) {
          expect(got.ok).toBe(false);
        } else {
          expect(got).toMatchObject({ ok: true, message: { body: expected } });
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('provider size limits', () => {
  it('refuse what FCM and APNs (4 KB) or an alimtalk text (1,000 characters) would not take, measured on the rendered message', async () => {
    const { sizeProblem } = await import('../../src/domain/message-limits.js');
    const small = { title: 't', body: 'b', data: {} };
    for (const type of ['fcm', 'apns', 'alimtalk', 'http', 'sim']) expect(sizeProblem(type, small)).toBeNull();
    const big = { title: 't', body: '가'.repeat(1500), data: {} };
    expect(sizeProblem('fcm', big)).toMatch(/^FCM payload \(notification \+ data\) is 45\d\d bytes, above 4096$/);
    expect(sizeProblem('apns', big)).toMatch(/^APNs payload is 45\d\d bytes, above 4096$/);
    expect(sizeProblem('alimtalk', big)).toBe('alimtalk text (message.body) is 1500 characters, above 1000');
    expect(sizeProblem('alimtalk', { ...big, body: '가'.repeat(1000) })).toBeNull();
    expect(sizeProblem('http', big)).toBeNull();
    // SMS: EUC-KR bytes (1,500 Hangul = 3,000 > an LMS's 2,000), and what EUC-KR cannot carry.
    expect(sizeProblem('sms', small)).toBeNull();
    expect(sizeProblem('sms', big)).toBe('the text is 3000 bytes in EUC-KR; an LMS takes 2000');
    expect(sizeProblem('sms', { ...small, body: '세일 🎉' })).toBe('the text has "🎉" (U+1F389) at 3, which SMS (EUC-KR) cannot carry');
  });
});

describe('templates, the corners', () => {
  it('stop a template for every recipient once it hits a limit, instead of taking as long each time', () => {
    const c = compiled({ body: '{% for i in (1..100000) %}{% for j in (1..100000) %}{{ i }}{% endfor %}{% endfor %}' });
    expect(c.render({ id: 'a' }, context)).toMatchObject({ ok: false, variable: null });
    const started = performance.now();
    expect(c.render({ id: 'b' }, context)).toMatchObject({
      ok: false,
      error: expect.stringMatching(/limit exceeded \(the template is stopped for every recipient\)$/),
    });
    expect(performance.now() - started).toBeLessThan(5);
  });

  it('send a message stored before templates existed as its text reads; one that does not compile fails every recipient, never throws', async () => {
    const { compileCampaignMessage, CompiledMessages } = await import('../../src/domain/template.js');
    const legacy = compileCampaignMessage({ message: { title: 'Use {{PROMO}}', body: '{{#items}}x{{/items}}', data: { k: '{{ a' } }, templated: false });
    expect(legacy.ok && legacy.compiled.fixed).toBe(true);
    const broken = new CompiledMessages().for({ id: 'c', updatedAt: 'u', message: { title: '{{ a', body: 'b', data: {} }, templated: true });
    expect(broken.render({ id: 'r' }, context)).toMatchObject({
      ok: false,
      variable: null,
      error: expect.stringMatching(/^message\.title is not a valid template/),
    });
  });

  it('leave literals and computed properties to Liquid, give now over a field of that name, and keep a "__proto__" data key a key', () => {
    expect(body({ body: '{{ true }}|{{ nil }}|{{ list.size }}|{{ obj.size }}' }, { list: [1, 2, 3], obj: { a: 1, b: 2 } })).toBe('true||3|2');
    expect(body({ body: '{{ now | date: "%Y" }} {{ now }}' }, { now: 'mine' })).toBe('2026 2026-12-02T00:05:00+00:00');
    const data = JSON.parse('{"__proto__": "{{ name }}", "k": "v"}') as Record<string, unknown>;
    const r = compiled({ body: 'b', data }).render({ id: 'r', name: 'Kim' }, context);
    expect(r.ok && Object.prototype.hasOwnProperty.call(r.message.data, '__proto__')).toBe(true);
    expect(r.ok && (r.message.data as Record<string, unknown>)['__proto__']).toBe('Kim');
  });
});
