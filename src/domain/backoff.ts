/**
 * Exponential backoff with full jitter (a random delay between 0 and the
 * exponential ceiling), so retries of a failed burst spread out instead of
 * hitting the provider again in lockstep.
 */
export function fullJitterBackoff(attempt: number, baseMs: number, capMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.floor(random() * ceiling);
}
