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

  /** What Redis says now (read at most once a second). */
  async state(): Promise<MemoryState> {
    const r = await this.probe.read();
    return { used: r.used, limit: r.limit, ratio: r.limit ? r.used / r.limit : null, source: r.source };
  }

  /** Refuses `action` when Redis is above the watermark, or would be once `needBytes` more are written. */
  async admit(action: string, needBytes = 0): Promise<void> {
    const reading = await this.probe.read();
    if (!reading.limit) return;
    // What was let in since this reading was taken counts too, so a burst within a second cannot overshoot.
    const admitted = this.admitted.get(reading) ?? 0;
    const before = (reading.used + admitted) / reading.limit;
    const after = (reading.used + admitted + needBytes) / reading.limit;
    if (before <= this.highWatermark && after <= this.highWatermark) {
      this.admitted.set(reading, admitted + needBytes);
      return;
    }
    const ratio = reading.used / reading.limit;
    const now = `Redis is ${(ratio * 100).toFixed(0)}% full (${mb(reading.used)} of ${mb(reading.limit)}, ${reading.source === 'maxmemory' ? 'maxmemory' : 'MEMORY_LIMIT_BYTES'})${admitted > 0 ? ` with about ${mb(admitted)} more let in during the last second` : ''}`;
    const need =
      needBytes > 0 && before <= this.highWatermark
        ? `; this ${action} needs about ${mb(needBytes)} more, which would take it to ${(after * 100).toFixed(0)}%`
        : '';
    const s = { used: reading.used, limit: reading.limit, ratio };
    throw new DomainError(
      ErrorCodes.REDIS_MEMORY_HIGH,
      `cannot ${action}: ${now}${need}, above MEMORY_HIGH_WATERMARK (${this.highWatermark}). Running campaigns go on sending. Free memory: archive sooner (RUN_RETENTION_MS), delete campaigns you no longer need (DELETE /api/campaigns/:id), or give Redis more memory.`,
      { usedBytes: s.used, limitBytes: s.limit, ratio: Number(s.ratio.toFixed(4)), needBytes, highWatermark: this.highWatermark },
    );
  }
}
