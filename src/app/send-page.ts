import { performance } from 'node:perf_hooks';
import { idempotencyKey, receiptKey } from '../domain/ids.js';
import { decodeRecord } from '../domain/ledger.js';
import { decodeLegs, legCampaign, providerOfLeg } from '../domain/fallback.js';
import { recipientRecord, type StoredRecipient } from '../domain/recipient.js';
import { reasonName } from '../domain/respect.js';
import { describeError, type SendOutcome } from '../domain/send-outcome.js';
import { healthOf, healthOfRequest, pushback, settlement, settlePolicyOf, type Settlement } from '../domain/send-rules.js';
import { priorityClass, type Campaign, type Message } from '../domain/campaign.js';
import { REASONS } from '../domain/respect.js';
import { renderContext, type CompiledMessage, type CompiledMessages } from '../domain/template.js';
import { ConfirmBuffer, type ConfirmBufferOptions } from './confirm-buffer.js';
import type { MessageIdBuffer } from './message-id-buffer.js';
import type { RunSeries } from './run-series.js';
import type { AppEvents } from './events.js';
import type { HeldPage, LeaseHalt, LeaseRenewer } from './lease-renewer.js';
import type { RunPump } from './pump.js';
import type { RunPaces } from './run-paces.js';
import type { GateDecision, RecipientGate, RunWindows } from './recipient-gate.js';
import { RENDER_SLICE_MS, StopRequested, sleepUntil, TimeSlice } from './waiting.js';
import type { Allotment, RequestShare, SendBudget } from './send-budget.js';
import type {
  AcquireResult,
  CampaignStore,
  ClaimDirective,
  Claimed,
  ClaimResult,
  FrequencyCaps,
  Ledger,
  Logger,
  PageJob,
  PageRef,
  ProviderRegistry,
  PushProvider,
  Runs,
  SendRequest,
  SettlePolicy,
} from './ports.js';

export type PageResult =
  /** Every recipient of the page is final. */
  | { kind: 'done' }
  /** Some wait for a retry: run the page again in `delayMs`. */
  | { kind: 'later'; delayMs: number }
  /** Another worker holds the page for `delayMs` more at most. */
  | { kind: 'busy'; delayMs: number }
  /** The run is not running (paused, cancelled, completed, gone). */
  | { kind: 'inactive'; status: string }
  /** This process is stopping: hand the page to another worker. */
  | { kind: 'stopped' }
  /** The page lease was lost mid-way: another worker owns the page now. */
  | { kind: 'fenced' }
  /** A newer job of this page exists (enqueued after a takeover): nothing to do. */
  | { kind: 'superseded' };

/** Why a pass over a page stopped before every due recipient was sent. */
type Halt = LeaseHalt | { kind: 'stopped' } | { kind: 'unreplicated'; count: number };

export interface SendPageOptions extends ConfirmBufferOptions {
  /** Most recipients claimed by one ledger call. */
  claimBatch: number;
}

export interface SendPageDeps {
  campaigns: Pick<CampaignStore, 'get' | 'readPage'>;
  ledger: Ledger;
  runs: Pick<Runs, 'markInactive' | 'leaveFirstPass'>;
  /** Send slots and rate-limit permits: taken and returned in one place. */
  budget: SendBudget;
  /** Keeps this process's page leases alive. */
  renewer: LeaseRenewer;
  providers: ProviderRegistry;
  pump: Pick<RunPump, 'fill' | 'pagesSharing'>;
  /** Quiet hours, suppression lists, frequency caps. */
  gate: RecipientGate;
  /** Each run's pace, kept current while its pages send. */
  paces: RunPaces;
  caps: FrequencyCaps;
  /** Campaign messages compiled once per process. */
  templates: CompiledMessages;
  /** Where providers' own message ids go (providers that send receipts naming them). */
  messageIds?: MessageIdBuffer;
  /** Each run's per-second outcomes, for the campaign page's chart. */
  series?: RunSeries;
  events: AppEvents;
  log: Logger;
  options: SendPageOptions;
}

/** How long before a permit's start time its recipient is claimed (covers the claim's round trip). */
const CLAIM_AHEAD_MS = 5;

/** Recipients deferred per ledger call when a page starts inside quiet hours. */
const PARK_BATCH = 1000;

/**
 * A page of a paced run with this many seconds left to send at its share of
 * the pace (the run's first-pass pages share it) makes room for the run's
 * next page, so that page has a worker before this one ends: the pace goes
 * on without a gap while pages turn over.
 */
const PACED_RELIEF_SECONDS = 2;

/** A page whose claims no replica acknowledged comes back after this long at the earliest. */
const UNREPLICATED_BACKOFF_MS = 1000;

/** One page being sent: what every step of it needs. */
interface PageWork {
  page: HeldPage;
  ref: PageRef;
  campaign: Campaign;
  /** The fallback leg this work sends (domain/fallback.ts): 0 the campaign's provider. */
  leg: number;
  provider: PushProvider;
  settle: SettlePolicy;
  recipients: StoredRecipient[];
  /** Whether a recipient was counted against a frequency cap in this run already (its ledger record says). */
  countedOf(index: number): boolean;
  confirms: ConfirmBuffer;
  /** Recipients whose token the provider reported invalid, for its token-invalid list. */
  invalidTokens: string[];
  /** The run, as the limiter's turn-taking knows it. */
  flow: string;
  /** The leg's message (the campaign's, or a fallback leg's own), and compiled. */
  message: Message;
  template: CompiledMessage;
  /** Each claimed recipient's rendered message (by index), until its request is made. */
  rendered: Map<number, Message>;
  /**
   * Leg 0 on a provider that re-sends by SMS itself (nativeFallback) with an
   * `sms` first fallback leg: that leg's message, compiled, whose rendered
   * text goes with each request (`SendRequest.fallback`); null otherwise.
   */
  native: { message: Message; template: CompiledMessage; rendered: Map<number, Message> } | null;
  /** A recipient's idempotency key (one a receipt can be traced back from, for a run with a number). */
  keyOf(index: number, recipientId: string): string;
  /** The run's number and page size: a recipient's place, where a provider's message id leads a receipt. */
  runNo: number | null;
  pageSize: number;
  /** The run's local time, start and deadline, for the gate. */
  windows: RunWindows;
  /**
   * performance.now() after which no request may leave: the run's deadline
   * less what a request needs to reach the provider (its arrivalMarginMs);
   * null: no deadline. Moved earlier by each claim's reading of the Redis clock.
   */
  lastDeparture: number | null;
  log: Logger;
}

/**
 * Sends one page of a run: the heart of a worker.
 *
 * 1. take the page lease (fencing token = the BullMQ job token) and hand it
 *    to the lease renewer;
 * 2. repeatedly: take send slots and rate-limit permits (the send budget),
 *    then claim that many due recipients in one ledger call, and send them
 *    concurrently;
 * 3. record outcomes in batches, each checked against the lease;
 * 4. release the page, report what is left, and let the next page of the run in.
 *
 * A recipient is claimed (in flight) only once its permit is in hand, so a
 * worker that dies while waiting for the limiter leaves nothing in doubt;
 * and no request starts once the lease may have been lost.
 */
export class SendPage {
  constructor(private readonly deps: SendPageDeps) {}

  async run(job: PageJob, token: string, stop: AbortSignal): Promise<PageResult> {
    const { ledger, campaigns, providers, options, renewer } = this.deps;
    const ref: PageRef = { campaignId: job.campaignId, runId: job.runId, page: job.page };
    const log = this.deps.log.child({ campaignId: ref.campaignId, runId: ref.runId, page: ref.page });

    const campaign = await campaigns.get(ref.campaignId);
    const provider = campaign ? providers.get(campaign.provider) : undefined;
    if (!campaign || !provider) {
      // Leave the page alone (its lease, if any, runs out by itself); retried with backoff, loudly.
      throw new Error(`campaign ${ref.campaignId} uses provider ${JSON.stringify(campaign?.provider)}, which is not configured in this worker`);
    }
    const settle: SettlePolicy = settlePolicyOf(campaign.maxAttempts, provider.retry);
    const acquiredAt = performance.now();
    const acquired = await ledger.acquirePage(ref, token, { leaseMs: options.leaseMs, gen: job.gen, settle });
    if (acquired.kind !== 'ok') return this.notAcquired(ref, acquired);
    if (acquired.markedUnknown > 0) {
      log.warn({ count: acquired.markedUnknown }, 'took over a page from a lost worker; its in-flight recipients are now unknown');
      this.deps.events.emit('recipients:unknown', { ...ref, count: acquired.markedUnknown });
    }
    const page = renewer.hold(ref, token, acquiredAt);
    const releasePace = this.deps.paces.hold(ref.campaignId, ref.runId, acquired.pace);
    try {
      return await this.sendHeld(page, campaign, provider, settle, acquired, acquiredAt, stop, log);
    } finally {
      renewer.drop(page);
      releasePace();
    }
  }

  /** What a leg-0 request carries for its provider's own SMS re-send, when the provider does that and the chain's first leg is SMS. */
  private nativeLeg(campaign: Campaign, provider: PushProvider): PageWork['native'] {
    const first = campaign.fallback[0];
    // An advertisement's SMS must carry the notices the SMS provider adds: pushq's own leg sends it.
    if (!provider.nativeFallback || !first || campaign.kind === 'advertising' || this.deps.providers.get(first.provider)?.type !== 'sms') return null;
    return { ...this.legMessage(campaign, 1), rendered: new Map() };
  }

  /** A leg's message and its compiled template (a leg's compiled apart from the campaign's: its own cache key). */
  private legMessage(campaign: Campaign, leg: number): { message: Message; template: CompiledMessage } {
    if (leg === 0) return { message: campaign.message, template: this.deps.templates.for(campaign) };
    const asLeg = legCampaign(campaign, leg);
    return { message: asLeg.message, template: this.deps.templates.for({ ...asLeg, id: `${campaign.id}#leg${leg}` }) };
  }

  /** The provider of a fallback leg; one this worker does not have leaves the page to be retried loudly, as a missing main provider does. */
  private legProvider(campaign: Campaign, leg: number): PushProvider {
    const name = providerOfLeg(campaign, leg);
    const legProvider = name === undefined ? undefined : this.deps.providers.get(name);
    if (!legProvider) {
      throw new Error(`campaign ${campaign.id} falls back to provider ${JSON.stringify(name)} on leg ${leg}, which is not configured in this worker`);
    }
    return legProvider;
  }

  private notAcquired(ref: PageRef, acquired: Exclude<AcquireResult, { kind: 'ok' }>): PageResult {
    switch (acquired.kind) {
      case 'busy':
        return { kind: 'busy', delayMs: acquired.delayMs };
      case 'superseded':
        return { kind: 'superseded' };
      case 'missing':
        return { kind: 'inactive', status: 'missing' };
      case 'inactive':
        if (acquired.markedUnknown > 0) this.deps.events.emit('recipients:unknown', { ...ref, count: acquired.markedUnknown });
        return { kind: 'inactive', status: acquired.status };
    }
  }

  private async sendHeld(
    page: HeldPage,
    campaign: Campaign,
    provider: PushProvider,
    settle: SettlePolicy,
    acquired: Extract<AcquireResult, { kind: 'ok' }>,
    /** performance.now() before the page was taken: what the run's clocks were read against. */
    acquiredAt: number,
    stop: AbortSignal,
    log: Logger,
  ): Promise<PageResult> {
    const { ledger, events, options, pump } = this.deps;
    const { ref } = page;
    // This page left the queue: let the run's next one in line.
    pump.fill(ref.campaignId, ref.runId).catch((err) => log.warn({ err: describeError(err) }, 'could not enqueue the next page'));

    const recipients = await this.deps.campaigns.readPage(ref.campaignId, acquired.recipientsVersion, ref.page);
    // Due recipients by the leg they are on: each leg sends through its own provider, under its own cap.
    const dueByLeg = new Map<number, number[]>();
    for (let index = 0; index < recipients.length; index += 1) {
      const record = decodeRecord(acquired.records, index);
      if (record.state !== 'pending' || record.at > acquired.elapsed) continue;
      const leg = index < acquired.legs.length ? decodeLegs(acquired.legs[index]!).leg : 0;
      const due = dueByLeg.get(leg);
      if (due) due.push(index);
      else dueByLeg.set(leg, [index]);
    }

    const legWork = (leg: number, legProvider: PushProvider, legSettle: SettlePolicy): PageWork => ({
      page,
      ref,
      campaign,
      leg,
      provider: legProvider,
      settle: legSettle,
      recipients,
      countedOf: (index) => decodeRecord(acquired.records, index).counted,
      confirms: new ConfirmBuffer(ledger, page, { maxAttempts: legSettle.maxAttempts, maxRequeues: legProvider.retry.maxRequeues, leg }, options),
      invalidTokens: [],
      flow: `${ref.campaignId}|${ref.runId}`,
      ...this.legMessage(campaign, leg),
      rendered: new Map(),
      native: leg === 0 ? this.nativeLeg(campaign, legProvider) : null,
      keyOf: (index, recipientId) =>
        acquired.runNo === null
          ? idempotencyKey(ref.campaignId, ref.runId, recipientId, leg)
          : receiptKey(acquired.runNo, ref.page * acquired.pageSize + index, ref.campaignId, ref.runId, recipientId, leg),
      runNo: acquired.runNo,
      pageSize: acquired.pageSize,
      windows: {
        deliverAt: acquired.deliverAt,
        startAt: acquired.startAt,
        deadline: acquired.deadlineIn === null ? null : Date.now() + acquired.deadlineIn,
      },
      lastDeparture: acquired.deadlineIn === null ? null : acquiredAt + acquired.deadlineIn - legProvider.limits.arrivalMarginMs,
      log: leg === 0 ? log : log.child({ leg }),
    });
    const works: PageWork[] = [];
    let halt: Halt | null = null;
    try {
      for (const leg of [...dueByLeg.keys()].sort((a, b) => a - b)) {
        const due = dueByLeg.get(leg)!;
        const legProvider = leg === 0 ? provider : this.legProvider(campaign, leg);
        const work = legWork(leg, legProvider, leg === 0 ? settle : settlePolicyOf(campaign.maxAttempts, legProvider.retry));
        works.push(work);
        halt = (await this.park(work, due)) ?? (await this.sendDue(work, due, stop));
        if (halt) break;
      }
    } catch (err) {
      // What was sent is recorded if it can be; the page goes back now (what nobody will confirm is settled by the in-doubt policy).
      await Promise.all(works.map((w) => w.confirms.flush()));
      await ledger.releasePage(ref, page.token, recipients.length, settle).catch(() => undefined);
      throw err;
    }
    await Promise.all(works.map((w) => w.confirms.flush()));
    for (const work of works.filter((w) => w.invalidTokens.length > 0)) {
      // Later campaigns skip them (reason token-invalid); losing this on a crash only costs one more refused send.
      await this.deps.gate
        .markTokensInvalid(work.provider.name, work.invalidTokens)
        .catch((err) => log.warn({ err: describeError(err) }, 'could not record invalid tokens'));
    }
    const failure = works.find((w) => w.confirms.failure)?.confirms.failure;
    if (failure) {
      await ledger.releasePage(ref, page.token, recipients.length, settle).catch(() => undefined);
      throw failure;
    }

    const left = await ledger.releasePage(ref, page.token, recipients.length, settle);
    events.emit('page:released', { ...ref, pending: left.pending });
    if (left.markedUnknown > 0) {
      log.warn({ count: left.markedUnknown }, 'recipients were left in flight with no confirm recorded; now unknown');
      events.emit('recipients:unknown', { ...ref, count: left.markedUnknown });
    }
    if (works.some((w) => w.confirms.runCompleted)) {
      await this.deps.runs.markInactive(ref.campaignId, ref.runId);
      events.emit('run:completed', { campaignId: ref.campaignId, runId: ref.runId });
      log.info({}, 'run completed');
    }
    if (works.some((w) => w.confirms.fenced) || halt?.kind === 'fenced') {
      events.emit('lease:fenced', ref);
      log.warn({}, 'lost the page lease; another worker owns the page now');
      return { kind: 'fenced' };
    }
    if (halt?.kind === 'inactive') return { kind: 'inactive', status: halt.status };
    await pump.fill(ref.campaignId, ref.runId);
    if (left.pending === 0) return { kind: 'done' };
    if (halt?.kind === 'stopped' || stop.aborted) return { kind: 'stopped' };
    if (halt?.kind === 'unreplicated') return { kind: 'later', delayMs: Math.max(left.nextDueIn ?? 0, UNREPLICATED_BACKOFF_MS) };
    return { kind: 'later', delayMs: left.nextDueIn ?? 0 };
  }

  /**
   * Before any rate-limit permit is asked for: defers the due recipients who
   * must wait for their local time or the end of their quiet hours (their
   * records wait, and the page is parked until the earliest of them), and
   * expires those who could only be sent after the run's deadline; removes
   * them from `due`.
   */
  private async park(work: PageWork, due: number[]): Promise<Halt | null> {
    const { held, open } = this.deps.gate.timing(work.campaign, work.windows, work.recipients, due, Date.now());
    if (held.length === 0) return null;
    const halt = await this.claimAll(work, held);
    if (halt) return halt;
    due.splice(0, due.length, ...open);
    return null;
  }

  /** Directives that spend no permit (defer, skip, expire), PARK_BATCH to a ledger call. */
  private async claimAll(work: PageWork, directives: readonly ClaimDirective[]): Promise<Halt | null> {
    for (let i = 0; i < directives.length; i += PARK_BATCH) {
      const halt = this.halted(await this.claim(work, directives.slice(i, i + PARK_BATCH)));
      if (halt) return halt;
    }
    this.countGated(directives, work.ref);
    return null;
  }

  /** Past the deadline: what is still due is expired (the ledger checks the deadline on its own clock). */
  private expireDue(work: PageWork, due: readonly number[]): Promise<Halt | null> {
    return this.claimAll(
      work,
      due.map((index) => ({ index, op: 'expire' })),
    );
  }

  private pastDeadline(work: PageWork): boolean {
    return work.lastDeparture !== null && performance.now() >= work.lastDeparture;
  }

  private async claim(work: PageWork, directives: readonly ClaimDirective[]): Promise<ClaimResult> {
    const sentAt = performance.now();
    const claim = await this.deps.ledger.claim(
      work.ref,
      work.page.token,
      this.deps.options.leaseMs,
      directives,
      work.provider.limits.arrivalMarginMs,
      work.leg,
    );
    if (claim.kind === 'ok' || claim.kind === 'unreplicated') work.page.renewed(sentAt);
    // The Redis clock ran the claim after sentAt: the last departure it implies is no later than this.
    if (claim.kind === 'ok' && claim.msLeft !== null) work.lastDeparture = Math.min(work.lastDeparture ?? Infinity, sentAt + claim.msLeft);
    return claim;
  }

  private halted(claim: ClaimResult): Halt | null {
    if (claim.kind === 'fenced') return { kind: 'fenced' };
    if (claim.kind === 'inactive') return { kind: 'inactive', status: claim.status };
    if (claim.kind === 'unreplicated') return { kind: 'unreplicated', count: claim.count };
    return null;
  }

  /** Returns why sending stopped early, or null when every due recipient was sent. */
  private async sendDue(work: PageWork, due: readonly number[], stop: AbortSignal): Promise<Halt | null> {
    const { budget, options } = this.deps;
    const perRequest = work.provider.batch?.size ?? 1;
    const inflight = new Set<Promise<void>>();
    let halt: Halt | null = null;
    let relieved = false;
    try {
      let next = 0;
      while (next < due.length) {
        const pace = this.deps.paces.paceOf(work.ref.campaignId, work.ref.runId);
        // About two seconds from its end at its share of the pace (the run's first-pass pages share it).
        if (pace && !relieved && due.length - next <= (pace.tps * PACED_RELIEF_SECONDS) / this.deps.pump.pagesSharing(pace.tps, work.pageSize)) {
          relieved = true;
          await this.makeRoom(work);
        }
        halt = work.page.halt ?? (stop.aborted ? { kind: 'stopped' } : null);
        if (halt) break;
        if (this.pastDeadline(work)) {
          halt = await this.expireDue(work, due.slice(next));
          break;
        }
        let allotment: Allotment;
        try {
          allotment = await budget.allot(
            work.provider,
            priorityClass(work.campaign.priority),
            work.flow,
            Math.min(due.length - next, Math.max(options.claimBatch, perRequest)),
            stop,
            pace,
          );
        } catch (err) {
          if (!(err instanceof StopRequested)) throw err;
          halt = { kind: 'stopped' };
          break;
        }
        try {
          const batch = due.slice(next, next + allotment.recipients);
          next += batch.length;
          halt = await this.claimAndSend(work, batch, allotment, inflight);
        } finally {
          allotment.release();
        }
        if (halt) break;
      }
      await Promise.all(inflight);
    } catch (err) {
      await Promise.allSettled(inflight);
      throw err;
    }
    return halt;
  }

  /** Leaves the run's first-pass window early and lets the next page in (best effort: the page's release does it anyway). */
  private async makeRoom(work: PageWork): Promise<void> {
    try {
      await this.deps.runs.leaveFirstPass(work.ref);
      await this.deps.pump.fill(work.ref.campaignId, work.ref.runId);
    } catch (err) {
      work.log.warn({ err: describeError(err) }, 'could not let the next page of the paced run in early');
    }
  }

  /** Claims `batch` (what the gate lets through) and starts one request per group of it on the allotment's slots and permits. */
  private async claimAndSend(work: PageWork, batch: readonly number[], allotment: Allotment, inflight: Set<Promise<void>>): Promise<Halt | null> {
    // Permits may come a little ahead of their time: claim just before the
    // first may be used, so recipients are in flight as briefly as possible.
    await sleepUntil(allotment.firstStart - CLAIM_AHEAD_MS);
    if (!work.page.live) return work.page.halt ?? { kind: 'fenced' };
    const gate = await this.deps.gate.decide(work.campaign, work.windows, work.provider, work.recipients, batch, work.countedOf, Date.now());
    await this.render(work, gate);
    let claim: ClaimResult | null = null;
    try {
      claim = await this.claim(work, gate.directives);
    } finally {
      await this.returnCapCounts(work, gate, claim);
    }
    if (claim.kind !== 'ok') {
      const halt = this.halted(claim)!;
      if (halt.kind === 'unreplicated') this.unreplicated(work, halt.count);
      return halt;
    }
    this.countGated(gate.directives, work.ref);
    if (claim.claimed.length > 0) this.deps.events.emit('ledger:transitions', { to: 'claimed', count: claim.claimed.length });
    for (let i = 0; i < claim.claimed.length; i += allotment.perRequest) {
      const group = claim.claimed.slice(i, i + allotment.perRequest);
      const task: Promise<void> = this.sendGroup(work, group, allotment.take(group.length)).finally(() => inflight.delete(task));
      inflight.add(task);
    }
    return null;
  }

  /**
   * Renders the message of each recipient about to be claimed; one whose
   * message does not render (a missing variable) is skipped, reason
   * `render-error`, with the variable named, never sent half-filled.
   */
  private async render(work: PageWork, gate: GateDecision): Promise<void> {
    await this.renderNative(work, gate);
    if (work.template.fixed) return;
    const context = renderContext(work.campaign, work.ref.runId, Date.now());
    // A slow template does not hold the event loop (lease renewals, other pages' confirms) for long.
    const slice = new TimeSlice(RENDER_SLICE_MS);
    for (const [i, d] of gate.directives.entries()) {
      if (d.op !== 'claim') continue;
      const result = work.template.render(recipientRecord(work.recipients[d.index]!), context);
      if (result.ok) {
        work.rendered.set(d.index, result.message);
        // A record's locale code names one of the run's (main message's) tags: a leg's own variants are not recorded.
        gate.directives[i] = { ...d, locale: work.leg === 0 ? work.template.localeCode(result.locale) : 0 };
      } else gate.directives[i] = { index: d.index, op: 'skip', reason: REASONS['render-error'], detail: result.error };
      await slice.yieldIfDue();
    }
  }

  /** The SMS text of each recipient about to be claimed, for a provider's own re-send; one that does not render goes without (pushq's own leg then covers a refusal). */
  private async renderNative(work: PageWork, gate: GateDecision): Promise<void> {
    const native = work.native;
    if (!native || native.template.fixed) return;
    const context = renderContext(work.campaign, work.ref.runId, Date.now());
    const slice = new TimeSlice(RENDER_SLICE_MS);
    for (const d of gate.directives) {
      if (d.op !== 'claim') continue;
      const result = native.template.render(recipientRecord(work.recipients[d.index]!), context);
      if (result.ok) native.rendered.set(d.index, result.message);
      await slice.yieldIfDue();
    }
  }

  /** Frequency-cap counts taken for recipients the claim did not take go back (whatever became of the claim). */
  private async returnCapCounts(work: PageWork, gate: GateDecision, claim: ClaimResult | null): Promise<void> {
    if (!gate.cap || gate.reserved.size === 0) return;
    const taken = new Set(claim?.kind === 'ok' ? claim.claimed.map((c) => c.index) : []);
    const unused = [...gate.reserved].filter(([index]) => !taken.has(index)).map(([, reservation]) => reservation);
    if (unused.length === 0) return;
    await this.deps.caps
      .release(gate.cap, unused)
      .catch((err) =>
        work.log.warn({ err: describeError(err), count: unused.length }, 'could not give back frequency-cap counts (the cap errs towards sending less)'),
      );
  }

  private lastUnreplicatedLog = 0;

  private unreplicated(work: PageWork, count: number): void {
    this.deps.events.emit('claims:unreplicated', { count });
    const now = performance.now();
    if (now - this.lastUnreplicatedLog < 5000) return;
    this.lastUnreplicatedLog = now;
    work.log.error({ count }, 'claims not replicated: too few replicas acknowledged them in time (REDIS_WAIT_REPLICAS); nothing is sent until they do');
  }

  private countGated(directives: readonly ClaimDirective[], ref: PageRef): void {
    const held = new Map<string, number>();
    for (const d of directives) {
      if (d.op === 'claim') continue;
      const key =
        d.op === 'skip'
          ? `skipped|${reasonName(d.reason)}`
          : d.op === 'expire'
            ? 'skipped|expired'
            : `deferred|${reasonName(d.reason ?? REASONS['quiet-hours'])}`;
      held.set(key, (held.get(key) ?? 0) + 1);
    }
    for (const [key, count] of held) {
      const [outcome, reason] = key.split('|') as ['skipped' | 'deferred', string];
      this.deps.series?.add(ref, outcome, count);
      this.deps.events.emit('ledger:transitions', { to: outcome, count });
      this.deps.events.emit('recipients:held', { outcome, reason, count });
    }
  }

  /**
   * One request to the provider for `group` (one recipient, or several for a
   * batching provider) on its share of slots and permits, then one ledger
   * entry per recipient. The share is returned on every path.
   */
  private async sendGroup(work: PageWork, group: readonly Claimed[], share: RequestShare): Promise<void> {
    const { events, limiter } = { events: this.deps.events, limiter: this.deps.budget.limiter };
    const { ref, campaign, provider, log } = work;
    const requests: SendRequest[] = group.map(({ index }) => {
      const recipient = recipientRecord(work.recipients[index]!);
      return {
        idempotencyKey: work.keyOf(index, recipient.id),
        campaignId: ref.campaignId,
        runId: ref.runId,
        recipient,
        message: work.rendered.get(index) ?? work.message,
        kind: campaign.kind,
        ...(work.native ? nativeText(work.native, index) : {}),
      };
    });
    for (const { index } of group) {
      work.rendered.delete(index);
      work.native?.rendered.delete(index);
    }
    let outcomes: SendOutcome[] | null = null;
    let unsent: Settlement | null = null;
    let durationMs = 0;
    // When the request left this process (the last time, for a provider that had to send it twice).
    let departedAt: number | undefined;
    const departed = (at: number) => {
      departedAt = Math.max(departedAt ?? at, at);
    };
    try {
      // A permit may be handed out a few ms before it is free: the request waits for the last of its permits.
      await sleepUntil(share.notBefore);
      const started = performance.now();
      if (!work.page.live) {
        unsent = { outcome: 'unclaim', delayMs: 0, code: 'LEASE_UNCERTAIN', message: 'the page lease may have been lost; not sent' };
      } else if (work.lastDeparture !== null && started > work.lastDeparture) {
        // Back to pending, unsent: the page's next pass expires it.
        unsent = { outcome: 'unclaim', delayMs: 0, code: 'EXPIRED', message: "the run's deadline came before the request could leave; not sent" };
      } else if (started + provider.limits.timeoutMs > share.usableUntil) {
        // A permit could expire while the request is out: never send on it.
        unsent = { outcome: 'unclaim', delayMs: 0, code: 'PERMIT_EXPIRED', message: 'rate-limit permit too close to expiry; not sent' };
      } else {
        try {
          outcomes = requests.length > 1 && provider.sendBatch ? await provider.sendBatch(requests, departed) : [await provider.send(requests[0]!, departed)];
          if (outcomes.length !== requests.length)
            throw new Error(`provider ${provider.name} answered ${outcomes.length} outcomes for ${requests.length} recipients`);
        } catch (err) {
          // A provider adapter that throws has a bug; the request may have gone out, so retry with the same key.
          outcomes = requests.map(() => ({ kind: 'transient', code: 'PROVIDER_ERROR', message: describeError(err) }));
        }
        durationMs = performance.now() - started;
        share.complete(share.permits.length === outcomes.length ? outcomes.map(healthOf) : healthOfRequest(outcomes), departedAt);
      }
    } finally {
      // Completed above, or never used: given back (a no-op when completed).
      share.giveBack();
    }
    group.forEach(({ index, attempt }, i) => {
      const outcome: SendOutcome = outcomes?.[i] ?? { kind: 'not-sent', code: unsent!.code, message: unsent!.message };
      events.emit('send:done', { provider: provider.name, outcome: outcome.kind, code: outcome.kind === 'sent' ? undefined : outcome.code, durationMs });
      if (outcome.kind !== 'sent') {
        // Debug only, one line per answer that was not a plain success; the logger redacts tokens and phone numbers.
        log.debug({ recipient: requests[i]!.recipient, outcome }, 'provider did not accept a send');
      }
      if (outcome.kind === 'sent' && outcome.messageId && work.runNo !== null) {
        this.deps.messageIds?.add(provider.name, { messageId: outcome.messageId, runNo: work.runNo, position: ref.page * work.pageSize + index });
      }
      if (outcome.kind === 'permanent' && outcome.tokenInvalid) {
        const address = provider.address?.(requests[i]!.recipient);
        if (address) work.invalidTokens.push(address);
      }
      const settled = unsent ?? settlement(outcome, attempt, provider.retry);
      work.confirms.add({ index, attempt, ...settled });
      if (settled.outcome !== 'unclaim') this.deps.series?.add(ref, settled.outcome);
      events.emit('ledger:transitions', { to: settled.outcome, count: 1 });
    });
    const pauseFor = outcomes ? pushback(outcomes) : null;
    if (pauseFor !== null) limiter.pause(provider.name, pauseFor).catch((err) => log.warn({ err: describeError(err) }, 'could not pause the provider'));
  }
}

/** A recipient's text for a provider's own SMS re-send: rendered for them, or the fixed text. */
function nativeText(native: NonNullable<PageWork['native']>, index: number): Pick<SendRequest, 'fallback'> {
  const text = native.template.fixed ? native.message : native.rendered.get(index);
  return text ? { fallback: text } : {};
}
