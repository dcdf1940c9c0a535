/**
 * A bearer token shared by every send of a provider in this process: fetched
 * once, reused until shortly before it expires, refreshed by one request even
 * when hundreds of sends ask at once, and refreshed early when the provider
 * rejects it.
 */
export interface IssuedToken {
  token: string;
  /** Epoch ms. */
  expiresAt: number;
}

export class SharedToken {
  #current: (IssuedToken & { issuedAt: number; replacement: boolean }) | null = null;
  private pending: Promise<IssuedToken & { issuedAt: number; replacement: boolean }> | null = null;
  /** Tokens fetched so far (for tests and logs). */
  issued = 0;

  constructor(
    private readonly fetchToken: () => Promise<IssuedToken>,
    /** Refresh this long before expiry at most (a fifth of a short token's life otherwise). */
    private readonly refreshBeforeMs = 5 * 60_000,
  ) {}

  async get(now = Date.now()): Promise<string> {
    const current = this.#current;
    if (current && now < current.expiresAt - Math.min(this.refreshBeforeMs, (current.expiresAt - current.issuedAt) / 5)) return current.token;
    return (await this.refresh(false)).token;
  }

  /** Whether `token` was fetched to replace one the provider refused (refusing it too means our credentials are wrong). */
  isReplacement(token: string): boolean {
    return this.#current?.token === token && this.#current.replacement;
  }

  /** `rejected`: the token the provider refused; a newer one already in hand is answered as is. */
  async renew(rejected: string): Promise<string> {
    if (this.#current && this.#current.token !== rejected) return this.#current.token;
    return (await this.refresh(true)).token;
  }

  private refresh(replacement: boolean): Promise<IssuedToken & { issuedAt: number; replacement: boolean }> {
    this.pending ??= (async () => {
      const issuedAt = Date.now();
      const fresh = { ...(await this.fetchToken()), issuedAt, replacement };
      this.issued += 1;
      this.#current = fresh;
      return fresh;
    })().finally(() => {
      this.pending = null;
    });
    return this.pending;
  }
}
