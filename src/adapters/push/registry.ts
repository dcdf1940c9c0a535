import type { ProviderRegistry, ProviderRequestPreview, PushProvider, SendRequest } from '../../app/ports.js';
import { providerLimits, retryPolicy, type ProviderConfig } from './provider-config.js';
import type { SendOutcome } from '../../domain/send-outcome.js';
import { alimtalkPreview, AlimtalkProvider } from './alimtalk-provider.js';
import { apnsPreview, ApnsProvider } from './apns-provider.js';
import { fcmPreview, FcmProvider } from './fcm-provider.js';
import { httpPreview, HttpProvider } from './http-provider.js';
import { simPreview, SimProvider } from './sim-provider.js';
import { smsPreview, SmsProvider } from './sms-provider.js';

type Factory<T extends ProviderConfig['type']> = (config: Extract<ProviderConfig, { type: T }>) => PushProvider;

/** One entry per provider type: adding a type is one file and one line here. */
const FACTORIES: { [T in ProviderConfig['type']]: Factory<T> } = {
  http: (config) => new HttpProvider(config),
  sim: (config) => new SimProvider(config),
  fcm: (config) => new FcmProvider(config),
  apns: (config) => new ApnsProvider(config),
  alimtalk: (config) => new AlimtalkProvider(config),
  sms: (config) => new SmsProvider(config),
};

type Previewer<T extends ProviderConfig['type']> = (config: Extract<ProviderConfig, { type: T }>, request: SendRequest) => ProviderRequestPreview;

/** The request each type makes, built by the same functions its sender uses, from the configuration alone. */
const PREVIEWS: { [T in ProviderConfig['type']]: Previewer<T> } = {
  http: httpPreview,
  sim: simPreview,
  fcm: fcmPreview,
  apns: apnsPreview,
  alimtalk: alimtalkPreview,
  sms: smsPreview,
};

/**
 * A provider as a process that does not send knows it (the API: names,
 * limits, retry policy): no connection, and no secret read — API machines
 * need not hold provider keys.
 */
class DescribedProvider implements PushProvider {
  readonly name: string;
  readonly type: string;
  readonly limits;
  readonly retry;

  constructor(config: ProviderConfig) {
    this.name = config.name;
    this.type = config.type;
    this.limits = providerLimits(config);
    this.retry = retryPolicy(config);
  }

  send(): Promise<SendOutcome> {
    return Promise.reject(new Error(`provider ${this.name} is not connected in this process (it runs no worker)`));
  }

  async close(): Promise<void> {}
}

/** An entry of a provider with a connection pool, its ceiling filled in when the file leaves it out. */
function withConnections(config: ProviderConfig, connections: number | undefined): ProviderConfig {
  if (connections === undefined) return config;
  if (config.type === 'http' || config.type === 'fcm' || config.type === 'alimtalk' || config.type === 'sms')
    return { ...config, connections: config.connections ?? connections };
  return config;
}

export class Providers implements ProviderRegistry {
  private readonly byName = new Map<string, PushProvider>();
  private readonly configs = new Map<string, ProviderConfig>();

  /**
   * `connect`: build the senders (workers); otherwise only describe the
   * providers (API). `connections`: the most a pool opens when its entry
   * does not say (the worker's SEND_CONCURRENCY).
   */
  constructor(configs: readonly ProviderConfig[], options: { connect: boolean; connections?: number } = { connect: true }) {
    for (const config of configs) {
      const factory = FACTORIES[config.type] as Factory<typeof config.type>;
      this.byName.set(config.name, options.connect ? factory(withConnections(config, options.connections)) : new DescribedProvider(config));
      this.configs.set(config.name, config);
    }
  }

  get(name: string): PushProvider | undefined {
    return this.byName.get(name);
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  preview(name: string, request: SendRequest): ProviderRequestPreview | undefined {
    const config = this.configs.get(name);
    return config ? (PREVIEWS[config.type] as Previewer<typeof config.type>)(config, request) : undefined;
  }

  async close(): Promise<void> {
    await Promise.all([...this.byName.values()].map((p) => p.close()));
  }
}
