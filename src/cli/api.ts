import type { Readable } from 'node:stream';
import { request, type Dispatcher } from 'undici';

/** The REST API as the command line talks to it: errors become one readable line. */
export class CliError extends Error {}

export class Api {
  constructor(
    private readonly baseUrl: string,
    private readonly token: string,
  ) {}

  async call<T = any>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
    const text = await (await this.open(method, path, body, headers)).body.text();
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /** The answer of a call that succeeded, its body still to read (a stream); a refusal throws as `call` does. */
  async open(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Dispatcher.ResponseData> {
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
    if (res.statusCode >= 400) {
      const text = await res.body.text();
      const error = (text ? (JSON.parse(text) as any) : undefined)?.error;
      throw new CliError(`${res.statusCode} ${error?.code ?? ''}: ${error?.message ?? text}`);
    }
    return res;
  }
}
