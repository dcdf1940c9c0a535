import { createHash, timingSafeEqual } from 'node:crypto';
import type { Request, RequestHandler } from 'express';
import { ErrorCodes } from '../../domain/errors.js';
import { sendError } from './errors.js';

export type Role = 'admin' | 'viewer';

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
 * Failed authentications per client address in a sliding minute: past the
 * limit an address gets 429 until its oldest failure leaves the window. Kept
 * per API process (enough to make guessing a token hopeless).
 */
export class FailedAuthLimiter {
  private readonly failures = new Map<string, number[]>();

  constructor(
    private readonly limit = 20,
    private readonly windowMs = 60_000,
  ) {}

  /** Ms until the address may try again, or 0. */
  blockedFor(address: string, now = Date.now()): number {
    const recent = (this.failures.get(address) ?? []).filter((t) => t > now - this.windowMs);
    if (recent.length === 0) this.failures.delete(address);
    else this.failures.set(address, recent);
    return recent.length >= this.limit ? recent[0]! + this.windowMs - now : 0;
  }

  fail(address: string, now = Date.now()): void {
    const list = this.failures.get(address) ?? [];
    list.push(now);
    this.failures.set(address, list);
    if (this.failures.size > 10_000) this.failures.delete(this.failures.keys().next().value!);
  }
}

/**
 * Lets in requests that present the admin token (role `admin`) or the viewer
 * token (role `viewer`, in `res.locals.role`). Digests are compared in
 * constant time, so neither a token's content nor its length leaks through
 * timing. `browser` answers with a Basic challenge, so pages open in a browser.
 */
export function authenticate(tokens: { admin: string; viewer?: string }, limiter: FailedAuthLimiter, options: { browser: boolean }): RequestHandler {
  const admin = digest(tokens.admin);
  const viewer = tokens.viewer ? digest(tokens.viewer) : null;
  return (req, res, next) => {
    const address = req.socket.remoteAddress ?? 'unknown';
    const wait = limiter.blockedFor(address);
    if (wait > 0) {
      res.setHeader('Retry-After', String(Math.ceil(wait / 1000)));
      return sendError(res, ErrorCodes.TOO_MANY_REQUESTS, 'too many failed authentications from this address; try again later');
    }
    const presented = presentedToken(req);
    if (presented !== undefined) {
      const given = digest(presented);
      // Both comparisons always run: which token matched does not show in the timing either.
      const isAdmin = timingSafeEqual(given, admin);
      const isViewer = viewer !== null && timingSafeEqual(given, viewer);
      if (isAdmin || isViewer) {
        res.locals.role = (isAdmin ? 'admin' : 'viewer') satisfies Role;
        return next();
      }
      limiter.fail(address);
    }
    res.setHeader('WWW-Authenticate', options.browser ? 'Basic realm="pushq", charset="UTF-8"' : 'Bearer realm="pushq"');
    sendError(res, ErrorCodes.UNAUTHORIZED, presented === undefined ? 'missing bearer token' : 'invalid token');
  };
}
