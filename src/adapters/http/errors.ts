import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ErrorRequestHandler, RequestHandler, Response } from 'express';
import { z } from 'zod';
import { DomainError, ErrorCodes, type ErrorCode } from '../../domain/errors.js';
import type { Logger } from '../../app/ports.js';

/** The one place where error codes become HTTP statuses. */
const STATUS: Record<ErrorCode, number> = {
  VALIDATION_FAILED: 422,
  MALFORMED_REQUEST: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CAMPAIGN_NOT_FOUND: 404,
  RECIPIENT_NOT_FOUND: 404,
  RUN_NOT_FOUND: 404,
  UNKNOWN_PROVIDER: 422,
  WEBHOOK_NOT_FOUND: 404,
  WEBHOOK_EXISTS: 409,
  INVALID_STATE: 409,
  NO_RECIPIENTS: 409,
  RENDER_FAILED: 422,
  ALREADY_RAN: 409,
  PAYLOAD_TOO_LARGE: 413,
  INTEGRITY_FAILED: 422,
  UNSUPPORTED_MEDIA_TYPE: 415,
  EXPECTATION_FAILED: 417,
  NOT_IMPLEMENTED: 501,
  TOO_MANY_REQUESTS: 429,
  STORE_UNAVAILABLE: 503,
  REDIS_MEMORY_HIGH: 507,
  INTERNAL: 500,
};

const JSON_TYPE = 'application/json; charset=utf-8';

/** The contract's error body: `{ error: { code, message, details? } }`. */
function errorBody(code: ErrorCode, message: string, details?: unknown) {
  return { error: { code, message, ...(details === undefined ? {} : { details }) } };
}

/**
 * What node's HTTP server answers on its own, in the contract's shape: an
 * `Expect` it does not support (417, not an empty body) and requests it
 * cannot parse (400, or 431 for oversized headers, not a bare status line).
 */
export function answerBelowExpress(server: Server): void {
  server.on('checkExpectation', (_req: IncomingMessage, res: ServerResponse) => {
    const body = JSON.stringify(errorBody(ErrorCodes.EXPECTATION_FAILED, 'the only Expect this API supports is 100-continue'));
    res.writeHead(STATUS.EXPECTATION_FAILED, { 'content-type': JSON_TYPE, 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (err.code === 'ECONNRESET' || !socket.writable) return void socket.destroy();
    const [status, code, message] =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? (['431 Request Header Fields Too Large', ErrorCodes.PAYLOAD_TOO_LARGE, 'the request headers are too large'] as const)
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? (['408 Request Timeout', ErrorCodes.MALFORMED_REQUEST, 'the request did not arrive in time'] as const)
          : (['400 Bad Request', ErrorCodes.MALFORMED_REQUEST, 'the request is not valid HTTP'] as const);
    const body = JSON.stringify(errorBody(code, message));
    socket.end(`HTTP/1.1 ${status}\r\ncontent-type: ${JSON_TYPE}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  });
}

export function sendError(res: Response, code: ErrorCode, message: string, details?: unknown): void {
  res.status(STATUS[code]).json(errorBody(code, message, details));
}

export function validationError(error: z.ZodError, where: 'body' | 'query' | 'params' | 'headers'): DomainError {
  const issues = error.issues.map((i) => ({ path: [where, ...i.path.map(String)].join('.'), message: i.message }));
  return new DomainError(ErrorCodes.VALIDATION_FAILED, `request ${where} is invalid: ${issues[0]?.path}: ${issues[0]?.message}`, { issues });
}

/** Redis refusing or unreachable: a clear 503, never a 500 with internals. */
function isStoreUnavailable(err: unknown): boolean {
  const e = err as { name?: string; message?: string; code?: string; previousErrors?: unknown[] };
  const message = e.message ?? '';
  return (
    e.name === 'MaxRetriesPerRequestError' ||
    /enableOfflineQueue|Connection is closed|Stream isn't writeable/i.test(message) ||
    /^(OOM|READONLY|LOADING|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|BUSY)\b/.test(message) ||
    ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE'].includes(e.code ?? '') ||
    // A transaction Redis refused whole (EXECABORT) because of one of the above.
    (Array.isArray(e.previousErrors) && e.previousErrors.some(isStoreUnavailable))
  );
}

export const notFoundHandler: RequestHandler = (req, res) => {
  sendError(res, ErrorCodes.NOT_FOUND, `no route ${req.method} ${req.path}`);
};

export function errorHandler(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    if (res.headersSent) return;
    if (err instanceof DomainError) return sendError(res, err.code, err.message, err.details);
    const type = (err as { type?: string }).type;
    if (type === 'entity.too.large') {
      return sendError(
        res,
        ErrorCodes.PAYLOAD_TOO_LARGE,
        `request body is larger than ${(err as { limit?: number }).limit} bytes; upload large recipient lists with PUT /api/campaigns/:id/recipients`,
      );
    }
    if (type === 'entity.parse.failed') return sendError(res, ErrorCodes.MALFORMED_REQUEST, 'request body is not valid JSON');
    if (type === 'charset.unsupported' || type === 'encoding.unsupported') {
      return sendError(res, ErrorCodes.UNSUPPORTED_MEDIA_TYPE, (err as Error).message);
    }
    if (type === 'request.aborted') return;
    // Express's own client errors (a path that does not decode, …): a 400 with no internals.
    const status = (err as { status?: number }).status;
    if (err instanceof URIError || (status !== undefined && status >= 400 && status < 500)) {
      return sendError(res, ErrorCodes.MALFORMED_REQUEST, 'the request is malformed (its path or headers do not decode)');
    }
    const errorId = randomUUID();
    if (isStoreUnavailable(err)) {
      log.warn({ errorId, err: (err as Error).message, method: req.method, path: req.path }, 'store unavailable');
      return sendError(res, ErrorCodes.STORE_UNAVAILABLE, 'the data store (Redis) is unavailable right now; nothing was changed, try again', { errorId });
    }
    log.error({ errorId, err, method: req.method, path: req.path }, 'unexpected error');
    sendError(res, ErrorCodes.INTERNAL, 'internal error', { errorId });
  };
}
