import type { EventMasks, Lifecycle, ScheduleBefore, Transition } from '../../app/ports.js';
import { sourceStatesFor, type CampaignStatus, type RecipientLayout } from '../../domain/campaign.js';
import type { ScheduleSpec } from '../../domain/schedule.js';
import type { Keys } from './keys.js';
import type { ScriptName, Scripts } from './scripts.js';

type Reply = Array<string | number>;

/** Status changes of a campaign (and its latest run), each one Lua step. */
export class RedisLifecycle implements Lifecycle {
  constructor(
    private readonly keys: Keys,
    private readonly scripts: Scripts,
    /** Which recipient events a cancel writes to the outbox (those found in doubt). */
    private readonly masks: EventMasks = { maskFor: () => '' },
  ) {}

  /** Runs a transition script on the meta and the latest run (plus its page sets with `withPages`). */
  private async transition(name: ScriptName, campaignId: string, latestRunId: string | null, args: Array<string | number>, withPages = false): Promise<Reply> {
    const k = this.keys.campaign(campaignId);
    const run = k.run(latestRunId ?? '-');
    const keys = withPages ? [k.meta(), run.run, run.unfinished, run.open] : [k.meta(), run.run];
    return (await this.scripts.run(name, keys, args)) as Reply;
  }

  private refused<T>(reply: Reply): Transition<T> {
    const reason = reply[0] as 'missing' | 'state' | 'moved';
    return { ok: false, reason, status: reply[1] as CampaignStatus | undefined, message: reply[2] ? String(reply[2]) : undefined };
  }

  async setSchedule(campaignId: string, spec: ScheduleSpec | null, expectVersion = 0): Promise<Transition<{ version: number; before: ScheduleBefore }>> {
    const reply = (await this.scripts.run(
      'set-schedule',
      [this.keys.campaign(campaignId).meta()],
      [sourceStatesFor('schedule').join(','), spec ? JSON.stringify(spec) : '', spec?.kind ?? '', expectVersion],
    )) as Reply;
    if (reply[0] !== 'ok') return this.refused(reply);
    const version = Number(reply[2]);
    const before: ScheduleBefore = {
      schedule: reply[3] ? (JSON.parse(String(reply[3])) as ScheduleSpec) : null,
      status: reply[4] as CampaignStatus,
      version: version - 1,
    };
    return { ok: true, status: reply[1] as CampaignStatus, version, before };
  }

  async restoreSchedule(campaignId: string, version: number, before: ScheduleBefore): Promise<boolean> {
    const reply = (await this.scripts.run(
      'restore-schedule',
      [this.keys.campaign(campaignId).meta()],
      [version, before.schedule ? JSON.stringify(before.schedule) : '', before.status, before.version],
    )) as Reply;
    return reply[0] === 'ok';
  }

  async pause(campaignId: string, latestRunId: string | null): Promise<Transition> {
    const reply = await this.transition('pause', campaignId, latestRunId, [sourceStatesFor('pause').join(','), latestRunId ?? '']);
    return reply[0] === 'ok' ? { ok: true, status: 'paused' } : this.refused(reply);
  }

  async resume(campaignId: string, latestRunId: string | null, idleStatus: 'scheduled' | 'draft'): Promise<Transition<{ gen?: number; pages?: number[] }>> {
    const reply = await this.transition('resume', campaignId, latestRunId, [latestRunId ?? '', idleStatus], true);
    if (reply[0] !== 'ok') return this.refused(reply);
    const status = reply[1] as CampaignStatus;
    if (reply.length < 3) return { ok: true, status };
    return { ok: true, status, gen: Number(reply[2]), pages: reply.slice(3).map(Number) };
  }

  async cancel(campaignId: string, latestRunId: string | null): Promise<Transition> {
    const reply = await this.transition('cancel', campaignId, latestRunId, [
      sourceStatesFor('cancel').join(','),
      latestRunId ?? '',
      this.masks.maskFor(campaignId),
    ]);
    return reply[0] === 'ok' ? { ok: true, status: 'cancelled' } : this.refused(reply);
  }

  async setPace(campaignId: string, latestRunId: string | null, pace: { tps: number | null; spreadMs: number | null }): Promise<Transition> {
    const reply = await this.transition('set-pace', campaignId, latestRunId, [
      sourceStatesFor('pace').join(','),
      latestRunId ?? '',
      pace.tps ?? '',
      pace.spreadMs ?? '',
    ]);
    return reply[0] === 'ok' ? { ok: true, status: reply[1] as CampaignStatus } : this.refused(reply);
  }

  async edit(campaignId: string, fields: Record<string, string>): Promise<Transition> {
    const reply = (await this.scripts.run(
      'edit-campaign',
      [this.keys.campaign(campaignId).meta()],
      [sourceStatesFor('edit').join(','), ...Object.entries(fields).flat()],
    )) as Reply;
    return reply[0] === 'ok' ? { ok: true, status: reply[1] as CampaignStatus } : this.refused(reply);
  }

  async swapRecipients(
    campaignId: string,
    latestRunId: string | null,
    layout: RecipientLayout,
    fields: Record<string, string> = {},
  ): Promise<Transition<{ dropVersion: number | null }>> {
    const reply = await this.transition('swap-recipients', campaignId, latestRunId, [
      sourceStatesFor('upload').join(','),
      latestRunId ?? '',
      layout.version,
      layout.total,
      layout.pages,
      layout.pageSize,
      layout.buckets,
      ...Object.entries(fields).flat(),
    ]);
    if (reply[0] !== 'ok') return this.refused(reply);
    const drop = Number(reply[2]);
    return { ok: true, status: reply[1] as CampaignStatus, dropVersion: drop > 0 ? drop : null };
  }
}
