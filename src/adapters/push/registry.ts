import type { ProviderRegistry, PushProvider } from '../../app/ports.js';
import type { ProviderConfig } from '../../config.js';
import { HttpProvider } from './http-provider.js';
import { SimProvider } from './sim-provider.js';

type Factory<T extends ProviderConfig['type']> = (config: Extract<ProviderConfig, { type: T }>) => PushProvider;

/** One entry per provider type: adding a type is one file and one line here. */
const FACTORIES: { [T in ProviderConfig['type']]: Factory<T> } = {
  http: (config) => new HttpProvider(config),
  sim: (config) => new SimProvider(config),
};

export class Providers implements ProviderRegistry {
  private readonly byName = new Map<string, PushProvider>();

  constructor(configs: readonly ProviderConfig[]) {
    for (const config of configs) {
      const factory = FACTORIES[config.type] as Factory<typeof config.type>;
      this.byName.set(config.name, factory(config));
    }
  }

  get(name: string): PushProvider | undefined {
    return this.byName.get(name);
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  async close(): Promise<void> {
    await Promise.all([...this.byName.values()].map((p) => p.close()));
  }
}
