import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * What the NHN-style fakes (alimtalk, SMS) share: an HTTP server on loopback
 * that hands each request to `handle` with its whole body, and the count of
 * deliveries per recipientGroupingKey (our idempotency key).
 */
export async function startNhnServer(handle: (req: IncomingMessage, res: ServerResponse, body: string) => void): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handle(req, res, Buffer.concat(chunks).toString('utf8')));
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

export function countPerKey(deliveries: ReadonlyArray<{ recipientGroupingKey: string }>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const d of deliveries) counts.set(d.recipientGroupingKey, (counts.get(d.recipientGroupingKey) ?? 0) + 1);
  return counts;
}

/**
 * How an NHN-style fake answers: `reply` any status and body; `refuse` a
 * request at the request level (HTTP 200, header.isSuccessful false, the
 * code kept in `refused`), as NHN does.
 */
export function nhnAnswers(res: ServerResponse, refused: number[]) {
  const reply = (status: number, payload: object) => {
    res.writeHead(status, { 'content-type': 'application/json;charset=UTF-8' });
    res.end(JSON.stringify(payload));
  };
  const refuse = (code: number, message: string) => {
    refused.push(code);
    reply(200, { header: { resultCode: code, resultMessage: message, isSuccessful: false } });
  };
  return { reply, refuse };
}
