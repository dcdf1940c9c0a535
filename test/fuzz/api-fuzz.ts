import { performance } from 'node:perf_hooks';
import { request as httpRequest } from 'node:http';
import fc from 'fast-check';
import { PAGE_HEADER } from '../../src/adapters/http/app.js';
import { apiRoutes, type RouteDeps } from '../../src/adapters/http/routes.js';
import { ApiClient } from '../helpers/api-client.js';
import { providersFile, TEST_TOKEN } from '../helpers/fixtures.js';
import { startApiProcess, type PushqProcess } from '../helpers/processes.js';
import { deletePrefix, digestPrefix, TEST_REDIS_URL, testRedis, uniquePrefix } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';
import {
  announced,
  bodyEncoding,
  bodyValue,
  encodeBody,
  hostileString,
  jsonSchemaOf,
  pathParam,
  queryString,
  sha256,
  uploadBody,
  type JsonSchema,
} from './arbitraries.js';

/**
 * A schema-driven fuzzer for the REST API: every route of the route table
 * (the list the router and the OpenAPI document are built from) gets random
 * and adversarial path ids, query strings, headers and bodies, sent to a real
 * API process on real Redis. Properties, for every request:
 *  - an answer comes within the deadline, and it is never a 5xx;
 *  - its status is the route's success status or one of the documented errors;
 *  - an error has the contract's body, `{"error":{"code","message"}}`, as JSON;
 *  - a rejected request (any 4xx), and any GET, leaves every key under the
 *    prefix exactly as it was (a digest of all of them, taken in one Lua call);
 *  - a valid admin token is never refused, a missing or wrong one never let in;
 *  - the process stays up (checked after every request, /healthz every 25).
 */

const VIEWER_TOKEN = 'test-viewer-token-0123456789';
const DOCUMENTED_ERRORS = [400, 401, 403, 404, 409, 413, 415, 417, 422, 429];
/** Keys that change without any request: the API publishes its own metrics to Redis. */
const VOLATILE = [':metrics:', ':workers'];
/**
 * Hash fields that are number allocators, not state: an upload takes the next
 * list version (`rvSeq`) when it starts, so that a refused one's leftovers
 * can never be mistaken for a later list, as a failed INSERT consumes a
 * PostgreSQL sequence value. Nothing reads them but the next allocation.
 */
const ALLOCATORS = ['rvSeq'];

export interface FuzzRoute {
  operationId: string;
  method: string;
  /** With :params. */
  path: string;
  access: 'read' | 'write' | 'none';
  success: number[];
  query: JsonSchema;
  body?: JsonSchema;
  upload?: boolean;
  /** The page's routes take Basic credentials (the token as password) and the page's header. */
  browser?: boolean;
}

/** The API's routes, from its own table, and the page's action route beside them. */
export function fuzzRoutes(): FuzzRoute[] {
  const routes: FuzzRoute[] = apiRoutes({} as RouteDeps).map((r) => ({
    operationId: r.operationId,
    method: r.method.toUpperCase(),
    path: `/api${r.path}`,
    access: r.access,
    success: [r.status ?? 200, ...Object.keys(r.alsoAnswers ?? {}).map(Number)],
    query: jsonSchemaOf(r.query),
    ...(r.body ? { body: jsonSchemaOf(r.body) } : {}),
    ...(r.upload ? { upload: true } : {}),
  }));
  const none: JsonSchema = { type: 'object', properties: {}, additionalProperties: false };
  routes.push(
    { operationId: 'pageAction', method: 'POST', path: '/admin/campaigns/:id/:action', access: 'write', success: [200], query: none, browser: true },
    { operationId: 'pageData', method: 'GET', path: '/admin/campaigns/data', access: 'read', success: [200], query: none, browser: true },
    { operationId: 'openapi', method: 'GET', path: '/api/openapi.json', access: 'read', success: [200], query: none },
    { operationId: 'readyz', method: 'GET', path: '/readyz', access: 'none', success: [200], query: none },
  );
  return routes;
}

type Auth = 'admin' | 'viewer' | 'none' | 'wrong' | 'malformed' | 'basic-admin';

interface FuzzCase {
  route: FuzzRoute;
  method: string;
  path: string;
  auth: Auth;
  headers: Record<string, string>;
  body?: Buffer;
  /** Send this many bytes of the body, announcing all of it, then drop the connection. */
  abortAfter?: number;
  describe: string;
}

interface Answer {
  status: number;
  contentType: string;
  text: string;
}

interface Fixtures {
  campaigns: string[];
  recipients: string[];
  lists: string[];
  providers: string[];
}

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'];

function authHeader(auth: Auth, browser: boolean): Record<string, string> {
  const admin = browser ? `Basic ${Buffer.from(`admin:${TEST_TOKEN}`).toString('base64')}` : `Bearer ${TEST_TOKEN}`;
  switch (auth) {
    case 'admin':
      return { authorization: admin };
    case 'basic-admin':
      return { authorization: `Basic ${Buffer.from(`admin:${TEST_TOKEN}`).toString('base64')}` };
    case 'viewer':
      return { authorization: browser ? `Basic ${Buffer.from(`v:${VIEWER_TOKEN}`).toString('base64')}` : `Bearer ${VIEWER_TOKEN}` };
    case 'none':
      return {};
    case 'wrong':
      return { authorization: `Bearer ${TEST_TOKEN.slice(0, -1)}X` };
    case 'malformed':
      return { authorization: 'Bearer' };
  }
}

function caseFor(route: FuzzRoute, fixtures: Fixtures): fc.Arbitrary<FuzzCase> {
  const params = [...route.path.matchAll(/:(\w+)/g)].map((m) => m[1]!);
  const known: Record<string, string[]> = {
    id: fixtures.campaigns,
    recipientId: fixtures.recipients,
    list: fixtures.lists,
    name: fixtures.providers,
    action: ['pause', 'resume', 'cancel'],
  };
  const payload: fc.Arbitrary<{ body?: Buffer; headers: Record<string, string>; note: string; abortAfter?: number }> = route.upload
    ? fc
        .record({
          upload: uploadBody,
          type: fc.oneof(
            { weight: 8, arbitrary: fc.constant('right') },
            { weight: 1, arbitrary: fc.constantFrom('application/json', 'text/plain', 'text/csv; charset=latin1', 'multipart/form-data', '') },
          ),
          count: announced.count,
          sha: announced.sha256,
          abort: fc.oneof({ weight: 11, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.nat() }),
        })
        .map(({ upload, type, count, sha, abort }) => {
          const headers: Record<string, string> = {};
          const contentType = type === 'right' ? (upload.format === 'csv' ? 'text/csv' : 'application/x-ndjson') : type;
          if (contentType) headers['content-type'] = contentType;
          if (count === 'truth') headers['x-recipient-count'] = String(upload.rows);
          else if (count === '+1' || count === '-1') headers['x-recipient-count'] = String(upload.rows + Number(count));
          else if (count !== undefined) headers['x-recipient-count'] = count;
          if (sha === 'truth') headers['x-content-sha256'] = sha256(upload.bytes);
          else if (sha === 'wrong') headers['x-content-sha256'] = sha256(Buffer.concat([upload.bytes, Buffer.from('x')]));
          else if (sha !== undefined) headers['x-content-sha256'] = sha;
          return {
            body: upload.bytes,
            headers,
            note: `${upload.format} ${upload.rows} rows damage=${upload.damage} ${JSON.stringify(headers)}`,
            ...(abort !== null && upload.bytes.length > 0 ? { abortAfter: abort % upload.bytes.length } : {}),
          };
        })
    : route.body
      ? fc
          .record({
            value: bodyValue(route.body),
            encoding: bodyEncoding,
            cut: fc.nat(),
            type: fc.oneof(
              { weight: 12, arbitrary: fc.constant('application/json') },
              { weight: 1, arbitrary: fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=utf-16', '') },
            ),
          })
          .map(({ value, encoding, cut, type }) => {
            const body = encodeBody(value, encoding, cut);
            const headers: Record<string, string> = type ? { 'content-type': type } : {};
            return { body, headers, note: `${encoding} ${type} ${body.subarray(0, 300).toString()}` };
          })
      : fc.oneof(
          { weight: 8, arbitrary: fc.constant({ headers: {}, note: 'no body' }) },
          {
            weight: 1,
            arbitrary: fc.constant({ body: Buffer.from('{"unexpected":true}'), headers: { 'content-type': 'application/json' }, note: 'unexpected body' }),
          },
        );
  return fc
    .record({
      params: fc.tuple(...params.map((p) => pathParam(known[p] ?? []))),
      query: queryString(route.query),
      auth: fc.oneof(
        { weight: 12, arbitrary: fc.constant<Auth>('admin') },
        { weight: 2, arbitrary: fc.constant<Auth>('viewer') },
        { weight: 1, arbitrary: fc.constantFrom<Auth>('none', 'wrong', 'malformed', 'basic-admin') },
      ),
      method: fc.oneof({ weight: 14, arbitrary: fc.constant(route.method) }, { weight: 1, arbitrary: fc.constantFrom(...METHODS) }),
      site: fc.oneof(
        { weight: 14, arbitrary: fc.constant({}) },
        {
          weight: 1,
          arbitrary: fc.constantFrom<Record<string, string>>(
            { origin: 'https://evil.example' },
            { 'sec-fetch-site': 'cross-site' },
            { origin: 'null' },
            { 'sec-fetch-site': 'same-origin' },
          ),
        },
      ),
      page: fc.boolean(),
      extra: fc.oneof(
        { weight: 19, arbitrary: fc.constant(null) },
        { weight: 1, arbitrary: fc.tuple(fc.constantFrom('x-forwarded-for', 'content-encoding', 'expect', 'x-request-id'), hostileString) },
      ),
      payload,
    })
    .map(({ params, query, auth, method, site, page, extra, payload }) => {
      let i = 0;
      const path = route.path.replace(/:(\w+)/g, () => params[i++]!) + query;
      const headers: Record<string, string> = { ...authHeader(auth, route.browser ?? false), ...site, ...payload.headers };
      if (route.browser && page) headers[PAGE_HEADER] = '1';
      if (extra) {
        const value = extra[1].replace(/[^\t\x20-\x7e]/g, '?').slice(0, 4000);
        headers[extra[0]] = extra[0] === 'content-encoding' ? value || 'gzip' : value;
      }
      return {
        route,
        method,
        path,
        auth,
        headers,
        ...(payload.body ? { body: payload.body } : {}),
        ...(payload.abortAfter !== undefined ? { abortAfter: payload.abortAfter } : {}),
        describe: `${method} ${path.slice(0, 300)} auth=${auth} ${JSON.stringify(site)} ${payload.note}`,
      };
    });
}

function send(base: URL, c: FuzzCase, deadlineMs: number): Promise<Answer | 'aborted' | 'timeout'> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: base.hostname,
        port: base.port,
        method: c.method,
        path: c.path,
        headers: { ...c.headers, ...(c.body ? { 'content-length': String(c.body.length) } : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => {
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), text: Buffer.concat(chunks).toString() });
        });
        res.on('error', reject);
      },
    );
    const timer = setTimeout(() => {
      req.destroy();
      resolve('timeout');
    }, deadlineMs);
    req.on('error', (err) => {
      clearTimeout(timer);
      if (c.abortAfter !== undefined) resolve('aborted');
      // The server may answer (413, 415, 422) and close before the whole body is written: that is an answer we missed.
      else if ((err as NodeJS.ErrnoException).code === 'EPIPE' || (err as NodeJS.ErrnoException).code === 'ECONNRESET') resolve('aborted');
      else reject(err);
    });
    if (c.abortAfter !== undefined && c.body) {
      req.write(c.body.subarray(0, c.abortAfter), () => {
        clearTimeout(timer);
        req.destroy();
        resolve('aborted');
      });
      return;
    }
    req.end(c.body);
  });
}

export interface FuzzReport {
  runs: number;
  seed: number;
  /** operationId → status → count. */
  statuses: Record<string, Record<string, number>>;
  aborted: number;
  failure?: string;
}

export async function fuzzApi(options: {
  runs: number;
  seed: number;
  redisUrl?: string;
  deadlineMs?: number;
  log?: (line: string) => void;
}): Promise<FuzzReport> {
  const log = options.log ?? (() => undefined);
  const prefix = uniquePrefix('fuzz');
  const redis = testRedis(options.redisUrl ?? TEST_REDIS_URL);
  let api: PushqProcess | undefined;
  const report: FuzzReport = { runs: options.runs, seed: options.seed, statuses: {}, aborted: 0 };
  try {
    const started = await startApiProcess({
      REDIS_URL: options.redisUrl ?? TEST_REDIS_URL,
      QUEUE_PREFIX: prefix,
      ADMIN_TOKEN: TEST_TOKEN,
      VIEWER_TOKEN,
      LOG_LEVEL: 'info',
      // No worker runs: nothing but the fuzzer's requests changes Redis. The provider is never called.
      PROVIDERS_FILE: providersFile([{ name: 'mock', type: 'http', url: 'http://127.0.0.1:9/', tps: 100 }]),
    });
    api = started.process;
    const base = new URL(started.url);
    const client = new ApiClient(started.url, TEST_TOKEN);
    const admin = async (method: string, path: string, body?: unknown) => {
      const answer = await client.request(method, path, body);
      if (answer.status >= 300) throw new Error(`fixture ${method} ${path}: ${answer.status} ${JSON.stringify(answer.body)}`);
      return answer.body;
    };
    const digest = () => digestPrefix(redis, prefix, { skipKeys: VOLATILE, skipFields: ALLOCATORS });

    // Campaigns in every state a route can meet: draft, scheduled, running, paused, completed-less cancelled.
    const fixtures: Fixtures = { campaigns: [], recipients: ['u1', '김민준', 'u3'], lists: ['global', 'fz-list'], providers: ['mock', 'nope'] };
    const refresh = async () => {
      const make = async () =>
        (await admin('POST', '/api/campaigns', { name: 'fuzz', provider: 'mock', message: { title: 't', body: 'b' }, recipients: fixtures.recipients }))
          .id as string;
      const [draft, scheduled, running, paused, cancelled] = await Promise.all([make(), make(), make(), make(), make()]);
      await admin('POST', `/api/campaigns/${scheduled}/schedule`, { cron: '0 0 9 * * *', timezone: 'Asia/Seoul' });
      await admin('POST', `/api/campaigns/${running}/launch`);
      await admin('POST', `/api/campaigns/${paused}/launch`);
      await admin('POST', `/api/campaigns/${paused}/pause`);
      await admin('POST', `/api/campaigns/${cancelled}/cancel`);
      await admin('POST', '/api/suppressions/fz-list', { ids: ['u3', 'opted-out'] });
      fixtures.campaigns = [draft!, scheduled!, running!, paused!, cancelled!];
    };
    await refresh();

    const routes = fuzzRoutes();
    let count = 0;
    let current = await digest();
    const deadlineMs = options.deadlineMs ?? 15_000;
    const property = fc.asyncProperty(
      fc.constantFrom(...routes).chain((route) => caseFor(route, fixtures)),
      async (c) => {
        count++;
        if (count % 50 === 0) {
          await refresh();
          current = await digest();
        }
        const sentAt = performance.now();
        const answer = await send(base, c, deadlineMs);
        if (process.env.FUZZ_TRACE) {
          const ms = Math.round(performance.now() - sentAt);
          process.stderr.write(`${count} ${typeof answer === 'string' ? answer : answer.status} ${ms}ms ${c.describe.slice(0, 200)}\n`);
        }
        if (!api!.alive) throw new Error(`the API process died: ${api!.output.slice(-2000)}`);
        if (answer === 'timeout') throw new Error(`no answer within ${deadlineMs} ms`);
        const byRoute = (report.statuses[c.route.operationId] ??= {});
        if (answer === 'aborted') {
          report.aborted++;
          byRoute.aborted = (byRoute.aborted ?? 0) + 1;
          // Whatever the server had started for a dropped upload, it must undo: wait for it, with a deadline.
          const undone = await waitFor(async () => (await digest()).equals(current) || undefined, {
            timeoutMs: 5_000,
            what: 'the dropped upload undone',
          }).catch(() => false);
          const after = undone ? current : await digest();
          if (!undone && c.abortAfter !== undefined) throw new Error(`a dropped upload changed Redis: ${after.changedSince(current)}`);
          current = after;
          return;
        }
        byRoute[answer.status] = (byRoute[answer.status] ?? 0) + 1;
        const after = await digest();
        const rejected = answer.status >= 400;
        const exact = c.method === c.route.method;
        if (answer.status >= 500) throw new Error(`answered ${answer.status}: ${answer.text.slice(0, 500)}`);
        if (exact && !c.route.success.includes(answer.status) && !DOCUMENTED_ERRORS.includes(answer.status)) {
          throw new Error(`answered ${answer.status}, which ${c.route.operationId} does not document: ${answer.text.slice(0, 300)}`);
        }
        if (rejected) {
          let error: unknown;
          try {
            error = (JSON.parse(answer.text) as { error?: unknown }).error;
          } catch {
            error = undefined;
          }
          const shaped = typeof error === 'object' && error !== null && typeof (error as any).code === 'string' && typeof (error as any).message === 'string';
          if (!answer.contentType.startsWith('application/json') || !shaped) {
            throw new Error(`error ${answer.status} without the contract's body: ${answer.contentType} ${answer.text.slice(0, 300)}`);
          }
        }
        if ((rejected || c.method === 'GET') && !after.equals(current)) {
          throw new Error(`${rejected ? `a rejected request (${answer.status})` : 'a GET'} changed Redis: ${after.changedSince(current)}`);
        }
        current = after;
        if (exact && c.route.access !== 'none') {
          const admin = c.auth === 'admin' || (c.auth === 'basic-admin' && c.route.browser);
          if (admin && answer.status === 429) throw new Error('a valid admin token was refused with 429');
          if ((c.auth === 'none' || c.auth === 'wrong' || c.auth === 'malformed') && answer.status < 400) {
            throw new Error(`${c.auth} credentials were let in: ${answer.status}`);
          }
          if (c.auth === 'viewer' && c.route.access === 'write' && answer.status < 400) throw new Error(`the viewer token changed something: ${answer.status}`);
        }
        if (count % 25 === 0) {
          const health = await fetch(`${base.origin}/healthz`);
          if (health.status !== 200) throw new Error(`/healthz answered ${health.status}`);
        }
        if (count % 500 === 0) log(`${count} cases`);
      },
    );
    const result = await fc.check(property, {
      numRuns: options.runs,
      seed: options.seed,
      // Shrinking re-sends requests to a server whose state moved on; a few hundred attempts find a small case.
      maxSkipsPerRun: 0,
      endOnFailure: false,
      markInterruptAsFailure: true,
      interruptAfterTimeLimit: 30 * 60_000,
    });
    if (result.failed) {
      const counterexample = result.counterexample?.[0] as FuzzCase | undefined;
      report.failure = [
        `after ${result.numRuns} cases (seed ${result.seed}, path ${result.counterexamplePath}):`,
        String((result.errorInstance as Error | undefined)?.message ?? result.errorInstance),
        counterexample ? `request: ${counterexample.describe}` : '',
      ].join('\n');
    }
    return report;
  } finally {
    await api?.kill('SIGKILL');
    await deletePrefix(redis, prefix);
    redis.disconnect();
  }
}

/** The report as a table: one line per operation, its statuses and counts. */
export function formatReport(report: FuzzReport): string {
  const lines = [`${report.runs} cases, seed ${report.seed}, ${report.aborted} dropped mid-upload`];
  for (const [operation, statuses] of Object.entries(report.statuses).sort()) {
    lines.push(
      `  ${operation.padEnd(24)} ${Object.entries(statuses)
        .sort()
        .map(([s, n]) => `${s}×${n}`)
        .join(' ')}`,
    );
  }
  if (report.failure) lines.push('', `FAILED ${report.failure}`);
  return lines.join('\n');
}
