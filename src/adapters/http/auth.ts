import { createHash, timingSafeEqual } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
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
 * The address failed authentications are counted under: an IPv4 address as
 * it is, an IPv6 address by its /64 (one host commonly holds a whole /64, so
 * rotating within it changes nothing), an IPv4-mapped IPv6 address as IPv4.
 */
export function clientKey(address: string | undefined): string {
  if (!address) return 'unknown';
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (isIPv4(address)) return address;
  if (!isIPv6(address)) return 'unknown';
  const [head = '', tail = ''] = address.split('%')[0]!.split('::') as [string, string?];
  const left = head ? head.split(':') : [];
  const right = address.includes('::') && tail ? tail.split(':') : [];
  const groups = address.includes('::') ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups
    .slice(0, 4)
    .map((g) => g.toLowerCase().replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

/** A count in a sliding window, approximated from two fixed ones (as nginx and Cloudflare count): O(1) memory per key. */
class SlidingCount {
  private windowStart = 0;
  private current = 0;
  private previous = 0;

  constructor(private readonly windowMs: number) {}

  private roll(now: number): void {
    const windows = Math.floor((now - this.windowStart) / this.windowMs);
    if (windows <= 0) return;
    this.previous = windows === 1 ? this.current : 0;
    this.current = 0;
    this.windowStart += windows * this.windowMs;
  }

  count(now: number): number {
    this.roll(now);
    return this.peek(now);
  }

  add(now: number): void {
    if (this.windowStart === 0) this.windowStart = now;
    this.roll(now);
    this.current += 1;
  }

  /** Ms until the count falls below `limit` if nothing is added (at most one window). */
  waitBelow(limit: number, now: number): number {
    for (let wait = 0; wait <= this.windowMs; wait += 1000) if (this.peek(now + wait) < limit) return wait;
    return this.windowMs;
  }

  private peek(at: number): number {
    const windows = Math.floor((at - this.windowStart) / this.windowMs);
    const [current, previous, start] =
      windows <= 0 ? [this.current, this.previous, this.windowStart] : [0, windows === 1 ? this.current : 0, this.windowStart + windows * this.windowMs];
    return current + previous * (1 - (at - start) / this.windowMs);
  }
}

/**
 * Failed authentications in a sliding minute, per client address (see
 * clientKey) and in all: past either limit, a request with a wrong token gets
 * 429 instead of being checked. A request with the right token is never
 * refused — the limit is on guessing, not on clients, so one client behind a
 * shared proxy address cannot lock the others out. Memory is bounded: at most
 * `maxAddresses` counters, the least recently failing dropped first; the
 * global count means addresses rotated faster than that gain nothing. (With
 * tokens of 24+ random characters, guessing is hopeless at any rate; the
 * limiter keeps floods of guesses cheap to refuse.)
 */
export class FailedAuthLimiter {
  private readonly byAddress = new Map<string, SlidingCount>();
  private readonly all: SlidingCount;
  private readonly perAddress: number;
  private readonly global: number;
  private readonly windowMs: number;
  private readonly maxAddresses: number;

  constructor(options: { perAddress?: number; global?: number; windowMs?: number; maxAddresses?: number } = {}) {
    this.perAddress = options.perAddress ?? 20;
    this.global = options.global ?? 1000;
    this.windowMs = options.windowMs ?? 60_000;
    this.maxAddresses = options.maxAddresses ?? 10_000;
    this.all = new SlidingCount(this.windowMs);
  }

  get trackedAddresses(): number {
    return this.byAddress.size;
  }

  /** Ms until a wrong token from `key` is checked again, or 0. */
  blockedFor(key: string, now = Date.now()): number {
    const own = this.byAddress.get(key);
    if (own && own.count(now) >= this.perAddress) return own.waitBelow(this.perAddress, now);
    if (this.all.count(now) >= this.global) return this.all.waitBelow(this.global, now);
    return 0;
  }

  fail(key: string, now = Date.now()): void {
    let own = this.byAddress.get(key);
    if (own) this.byAddress.delete(key);
    else own = new SlidingCount(this.windowMs);
    own.add(now);
    // Re-inserted: Map order is the order of the latest failure, oldest first.
    this.byAddress.set(key, own);
    if (this.byAddress.size > this.maxAddresses) this.byAddress.delete(this.byAddress.keys().next().value!);
    this.all.add(now);
  }
}

export type Tokens = { admin: string; viewer?: string };

/** The role a presented token gives, or null. */
export type RoleOf = (presented: string | undefined) => Role | null;

/**
 * Recognises the configured tokens (digested once, here). Digests are
 * compared in constant time, and both comparisons always run, so neither a
 * token's content, nor its length, nor which one matched shows in the timing.
 */
export function roleChecker(tokens: Tokens): RoleOf {
  const admin = digest(tokens.admin);
  const viewer = tokens.viewer !== undefined ? digest(tokens.viewer) : null;
  return (presented) => {
    if (presented === undefined) return null;
    const given = digest(presented);
    const isAdmin = timingSafeEqual(given, admin);
    const isViewer = viewer !== null && timingSafeEqual(given, viewer);
    return isAdmin ? 'admin' : isViewer ? 'viewer' : null;
  };
}

/**
 * Lets in requests that present the admin token (role `admin`) or the viewer
 * token (role `viewer`, in `res.locals.role`). A wrong token counts against
 * the client's address (`req.ip`, which TRUST_PROXY decides); past the limit,
 * wrong tokens get 429 — the right one never does. `browser` answers with a
 * Basic challenge, so pages open in a browser.
 */
export function authenticate(roleOf: RoleOf, limiter: FailedAuthLimiter, options: { browser: boolean }): RequestHandler {
  return (req, res, next) => {
    const presented = presentedToken(req);
    const role = roleOf(presented);
    if (role) {
      res.locals.role = role;
      return next();
    }
    if (presented !== undefined) {
      const key = clientKey(req.ip);
      const wait = limiter.blockedFor(key);
      if (wait > 0) {
        res.setHeader('Retry-After', String(Math.max(1, Math.ceil(wait / 1000))));
        return sendError(res, ErrorCodes.TOO_MANY_REQUESTS, 'too many failed authentications from this address; try again later');
      }
      limiter.fail(key);
    }
    res.setHeader('WWW-Authenticate', options.browser ? 'Basic realm="pushq", charset="UTF-8"' : 'Bearer realm="pushq"');
    sendError(res, ErrorCodes.UNAUTHORIZED, presented === undefined ? 'missing bearer token' : 'invalid token');
  };
}
