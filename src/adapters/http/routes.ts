import express, { Router, type Request, type RequestHandler, type Response } from 'express';
import { z } from 'zod';
import type { CampaignLifecycle } from '../../app/campaign-lifecycle.js';
import type { DryRun } from '../../app/dry-run.js';
import type { Preview } from '../../app/preview.js';
import type { TestSend } from '../../app/test-send.js';
import type { CampaignQueries } from '../../app/campaign-queries.js';
import type { CreateCampaign } from '../../app/create-campaign.js';
import type { DeleteCampaign } from '../../app/delete-campaign.js';
import type { LaunchCampaign } from '../../app/launch-campaign.js';
import type { ProviderQueries } from '../../app/provider-queries.js';
import type { RetryFailed } from '../../app/retry-failed.js';
import type { ScheduleCampaign } from '../../app/schedule-campaign.js';
import type { SuppressionLists } from '../../app/suppression-lists.js';
import type { UploadRecipients } from '../../app/upload-recipients.js';
import type { Webhooks } from '../../app/webhooks.js';
import { campaignNotFound, DomainError, ErrorCodes } from '../../domain/errors.js';
import { csvLine } from './csv.js';
import { streamDryRun, streamResults } from './results-stream.js';
import { validationError } from './errors.js';
import {
  campaignIdParam,
  cloneBody,
  previewBody,
  eventsQuery,
  dryRunQuery,
  testSendBody,
  createCampaignBody,
  ingestQuery,
  listNameParam,
  listQuery,
  membersQuery,
  noQuery,
  resultsQuery,
  deleteQuery,
  patchCampaignBody,
  scheduleBody,
  suppressionIdsBody,
  uploadHeaders,
  createWebhookBody,
  patchWebhookBody,
  webhookNameParam,
  deadLettersQuery,
  replayBody,
} from './schemas.js';
import { uploadSource } from './upload-source.js';

export interface RouteDeps {
  createCampaign: CreateCampaign;
  launchCampaign: LaunchCampaign;
  dryRun: DryRun;
  preview: Preview;
  testSend: TestSend;
  deleteCampaign: DeleteCampaign;
  scheduleCampaign: ScheduleCampaign;
  lifecycle: CampaignLifecycle;
  retryFailed: RetryFailed;
  upload: UploadRecipients;
  queries: CampaignQueries;
  providers: ProviderQueries;
  suppressions: SuppressionLists;
  webhooks: Webhooks;
  maxBodyBytes: number;
  maxUploadBytes: number;
}

/**
 * One entry per route of the REST API: how it is validated, who may call it,
 * and what it does. The router and the OpenAPI document are both built from
 * this list, so the documentation cannot drift from what runs.
 */
export interface Route<Q extends z.ZodType = z.ZodType, B extends z.ZodType | undefined = z.ZodType | undefined> {
  /** Unique name of the operation in the OpenAPI document (client generators name their methods from it). */
  operationId: string;
  method: 'get' | 'post' | 'put' | 'patch' | 'delete';
  /** Express path under /api. */
  path: string;
  summary: string;
  /** Viewers (VIEWER_TOKEN) may call `read` routes only. */
  access: 'read' | 'write';
  query: Q;
  /** A JSON body; `upload` routes take a raw stream instead. */
  body?: B;
  upload?: { contentTypes: string[]; headers: z.ZodType };
  status?: number;
  /** Other success statuses it may answer, with what they mean (documented beside `status`). */
  alsoAnswers?: Record<number, string>;
  /** What the route answers when it is not JSON. */
  produces?: string;
  handle(req: Request, res: Response, input: { query: z.output<Q>; body: B extends z.ZodType ? z.output<B> : undefined }): Promise<unknown>;
}

/** A route, its handler typed from its own schemas, as the router's list holds it. */
function route<Q extends z.ZodType, B extends z.ZodType | undefined = undefined>(r: Route<Q, B>): Route {
  return r as unknown as Route;
}

function parse<S extends z.ZodType>(schema: S, value: unknown, where: 'body' | 'query' | 'headers'): z.infer<S> {
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

/** Names that cannot be webhook names name no webhook: 404. */
function webhookName(req: Request): string {
  const result = webhookNameParam.safeParse(req.params);
  if (!result.success) throw new DomainError(ErrorCodes.WEBHOOK_NOT_FOUND, `webhook ${JSON.stringify(String(req.params.name).slice(0, 100))} does not exist`);
  return result.data.name;
}

function listName(req: Request): string {
  return parse(listNameParam, { list: req.params.list }, 'query').list;
}

/** The format of an upload from its Content-Type, or 415. */
function uploadFormat(req: Request): 'csv' | 'ndjson' {
  const format = req.is(['text/csv', 'application/x-ndjson', 'application/ndjson']);
  if (!format)
    throw new DomainError(ErrorCodes.UNSUPPORTED_MEDIA_TYPE, `upload text/csv or application/x-ndjson, not ${req.headers['content-type'] ?? 'nothing'}`);
  return format === 'text/csv' ? 'csv' : 'ndjson';
}

/**
 * An upload's streamed body, and the count and SHA-256 its headers announce.
 * A body that announces more than `maxBytes` is refused before it is read;
 * one that turns out larger, as soon as it does.
 */
function upload(req: Request, maxBytes: number) {
  const format = uploadFormat(req);
  const headers = parse(uploadHeaders, req.headers, 'headers');
  const length = Number(req.headers['content-length'] ?? 0);
  if (length > maxBytes) {
    throw new DomainError(ErrorCodes.PAYLOAD_TOO_LARGE, `the upload is ${length} bytes, more than MAX_UPLOAD_BYTES (${maxBytes}): nothing was read`);
  }
  return {
    source: uploadSource(req, format, maxBytes),
    expectedCount: headers['x-recipient-count'],
    expectedSha256: headers['x-content-sha256'],
    // About 16 bytes a row when nothing better is known. It only sizes the list's index (bounded, see indexBuckets).
    sizeHint: headers['x-recipient-count'] ?? (length > 0 ? Math.ceil(length / 16) : 100_000),
  };
}

function hasBody(req: Request): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

/** The lifecycle actions with a route of their own (and a button on the progress page). */
export type CampaignAction = 'pause' | 'resume' | 'cancel';

export function isCampaignAction(name: string): name is CampaignAction {
  return name === 'pause' || name === 'resume' || name === 'cancel';
}

export function apiRoutes(deps: RouteDeps): Route[] {
  const action = (name: CampaignAction, summary: string): Route =>
    route({
      operationId: `${name}Campaign`,
      method: 'post',
      path: `/campaigns/:id/${name}`,
      summary,
      access: 'write',
      query: noQuery,
      handle: (req) => deps.lifecycle[name](campaignId(req)),
    });
  return [
    route({
      operationId: 'createCampaign',
      method: 'post',
      path: '/campaigns',
      summary: 'Create a campaign (a draft), with inline recipients or none (upload them later)',
      access: 'write',
      query: ingestQuery,
      body: createCampaignBody,
      status: 201,
      async handle(_req, res, { query, body }) {
        const result = await deps.createCampaign.execute({ ...body, invalid: query.invalid });
        res.location(`/api/campaigns/${result.campaign.id}`);
        return { ...result.campaign, ingest: result.recipients };
      },
    }),
    route({
      operationId: 'listCampaigns',
      method: 'get',
      path: '/campaigns',
      summary: 'List campaigns, newest first',
      access: 'read',
      query: listQuery,
      handle: (_req, _res, { query }) => deps.queries.list(query.limit, query.cursor),
    }),
    route({
      operationId: 'getCampaign',
      method: 'get',
      path: '/campaigns/:id',
      summary: 'A campaign, its schedule, and the counts of its latest run',
      access: 'read',
      query: noQuery,
      handle: (req) => deps.queries.get(campaignId(req)),
    }),
    route({
      operationId: 'updateCampaign',
      method: 'patch',
      path: '/campaigns/:id',
      summary: 'Change name, message, priority, maxAttempts, or replace the recipients (draft or scheduled only)',
      access: 'write',
      query: ingestQuery,
      body: patchCampaignBody,
      async handle(req, _res, { query, body }) {
        const result = await deps.lifecycle.edit(campaignId(req), { ...body, invalid: query.invalid });
        return { ...result.campaign, ingest: result.recipients };
      },
    }),
    route({
      operationId: 'deleteCampaign',
      method: 'delete',
      path: '/campaigns/:id',
      summary:
        'Delete a campaign: its schedule, list, runs and ledgers leave Redis in bounded steps (202 with what goes; 409 while running or paused: cancel first). Archived results stay unless ?purgeArchive=true',
      access: 'write',
      query: deleteQuery,
      status: 202,
      handle: (req, _res, { query }) => deps.deleteCampaign.execute(campaignId(req), query.purgeArchive),
    }),
    route({
      operationId: 'uploadRecipients',
      method: 'put',
      path: '/campaigns/:id/recipients',
      summary: 'Replace the recipients with an upload (CSV or NDJSON, streamed; refused whole on any doubt)',
      access: 'write',
      query: ingestQuery,
      upload: { contentTypes: ['text/csv', 'application/x-ndjson'], headers: uploadHeaders },
      async handle(req, _res, { query }) {
        const id = campaignId(req);
        await deps.queries.get(id);
        const { source, expectedCount, expectedSha256, sizeHint } = upload(req, deps.maxUploadBytes);
        return deps.upload.execute(id, source, { expectedCount, expectedSha256, sizeHint, invalid: query.invalid });
      },
    }),
    route({
      operationId: 'launchCampaign',
      method: 'post',
      path: '/campaigns/:id/launch',
      summary: 'Run a one-off campaign now',
      access: 'write',
      query: noQuery,
      handle: (req) => deps.launchCampaign.execute(campaignId(req)),
    }),
    route({
      operationId: 'dryRun',
      method: 'post',
      path: '/campaigns/:id/dry-run',
      summary:
        'Render the message for every recipient of the list (changes nothing): counts rendered, missing variables (by name, with example ids), too long for the provider, per locale; ?format=ndjson lists every recipient who would fail, one per line, then the summary. Launch and schedule refuse (422 RENDER_FAILED, this report) when anyone fails, unless onRenderError is skip',
      access: 'write',
      query: dryRunQuery,
      async handle(req, res, { query }) {
        const id = campaignId(req);
        if (query.format === 'json') return deps.dryRun.execute(id);
        await streamDryRun(res, (onFailure) => deps.dryRun.execute(id, onFailure));
        return undefined;
      },
    }),
    route({
      operationId: 'previewMessage',
      method: 'post',
      path: '/campaigns/:id/preview',
      summary:
        'Render the message for one recipient (recipientId: one of the list; recipient: a record typed in) and show the exact request each configured provider would send, secrets redacted. Sends nothing',
      access: 'write',
      query: noQuery,
      body: previewBody,
      handle: (req, _res, { body }) => deps.preview.execute(campaignId(req), body),
    }),
    route({
      operationId: 'testSend',
      method: 'post',
      path: '/campaigns/:id/test-send',
      summary:
        "Send the rendered message now to a seed list only (up to 50), through the campaign's provider under the same limiter, as a run aside (test-<n>: its own ledger and idempotency keys; the campaign's status and counts do not change; frequency caps count it). Any state but cancelled. 200 with each recipient's outcome; 202 with what is known when they are not all final within 10 s (or wait for quiet hours, or no worker runs)",
      access: 'write',
      query: noQuery,
      body: testSendBody,
      alsoAnswers: { 202: 'sent in part: what is known so far; the rest follows in the run test-<n>' },
      async handle(req, res, { body }) {
        const result = await deps.testSend.execute(campaignId(req), body.recipients);
        if (result.complete) return result;
        res.status(202).json(result);
        return undefined;
      },
    }),
    route({
      operationId: 'scheduleCampaign',
      method: 'post',
      path: '/campaigns/:id/schedule',
      summary: 'Schedule (or reschedule) a campaign: once at an instant, or at each occurrence of a cron expression',
      access: 'write',
      query: noQuery,
      body: scheduleBody,
      handle: (req, _res, { body }) => deps.scheduleCampaign.execute(campaignId(req), body),
    }),
    route({
      operationId: 'previewSchedule',
      method: 'get',
      path: '/schedules/next',
      summary: "A schedule's next five occurrences (?at=, or ?cron=&timezone=), checked as scheduling checks it; changes nothing",
      access: 'read',
      query: scheduleBody,
      handle: async (_req, _res, { query }) => deps.scheduleCampaign.preview(query),
    }),
    action('pause', 'Pause: sending stops within a second at every worker; occurrences of a schedule pass'),
    action('resume', 'Resume where it stopped'),
    action('cancel', 'Cancel: the schedule goes, pending recipients are skipped, in-flight ones are recorded'),
    route({
      operationId: 'retryFailed',
      method: 'post',
      path: '/campaigns/:id/retry-failed',
      summary: 'A new run of exactly the recipients that ended failed in the latest run',
      access: 'write',
      query: noQuery,
      handle: (req) => deps.retryFailed.execute(campaignId(req)),
    }),
    route({
      operationId: 'cloneCampaign',
      method: 'post',
      path: '/campaigns/:id/clone',
      summary: 'A new draft with the same message, provider, priority and recipients',
      access: 'write',
      query: noQuery,
      body: cloneBody,
      status: 201,
      async handle(req, res, { body }) {
        const clone = await deps.lifecycle.clone(campaignId(req), body.name);
        res.location(`/api/campaigns/${clone.id}`);
        return clone;
      },
    }),
    route({
      operationId: 'listRuns',
      method: 'get',
      path: '/campaigns/:id/runs',
      summary: 'Runs newest first with their counts, and the latest occurrences of the schedule',
      access: 'read',
      query: listQuery,
      handle: (req, _res, { query }) => deps.queries.runs(campaignId(req), query.limit),
    }),
    route({
      operationId: 'getRunSeries',
      method: 'get',
      path: '/campaigns/:id/runs/:runId/series',
      summary:
        "A run's outcomes second by second over its last hour, as the workers counted them (sent, failed, unknown, retry, requeue at the provider; skipped, deferred by the gate): what the campaign page charts",
      access: 'read',
      query: noQuery,
      handle: (req) => deps.queries.series(campaignId(req), String(req.params.runId)),
    }),
    route({
      operationId: 'listEvents',
      method: 'get',
      path: '/campaigns/:id/events',
      summary:
        "The campaign's outbox, oldest first: run.started, run.paused, run.resumed, run.cancelled, run.completed, run.stuck, schedule.skipped, each written in the very step that made it happen (bounded: the newest 10,000 kept). Poll with ?after=<next of the previous answer>",
      access: 'read',
      query: eventsQuery,
      handle: (req, _res, { query }) => deps.queries.events(campaignId(req), query.after ?? null, query.limit),
    }),
    route({
      operationId: 'getRecipient',
      method: 'get',
      path: '/campaigns/:id/recipients/:recipientId',
      summary: 'A recipient and its ledger entry in the latest run: state, attempts, last error, times',
      access: 'read',
      query: noQuery,
      handle: (req) => deps.queries.recipient(campaignId(req), String(req.params.recipientId)),
    }),
    route({
      operationId: 'listFailures',
      method: 'get',
      path: '/campaigns/:id/failures',
      summary: 'Recipients of the latest run that ended failed or unknown, with their last error',
      access: 'read',
      query: listQuery,
      handle: (req, _res, { query }) => deps.queries.failures(campaignId(req), query.limit, query.cursor),
    }),
    route({
      operationId: 'exportFailures',
      method: 'get',
      path: '/campaigns/:id/failures.csv',
      summary: 'All the failures of the latest run as CSV',
      access: 'read',
      query: noQuery,
      produces: 'text/csv',
      async handle(req, res) {
        const id = campaignId(req);
        let page = await deps.queries.failures(id, 1000);
        res.type('text/csv; charset=utf-8').attachment(`${id}-failures.csv`);
        res.write(csvLine(['recipientId', 'state', 'attempts', 'errorCode', 'errorMessage', 'at']));
        for (;;) {
          for (const f of page.items) res.write(csvLine([f.recipientId, f.state, f.attempts, f.error?.code ?? '', f.error?.message ?? '', f.at ?? '']));
          if (!page.nextCursor) break;
          page = await deps.queries.failures(id, 1000, page.nextCursor);
        }
        res.end();
        return undefined;
      },
    }),
    route({
      operationId: 'exportResults',
      method: 'get',
      path: '/campaigns/:id/runs/:runId/results',
      summary:
        'Every recipient of a run, live, finished or archived (X-Archived: true), with its state, attempts, last error, reason and time: NDJSON ending in a {"summary":{count,sha256}} line, or CSV (?format=csv); X-Recipient-Count, and the count and SHA-256 of the body in trailers',
      access: 'read',
      query: resultsQuery,
      produces: 'application/x-ndjson',
      async handle(req, res, { query }) {
        const id = campaignId(req);
        const runId = String(req.params.runId);
        const results = await deps.queries.results(id, runId);
        if (results.archived) res.setHeader('X-Archived', 'true');
        await streamResults(res, results, query.format, `${id}-${runId}-results.csv`);
        return undefined;
      },
    }),
    route({
      operationId: 'listSuppressionLists',
      method: 'get',
      path: '/suppressions',
      summary: 'Suppression lists and their sizes (token-invalid:<provider> lists hold the device tokens or phone numbers that provider reported invalid)',
      access: 'read',
      query: noQuery,
      handle: () => deps.suppressions.lists(),
    }),
    route({
      operationId: 'listSuppressed',
      method: 'get',
      path: '/suppressions/:list',
      summary: 'The ids on a suppression list, a page at a time (the cursor is opaque; order is not stable)',
      access: 'read',
      query: membersQuery,
      handle: (req, _res, { query }) => deps.suppressions.members(listName(req), query.limit, query.cursor),
    }),
    route({
      operationId: 'getSuppressed',
      method: 'get',
      path: '/suppressions/:list/:recipientId',
      summary: 'Whether one id (a token, on a token-invalid list) is on a suppression list',
      access: 'read',
      query: noQuery,
      handle: (req) => deps.suppressions.contains(listName(req), String(req.params.recipientId)),
    }),
    route({
      operationId: 'addSuppressed',
      method: 'post',
      path: '/suppressions/:list',
      summary: 'Add ids to a suppression list (created when new); checked at send time, so running campaigns stop sending to them',
      access: 'write',
      query: noQuery,
      body: suppressionIdsBody,
      handle: (req, _res, { body }) => deps.suppressions.add(listName(req), body.ids),
    }),
    route({
      operationId: 'removeSuppressed',
      method: 'post',
      path: '/suppressions/:list/remove',
      summary: 'Remove ids from a suppression list',
      access: 'write',
      query: noQuery,
      body: suppressionIdsBody,
      handle: (req, _res, { body }) => deps.suppressions.remove(listName(req), body.ids),
    }),
    route({
      operationId: 'replaceSuppressionList',
      method: 'put',
      path: '/suppressions/:list',
      summary: 'Replace a suppression list with an upload (CSV with an id column, or NDJSON; streamed; refused whole on any doubt)',
      access: 'write',
      query: ingestQuery,
      upload: { contentTypes: ['text/csv', 'application/x-ndjson'], headers: uploadHeaders },
      async handle(req, _res, { query }) {
        const name = listName(req);
        const { source, expectedCount, expectedSha256 } = upload(req, deps.maxUploadBytes);
        return deps.suppressions.upload(name, source, { expectedCount, expectedSha256, invalid: query.invalid });
      },
    }),
    route({
      operationId: 'clearSuppressionList',
      method: 'delete',
      path: '/suppressions/:list',
      summary: 'Empty a suppression list',
      access: 'write',
      query: noQuery,
      handle: (req) => deps.suppressions.clear(listName(req)),
    }),
    route({
      operationId: 'listWebhooks',
      method: 'get',
      path: '/webhooks',
      summary: 'Webhook endpoints (from WEBHOOKS_FILE and made here), their state and dead letters; never their secrets',
      access: 'read',
      query: noQuery,
      handle: () => deps.webhooks.list(),
    }),
    route({
      operationId: 'createWebhook',
      method: 'post',
      path: '/webhooks',
      summary:
        'Make a webhook endpoint: events of campaigns (all, or `campaigns`) delivered signed (Standard Webhooks) from now on; answers its secret (given, or made) this once',
      access: 'write',
      query: noQuery,
      body: createWebhookBody,
      status: 201,
      async handle(_req, res, { body }) {
        const { name, ...input } = body;
        const made = await deps.webhooks.create(name, input);
        res.location(`/api/webhooks/${name}`);
        return made;
      },
    }),
    route({
      operationId: 'getWebhook',
      method: 'get',
      path: '/webhooks/:name',
      summary: 'One webhook endpoint',
      access: 'read',
      query: noQuery,
      handle: (req) => deps.webhooks.get(webhookName(req)),
    }),
    route({
      operationId: 'updateWebhook',
      method: 'patch',
      path: '/webhooks/:name',
      summary:
        'Change a webhook endpoint (a file one: enabled only). `enabled: true` turns a disabled one on, taking events from now on; new `events` or `campaigns` apply from now on',
      access: 'write',
      query: noQuery,
      body: patchWebhookBody,
      handle: (req, _res, { body }) => deps.webhooks.update(webhookName(req), body),
    }),
    route({
      operationId: 'deleteWebhook',
      method: 'delete',
      path: '/webhooks/:name',
      summary: 'Remove a webhook endpoint made through the API, with its dead letters',
      access: 'write',
      query: noQuery,
      handle: (req) => deps.webhooks.remove(webhookName(req)),
    }),
    route({
      operationId: 'listDeadLetters',
      method: 'get',
      path: '/webhooks/:name/dead-letters',
      summary: 'Deliveries that exhausted their attempts, newest first: type, campaign, run, attempts, last status and error (and the body with ?payload=true)',
      access: 'read',
      query: deadLettersQuery,
      handle: (req, _res, { query }) => deps.webhooks.deadLetters(webhookName(req), query.limit, query.cursor, query.payload, query.campaign),
    }),
    route({
      operationId: 'replayDeadLetters',
      method: 'post',
      path: '/webhooks/:name/dead-letters/replay',
      summary: 'Send dead letters again (`ids`, or all): under their own ids, retried as deliveries are; one delivered leaves the list',
      access: 'write',
      query: noQuery,
      body: replayBody,
      handle: (req, _res, { body }) => deps.webhooks.replay(webhookName(req), body.ids ?? null),
    }),
    route({
      operationId: 'listProviders',
      method: 'get',
      path: '/providers',
      summary: "Each provider's shared limiter state: pace, pause, circuit breaker",
      access: 'read',
      query: noQuery,
      handle: async () => ({ items: await deps.providers.list() }),
    }),
    route({
      operationId: 'getProvider',
      method: 'get',
      path: '/providers/:name',
      summary: "One provider's shared limiter state",
      access: 'read',
      query: noQuery,
      handle: (req) => deps.providers.get(String(req.params.name)),
    }),
  ];
}

/** A body that is not JSON is refused with 415 before anything reads it. */
const requireJson: RequestHandler = (req, _res, next) => {
  if (hasBody(req) && !req.is(['application/json', 'application/*+json'])) {
    throw new DomainError(ErrorCodes.UNSUPPORTED_MEDIA_TYPE, `expected Content-Type application/json, got ${req.headers['content-type'] ?? 'none'}`);
  }
  next();
};

/** Viewers read; only the admin token changes anything. */
const guardWrites: RequestHandler = (req, _res, next) => {
  if (req.res?.locals.role !== 'admin') throw new DomainError(ErrorCodes.FORBIDDEN, 'the viewer token can read, not change anything');
  next();
};

export function apiRouter(routes: Route[], maxBodyBytes: number): Router {
  const router = Router();
  const json = [requireJson, express.json({ limit: maxBodyBytes })];
  for (const route of routes) {
    const guards = route.access === 'write' ? [guardWrites] : [];
    const bodyParsers = route.upload || route.method === 'get' ? [] : json;
    router[route.method](route.path, ...guards, ...bodyParsers, async (req, res) => {
      const query = parse(route.query, req.query, 'query');
      const body = route.body ? parse(route.body, req.body ?? {}, 'body') : undefined;
      const result = await route.handle(req, res, { query, body });
      if (result !== undefined) res.status(route.status ?? 200).json(result);
    });
  }
  return router;
}
