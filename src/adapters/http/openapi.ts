import { z } from 'zod';
import type { Route } from './routes.js';

const errorSchema = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: { code: { type: 'string' }, message: { type: 'string' }, details: {} },
    },
  },
};

const ERRORS: Record<string, string> = {
  '400': 'malformed request (JSON, CSV, NDJSON) or an upload cut short',
  '401': 'no token, or a wrong one',
  '403': 'the viewer token cannot change anything',
  '404': 'unknown campaign, recipient, provider or route',
  '409': 'not allowed in the current state; details name the state and the allowed actions',
  '413': 'body too large',
  '415': 'wrong content type',
  '417': 'an Expect header other than 100-continue',
  '422': 'failed validation (details list the failing paths), or an upload that is not what was announced',
  '429': 'too many failed authentications from this address',
  '503': 'Redis is unavailable or refused the write; nothing was changed',
};

function jsonSchema(schema: z.ZodType): Record<string, unknown> {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return rest;
}

/** OpenAPI 3.1, generated from the same route list and zod schemas that validate requests. */
export function openApiDocument(routes: Route[], version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const path = `/api${route.path.replace(/:(\w+)/g, '{$1}')}`;
    const parameters: unknown[] = [...path.matchAll(/\{(\w+)\}/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }));
    const query = jsonSchema(route.query) as { properties?: Record<string, unknown>; required?: string[] };
    for (const [name, schema] of Object.entries(query.properties ?? {})) {
      parameters.push({ name, in: 'query', required: query.required?.includes(name) ?? false, schema });
    }
    if (route.upload) {
      const headers = jsonSchema(route.upload.headers) as { properties?: Record<string, unknown> };
      for (const [name, schema] of Object.entries(headers.properties ?? {})) parameters.push({ name, in: 'header', required: false, schema });
    }
    const requestBody = route.body
      ? { required: true, content: { 'application/json': { schema: jsonSchema(route.body) } } }
      : route.upload
        ? { required: true, content: Object.fromEntries(route.upload.contentTypes.map((type) => [type, { schema: { type: 'string' } }])) }
        : undefined;
    paths[path] ??= {};
    paths[path][route.method] = {
      operationId: route.operationId,
      summary: route.summary,
      'x-access': route.access,
      parameters,
      ...(requestBody ? { requestBody } : {}),
      responses: {
        [String(route.status ?? 200)]: {
          description: 'success',
          content: { [route.produces ?? 'application/json']: { schema: route.produces ? { type: 'string' } : { type: 'object' } } },
        },
        ...Object.fromEntries(
          Object.entries(route.alsoAnswers ?? {}).map(([status, description]) => [
            status,
            { description, content: { 'application/json': { schema: { type: 'object' } } } },
          ]),
        ),
        ...Object.fromEntries(
          Object.entries(ERRORS).map(([status, description]) => [
            status,
            { description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
          ]),
        ),
      },
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'pushq',
      version,
      description: 'Bulk push campaigns: every call needs `Authorization: Bearer <ADMIN_TOKEN>` (or the read-only VIEWER_TOKEN for reads).',
    },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } }, schemas: { Error: errorSchema } },
    paths,
  };
}
