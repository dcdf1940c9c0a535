/**
 * The loopback mock provider in a process of its own, so the benchmark's own
 * bookkeeping never delays its answers. Env: MOCK_CAP, MOCK_RETRY_AFTER.
 * Prints its URL; GET /__arrivals returns the evidence.
 */
import { startMockProvider } from '../test/helpers/mock-provider.js';

const cap = process.env.MOCK_CAP ? Number(process.env.MOCK_CAP) : undefined;
const mock = await startMockProvider({ cap, retryAfterSeconds: Number(process.env.MOCK_RETRY_AFTER ?? 1), control: true });
mock.keepBodies = false;
process.stdout.write(`mock ${mock.url}\n`);
