import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';

/**
 * A provider on loopback that speaks the contract's `http` wire format and
 * keeps the evidence: every arrival with its time, idempotency key and
 * recipient, so tests and benchmarks judge duplicates and the rate cap where
 * the provider sees them.
 */
export interface Arrival {
  /** performance.now() when the request's body was complete. */
  at: number;
  key: string | undefined;
  campaignId: string;
  runId: string;
  recipientId: string;
  status: number;
}

export interface Reply {
  status: number;
  body?: string;
  headers?: Record<string, string>;
  delayMs?: number;
}

export interface MockProviderOptions {
  /** Strict sliding-second cap: a request that would make more than `cap` arrivals in the last second gets 429. */
  cap?: number;
  retryAfterSeconds?: number;
  latencyMs?: number;
  /** Decide the reply for a request; undefined falls back to 200 (or 429 over the cap). */
  respond?: (body: WireBody, arrival: Arrival) => Reply | undefined;
  /** Serve GET /__arrivals (the evidence as JSON) and POST /__reset, for a mock running in a process of its own. */
  control?: boolean;
}

export interface WireBody {
  idempotencyKey: string;
  campaignId: string;
  runId: string;
  recipient: { id: string } & Record<string, unknown>;
  message: { title: string; body: string; data: Record<string, unknown> };
}

/** 2xx answers per (campaign, run, recipient). */
export function deliveries(arrivals: readonly Arrival[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const a of arrivals) {
    if (a.status < 200 || a.status >= 300) continue;
    const key = `${a.campaignId}|${a.runId}|${a.recipientId}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

/** Recipients that got a 2xx more than once in the same run. */
export function duplicates(arrivals: readonly Arrival[]): number {
  let n = 0;
  for (const count of deliveries(arrivals).values()) if (count > 1) n += count - 1;
  return n;
}

/** Most of `times` (ms) within any window of `ms`, closed at both ends: the strict reading of a cap. */
export function maxInWindow(times: readonly number[], ms = 1000): number {
  const sorted = [...times].sort((a, b) => a - b);
  let best = 0;
  let start = 0;
  for (let end = 0; end < sorted.length; end += 1) {
    while (sorted[end]! - sorted[start]! > ms) start += 1;
    best = Math.max(best, end - start + 1);
  }
  return best;
}

/** Arrivals a second over [from, to) (times in ms). */
export function rateIn(times: readonly number[], from: number, to: number): number {
  return (times.filter((t) => t >= from && t < to).length * 1000) / (to - from);
}

export class MockProvider {
  readonly arrivals: Arrival[] = [];
  readonly bodies: WireBody[] = [];
  readonly headers: Array<Record<string, string | string[] | undefined>> = [];
  private window: number[] = [];
  private windowStart = 0;
  keepBodies = true;

  constructor(
    private readonly server: Server,
    readonly url: string,
    public options: MockProviderOptions,
  ) {}

  handle(req: IncomingMessage, res: ServerResponse, raw: string): void {
    const at = performance.now();
    let body: WireBody;
    try {
      body = JSON.parse(raw) as WireBody;
    } catch {
      res.writeHead(400).end('bad json');
      return;
    }
    const arrival: Arrival = {
      at,
      key: req.headers['idempotency-key'] as string | undefined,
      campaignId: body.campaignId,
      runId: body.runId,
      recipientId: body.recipient?.id,
      status: 200,
    };
    // Sliding-second counter over all arrivals, as a strict provider keeps it.
    this.window.push(at);
    while (this.window[this.windowStart]! <= at - 1000) this.windowStart += 1;
    if (this.windowStart > 10_000) {
      this.window = this.window.slice(this.windowStart);
      this.windowStart = 0;
    }
    const inWindow = this.window.length - this.windowStart;
    let reply: Reply | undefined;
    if (this.options.cap !== undefined && inWindow > this.options.cap) {
      reply = { status: 429, headers: this.options.retryAfterSeconds ? { 'retry-after': String(this.options.retryAfterSeconds) } : {}, body: 'over cap' };
    } else {
      reply = this.options.respond?.(body, arrival);
    }
    reply ??= { status: 200, body: '{"ok":true}' };
    arrival.status = reply.status;
    this.arrivals.push(arrival);
    if (this.keepBodies) {
      this.bodies.push(body);
      this.headers.push(req.headers);
    }
    const send = () => res.writeHead(reply.status, { 'content-type': 'application/json', ...reply.headers }).end(reply.body ?? '');
    const delay = reply.delayMs ?? this.options.latencyMs ?? 0;
    if (delay > 0) setTimeout(send, delay);
    else send();
  }

  deliveries(): Map<string, number> {
    return deliveries(this.arrivals);
  }

  duplicates(): number {
    return duplicates(this.arrivals);
  }

  count(status: number): number {
    return this.arrivals.filter((a) => a.status === status).length;
  }

  /** Most arrivals in any window of `ms`. */
  maxWindow(ms = 1000, from = 0): number {
    return maxInWindow(
      this.arrivals.filter((a) => a.at >= from).map((a) => a.at),
      ms,
    );
  }

  reset(): void {
    this.arrivals.length = 0;
    this.bodies.length = 0;
    this.headers.length = 0;
    this.window = [];
    this.windowStart = 0;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

export async function startMockProvider(options: MockProviderOptions = {}): Promise<MockProvider> {
  let provider: MockProvider | undefined;
  const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    if (options.control && req.url?.startsWith('/__')) {
      if (req.url === '/__reset') provider!.reset();
      const body = req.url === '/__arrivals' ? provider!.arrivals : { count: provider!.arrivals.length };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => provider!.handle(req, res, Buffer.concat(chunks).toString('utf8')));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  provider = new MockProvider(server, `http://127.0.0.1:${port}/send`, options);
  return provider;
}
