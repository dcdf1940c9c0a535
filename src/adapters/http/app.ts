import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { Queue } from 'bullmq';
import express, { type Express, type RequestHandler } from 'express';
import helmet from 'helmet';
import type { Logger } from '../../app/ports.js';
import { ErrorCodes } from '../../domain/errors.js';
import { authenticate, FailedAuthLimiter, presentedToken, roleChecker } from './auth.js';
import { errorHandler, notFoundHandler, sendError } from './errors.js';
import { openApiDocument } from './openapi.js';
import { apiRouter, apiRoutes, isCampaignAction, type RouteDeps } from './routes.js';
import { campaignIdParam } from './schemas.js';
import { receiptsRouter, type ReceiptSource } from './receipts.js';
import type { Receipts } from '../../app/receipts.js';

export interface HttpAppDeps extends RouteDeps {
  adminToken: string;
  /** Read-only access to the API, Bull Board and the progress page. */
  viewerToken?: string;
  queues: Queue[];
  /** Prometheus text of this process and of the workers that report to it. */
  metrics(): Promise<{ contentType: string; text: string }>;
  /** What /readyz reports: ready, with details; rejects when Redis does not answer. */
  readiness(): Promise<{ ready: boolean; details: Record<string, unknown> }>;
  version: string;
  log: Logger;
  /** TRUST_PROXY: express `trust proxy`. */
  trustProxy: boolean | number | string[];
  /** Delivery receipts, and the providers that send them with their secrets. */
  receipts: Receipts;
  receiptSources: ReadonlyMap<string, ReceiptSource>;
}

export const BOARD_PATH = '/admin/queues';
const PAGE = new URL('./page/', import.meta.url);
const asset = (name: string) => readFileSync(new URL(name, PAGE), 'utf8');
const requireFrom = createRequire(import.meta.url);
const vendored = new Map<string, string>();
/** A file of an installed package, read once. */
const vendor = (path: string) => vendored.get(path) ?? vendored.set(path, readFileSync(requireFrom.resolve(path), 'utf8')).get(path)!;

/** Bull Board twice: full for the admin, read-only (enforced by the board's own API) for viewers. */
function boards(queues: Queue[]): { admin: RequestHandler; viewer: RequestHandler } {
  const make = (readOnlyMode: boolean) => {
    const adapter = new ExpressAdapter();
    adapter.setBasePath(BOARD_PATH);
    createBullBoard({ queues: queues.map((q) => new BullMQAdapter(q, { readOnlyMode })), serverAdapter: adapter });
    return adapter.getRouter() as RequestHandler;
  };
  return { admin: make(false), viewer: make(true) };
}

/**
 * Cross-site writes are refused (CSRF): a browser that holds an admin's Basic
 * credentials sends them with a form another site posts. Browsers say where
 * a request comes from (`Sec-Fetch-Site`, `Origin`), and a page cannot forge
 * either; programs (curl, SDKs) send neither, and pass.
 */
export const refuseCrossSite: RequestHandler = (req, res, next) => {
  if (req.method === 'GET' || req.method === 'HEAD' || req.method === 'OPTIONS') return next();
  const site = req.headers['sec-fetch-site'];
  if (site === 'cross-site' || site === 'same-site') {
    return sendError(res, ErrorCodes.FORBIDDEN, `a ${site} request cannot change anything here (Sec-Fetch-Site: ${site})`);
  }
  const origin = req.headers.origin;
  if (origin !== undefined && !sameOrigin(origin, req.host)) {
    return sendError(res, ErrorCodes.FORBIDDEN, 'a request from another origin cannot change anything here');
  }
  next();
};

function sameOrigin(origin: string, host: string | undefined): boolean {
  try {
    return host !== undefined && new URL(origin).host === host;
  } catch {
    // "null" (a sandboxed frame, a file) or garbage: not us.
    return false;
  }
}

/**
 * The page's own actions also need its header, which a form cannot set and a
 * cross-origin script cannot send without a CORS preflight that is never
 * answered: a second lock for browsers that send neither Origin nor
 * Sec-Fetch-Site.
 */
export const PAGE_HEADER = 'x-pushq-page';

/** Writes need the admin token; viewers get 403 whatever the page or board would let them click. */
const adminOnlyWrites: RequestHandler = (req, res, next) => {
  if (req.method !== 'GET' && req.method !== 'HEAD' && res.locals.role !== 'admin') {
    return sendError(res, ErrorCodes.FORBIDDEN, 'the viewer token can read, not change anything');
  }
  next();
};

export function createHttpApp(deps: HttpAppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', deps.trustProxy);
  const failedAuth = new FailedAuthLimiter();
  const roleOf = roleChecker({ admin: deps.adminToken, viewer: deps.viewerToken });
  const routes = apiRoutes(deps);
  const openapi = openApiDocument(routes, deps.version);

  // One line per request, with the route's pattern, not its path: paths can hold recipient ids.
  app.use((req, res, next) => {
    const started = performance.now();
    res.on('finish', () => {
      deps.log.info(
        {
          method: req.method,
          route: req.route?.path ? `${req.baseUrl}${req.route.path}` : req.baseUrl || req.path.split('/').slice(0, 3).join('/'),
          status: res.statusCode,
          ms: Math.round(performance.now() - started),
          role: res.locals.role,
        },
        'request',
      );
    });
    next();
  });

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  // Ready or not, for load balancers; what Redis is and how many workers run, to a token holder only.
  app.get('/readyz', async (req, res) => {
    const detailed = roleOf(presentedToken(req)) !== null;
    try {
      const { ready, details } = await deps.readiness();
      res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'unavailable', ...(detailed ? details : {}) });
    } catch (err) {
      res.status(503).json({ status: 'unavailable', ...(detailed ? { redis: { reachable: false, error: (err as Error).message } } : {}) });
    }
  });

  app.get('/metrics', async (_req, res) => {
    const { contentType, text } = await deps.metrics();
    res.type(contentType).send(text);
  });

  app.use(refuseCrossSite);
  // Providers call this one with their own signatures, not pushq's tokens.
  app.use('/api', receiptsRouter({ receipts: deps.receipts, sources: deps.receiptSources, failedAuth }));
  app.use('/api', authenticate(roleOf, failedAuth, { browser: false }));
  app.get('/api/openapi.json', (_req, res) => {
    res.json(openapi);
  });
  app.use('/api', apiRouter(routes, deps.maxBodyBytes));
  app.use('/api', notFoundHandler);

  // HTML pages: security headers; Bull Board needs its inline bootstrap script, our page needs nothing inline.
  const pageHeaders = helmet({ contentSecurityPolicy: { directives: { defaultSrc: ["'self'"], connectSrc: ["'self'"] } } });
  const boardHeaders = helmet({ contentSecurityPolicy: false });
  const browserAuth = authenticate(roleOf, failedAuth, { browser: true });

  // Bull Board has no auth of its own: ours goes in front of it.
  const board = boards(deps.queues);
  app.use(BOARD_PATH, boardHeaders, browserAuth, adminOnlyWrites, (req, res, next) =>
    (res.locals.role === 'admin' ? board.admin : board.viewer)(req, res, next),
  );

  // The page and its assets by absolute path, so /admin/campaigns/ (a trailing slash) loads them too.
  app.use('/admin/campaigns', pageHeaders, browserAuth, adminOnlyWrites);
  app.get('/admin/campaigns', (_req, res) => {
    res.type('html').send(asset('campaigns.html'));
  });
  app.get('/admin/campaigns/app.js', (_req, res) => {
    res.type('js').send(asset('app.js'));
  });
  app.get('/admin/campaigns/app.css', (_req, res) => {
    res.type('css').send(asset('app.css'));
  });
  // The OpenAPI document where the page's browser credentials reach (under /api it would ask for a bearer token).
  app.get('/admin/campaigns/openapi.json', (_req, res) => {
    res.json(openapi);
  });
  app.get('/admin/campaigns/data', async (_req, res) => {
    const [{ items }, webhooks] = await Promise.all([deps.queries.list(100), deps.webhooks.list()]);
    res.json({
      role: res.locals.role,
      campaigns: items,
      webhooks: webhooks.items.map(({ name, source, events, enabled, disabled, deadLetters }) => ({ name, source, events, enabled, disabled, deadLetters })),
    });
  });
  app.get('/admin/campaigns/role', (_req, res) => {
    res.json({ role: res.locals.role, maxUploadBytes: deps.maxUploadBytes });
  });
  // uPlot, the charts' one library, from its package (no build step).
  app.get('/admin/campaigns/uplot.js', (_req, res) => {
    res.type('js').send(vendor('uplot/dist/uPlot.iife.min.js'));
  });
  app.get('/admin/campaigns/uplot.css', (_req, res) => {
    res.type('css').send(vendor('uplot/dist/uPlot.min.css'));
  });
  for (const name of ['campaign.js', 'new.js', 'common.js']) {
    app.get(`/admin/campaigns/${name}`, (_req, res) => {
      res.type('js').send(asset(name));
    });
  }
  app.get('/admin/campaigns/new', (_req, res) => {
    res.type('html').send(asset('new.html'));
  });
  app.get('/admin/campaigns/:id', (req, res, next) => {
    if (!campaignIdParam.safeParse(req.params).success) return next();
    res.type('html').send(asset('campaign.html'));
  });
  app.post('/admin/campaigns/:id/:action', async (req, res) => {
    const action = String(req.params.action);
    const id = campaignIdParam.safeParse(req.params);
    if (!isCampaignAction(action) || !id.success) return notFoundHandler(req, res, () => undefined);
    if (req.headers[PAGE_HEADER] !== '1') {
      return sendError(res, ErrorCodes.FORBIDDEN, `page actions need the ${PAGE_HEADER} header the page sends (a form from elsewhere cannot)`);
    }
    res.json(await deps.lifecycle[action](id.data.id));
  });

  // The whole API for the pages, under the browser's credentials: the same routes, schemas and roles
  // (a viewer reads, only an admin changes), and every change needs the page's header (CSRF).
  app.use('/admin/api', pageHeaders, browserAuth, adminOnlyWrites, (req, res, next) => {
    if (req.method !== 'GET' && req.method !== 'HEAD' && req.headers[PAGE_HEADER] !== '1') {
      return sendError(res, ErrorCodes.FORBIDDEN, `page actions need the ${PAGE_HEADER} header the page sends (a form from elsewhere cannot)`);
    }
    next();
  });
  app.use('/admin/api', apiRouter(routes, deps.maxBodyBytes));
  app.use('/admin/api', notFoundHandler);

  app.use(notFoundHandler);
  app.use(errorHandler(deps.log));
  return app;
}
