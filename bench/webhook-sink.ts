/**
 * A webhook receiver for the benchmark, in a process of its own and as cheap
 * as a receiver can be: it answers 200 and counts the events of each
 * delivery (its `data.count`), nothing else. Prints its URL; GET /__count
 * answers the events received so far.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

let events = 0;
const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  if (req.method === 'GET') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ events }));
    return;
  }
  let head = '';
  req.on('data', (chunk: Buffer) => {
    if (head.length < 512) head += chunk.toString('latin1', 0, 512);
  });
  req.on('end', () => {
    const count = /"count":(\d+)/.exec(head);
    events += count ? Number(count[1]) : 1;
    res.writeHead(200).end();
  });
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`sink http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks\n`));
