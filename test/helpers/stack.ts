import { onCleanup } from './cleanup.js';
import { ApiClient } from './api-client.js';
import { providersFile, TEST_TOKEN } from './fixtures.js';
import { startMockProvider, type MockProvider, type MockProviderOptions } from './mock-provider.js';
import { startApiProcess, startWorkerProcess, type PushqProcess } from './processes.js';
import { deletePrefix, TEST_REDIS_URL, testRedis, uniquePrefix } from './redis.js';
import { waitFor } from './wait.js';

/**
 * pushq as real processes — an API and `workers` worker processes under a
 * fresh key prefix — sending to a mock provider on loopback (named `mock`).
 */
export interface Stack {
  mock: MockProvider;
  client: ApiClient;
  prefix: string;
  env: Record<string, string>;
  api: PushqProcess;
  workers: PushqProcess[];
  /** One more worker process; `env` overrides the stack's (e.g. a REDIS_URL through a proxy). */
  addWorker(env?: Record<string, string>): Promise<PushqProcess>;
  stop(): Promise<void>;
}

export async function startStack(options: {
  workers: number;
  mock?: MockProviderOptions;
  provider?: Record<string, unknown>;
  /** More providers, after `mock`. */
  providers?: Array<Record<string, unknown>>;
  env?: Record<string, string>;
  redisUrl?: string;
}): Promise<Stack> {
  const prefix = uniquePrefix('stack');
  const mock = await startMockProvider(options.mock ?? {});
  const env: Record<string, string> = {
    REDIS_URL: options.redisUrl ?? TEST_REDIS_URL,
    QUEUE_PREFIX: prefix,
    ADMIN_TOKEN: TEST_TOKEN,
    PROVIDERS_FILE: providersFile([
      { name: 'mock', type: 'http', url: mock.url, tps: 1000, timeoutMs: 3000, ...options.provider },
      ...(options.providers ?? []),
    ]),
    ...options.env,
  };
  const { process: api, url } = await startApiProcess(env);
  const workers = await Promise.all(Array.from({ length: options.workers }, () => startWorkerProcess(env)));
  return {
    mock,
    client: new ApiClient(url, TEST_TOKEN),
    prefix,
    env,
    api,
    workers,
    async addWorker(extra = {}) {
      const worker = await startWorkerProcess({ ...env, ...extra });
      workers.push(worker);
      return worker;
    },
    async stop() {
      await Promise.all([api, ...workers].map((p) => p.kill('SIGKILL')));
      await mock.close();
      if (!options.redisUrl) {
        const redis = testRedis();
        await deletePrefix(redis, prefix);
        redis.disconnect();
      }
    },
  };
}

export type StackOptions = Parameters<typeof startStack>[0];

/** A `startStack` whose stacks are stopped after the test that started them. */
export function stacksPerTest(): (options: StackOptions) => Promise<Stack> {
  return async (options) => {
    const stack = await startStack(options);
    onCleanup(() => stack.stop());
    return stack;
  };
}

export const range = (n: number, label: string) => Array.from({ length: n }, (_, i) => `${label}${i}`);

/** Creates a campaign on the mock provider and answers its id. */
export async function createCampaign(client: ApiClient, recipients: unknown[], extra: Record<string, unknown> = {}): Promise<string> {
  const res = await client.request('POST', '/api/campaigns', { name: 'c', provider: 'mock', message: { title: 't', body: 'b' }, recipients, ...extra });
  if (res.status !== 201) throw new Error(`create failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.id;
}

export async function launchCampaign(client: ApiClient, recipients: unknown[], extra: Record<string, unknown> = {}): Promise<string> {
  const id = await createCampaign(client, recipients, extra);
  await client.launch(id);
  return id;
}

export async function waitForStatus(client: ApiClient, id: string, status: string, timeoutMs = 60_000) {
  return waitFor(
    async () => {
      const c = await client.campaign(id);
      return c.status === status ? c : undefined;
    },
    { timeoutMs, intervalMs: 100, what: `campaign ${id} to be ${status}` },
  );
}
