import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { Queue } from 'bullmq';
import express, { type Express } from 'express';
import type { Registry } from 'prom-client';
import type { Logger } from '../../app/events.js';
import { requireToken } from './auth.js';
import { campaignRoutes, type CampaignRouteDeps } from './campaign-routes.js';
import { errorHandler, notFoundHandler } from './errors.js';

export interface HttpAppDeps extends CampaignRouteDeps {
  adminToken: string;
  queues: Queue[];
  metrics: Registry;
  /** What /readyz reports: ready, with details; rejects when Redis does not answer. */
  readiness(): Promise<{ ready: boolean; details: Record<string, unknown> }>;
  log: Logger;
}

export const BOARD_PATH = '/admin/queues';

export function createHttpApp(deps: HttpAppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);

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
    res.type(deps.metrics.contentType).send(await deps.metrics.metrics());
  });

  app.use('/api', requireToken(deps.adminToken, { browser: false }), campaignRoutes(deps));
  app.use('/api', notFoundHandler);

  // Bull Board has no auth of its own: the token check goes in front of it.
  const board = new ExpressAdapter();
  board.setBasePath(BOARD_PATH);
  createBullBoard({ queues: deps.queues.map((q) => new BullMQAdapter(q)), serverAdapter: board });
  app.use(BOARD_PATH, requireToken(deps.adminToken, { browser: true }), board.getRouter());

  app.use(notFoundHandler);
  app.use(errorHandler(deps.log));
  return app;
}
