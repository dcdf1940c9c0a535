import type { Pool } from 'undici';
import type { BatchPolicy, OnDeparted, PushProvider, SendRequest } from '../../app/ports.js';
import type { SendOutcome } from '../../domain/send-outcome.js';
import { NO_RESULT, providerPool, recipientAddress, resultOf } from './http-support.js';
import { providerLimits, readSecret, retryPolicy, type AlimtalkProviderConfig, type SmsProviderConfig } from './provider-config.js';

/** One recipient's line in an NHN answer (alimtalk sendResults, SMS sendResultList). */
export interface NhnResult {
  recipientSeq?: number;
  recipientGroupingKey?: string;
  resultCode?: number;
  resultMessage?: string;
}

/**
 * What NHN Cloud's alimtalk and SMS senders share: an app key and an
 * X-Secret-Key, a pool to one origin, recipients addressed by a phone field,
 * batches of recipients per request, and an answer judged per recipient
 * (resultCode 0 sent; another refused, token-invalid when listed in
 * `invalidRecipientCodes`). Each subclass builds its own request and reads
 * its own request-level header.
 */
export abstract class NhnProvider implements PushProvider {
  abstract readonly type: string;
  readonly name: string;
  readonly limits;
  readonly retry;
  readonly batch: BatchPolicy | undefined;
  protected readonly url: URL;
  protected readonly pool: Pool;
  /** ES-private: never serialised or logged with the provider. */
  readonly #secretKey: string;
  private readonly invalidCodes: Set<number>;

  constructor(protected readonly config: AlimtalkProviderConfig | SmsProviderConfig) {
    this.name = config.name;
    this.limits = providerLimits(config);
    this.retry = retryPolicy(config);
    this.batch = config.batchSize > 1 ? { size: config.batchSize, countBy: config.countBy } : undefined;
    this.#secretKey = readSecret(config, 'secretKey');
    this.url = new URL(config.baseUrl);
    this.pool = providerPool(this.url.origin, config);
    this.invalidCodes = new Set(config.invalidRecipientCodes);
  }

  /** The X-Secret-Key header's value. */
  protected get secretKey(): string {
    return this.#secretKey;
  }

  address(recipient: SendRequest['recipient']): string | undefined {
    return recipientAddress(recipient, this.config.phoneField);
  }

  async send(request: SendRequest, onDeparted?: OnDeparted): Promise<SendOutcome> {
    return (await this.sendBatch([request], onDeparted))[0]!;
  }

  abstract sendBatch(requests: readonly SendRequest[], onDeparted?: OnDeparted): Promise<SendOutcome[]>;

  /** Each request's outcome from the answer's per-recipient results (by grouping key, else position); `prefix` names the codes. */
  protected perRecipient(requests: readonly SendRequest[], results: readonly NhnResult[], prefix: string): SendOutcome[] {
    return requests.map((request, i) => {
      const result = resultOf(results, request.idempotencyKey, i);
      if (!result || typeof result.resultCode !== 'number') return NO_RESULT;
      if (result.resultCode === 0) return { kind: 'sent' };
      return {
        kind: 'permanent',
        code: `${prefix}_${result.resultCode}`,
        message: result.resultMessage ?? 'refused',
        tokenInvalid: this.invalidCodes.has(result.resultCode),
      };
    });
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
