import type { Readable } from 'node:stream';
import { request } from 'undici';

/** The REST API as the command line talks to it: errors become one readable line. */
export class CliError extends Error {}

export class Api {
  constructor(
    readonly baseUrl: string,
    readonly token: string,
  ) {}

  async call<T = any>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
    const stream = body !== undefined && typeof (body as Readable).pipe === 'function';
    const res = await request(new URL(path, this.baseUrl), {
      method: method as 'GET',
      headers: {
        authorization: `Bearer ${this.token}`,
        ...(body !== undefined && !stream ? { 'content-type': 'application/json' } : {}),
        ...headers,
      },
      body: body === undefined ? undefined : stream ? (body as Readable) : JSON.stringify(body),
    }).catch((err: Error) => {
      throw new CliError(`cannot reach the pushq API at ${this.baseUrl}: ${err.message}`);
    });
    const text = await res.body.text();
    const parsed = text ? (JSON.parse(text) as any) : undefined;
    if (res.statusCode >= 400) {
      const error = parsed?.error;
      throw new CliError(`${res.statusCode} ${error?.code ?? ''}: ${error?.message ?? text}`);
    }
    return parsed as T;
  }
}
