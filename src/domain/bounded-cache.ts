/**
 * A memo that holds at most `max` entries: when full, the one least recently
 * used goes. For caches keyed by what clients send (time-zone names), which
 * must not grow with the variety of their input.
 */
export class BoundedCache<K, V> {
  private readonly entries = new Map<K, V>();

  constructor(private readonly max: number) {}

  get size(): number {
    return this.entries.size;
  }

  /** The cached value for `key`, computing (and keeping) it on a miss. */
  get(key: K, compute: (key: K) => V): V {
    if (this.entries.has(key)) {
      const value = this.entries.get(key)!;
      // Re-inserted: Map order is the recency order.
      this.entries.delete(key);
      this.entries.set(key, value);
      return value;
    }
    const value = compute(key);
    this.entries.set(key, value);
    if (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value!);
    return value;
  }

  /** Drops `key` (a value that turned out wrong: a failed read). */
  forget(key: K): void {
    this.entries.delete(key);
  }
}
