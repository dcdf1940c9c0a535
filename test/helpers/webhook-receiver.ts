import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

/**
 * A webhook receiver on loopback that checks every delivery's signature with
 * the `standardwebhooks` package (independently of how pushq signs) and
 * keeps the evidence: every attempt with its answer, and the first accepted
 * body of each delivery id, in the order they were accepted.
 */
export interface ReceivedAttempt {
  id: string;
  timestamp: string;
  /** The signature verified against the endpoint's secret. */
  verified: boolean;
  body: string;
  /** What the receiver answered: a status, or 'hang' (no answer: the sender's timeout). */
  answered: number | 'hang';
}

export interface AcceptedDelivery {
  id: string;
  type: string;
  timestamp: string;
  data: Record<string, unknown> & { campaignId?: string; runId?: string; recipients?: Array<Record<string, unknown>> };
}

export type ReceiverReply = number | 'hang';

export class WebhookReceiver {
  readonly attempts: ReceivedAttempt[] = [];
  /** Accepted (2xx) deliveries, first acceptance of each id only, in order. */
  readonly accepted: AcceptedDelivery[] = [];
  private readonly acceptedIds = new Set<string>();
  private readonly hanging = new Set<ServerResponse>();
  private readonly verifier: Webhook;

  constructor(
    private readonly server: Server,
    readonly url: string,
    readonly secret: string,
    /** Decides each answer (default 200). */
    public reply: (attempt: { id: string; body: string; type: string }) => ReceiverReply = () => 200,
  ) {
    this.verifier = new Webhook(secret);
  }

  handle(req: IncomingMessage, res: ServerResponse, body: string): void {
    const headers = {
      'webhook-id': String(req.headers['webhook-id']),
      'webhook-timestamp': String(req.headers['webhook-timestamp']),
      'webhook-signature': String(req.headers['webhook-signature']),
    };
    let verified: boolean;
    try {
      this.verifier.verify(body, headers);
      verified = true;
    } catch {
      verified = false;
    }
    const parsed = JSON.parse(body) as AcceptedDelivery;
    const answer = verified ? this.reply({ id: headers['webhook-id'], body, type: parsed.type }) : 401;
    this.attempts.push({ id: headers['webhook-id'], timestamp: headers['webhook-timestamp'], verified, body, answered: answer });
    if (answer === 'hang') {
      this.hanging.add(res);
      res.on('close', () => this.hanging.delete(res));
      return;
    }
    if (answer >= 200 && answer < 300 && !this.acceptedIds.has(headers['webhook-id'])) {
      this.acceptedIds.add(headers['webhook-id']);
      this.accepted.push({ ...parsed, id: headers['webhook-id'] });
    }
    res.writeHead(answer, { 'content-type': 'application/json' }).end('{}');
  }

  /** Accepted recipient events as `type|runId|recipientId`. */
  recipientEvents(campaignId?: string): string[] {
    return this.accepted
      .filter((d) => d.type.startsWith('recipient.') && (!campaignId || d.data.campaignId === campaignId))
      .flatMap((d) => (d.data.recipients ?? []).map((r) => `${d.type}|${d.data.runId}|${String(r.id)}`));
  }

  close(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** A Standard Webhooks secret for a test endpoint. */
export function newWebhookSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

export async function startWebhookReceiver(secret = newWebhookSecret(), reply?: WebhookReceiver['reply']): Promise<WebhookReceiver> {
  let receiver: WebhookReceiver | undefined;
  const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => receiver!.handle(req, res, Buffer.concat(chunks).toString('utf8')));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  receiver = new WebhookReceiver(server, `http://127.0.0.1:${port}/hooks`, secret, reply);
  return receiver;
}

/** A WEBHOOKS_FILE for `endpoints` (each with its secret written to a file of its own). */
export function webhooksFile(endpoints: Array<Record<string, unknown> & { secret: string }>): string {
  const dir = mkdtempSync(join(tmpdir(), 'pushq-webhooks-'));
  const entries = endpoints.map(({ secret, ...rest }, i) => {
    const secretFile = join(dir, `secret-${i}`);
    writeFileSync(secretFile, secret);
    return { ...rest, secretFile };
  });
  const file = join(dir, 'webhooks.json');
  writeFileSync(file, JSON.stringify(entries));
  return file;
}
