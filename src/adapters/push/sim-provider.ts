import { noAddress, recipientAddress } from './http-support.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';
import type { OnDeparted, ProviderRequestPreview, PushProvider, SendRequest } from '../../app/ports.js';
import { providerLimits, retryPolicy, type SimProviderConfig } from './provider-config.js';
import type { SendOutcome } from '../../domain/send-outcome.js';

/** Nothing goes on a wire: the request as the worker hands it over. */
export function simPreview(config: SimProviderConfig, request: SendRequest): ProviderRequestPreview {
  return { method: 'NONE', url: `sim://${config.name}`, headers: {}, body: request };
}

/**
 * Sends nowhere: waits `latencyMs`, fails a `failureRate` share transiently
 * (and, with a `tokenField`, a recipient without one for good),
 * and goes through the same limiter, ledger and retries as a real provider —
 * for demos and benchmarks.
 */
export class SimProvider implements PushProvider {
  readonly type = 'sim';
  readonly name: string;
  readonly limits;
  readonly retry;

  constructor(
    private readonly config: SimProviderConfig,
    private readonly random: () => number = Math.random,
  ) {
    this.name = config.name;
    this.limits = providerLimits(config);
    this.retry = retryPolicy(config);
  }

  address(recipient: SendRequest['recipient']): string | undefined {
    return this.config.tokenField === undefined ? undefined : recipientAddress(recipient, this.config.tokenField);
  }

  async send(request: SendRequest, onDeparted?: OnDeparted): Promise<SendOutcome> {
    if (this.config.tokenField !== undefined && !this.address(request.recipient)) return noAddress('NO_TOKEN', this.config.tokenField);
    // Nowhere to travel: it "arrives" as it is sent.
    onDeparted?.(performance.now());
    if (this.config.latencyMs > 0) await sleep(this.config.latencyMs);
    if (this.random() < this.config.failureRate) {
      return { kind: 'transient', code: 'SIM_FAILURE', message: 'simulated provider failure' };
    }
    return { kind: 'sent' };
  }

  async close(): Promise<void> {}
}
