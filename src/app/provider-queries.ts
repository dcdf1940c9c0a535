import { DomainError, ErrorCodes } from '../domain/errors.js';
import type { ProviderRegistry, ProviderState, RateLimiter } from './ports.js';

export interface ProviderView extends ProviderState {
  type: string;
  maxAttempts: number;
}

/** The shared state of each provider's limiter: pace after 429s, pause, circuit breaker. */
export class ProviderQueries {
  constructor(
    private readonly deps: {
      providers: ProviderRegistry;
      limiter: RateLimiter;
    },
  ) {}

  async list(): Promise<ProviderView[]> {
    return Promise.all(this.deps.providers.names().map((name) => this.get(name)));
  }

  async get(name: string): Promise<ProviderView> {
    const provider = this.deps.providers.get(name);
    if (!provider) throw new DomainError(ErrorCodes.NOT_FOUND, `provider ${JSON.stringify(name)} is not configured`);
    return { ...(await this.deps.limiter.state(provider.limits)), type: provider.type, maxAttempts: provider.retry.maxAttempts };
  }
}
