import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';

/**
 * A provider on loopback for the nemesis: speaks the contract's `http` wire
 * format, misbehaves on command (5xx bursts, 429 storms with Retry-After,
 * answers held past the client's timeout, connections reset after the
 * request was read), and keeps the evidence the checker judges: every
 * arrival, and whether the provider acted on it (delivered it).
 *
 * `dedupe`: it honours Idempotency-Key — a key it has delivered is not
 * delivered again (answered 200 as the first time), as providers that
 * support the key do; pushq's `inDoubt: resend` relies on that.
 */
export type Misbehaviour = 'none' | '5xx' | '429' | 'timeout' | 'reset';

export interface ChaosArrival {
  at: number;
  campaignId: string;
  runId: string;
  recipientId: string;
  key: string;
  /** The provider acted on it: the message reached the person (once per key when deduplicating). */
  delivered: boolean;
  answer: number | 'timeout' | 'reset';
}

export class ChaosProvider {
  readonly arrivals: ChaosArrival[] = [];
  private mode: Misbehaviour = 'none';
  private modeUntil = 0;
  private readonly deliveredKeys = new Set<string>();
  /** Recipients with ids starting with this are refused for good (400), to have failures to retry. */
  readonly badPrefix = 'bad-';

  constructor(
    private readonly server: Server,
    readonly url: string,
    readonly name: string,
    readonly dedupe: boolean,
    /** Answers later than this count as timeouts at the client. */
    private readonly holdMs: number,
  ) {}

  misbehave(mode: Misbehaviour, forMs: number): void {
    this.mode = mode;
    this.modeUntil = performance.now() + forMs;
  }

  behave(): void {
    this.mode = 'none';
  }

  private current(): Misbehaviour {
    if (this.mode !== 'none' && performance.now() > this.modeUntil) this.mode = 'none';
    return this.mode;
  }

  handle(req: IncomingMessage, res: ServerResponse, raw: string): void {
    let body: { idempotencyKey?: string; campaignId?: string; runId?: string; recipient?: { id?: string } };
    try {
      body = JSON.parse(raw);
    } catch {
      res.writeHead(400).end('bad json');
      return;
    }
    const key = String(req.headers['idempotency-key'] ?? '');
    const recipientId = String(body.recipient?.id ?? '');
    const arrival: ChaosArrival = {
      at: performance.now(),
      campaignId: String(body.campaignId),
      runId: String(body.runId),
      recipientId,
      key,
      delivered: false,
      answer: 200,
    };
    this.arrivals.push(arrival);
    const mode = this.current();
    if (mode === '5xx') return this.answer(res, arrival, 503, 'unavailable');
    if (mode === '429') return this.answer(res, arrival, 429, 'slow down', { 'retry-after': '1' });
    if (recipientId.startsWith(this.badPrefix)) return this.answer(res, arrival, 400, 'no such device');
    // From here on it acts on the request: the message goes out (once per key, when it deduplicates).
    arrival.delivered = !(this.dedupe && this.deliveredKeys.has(key));
    this.deliveredKeys.add(key);
    if (mode === 'reset') {
      arrival.answer = 'reset';
      req.socket.destroy();
      return;
    }
    if (mode === 'timeout') {
      arrival.answer = 'timeout';
      setTimeout(() => {
        if (!res.destroyed) res.writeHead(200).end('{"ok":true}');
      }, this.holdMs);
      return;
    }
    setTimeout(() => this.answer(res, arrival, 200, '{"ok":true}'), 5 + Math.random() * 20);
  }

  private answer(res: ServerResponse, arrival: ChaosArrival, status: number, body: string, headers: Record<string, string> = {}): void {
    arrival.answer = status;
    if (!res.destroyed) res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(body);
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

export async function startChaosProvider(name: string, options: { dedupe: boolean; holdMs: number }): Promise<ChaosProvider> {
  let provider: ChaosProvider | undefined;
  const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => provider!.handle(req, res, Buffer.concat(chunks).toString('utf8')));
    req.on('error', () => undefined);
    res.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  provider = new ChaosProvider(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}/send`, name, options.dedupe, options.holdMs);
  return provider;
}
