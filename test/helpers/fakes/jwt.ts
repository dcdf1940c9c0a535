import { verify, type KeyObject } from 'node:crypto';

/** Checks a compact JWS with the given key; answers its header and claims, or why it is refused. */
export function verifyJwt(
  token: string,
  key: KeyObject,
  alg: 'RS256' | 'ES256',
): { ok: true; header: Record<string, unknown>; claims: Record<string, unknown> } | { ok: false; why: string } {
  const parts = token.split('.');
  if (parts.length !== 3) return { ok: false, why: 'not a compact JWS' };
  const [h, c, s] = parts as [string, string, string];
  let header: Record<string, unknown>;
  let claims: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'));
    claims = JSON.parse(Buffer.from(c, 'base64url').toString('utf8'));
  } catch {
    return { ok: false, why: 'unreadable header or claims' };
  }
  if (header.alg !== alg) return { ok: false, why: `alg ${String(header.alg)}` };
  const signed = Buffer.from(`${h}.${c}`);
  const signature = Buffer.from(s, 'base64url');
  const good = alg === 'RS256' ? verify('RSA-SHA256', signed, key, signature) : verify('sha256', signed, { key, dsaEncoding: 'ieee-p1363' }, signature);
  return good ? { ok: true, header, claims } : { ok: false, why: 'bad signature' };
}
