import { start, type RunningProcess } from '../../src/wiring/main.js';
import { TEST_TOKEN } from './fixtures.js';
import { TEST_REDIS_URL } from './redis.js';

/**
 * pushq in the test's own process (the API, and a worker unless `worker` is
 * false) under `prefix` on the test Redis, on a free port, quiet, with the
 * test admin token; `env` adds to or overrides that.
 */
export function startInProcess(prefix: string, env: Record<string, string>, roles: { worker: boolean } = { worker: true }): Promise<RunningProcess> {
  return start(
    { api: true, worker: roles.worker, embeddedRedis: false },
    { REDIS_URL: TEST_REDIS_URL, QUEUE_PREFIX: prefix, ADMIN_TOKEN: TEST_TOKEN, PORT: '0', LOG_LEVEL: 'silent', ...env },
  );
}
