/**
 * The loopback mock provider in a process of its own, so the benchmark's own
 * bookkeeping never delays its answers. Env: MOCK_CAP, MOCK_RETRY_AFTER,
 * MOCK_LATENCY_MS (how long it takes to answer), MOCK_MESSAGE_IDS=1 (answer
 * `{"messageId": …}`, a provider's own id for each message).
 * Prints its URL; GET /__arrivals returns the evidence.
 */
import { startMockProvider } from '../test/helpers/mock-provider.js';

const cap = process.env.MOCK_CAP ? Number(process.env.MOCK_CAP) : undefined;
const mock = await startMockProvider({
  cap,
  retryAfterSeconds: Number(process.env.MOCK_RETRY_AFTER ?? 1),
  latencyMs: Number(process.env.MOCK_LATENCY_MS ?? 0),
  control: true,
  ...(process.env.MOCK_MESSAGE_IDS === '1' ? { respond: (body) => ({ status: 200, body: JSON.stringify({ messageId: `msg-${body.idempotencyKey}` }) }) } : {}),
});
mock.keepBodies = false;
process.stdout.write(`mock ${mock.url}\n`);
