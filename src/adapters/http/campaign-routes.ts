import express, { Router, type Request, type RequestHandler } from 'express';
import type { z } from 'zod';
import { campaignNotFound, DomainError, ErrorCodes } from '../../domain/errors.js';
import type { CampaignLifecycle } from '../../app/campaign-lifecycle.js';
import type { CampaignQueries } from '../../app/campaign-queries.js';
import type { CreateCampaign } from '../../app/create-campaign.js';
import type { LaunchCampaign } from '../../app/launch-campaign.js';
import type { ProviderQueries } from '../../app/provider-queries.js';
import type { RetryFailed } from '../../app/retry-failed.js';
import type { UploadRecipients } from '../../app/upload-recipients.js';
import type { ScheduleCampaign } from '../../app/schedule-campaign.js';
import { validationError } from './errors.js';
import { campaignIdParam, cloneBody, createCampaignBody, createCampaignQuery, listQuery, patchCampaignBody, scheduleBody, uploadHeaders } from './schemas.js';
import { uploadSource } from './upload-source.js';

export interface CampaignRouteDeps {
  createCampaign: CreateCampaign;
  launchCampaign: LaunchCampaign;
  scheduleCampaign: ScheduleCampaign;
  lifecycle: CampaignLifecycle;
  retryFailed: RetryFailed;
  upload: UploadRecipients;
  queries: CampaignQueries;
  providers: ProviderQueries;
  maxBodyBytes: number;
}

function parse<S extends z.ZodType>(schema: S, value: unknown, where: 'body' | 'query' | 'params' | 'headers'): z.infer<S> {
  const result = schema.safeParse(value);
  if (!result.success) throw validationError(result.error, where);
  return result.data;
}

/** Ids that cannot be campaign ids are unknown ids: 404, like any other unknown id. */
function campaignId(req: Request): string {
  const result = campaignIdParam.safeParse(req.params);
  if (!result.success) throw campaignNotFound(String(req.params.id));
  return result.data.id;
}

function hasBody(req: Request): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

/** A body that is not JSON is refused with 415 before anything reads it. */
const requireJson: RequestHandler = (req, _res, next) => {
  if (hasBody(req) && !req.is(['application/json', 'application/*+json'])) {
    throw new DomainError(ErrorCodes.UNSUPPORTED_MEDIA_TYPE, `expected Content-Type application/json, got ${req.headers['content-type'] ?? 'none'}`);
  }
  next();
};

/** RFC 4180: quoted when it holds a comma, quote or line break; quotes doubled. */
function csvField(value: string | number): string {
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function campaignRoutes(deps: CampaignRouteDeps): Router {
  const router = Router();
  const json = [requireJson, express.json({ limit: deps.maxBodyBytes })];

  router.post('/campaigns', ...json, async (req, res) => {
    const query = parse(createCampaignQuery, req.query, 'query');
    const body = parse(createCampaignBody, req.body ?? {}, 'body');
    const result = await deps.createCampaign.execute({ ...body, invalid: query.invalid });
    res.status(201).location(`/api/campaigns/${result.campaign.id}`).json({ ...result.campaign, ingest: result.recipients });
  });

  router.get('/campaigns', async (req, res) => {
    const query = parse(listQuery, req.query, 'query');
    res.json(await deps.queries.list(query.limit, query.cursor));
  });

  router.get('/campaigns/:id', async (req, res) => {
    res.json(await deps.queries.get(campaignId(req)));
  });

  router.post('/campaigns/:id/launch', ...json, async (req, res) => {
    res.json(await deps.launchCampaign.execute(campaignId(req)));
  });

  router.patch('/campaigns/:id', ...json, async (req, res) => {
    const id = campaignId(req);
    const query = parse(createCampaignQuery, req.query, 'query');
    const body = parse(patchCampaignBody, req.body ?? {}, 'body');
    const result = await deps.lifecycle.edit(id, { ...body, invalid: query.invalid });
    res.json({ ...result.campaign, ingest: result.recipients });
  });

  router.post('/campaigns/:id/schedule', ...json, async (req, res) => {
    const id = campaignId(req);
    res.json(await deps.scheduleCampaign.execute(id, parse(scheduleBody, req.body ?? {}, 'body')));
  });

  router.post('/campaigns/:id/pause', ...json, async (req, res) => {
    res.json(await deps.lifecycle.pause(campaignId(req)));
  });

  router.post('/campaigns/:id/resume', ...json, async (req, res) => {
    res.json(await deps.lifecycle.resume(campaignId(req)));
  });

  router.post('/campaigns/:id/cancel', ...json, async (req, res) => {
    res.json(await deps.lifecycle.cancel(campaignId(req)));
  });

  router.post('/campaigns/:id/clone', ...json, async (req, res) => {
    const id = campaignId(req);
    const body = parse(cloneBody, req.body ?? {}, 'body');
    const clone = await deps.lifecycle.clone(id, body.name);
    res.status(201).location(`/api/campaigns/${clone.id}`).json(clone);
  });

  router.get('/campaigns/:id/runs', async (req, res) => {
    const query = parse(listQuery, req.query, 'query');
    res.json(await deps.queries.runs(campaignId(req), query.limit));
  });

  router.get('/campaigns/:id/recipients/:recipientId', async (req, res) => {
    res.json(await deps.queries.recipient(campaignId(req), String(req.params.recipientId)));
  });

  router.post('/campaigns/:id/retry-failed', ...json, async (req, res) => {
    res.json(await deps.retryFailed.execute(campaignId(req)));
  });

  // The whole failure list as CSV, for a spreadsheet or the source system.
  router.get('/campaigns/:id/failures.csv', async (req, res) => {
    const id = campaignId(req);
    let page = await deps.queries.failures(id, 1000);
    res.type('text/csv; charset=utf-8').attachment(`${id}-failures.csv`);
    res.write('recipientId,state,attempts,errorCode,errorMessage,at\n');
    for (;;) {
      for (const f of page.items) {
        res.write(`${[f.recipientId, f.state, f.attempts, f.error?.code ?? '', f.error?.message ?? '', f.at ?? ''].map(csvField).join(',')}\n`);
      }
      if (!page.nextCursor) break;
      page = await deps.queries.failures(id, 1000, page.nextCursor);
    }
    res.end();
  });

  router.get('/campaigns/:id/failures', async (req, res) => {
    const query = parse(listQuery, req.query, 'query');
    res.json(await deps.queries.failures(campaignId(req), query.limit, query.cursor));
  });

  router.get('/providers', async (_req, res) => {
    res.json({ items: await deps.providers.list() });
  });

  router.get('/providers/:name', async (req, res) => {
    res.json(await deps.providers.get(String(req.params.name)));
  });

  router.put('/campaigns/:id/recipients', async (req, res) => {
    const id = campaignId(req);
    const format = req.is(['text/csv', 'application/x-ndjson', 'application/ndjson']);
    if (!format) {
      throw new DomainError(ErrorCodes.UNSUPPORTED_MEDIA_TYPE, `upload text/csv or application/x-ndjson, not ${req.headers['content-type'] ?? 'nothing'}`);
    }
    const query = parse(createCampaignQuery, req.query, 'query');
    const headers = parse(uploadHeaders, req.headers, 'headers');
    const length = Number(req.headers['content-length'] ?? 0);
    const result = await deps.upload.execute(id, uploadSource(req, format === 'text/csv' ? 'csv' : 'ndjson'), {
      expectedCount: headers['x-recipient-count'],
      expectedSha256: headers['x-content-sha256'],
      // About 16 bytes a row when nothing better is known: it only sizes the index.
      sizeHint: headers['x-recipient-count'] ?? (length > 0 ? Math.ceil(length / 16) : 100_000),
      invalid: query.invalid,
    });
    res.json(result);
  });
  return router;
}
