import { recipientId, recipientRecord, type StoredRecipient } from '../domain/recipient.js';
import { capApplies, quietHoursFor, quietUntil, REASONS, zoneFor, type FrequencyCap } from '../domain/respect.js';
import type { Campaign } from '../domain/campaign.js';
import { localDue, localZone, type DeliverAt } from '../domain/windows.js';
import type { CapReservation, ClaimDirective, FrequencyCaps, PushProvider, Suppressions } from './ports.js';

/** The list of device tokens (phone numbers) a provider reported invalid. */
export function tokenInvalidList(provider: string): string {
  return `token-invalid:${provider}`;
}

/** What of a run's delivery windows the gate needs (domain/windows.ts). */
export interface RunWindows {
  deliverAt: DeliverAt | null;
  /** When the run was due (ms): local times count from it. */
  startAt: number;
  /** Its deadline (epoch ms, as this process's clock reads it), or null. */
  deadline: number | null;
}

export interface GateDecision {
  directives: ClaimDirective[];
  /** Recipients counted against the frequency cap just now (by index): give back those the claim did not take. */
  reserved: Map<number, CapReservation>;
  cap: FrequencyCap | null;
}

/**
 * Decides, right before a batch is claimed, who may not be sent now: local
 * time and quiet hours defer (or expire, past the deadline), suppression
 * lists and the frequency cap skip. Checked at send time (not at launch), so
 * an id suppressed mid-run is still not sent.
 */
export class RecipientGate {
  constructor(
    private readonly deps: {
      suppressions: Suppressions;
      caps: FrequencyCaps;
      /** Caps from the configuration; a campaign's own cap wins. */
      configuredCaps: readonly FrequencyCap[];
    },
  ) {}

  capFor(campaign: Campaign): FrequencyCap | null {
    const cap = campaign.frequencyCap ?? this.deps.configuredCaps.find((c) => capApplies(c, campaign.kind)) ?? null;
    return capApplies(cap, campaign.kind) ? cap : null;
  }

  /** Puts tokens (phone numbers) `provider` reported invalid on its token-invalid list. */
  async markTokensInvalid(provider: string, addresses: readonly string[]): Promise<void> {
    await this.deps.suppressions.add(tokenInvalidList(provider), addresses);
  }

  /**
   * Splits recipients into those who may be sent now and those who must
   * wait: for their local time (the run's `deliverAt`), then for their quiet
   * hours to end (quiet hours win) — deferred to that instant — or, when that
   * instant is at or past the run's deadline, skipped as `expired` at once
   * (they can never be sent in time).
   */
  timing(
    campaign: Campaign,
    run: RunWindows,
    page: readonly StoredRecipient[],
    indexes: readonly number[],
    now: number,
  ): { held: ClaimDirective[]; open: number[] } {
    const held: ClaimDirective[] = [];
    const open: number[] = [];
    // Recipients of a page share a handful of zones: one answer per zone and window.
    const known = new Map<string, { at: number; reason: number }>();
    for (const index of indexes) {
      const recipient = recipientRecord(page[index]!);
      const hours = quietHoursFor(campaign, recipient);
      const localZoneName = run.deliverAt ? localZone(run.deliverAt, recipient) : '';
      const quietZone = hours ? zoneFor(hours, recipient) : '';
      const key = `${localZoneName}|${quietZone}|${hours ? `${hours.start}|${hours.end}` : ''}`;
      let wait = known.get(key);
      if (!wait) {
        wait = { at: now, reason: REASONS.none };
        if (run.deliverAt) {
          const due = localDue(run.deliverAt.localTime, localZoneName, run.startAt);
          if (due > now) wait = { at: due, reason: REASONS['local-time'] };
        }
        if (hours) {
          const end = quietUntil(hours, quietZone, wait.at);
          if (end > wait.at) wait = { at: end, reason: REASONS['quiet-hours'] };
        }
        known.set(key, wait);
      }
      if (wait.at <= now) open.push(index);
      else if (run.deadline !== null && wait.at >= run.deadline) {
        const why = wait.reason === REASONS['local-time'] ? 'its local time' : 'the end of its quiet hours';
        held.push({ index, op: 'skip', reason: REASONS.expired, detail: `${why} (${new Date(wait.at).toISOString()}) comes after the run's deadline` });
      } else held.push({ index, op: 'defer', until: wait.at, reason: wait.reason });
    }
    return { held, open };
  }

  /** Who of `open` is on a campaign suppression list (by id) or has a token the provider reported invalid (by token). */
  private async suppressed(
    campaign: Campaign,
    provider: PushProvider,
    page: readonly StoredRecipient[],
    open: readonly number[],
  ): Promise<Array<ClaimDirective | undefined>> {
    const tokenList = tokenInvalidList(provider.name);
    const addresses = provider.address ? open.map((i) => provider.address!(recipientRecord(page[i]!))) : [];
    const withAddress = open.flatMap((_, i) => (addresses[i] ? [i] : []));
    const [byId, byToken] = await Promise.all([
      this.deps.suppressions.find(
        campaign.suppressionLists,
        open.map((i) => recipientId(page[i]!)),
      ),
      this.deps.suppressions.find(
        [tokenList],
        withAddress.map((i) => addresses[i]!),
      ),
    ]);
    const invalid = new Set(withAddress.filter((_, k) => byToken[k] !== undefined));
    return open.map((index, i) => {
      const list = byId[i];
      if (list !== undefined) return { index, op: 'skip', reason: REASONS.suppressed, detail: `on suppression list ${list}` };
      if (invalid.has(i))
        return { index, op: 'skip', reason: REASONS['token-invalid'], detail: `${provider.name} reported this token invalid (list ${tokenList})` };
      return undefined;
    });
  }

  async decide(
    campaign: Campaign,
    run: RunWindows,
    provider: PushProvider,
    page: readonly StoredRecipient[],
    batch: readonly number[],
    countedOf: (index: number) => boolean,
    now: number,
  ): Promise<GateDecision> {
    // Checked again here: a window may have begun since the page started.
    const { held: directives, open } = this.timing(campaign, run, page, batch, now);
    const skips = await this.suppressed(campaign, provider, page, open);
    const allowed: number[] = [];
    open.forEach((index, i) => {
      const skip = skips[i];
      if (skip) directives.push(skip);
      else allowed.push(index);
    });
    const reserved = new Map<number, CapReservation>();
    const cap = this.capFor(campaign);
    // A retry of a recipient was counted at its first attempt already (its ledger record says so).
    const first = cap ? allowed.filter((i) => !countedOf(i)) : [];
    const fits = cap
      ? await this.deps.caps.reserve(
          cap,
          first.map((i) => recipientId(page[i]!)),
        )
      : [];
    const over = new Set<number>();
    first.forEach((index, i) => {
      const reservation = fits[i];
      if (reservation) reserved.set(index, reservation);
      else over.add(index);
    });
    for (const index of allowed) {
      if (over.has(index))
        directives.push({ index, op: 'skip', reason: REASONS['frequency-cap'], detail: `frequency cap: at most ${cap!.max} per ${cap!.per}` });
      else directives.push({ index, op: 'claim', counted: reserved.has(index) });
    }
    return { directives, reserved, cap };
  }
}
