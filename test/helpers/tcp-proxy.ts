import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

/**
 * A TCP proxy on loopback between pushq processes and Redis, for faults a
 * real network has: added latency, a stall (bytes held back, connections
 * open), a cut (every connection reset at once), and a drop of the next
 * reply only (the command reached Redis, its answer never came back — the
 * case that makes a client resend a command Redis already ran).
 */
export class TcpProxy {
  /** Extra delay for every chunk, each way. */
  latencyMs = 0;
  private stalled: Array<() => void> | null = null;
  private dropReplies = 0;
  private readonly pairs = new Set<{ client: Socket; upstream: Socket }>();
  /** Connections accepted so far. */
  accepted = 0;

  constructor(
    private readonly server: Server,
    readonly port: number,
    private readonly target: { host: string; port: number },
  ) {
    server.on('connection', (client) => this.accept(client));
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Holds every byte in both directions until `resume` (connections stay open, as with a frozen peer or a full buffer). */
  stall(): void {
    this.stalled ??= [];
  }

  resume(): void {
    const held = this.stalled ?? [];
    this.stalled = null;
    for (const release of held) release();
  }

  /** Resets every open connection now (clients reconnect through the proxy). */
  cut(): void {
    for (const { client, upstream } of this.pairs) {
      client.resetAndDestroy();
      upstream.destroy();
    }
    this.pairs.clear();
  }

  /**
   * The next `n` chunks from Redis are swallowed and the connection then
   * reset: the commands ran, their replies are lost, and a client that
   * resends unanswered commands after reconnecting runs them twice.
   */
  dropNextReplies(n = 1): void {
    this.dropReplies += n;
  }

  get connections(): number {
    return this.pairs.size;
  }

  close(): Promise<void> {
    this.resume();
    this.cut();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    this.accepted += 1;
    const upstream = connect(this.target.port, this.target.host);
    const pair = { client, upstream };
    this.pairs.add(pair);
    const end = () => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    this.pipe(client, upstream, false, end);
    this.pipe(upstream, client, true, end);
  }

  private pipe(from: Socket, to: Socket, fromRedis: boolean, end: () => void): void {
    // One chunk at a time, in order, so added latency never reorders bytes.
    let chain = Promise.resolve();
    from.on('data', (chunk: Buffer) => {
      chain = chain.then(async () => {
        if (this.latencyMs > 0) await new Promise((r) => setTimeout(r, this.latencyMs));
        while (this.stalled) await new Promise<void>((r) => this.stalled?.push(r) ?? r());
        if (fromRedis && this.dropReplies > 0) {
          this.dropReplies -= 1;
          end();
          return;
        }
        if (!to.destroyed) to.write(chunk);
      });
    });
  }
}

export async function startTcpProxy(target: { host?: string; port: number }): Promise<TcpProxy> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return new TcpProxy(server, port, { host: target.host ?? '127.0.0.1', port: target.port });
}
