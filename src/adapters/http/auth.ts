import { createHash, timingSafeEqual } from 'node:crypto';
import type { Request, RequestHandler } from 'express';
import { ErrorCodes } from '../../domain/errors.js';
import { sendError } from './errors.js';

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/** The token a request presents: `Bearer <token>`, or the password of Basic auth. */
export function presentedToken(req: Request): string | undefined {
  const header = req.headers.authorization;
  if (!header) return undefined;
  const [scheme, value] = header.split(/\s+/, 2);
  if (!value) return undefined;
  if (scheme?.toLowerCase() === 'bearer') return value;
  if (scheme?.toLowerCase() === 'basic') {
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const sep = decoded.indexOf(':');
    return sep < 0 ? undefined : decoded.slice(sep + 1);
  }
  return undefined;
}

/**
 * Accepts requests that present the admin token. Compares digests in constant
 * time, so neither the token's content nor its length leaks through timing.
 * `browser` asks for Basic auth on failure, so Bull Board opens in a browser.
 */
export function requireToken(token: string, options: { browser: boolean }): RequestHandler {
  const expected = digest(token);
  return (req, res, next) => {
    const presented = presentedToken(req);
    if (presented !== undefined && timingSafeEqual(digest(presented), expected)) return next();
    res.setHeader('WWW-Authenticate', options.browser ? 'Basic realm="pushq", charset="UTF-8"' : 'Bearer realm="pushq"');
    sendError(res, ErrorCodes.UNAUTHORIZED, presented === undefined ? 'missing bearer token' : 'invalid token');
  };
}
