/** A small client for the REST API, as an operator's script would use it. */
export class ApiClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string,
  ) {}

  async request(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any; headers: Headers }> {
    const res = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${this.token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // not JSON: keep the text
    }
    return { status: res.status, body: parsed, headers: res.headers };
  }

  async createCampaign(input: { name?: string; provider?: string; recipients?: unknown[]; message?: unknown }): Promise<any> {
    const res = await this.request('POST', '/api/campaigns', {
      name: input.name ?? 'test campaign',
      provider: input.provider ?? 'mock',
      message: input.message ?? { title: 'Hello', body: 'World', data: { k: 'v' } },
      ...(input.recipients ? { recipients: input.recipients } : {}),
    });
    if (res.status !== 201) throw new Error(`create failed: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  }

  async launch(id: string): Promise<any> {
    const res = await this.request('POST', `/api/campaigns/${id}/launch`);
    if (res.status !== 200) throw new Error(`launch failed: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  }

  async campaign(id: string): Promise<any> {
    const res = await this.request('GET', `/api/campaigns/${id}`);
    if (res.status !== 200) throw new Error(`get failed: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  }
}
