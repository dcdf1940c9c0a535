/** A bad setting: the process stops with this one line, naming the variable (or the provider and its field). */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}
