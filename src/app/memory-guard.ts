import { DomainError, ErrorCodes } from '../domain/errors.js';
import type { MemoryProbe, MemoryReading } from './ports.js';

/**
 * What Redis holds per recipient, measured (README, *Data lifecycle*), with
 * some room: a stored list ~42 B, a run's ledger ~14 B.
 */
export const LIST_BYTES_PER_RECIPIENT = 48;
export const LEDGER_BYTES_PER_RECIPIENT = 16;

/** Where `/readyz` starts warning. */
export const MEMORY_WARN_RATIO = 0.7;

export interface MemoryState {
  used: number;
  limit: number | null;
  ratio: number | null;
  source: string | null;
}

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/**
 * Keeps new work out of a Redis that is nearly full (it is `noeviction`:
 * full means every write fails, sends included). Above the watermark — or
 * when what is asked for would take Redis past it — new campaigns, uploads
 * and launches are refused with REDIS_MEMORY_HIGH (507); campaigns already
 * running are never the thing refused, and their ledger was counted when
 * they launched.
 */
export class MemoryGuard {
  /** Bytes admitted since each reading was taken: a burst within one (cached) reading counts what it let in. */
  private readonly admitted = new WeakMap<MemoryReading, number>();

  constructor(
    private readonly probe: MemoryProbe,
    private readonly highWatermark: number,
  ) {}

  async state(): Promise<MemoryState> {
    const r = await this.probe.read();
    const used = r.used + (this.admitted.get(r) ?? 0);
    return { used, limit: r.limit, ratio: r.limit ? used / r.limit : null, source: r.source };
  }

  /** Refuses `action` when Redis is above the watermark, or would be once `needBytes` more are written. */
  async admit(action: string, needBytes = 0): Promise<void> {
    const reading = await this.probe.read();
    const s = await this.state();
    if (s.limit === null || s.ratio === null) return;
    const after = (s.used + needBytes) / s.limit;
    if (s.ratio <= this.highWatermark && after <= this.highWatermark) {
      this.admitted.set(reading, (this.admitted.get(reading) ?? 0) + needBytes);
      return;
    }
    const now = `Redis is ${(s.ratio * 100).toFixed(0)}% full (${mb(s.used)} of ${mb(s.limit)}, ${s.source === 'maxmemory' ? 'maxmemory' : 'MEMORY_LIMIT_BYTES'})`;
    const need =
      needBytes > 0 && s.ratio <= this.highWatermark
        ? `; this ${action} needs about ${mb(needBytes)} more, which would take it to ${(after * 100).toFixed(0)}%`
        : '';
    throw new DomainError(
      ErrorCodes.REDIS_MEMORY_HIGH,
      `cannot ${action}: ${now}${need}, above MEMORY_HIGH_WATERMARK (${this.highWatermark}). Running campaigns go on sending. Free memory: archive sooner (RUN_RETENTION_MS), delete campaigns you no longer need (DELETE /api/campaigns/:id), or give Redis more memory.`,
      { usedBytes: s.used, limitBytes: s.limit, ratio: Number(s.ratio.toFixed(4)), needBytes, highWatermark: this.highWatermark },
    );
  }
}
