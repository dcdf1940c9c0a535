import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { Queue } from 'bullmq';
import express, { type Express, type RequestHandler } from 'express';
import helmet from 'helmet';
import type { Logger } from '../../app/ports.js';
import { ErrorCodes } from '../../domain/errors.js';
import { authenticate, FailedAuthLimiter } from './auth.js';
import { errorHandler, notFoundHandler, sendError } from './errors.js';
import { openApiDocument } from './openapi.js';
import { apiRouter, apiRoutes, type RouteDeps } from './routes.js';

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
}

export const BOARD_PATH = '/admin/queues';
const PAGE = new URL('./page/', import.meta.url);
const asset = (name: string) => readFileSync(new URL(name, PAGE), 'utf8');

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
  app.set('trust proxy', false);
  const failedAuth = new FailedAuthLimiter();
  const tokens = { admin: deps.adminToken, viewer: deps.viewerToken };
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

  app.get('/readyz', async (_req, res) => {
    try {
      const { ready, details } = await deps.readiness();
      res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'unavailable', ...details });
    } catch (err) {
      res.status(503).json({ status: 'unavailable', redis: { reachable: false, error: (err as Error).message } });
    }
  });

  app.get('/metrics', async (_req, res) => {
    const { contentType, text } = await deps.metrics();
    res.type(contentType).send(text);
  });

  app.use('/api', authenticate(tokens, failedAuth, { browser: false }));
  app.get('/api/openapi.json', (_req, res) => {
    res.json(openapi);
  });
  app.use('/api', apiRouter(routes, deps.maxBodyBytes));
  app.use('/api', notFoundHandler);

  // HTML pages: security headers; Bull Board needs its inline bootstrap script, our page needs nothing inline.
  const pageHeaders = helmet({ contentSecurityPolicy: { directives: { defaultSrc: ["'self'"], connectSrc: ["'self'"] } } });
  const boardHeaders = helmet({ contentSecurityPolicy: false });
  const browserAuth = authenticate(tokens, failedAuth, { browser: true });

  // Bull Board has no auth of its own: ours goes in front of it.
  const board = boards(deps.queues);
  app.use(BOARD_PATH, boardHeaders, browserAuth, adminOnlyWrites, (req, res, next) =>
    (res.locals.role === 'admin' ? board.admin : board.viewer)(req, res, next),
  );

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
  app.get('/admin/campaigns/data', async (_req, res) => {
    const { items } = await deps.queries.list(100);
    res.json({ role: res.locals.role, campaigns: items });
  });
  app.post('/admin/campaigns/:id/:action', async (req, res) => {
    const action = String(req.params.action);
    if (action !== 'pause' && action !== 'resume' && action !== 'cancel') return notFoundHandler(req, res, () => undefined);
    res.json(await deps.lifecycle[action](String(req.params.id)));
  });

  app.use(notFoundHandler);
  app.use(errorHandler(deps.log));
  return app;
}
