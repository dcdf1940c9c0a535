/**
 * What the use cases need from the outside world. Adapters (Redis, BullMQ,
 * undici, express) implement these; tests of the use cases run them against
 * the real adapters on a real Redis.
 */
import type { LegCounts, Legs } from '../domain/fallback.js';
import type { Campaign, CampaignSettings, CampaignStatus, Message, PriorityClass, RecipientLayout, RunStatus } from '../domain/campaign.js';
import type { DeferReason, FrequencyCap, ReasonName } from '../domain/respect.js';
import type { DeliverAt } from '../domain/windows.js';
import type { ScheduleSpec } from '../domain/schedule.js';
import type { LedgerRecord, RunCounts } from '../domain/ledger.js';
import type { StoredRecipient } from '../domain/recipient.js';
import type { SendOutcome } from '../domain/send-outcome.js';
import type { InDoubtPolicy, ProviderHealth, RecordOutcome, RetryRules } from '../domain/send-rules.js';
import type { Cursor, OutboxEntry } from '../domain/outbox.js';
import type { EventType, WebhookEndpoint } from '../domain/webhooks.js';

// ── logging ──────────────────────────────────────────────────────────────────

/** The slice of a pino logger the use cases rely on. */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

// ── campaigns ────────────────────────────────────────────────────────────────

export interface NewCampaign extends CampaignSettings, Pick<Campaign, 'id' | 'listFields' | 'templated'> {
  createdAt: number;
  layout: RecipientLayout;
}

/**
 * An entry of a campaign's outbox: what happened to one of its runs, in the
 * step that made it happen — a run event, or (`recipients`) the recipient
 * events of one ledger step that some webhook endpoint subscribes to.
 */
export interface CampaignEvent {
  /** The stream id: increasing, the cursor for the next read. */
  id: string;
  type: 'run.started' | 'run.paused' | 'run.resumed' | 'run.cancelled' | 'run.completed' | 'run.stuck' | 'schedule.skipped' | 'recipients';
  runId: string;
  at: string;
  /**
   * What the type carries: `trigger` and `total` (started), `counts`
   * (completed), `skipped` and `unknown` (cancelled), `pending` and `idleMs`
   * (stuck), `occurrence` and `reason` (schedule.skipped); `events`
   * (recipients: `{ type, recipientId }` each).
   */
  data: Record<string, unknown>;
}

export interface CampaignPage {
  items: Campaign[];
  /** Pass back as `cursor` for the next page; null when this was the last. */
  nextCursor: string | null;
}

export interface OccurrenceEntry {
  /** The occurrence (ISO). */
  at: string;
  outcome: 'ran' | 'skipped';
  /** Why it was skipped: misfire, previous-run-active, paused, no-recipients, … */
  reason?: string;
  runId?: string;
  /** When the occurrence was handled (ISO). */
  handledAt: string;
}

export interface CampaignStore {
  /** Writes the campaign and all its recipients atomically: all or nothing (null: the list is in place already). */
  create(campaign: NewCampaign, recipients: readonly StoredRecipient[] | null): Promise<void>;
  get(id: string): Promise<Campaign | null>;
  /** Newest first. */
  list(limit: number, cursor?: string): Promise<CampaignPage>;
  readPage(campaignId: string, version: number, page: number): Promise<StoredRecipient[]>;
  /** Position of a recipient in one version of the campaign's list, or null. */
  findPosition(campaignId: string, layout: RecipientLayout, recipientId: string): Promise<number | null>;
  /**
   * Starts writing a new version of the list beside the current one (an
   * upload, an edit, a retry run's list); `Lifecycle.swapRecipients` or a run
   * makes it live. `expectedRows` sizes its index; a guess is fine.
   */
  beginStaging(campaignId: string, expectedRows: number, pageSize: number): Promise<Staging>;
  /** Drops lists being staged whose writer vanished more than `olderThanMs` ago. */
  dropAbandonedStagings(olderThanMs: number): Promise<number>;
  dropRecipients(campaignId: string, layout: RecipientLayout): Promise<void>;
  /** Copies the current list of `from` as version 1 of campaign `toId`. */
  copyRecipients(from: Campaign, toId: string): Promise<void>;
  recordOccurrence(campaignId: string, entry: OccurrenceEntry): Promise<void>;
  /** The campaign's outbox entries after `after` (a stream id; from the oldest kept without), oldest first, at most `limit`. */
  events(campaignId: string, after: string | null, limit: number): Promise<OutboxEntry[]>;
  /** Remembers that the dry run with this fingerprint found every recipient renders (for `ttlMs`). */
  rememberCleanDryRun(campaignId: string, fingerprint: string, ttlMs: number): Promise<void>;
  /** The fingerprint of the last clean dry run still remembered, or null. */
  lastCleanDryRun(campaignId: string): Promise<string | null>;
  /** The next test send's number (1, 2, …): its run is `test-<n>`; null when the campaign is gone. */
  nextTestSend(campaignId: string): Promise<number | null>;
  /** Newest first. */
  occurrences(campaignId: string, limit: number): Promise<OccurrenceEntry[]>;
  /** Newest first. */
  runIds(campaignId: string, limit: number): Promise<string[]>;
}

export interface Staging {
  readonly version: number;
  /** Adds rows in order; answers for each whether it was new (true) or a duplicate of an earlier one. */
  add(rows: readonly StoredRecipient[]): Promise<boolean[]>;
  /** Writes what is left and answers the layout of the staged list. */
  finish(): Promise<RecipientLayout>;
  /** The field names its recipients have (null: too many to keep). */
  fields(): string[] | null;
  /** The list is live now: stop tracking it as staged. */
  commit(): Promise<void>;
  /** Drops everything staged. */
  abort(): Promise<void>;
}

// ── recipient respect ───────────────────────────────────────────────────────

export interface Suppressions {
  /** For each id, the first of `lists` that holds it, or undefined. */
  find(lists: readonly string[], ids: readonly string[]): Promise<Array<string | undefined>>;
  add(list: string, ids: readonly string[]): Promise<number>;
  remove(list: string, ids: readonly string[]): Promise<number>;
  members(list: string, cursor: string, limit: number): Promise<{ ids: string[]; nextCursor: string | null }>;
  lists(): Promise<Array<{ name: string; size: number }>>;
  clear(list: string): Promise<void>;
  /**
   * Replaces a list whole: `fill` adds the new ids (answering how many were
   * new) beside the current list, which is swapped for them in one step once
   * `fill` returns; if it throws, the list is left as it was.
   */
  replace(list: string, fill: (add: (ids: readonly string[]) => Promise<number>) => Promise<void>): Promise<number>;
}

/** A message counted against a frequency cap: the recipient, and the bucket it was counted in. */
export interface CapReservation {
  id: string;
  bucket: number;
}

export interface FrequencyCaps {
  /** Counts one message for each id that fits the cap; answers per id its reservation, or null when over the cap. */
  reserve(cap: FrequencyCap, ids: readonly string[]): Promise<Array<CapReservation | null>>;
  /** Gives back messages reserved whose sends did not happen, each to the bucket it was counted in. */
  release(cap: FrequencyCap, reservations: readonly CapReservation[]): Promise<void>;
}

// ── metrics ─────────────────────────────────────────────────────────────────

/** Where worker processes leave their metrics for the API to serve, and so say they are alive. */
export interface MetricsBoard {
  publish(instance: string, snapshot: string, ttlMs: number): Promise<void>;
  /** Instances that published within the last `withinMs`. */
  recent(withinMs: number): Promise<string[]>;
  snapshots(instances: readonly string[]): Promise<Array<string | null>>;
}

// ── lifecycle: status changes, each one atomic step ─────────────────────────

export type Transition<T = object> =
  ({ ok: true; status: CampaignStatus } & T) | { ok: false; reason: 'missing' | 'state' | 'moved'; status?: CampaignStatus; message?: string };

/** What a campaign's schedule was before a change: enough to put it back. */
export interface ScheduleBefore {
  schedule: ScheduleSpec | null;
  status: CampaignStatus;
  version: number;
}

export interface Lifecycle {
  /** Sets (null: clears) the schedule; `expectVersion` makes a clear apply only to that schedule. */
  setSchedule(campaignId: string, spec: ScheduleSpec | null, expectVersion?: number): Promise<Transition<{ version: number; before: ScheduleBefore }>>;
  /**
   * Undoes a setSchedule whose scheduler write failed: the schedule, status
   * and version as they were, if nothing changed the schedule since (it is
   * still at `version`). False when something did.
   */
  restoreSchedule(campaignId: string, version: number, before: ScheduleBefore): Promise<boolean>;
  pause(campaignId: string, latestRunId: string | null): Promise<Transition>;
  /** `idleStatus`: where a campaign paused between runs goes back to (scheduled, or draft when nothing is due). */
  resume(campaignId: string, latestRunId: string | null, idleStatus: 'scheduled' | 'draft'): Promise<Transition<{ gen?: number; pages?: number[] }>>;
  cancel(campaignId: string, latestRunId: string | null): Promise<Transition>;
  edit(campaignId: string, fields: Record<string, string>): Promise<Transition>;
  /** Sets the campaign's pace (tps or spread, null: none), in any state; its latest run, sending or paused, takes it at once. */
  setPace(campaignId: string, latestRunId: string | null, pace: { tps: number | null; spreadMs: number | null }): Promise<Transition>;
  /** Makes a staged list current; `dropVersion` is the old version when no run reads it any more. */
  swapRecipients(
    campaignId: string,
    latestRunId: string | null,
    layout: RecipientLayout,
    /** Other fields of the campaign changed in the same step (an edit that replaces the list too). */
    fields?: Record<string, string>,
  ): Promise<Transition<{ dropVersion: number | null }>>;
}

export interface Scheduler {
  /** Creates or replaces the campaign's one schedule (BullMQ job scheduler). */
  set(campaignId: string, spec: ScheduleSpec, version: number): Promise<void>;
  remove(campaignId: string): Promise<void>;
}

// ── runs ────────────────────────────────────────────────────────────────────

export interface PageRef {
  campaignId: string;
  runId: string;
  page: number;
}

export interface RunState {
  id: string;
  campaignId: string;
  status: RunStatus;
  trigger: string;
  createdAt: number;
  completedAt: number | null;
  /** Last time a recipient of the run changed state. */
  activeAt: number;
  counts: RunCounts;
  pages: number;
  pageSize: number;
  /** Next page to enqueue. */
  cursor: number;
  /** Enqueue generation: bumped when pages are enqueued again, so job ids stay fresh. */
  gen: number;
  priorityClass: PriorityClass;
  /** The version of the recipient list this run sends to, and its layout. */
  recipients: RecipientLayout;
  /** Since when the supervisor has seen no progress although recipients are pending (the stuck-run alarm). */
  stuckSince: number | null;
  /** Pending recipients waiting for their quiet hours to end (a part of `pending`), and the latest such end. */
  deferred: number;
  deferredUntil: number | null;
  /** `skipped` broken down by reason (names of domain/respect.ts REASONS). */
  skippedBy: Partial<Record<ReasonName, number>>;
  /** When it completed or was cancelled; null while it sends. */
  finishedAt: number | null;
  /** Its recipients' results left Redis for the archive (`kind`: dir, postgres): only this summary stays. */
  archived: { kind: string; count: number; at: number } | null;
  /** The message's locale tags when the run began, sorted: a ledger record's locale code k names the k-th. */
  locales: string[];
  /** The run's number, which its recipients' idempotency keys carry (null: a run made before numbers). */
  no: number | null;
  /** When it was due (a scheduled occurrence's time, a launch's moment): local times and expiresAfter count from it. */
  startAt: number;
  /** Nothing is sent after this (ms); null: no deadline. */
  expiresAt: number | null;
  /** Its pace at the provider, recipients a second; null: none of its own. */
  pace: number | null;
  /** Its local-time delivery (its campaign's when it began); null: none. */
  deliverAt: DeliverAt | null;
  /** Pending recipients waiting for their time, by reason (parts of `deferred`). */
  deferredBy: Partial<Record<DeferReason, number>>;
  /** Counts by fallback leg (domain/fallback.ts); null: the run has no fallback chain. */
  byLeg: LegCounts[] | null;
  /** The providers of its legs, in order, as they were when it was made; null: no fallback chain. */
  chain: string[] | null;
}

export interface CreateRunOptions {
  allowedFrom: readonly CampaignStatus[];
  /** The campaign's status once the run completes; null: the status it had when the run started. */
  statusAfter: CampaignStatus | null;
  trigger: string;
  /** A list of its own (a retry run's); by default the campaign's current list. */
  recipients?: RecipientLayout;
  /** A run aside (a test send, with a list of its own): the campaign's status and latest run stay as they are. */
  aside?: boolean;
  /** The campaign's `updatedAt` (ms) as the caller checked it: refused (`changed`) when it changed since (a PATCH, an upload). */
  unchangedSince?: number;
  /** When the run was due (a scheduled occurrence's time; default now): its deadline and local times count from it. */
  startAt?: number;
}

export type CreateRunResult =
  | { ok: true; createdAt: number }
  /** `expired`: its deadline (`deadline`, ms) passed before it could start; no run was made. */
  | { ok: false; reason: 'missing' | 'state' | 'exists' | 'empty' | 'changed' | 'expired'; status?: CampaignStatus; deadline?: number };

/** What the supervisor's stall check found: pages to enqueue again, or a run only waiting for parked recipients to be due. */
export type KickResult = { kind: 'kicked'; gen: number; pages: number[] } | { kind: 'parked'; wakesIn: number } | { kind: 'fresh' } | { kind: 'inactive' };

/** The registry of runs: their state, their fan-out cursor, and which are not finished yet. */
export interface PageCounts {
  open: number;
  held: number;
  waiting: number;
}

export interface Runs {
  createRun(campaignId: string, runId: string, opts: CreateRunOptions): Promise<CreateRunResult>;
  /** The run a number names (a receipt's key carries it), if it is still in Redis. */
  runByNumber(runNo: number): Promise<{ campaignId: string; runId: string } | null>;
  getRun(campaignId: string, runId: string): Promise<RunState | null>;
  /** The pace of each run (null: none, or no such run), in one round trip. */
  paces(runs: ReadonlyArray<{ campaignId: string; runId: string }>): Promise<Array<number | null>>;
  /** A run's local-time waves (lua/claim.lua): each due instant (ms) and the recipients deferred to it, earliest first. */
  waves(campaignId: string, runId: string): Promise<Array<{ at: number; recipients: number }>>;
  /** Compare-and-set of the fan-out cursor after pages [from, to) were enqueued. */
  advanceCursor(campaignId: string, runId: string, from: number, to: number): Promise<'ok' | 'moved' | 'inactive'>;
  /** A page of a paced run nearly through its first pass makes room in the run's window for the next (src/app/send-page.ts). */
  leaveFirstPass(ref: PageRef): Promise<void>;
  /**
   * Pages in their first pass (`open`), pages a worker holds right now in any
   * pass (`held`), and first-pass pages no worker holds yet (`waiting`).
   */
  pageCounts(campaignId: string, runId: string): Promise<PageCounts>;
  /** Supervisor remedy for a run with no progress for `stallMs`: see lua/kick-run.lua. */
  kickStalled(campaignId: string, runId: string, stallMs: number): Promise<KickResult>;
  markStuck(campaignId: string, runId: string, stuck: boolean): Promise<void>;
  /** Runs not finished yet, across all campaigns. */
  activeRuns(): Promise<Array<{ campaignId: string; runId: string }>>;
  /** True when the run was not listed yet. */
  markActive(campaignId: string, runId: string): Promise<boolean>;
  /** Off the worklist; a finished run goes on the retention list (Retention), to be archived in time. */
  markInactive(campaignId: string, runId: string): Promise<void>;
}

/** Named locks with a time to live (one supervisor at a time, one reschedule of a campaign at a time). */
export interface Locks {
  /** True when this caller holds `name` for the next `ttlMs`. */
  tryLock(name: string, ttlMs: number): Promise<boolean>;
  /** Takes `name` for `ttlMs`, waiting up to `waitMs` for another holder; returns the token to unlock with, or null. */
  lock(name: string, ttlMs: number, waitMs: number): Promise<string | null>;
  unlock(name: string, token: string): Promise<void>;
  /** Keeps `name` for `ttlMs` more, if `token` still holds it; false when it does not. */
  extend(name: string, token: string, ttlMs: number): Promise<boolean>;
}

/** The one clock every process agrees on (the Redis server's). */
export interface Clock {
  serverTime(): Promise<number>;
}

// ── the ledger: one recipient's fate in one run ─────────────────────────────

/**
 * How the ledger settles recipients that were in flight when nobody was left
 * to hear the answer (their worker died, or its confirm was lost): by the
 * provider's in-doubt policy, resent only while attempts are left.
 */
export interface SettlePolicy {
  inDoubt: InDoubtPolicy;
  maxAttempts: number;
}

/** How many times a recipient may be tried (transient failures) and handed back unsent at the provider's word (429s, refused streams). */
export interface ConfirmPolicy {
  maxAttempts: number;
  maxRequeues: number;
  /** The fallback leg the entries were sent on (domain/fallback.ts); 0 by default. */
  leg?: number;
}

export type AcquireResult =
  /** `elapsed`: ms since the run began, the time axis of the records (domain/ledger.ts). */
  | {
      kind: 'ok';
      records: Buffer;
      elapsed: number;
      recipientsVersion: number;
      markedUnknown: number;
      /** The run's number (its recipients' keys carry it: src/domain/ids.ts receiptKey); null for a run made before numbers. */
      runNo: number | null;
      /** Each recipient's legs byte (domain/fallback.ts; empty: every recipient on leg 0). */
      legs: Buffer;
      pageSize: number;
      /** When the run was due (ms): its recipients' local times count from it. */
      startAt: number;
      /** ms until the run's deadline on the Redis clock when the page was taken; null: none. */
      deadlineIn: number | null;
      /** The run's local-time delivery (its campaign's when it began); null: none. */
      deliverAt: DeliverAt | null;
      /** The run's pace now (recipients a second); null: none. */
      pace: number | null;
    }
  | { kind: 'busy'; delayMs: number }
  | { kind: 'inactive'; status: string; markedUnknown: number }
  /** A newer job of this page exists (it was enqueued again after a takeover): this one has nothing to do. */
  | { kind: 'superseded' }
  | { kind: 'missing' };

/** A recipient claimed for sending, with the number of this attempt. */
export interface Claimed {
  index: number;
  attempt: number;
}

export type ClaimResult =
  /** `msLeft`: until the run's deadline less the guard, on the Redis clock when the claim ran (null: no deadline). */
  | { kind: 'ok'; claimed: Claimed[]; msLeft: number | null }
  | { kind: 'fenced' }
  | { kind: 'inactive'; status: string }
  /** Not enough replicas acknowledged the claim in time: nobody was claimed (REDIS_WAIT_REPLICAS). */
  | { kind: 'unreplicated'; count: number };

export type ClaimDirective =
  /** `counted`: just counted against a frequency cap (the record remembers, so a retry is not counted again). */
  | { index: number; op: 'claim'; counted?: boolean; locale?: number }
  /** Quiet hours or local time (`reason`, a REASONS code; quiet hours by default): due again at `until` (epoch ms, read on the Redis clock like every ledger time). */
  | { index: number; op: 'defer'; until: number; reason?: number }
  /** Past the run's deadline: skipped, reason `expired` (before it: left as it is). */
  | { index: number; op: 'expire' }
  /** Never sent in this run: `reason` is a code of domain/respect.ts REASONS. */
  | { index: number; op: 'skip'; reason: number; detail: string };

/** What became of one claimed recipient (see domain/send-rules.ts RecordOutcome). */
export type ConfirmOutcome = RecordOutcome;

export interface ConfirmEntry {
  index: number;
  /** The attempt as claimed: lets the ledger tell a lost claim from a confirm it already applied. */
  attempt: number;
  outcome: ConfirmOutcome;
  /** A `retry` after an answer in doubt: the recipient may have been delivered, so it can only end sent or unknown. */
  inDoubt?: boolean;
  /** A `failed` because the token is dead or missing (a fallback chain may move on: domain/fallback.ts). */
  dead?: 'token-invalid' | 'no-token';
  delayMs: number;
  code: string;
  message: string;
}

export type ConfirmResult = { kind: 'ok'; runCompleted: boolean; applied: number } | { kind: 'fenced' };

/** A page lease this process holds. */
export interface HeldLease {
  ref: PageRef;
  token: string;
}

/** Per held lease: still this process's (and the run's status when it is not running any more), or taken over by another. */
export type LeaseRenewal = { kind: 'renewed' } | { kind: 'inactive'; status: string } | { kind: 'fenced' };

export interface ReleaseResult {
  pending: number;
  inflight: number;
  /** Ms until the earliest pending recipient is due (0: now), or null when none is pending. */
  nextDueIn: number | null;
  /** Recipients left in flight with nobody to confirm them, now unknown. */
  markedUnknown: number;
}

export interface ExpireResult {
  /** Pages whose lease had run out. */
  pages: number[];
  /** Recipients in flight on expired leases that became unknown, or pending again (`resend`). */
  unknown: number;
  resent: number;
  completed: boolean;
  /** Pages to enqueue again at once (the run is running), under generation `gen`. */
  requeue: { gen: number; pages: number[] } | null;
}

export interface LedgerEntry {
  record: LedgerRecord;
  /** Its fallback legs (domain/fallback.ts): the leg it is on and why it left each earlier one. Leg 0 when it never moved. */
  legs?: Legs;
  lastError: { code: string; message: string; attempts: number; at: number; requeues?: number } | null;
}

/**
 * The per-recipient ledger: who may be sent, who was. Every method is one
 * atomic step on the page it names, fenced by the page lease.
 */
export interface Ledger {
  acquirePage(ref: PageRef, token: string, options: { leaseMs: number; gen: number; settle: SettlePolicy }): Promise<AcquireResult>;
  /** Claims, defers or skips recipients of a page in one step (see lua/claim.lua); answers the claimed ones. Renews the lease. */
  /**
   * `deadlineGuardMs`: how long before the run's deadline a recipient stops
   * being claimed (what its request needs to reach the provider); a claim
   * after that expires it instead.
   */
  /** `leg`: the fallback leg the directives are for (domain/fallback.ts); a recipient on another is left alone. */
  claim(ref: PageRef, token: string, leaseMs: number, directives: readonly ClaimDirective[], deadlineGuardMs?: number, leg?: number): Promise<ClaimResult>;
  /** Records outcomes of claimed recipients (see lua/confirm.lua). Renews the lease. */
  confirm(ref: PageRef, token: string, leaseMs: number, policy: ConfirmPolicy, entries: readonly ConfirmEntry[]): Promise<ConfirmResult>;
  /** Renews every lease in one batch (one call per run). */
  renewLeases(leases: readonly HeldLease[], leaseMs: number): Promise<LeaseRenewal[]>;
  releasePage(ref: PageRef, token: string, size: number, settle: SettlePolicy): Promise<ReleaseResult>;
  /** Settles pages whose lease ran out, and completes the run when nothing is pending. */
  expireLeases(campaignId: string, runId: string, settle: SettlePolicy): Promise<ExpireResult>;
  /**
   * Past the run's deadline (running or paused): every recipient of pages
   * [from, to) still pending is skipped, reason `expired` (unknown when in
   * doubt); see lua/expire-pages.lua. `early`: the deadline has not passed
   * on the Redis clock, nothing changed.
   */
  expirePages(campaignId: string, runId: string, from: number, to: number): Promise<{ expired: number; unknown: number; completed: boolean; early: boolean }>;
  readEntry(campaignId: string, runId: string, position: number, pageSize: number): Promise<LedgerEntry>;
  /**
   * Sets the legs bytes of a page of a run about to be made (a retry run's
   * recipients start on the leg they failed on), unless the page has them
   * already: a run made by a racing call may have moved someone on since.
   */
  presetLegs(campaignId: string, runId: string, page: number, legs: Buffer): Promise<void>;
  /** Counts recipients a retry run started on a later leg (`legs`: one entry each) as having entered it. */
  countPresetLegs(campaignId: string, runId: string, legs: readonly number[]): Promise<void>;
  /** Removes the legs bytes of a run that was not made after all. */
  dropLegs(campaignId: string, runId: string, pages: number): Promise<void>;
  /** The entries of one page's `size` recipients, in order (two reads). */
  readPageEntries(campaignId: string, runId: string, page: number, pageSize: number, size: number): Promise<LedgerEntry[]>;
  /** Positions that ended failed or unknown, ascending, after `afterPosition`. */
  listBad(campaignId: string, runId: string, afterPosition: number, limit: number): Promise<number[]>;
  /** Providers' receipts for recipients of the run numbered `runNo`, by position, in order (lua/receipt.lua): one outcome each. */
  receipts(
    campaignId: string,
    runId: string,
    runNo: number,
    pageSize: number,
    /** `leg`: the fallback leg whose provider reported (0 by default); `resent`: that provider re-sent it by SMS itself. */
    receipts: ReadonlyArray<{ position: number; delivered: boolean; at: number; leg?: number; resent?: boolean }>,
  ): Promise<ReceiptOutcome[]>;
}

/**
 * What a receipt did: `applied` (recorded), `already` (a repeat, or after
 * delivered), `early` (before the worker recorded the send: kept for its
 * confirm), `conflict` (the ledger has the recipient failed, skipped or never
 * tried: nothing changed), `missing` (no such run, or not this number).
 */
export type ReceiptOutcome = 'applied' | 'already' | 'early' | 'conflict' | 'missing';

// ── queues ──────────────────────────────────────────────────────────────────

export interface PageJob {
  campaignId: string;
  runId: string;
  page: number;
  gen: number;
}

export interface PageQueueOptions {
  /** Jobs of a higher class (0 highest) are taken from the queue first. */
  priorityClass: PriorityClass;
}

export interface PageQueue {
  /** Idempotent: a job id is derived from (campaign, run, page, gen). */
  enqueuePages(jobs: readonly PageJob[], options: PageQueueOptions): Promise<void>;
}

// ── providers and the limiter ───────────────────────────────────────────────

export interface BreakerPolicy {
  /** Consecutive transient failures (all workers together) that open the circuit. */
  failures: number;
  /** First cool-down before a probe; doubles after each failed probe up to maxCoolDownMs. */
  coolDownMs: number;
  maxCoolDownMs: number;
}

export interface ProviderLimits {
  name: string;
  /** Hard cap in requests per sliding second, global across processes. */
  tps: number;
  /** Longest a single request may take. */
  timeoutMs: number;
  /**
   * How much later than the fastest request a request may be counted by the
   * provider once it left, beyond what its answer time shows: a permit rests
   * from its request's departure plus this (later when the answer came late,
   * never later than the answer).
   */
  arrivalMarginMs: number;
  breaker: BreakerPolicy;
}

/**
 * Told performance.now() when the request's last byte was handed to the
 * socket — the request's departure, which the permit's rest counts from. A
 * provider that cannot tell never calls it (the rest then counts from the
 * answer); one that makes a second request calls it again, and the last
 * departure counts.
 */
export type OnDeparted = (at: number) => void;

export interface SendRequest {
  idempotencyKey: string;
  campaignId: string;
  runId: string;
  recipient: { id: string } & Record<string, unknown>;
  message: Message;
  /** The campaign's kind (`advertising` messages carry the notices the law asks for, src/adapters/push/sms-provider.ts). */
  kind?: string;
  /**
   * For a provider that re-sends by SMS itself when its own channel cannot
   * deliver (`nativeFallback`): the recipient's rendered text of the
   * campaign's SMS fallback leg (domain/fallback.ts).
   */
  fallback?: Message;
}

export interface PushProvider {
  readonly name: string;
  readonly type: string;
  readonly limits: ProviderLimits;
  readonly retry: RetryPolicy;
  /** A provider whose requests carry several recipients: how many, and whether `tps` counts requests or messages. */
  readonly batch?: BatchPolicy;
  /** It re-sends as SMS itself what its channel cannot deliver, given the text (`SendRequest.fallback`): NHN's resendParameter. */
  readonly nativeFallback?: boolean;
  /**
   * The device token or phone number a recipient is reached at, for
   * providers that report it invalid: what goes on (and is checked against)
   * `token-invalid:<name>`, so a recipient who comes back with a new token is
   * sent again.
   */
  address?(recipient: SendRequest['recipient']): string | undefined;
  send(request: SendRequest, onDeparted?: OnDeparted): Promise<SendOutcome>;
  /** One request for all of `requests` (at most `batch.size`): one outcome each, in order. */
  sendBatch?(requests: readonly SendRequest[], onDeparted?: OnDeparted): Promise<SendOutcome[]>;
  close(): Promise<void>;
}

export interface ProviderRequestPreview {
  method: string;
  /** Where it goes: the provider's URL and path (APNs: the device path). */
  url: string;
  /** Headers as sent; credentials show as `[redacted]`. */
  headers: Record<string, string>;
  /** The body as JSON (parsed back from the exact bytes). */
  body: unknown;
}

/** What stands in for a credential in a preview. */
export const REDACTED = '[redacted]';

export interface BatchPolicy {
  size: number;
  countBy: 'request' | 'message';
}

/** A provider's retry rules: how answers settle (domain/send-rules.ts), and how often one recipient may be tried. */
export interface RetryPolicy extends RetryRules {
  /** Attempts per recipient before a transient failure becomes final. */
  maxAttempts: number;
  /** Times a recipient may be handed back unsent at the provider's word (429, a refused stream) before it fails. */
  maxRequeues: number;
}

export interface ProviderRegistry {
  get(name: string): PushProvider | undefined;
  names(): string[];
  /** The request provider `name` would make for `request`, built by the code its sender uses, from the configuration alone (secrets redacted). */
  preview?(name: string, request: SendRequest): ProviderRequestPreview | undefined;
}

export interface Permit {
  readonly provider: string;
  readonly id: string;
  /** The local pool (provider and priority class) the permit came from. */
  readonly pool: string;
  /** performance.now() before which the request must not start (the permit is still resting). */
  readonly notBefore: number;
  /** performance.now() after which the permit must not be used for a new request. */
  readonly usableUntil: number;
}

/** A campaign's own pace inside its provider's cap (domain/windows.ts): `key` names it (the campaign id). */
export interface FlowPace {
  key: string;
  /** Recipients (requests) a second; fractional for a spread. */
  tps: number;
}

/**
 * What a permit's rest counted from: its request's departure plus the
 * margin; the answer less the fastest answer time (the answer came late);
 * or the answer (no departure known, a connection's first turn, answer
 * times not yet settled, or the answer came before the margin was up).
 */
export type RestBasis = 'departure' | 'late-answer' | 'answer';

/** What a completed request says about the provider's health (feeds the circuit breaker). */
export type PermitOutcome = ProviderHealth;

export interface ProviderState {
  name: string;
  tps: number;
  /** Share of tps the limiter paces at now: below 1 after 429s, climbing back. */
  rate: number;
  pausedUntil: string | null;
  breaker: 'closed' | 'open' | 'half-open';
  /** When an open circuit lets a probe through. */
  openUntil: string | null;
  consecutiveFailures: number;
}

export interface RateLimiter {
  /**
   * Waits until at least one permit is free, then returns between 1 and
   * `want`. Priority class 0 is served first; a class waits while a higher
   * one is left wanting. Within a class, callers of different `flow`s (runs)
   * are served in turn, however many callers each flow has. A caller with
   * a `pace` gets only permits of that pace: at most ⌈tps⌉ in any sliding
   * second at the provider, `tps` on average, inside the provider's cap.
   */
  acquire(limits: ProviderLimits, want: number, priorityClass: PriorityClass, flow?: string, pace?: FlowPace | null): Promise<Permit[]>;
  /**
   * The request that used the permit has completed just now; it left this
   * process at `departedAt` (performance.now()) when the provider could tell.
   * The permit rests a second from when the provider may have counted it:
   * from the departure plus the provider's arrivalMarginMs, or later when the
   * answer came late; from now when nobody knows the departure.
   */
  complete(permit: Permit, outcome: PermitOutcome, departedAt?: number): void;
  /** The permit was never used for a request. */
  giveBack(permit: Permit): void;
  /** The provider asked us to slow down: hold all its permits for a while and halve the pace. */
  pause(provider: string, delayMs: number): Promise<void>;
  state(limits: ProviderLimits): Promise<ProviderState>;
  close(): Promise<void>;
}

// ── events out: webhook endpoints, the outbox's readers, dead letters ───────

/** Which recipient events a campaign's ledger steps write to its outbox (domain/webhooks.ts eventMask). */
export interface EventMasks {
  maskFor(campaignId: string): string;
}

/**
 * Providers' own message ids (an `http` provider's `messageId` in its 2xx
 * answer), kept for a while so a receipt that names only that id finds its
 * recipient: a run number and a position, by a fingerprint of the id.
 */
export interface MessageIds {
  remember(provider: string, entries: ReadonlyArray<{ messageId: string; runNo: number; position: number }>): Promise<void>;
  find(provider: string, messageId: string): Promise<{ runNo: number; position: number } | null>;
}

/** An endpoint as the API stores it (a file's are in the configuration), its secret beside it. */
export interface StoredWebhook extends WebhookEndpoint {
  secret: string;
  createdAt: number;
  updatedAt: number;
}

/** What every process shares of an endpoint, whichever its source. */
export interface WebhookState {
  /** Events of steps from this instant on are the endpoint's (its cursor's start in a campaign it has not read yet). */
  since: number;
  /** Bumped when it is enabled again: cursors of an older epoch are void (it starts again from `since`). */
  epoch: number;
  /** Disabled (the endpoint answered 410, or an operator said so): nothing is delivered, nothing is kept for it. */
  disabled: { at: number; reason: string } | null;
}

/** A delivery that exhausted its attempts: kept with the exact body, to be replayed. */
export interface DeadLetter {
  /** The delivery's id (`webhook-id`), as every attempt and any replay send it. */
  id: string;
  endpoint: string;
  campaignId: string;
  runId: string;
  type: EventType;
  /** How many events it carries. */
  count: number;
  body: string;
  attempts: number;
  /** The last HTTP status (null: no answer), and what went wrong. */
  lastStatus: number | null;
  lastError: string;
  firstAttemptAt: number;
  deadAt: number;
  /** When a replay's next attempt is due, while it is being replayed. */
  replay: { attempts: number; nextAt: number; firstAt: number } | null;
}

export interface WebhookStore {
  /** Endpoints made through the API. */
  list(): Promise<StoredWebhook[]>;
  /** Moves on every change of an endpoint or of a state: a cheap way to know the cached ones are current. */
  version(): Promise<number>;
  /** Creates (`create`: refused when the name is taken, answering false) or replaces an endpoint. */
  save(endpoint: StoredWebhook, create: boolean): Promise<boolean>;
  remove(name: string): Promise<boolean>;
  states(): Promise<Map<string, WebhookState>>;
  /** Notes an endpoint never seen before with `fresh` as its state; answers its state (the one there already, if any). */
  ensureState(name: string, fresh: WebhookState): Promise<WebhookState>;
  setState(name: string, state: WebhookState): Promise<void>;
  /** Removes an endpoint's state and dead letters (the endpoint is gone). */
  forget(name: string): Promise<void>;
  /** Keeps a dead letter (the same id again replaces it); the oldest go past `max`, answering how many went. */
  addDeadLetter(letter: DeadLetter, max: number): Promise<number>;
  /** Newest first, after the opaque cursor; `campaignId`: only that campaign's (a page may then hold fewer than `limit`, with a cursor to go on). */
  deadLetters(endpoint: string, limit: number, cursor?: string, campaignId?: string): Promise<{ items: DeadLetter[]; nextCursor: string | null }>;
  deadLetterCount(endpoint: string): Promise<number>;
  /** Marks dead letters (`ids`, or all with null) to be replayed from `at`; answers how many. */
  replay(endpoint: string, ids: readonly string[] | null, at: number): Promise<number>;
  /** Dead letters whose replay attempt is due. */
  replayDue(endpoint: string, now: number, limit: number): Promise<DeadLetter[]>;
  /** Records a replay attempt that failed (null `nextAt`: it stays a dead letter, its replay over). */
  updateDeadLetter(letter: DeadLetter): Promise<void>;
  /** A replay went through: the dead letter is gone. */
  removeDeadLetter(endpoint: string, id: string): Promise<void>;
}

/** One delivery attempt to an endpoint: the body, signed (Standard Webhooks) with the endpoint's secret under `id`. */
export interface WebhookRequest {
  url: string;
  id: string;
  body: string;
  secret: string;
  timeoutMs: number;
  /** Abandons the request (the process is stopping, or the deliverer lost its lease): answered with status null, `aborted`. */
  signal?: AbortSignal;
}

export interface WebhookAnswer {
  /** The HTTP status, or null when none came (timeout, connection refused). */
  status: number | null;
  /** What went wrong, when the status is not 2xx. */
  error: string | null;
  /** The request was abandoned before an answer (its `signal`): not an attempt that counts. */
  aborted?: boolean;
}

export interface WebhookClient {
  deliver(request: WebhookRequest): Promise<WebhookAnswer>;
  close(): Promise<void>;
}

/** An endpoint as a campaign's outbox scripts need it: its name, epoch, and where it starts without a cursor. */
export interface OutboxReader {
  name: string;
  epoch: number;
  /** A stream id: the endpoint's `since`. */
  start: string;
}

export type OutboxTake =
  | {
      kind: 'ok';
      /** Where the endpoint is, and in which of its epochs it got there (a cursor of an older epoch is void). */
      cursor: { epoch: number; cursor: Cursor } | null;
      /** The delivery it was making (JSON), if any. */
      delivery: string | null;
    }
  | { kind: 'busy'; ms: number };

/** The campaigns' outboxes as webhook dispatchers read them (one lease per endpoint and campaign). */
export interface Outbox {
  /** Campaigns whose outbox may hold undelivered events: with a run in progress, or marked (with their mark). */
  campaigns(limit: number): Promise<Array<{ campaignId: string; mark: number | null }>>;
  /** Marks a campaign as holding events to deliver (before the step that writes them). */
  mark(campaignId: string): Promise<void>;
  /** Unmarks it, unless it was marked again since `mark` was read. */
  unmark(campaignId: string, mark: number): Promise<boolean>;
  /** Unmarks every campaign (there is no endpoint to deliver to). */
  clearMarks(): Promise<void>;
  /**
   * The endpoints with something due in the campaign's outbox and no other
   * deliverer (`due`), and whether any endpoint has anything left at all
   * (`pending`: events after its cursor, or a delivery under way or waiting).
   */
  due(campaignId: string, readers: readonly OutboxReader[]): Promise<{ due: string[]; pending: boolean }>;
  take(campaignId: string, endpoint: string, token: string, leaseMs: number): Promise<OutboxTake>;
  saveDelivery(campaignId: string, endpoint: string, token: string, leaseMs: number, delivery: string): Promise<boolean>;
  advance(campaignId: string, endpoint: string, token: string, leaseMs: number, epoch: number, cursor: Cursor): Promise<boolean>;
  /** Keeps the lease `leaseMs` more; false when another deliverer has it. */
  renew(campaignId: string, endpoint: string, token: string, leaseMs: number): Promise<boolean>;
  release(campaignId: string, endpoint: string, token: string): Promise<void>;
  /**
   * Entries from the cursor on (its own entry too when the cursor is inside
   * it), oldest first, and — read with them — the newest entry the outbox's
   * bound pushed out (`lost`) and the newest run event among those (`lostRun`).
   */
  read(campaignId: string, from: Cursor, count: number): Promise<{ entries: OutboxEntry[]; lost: string | null; lostRun: string | null }>;
  /** Removes recipient entries every reader has passed, none newer than `before` (ms); `left`: recipient entries remain. */
  trim(campaignId: string, readers: readonly OutboxReader[], before: number): Promise<{ removed: number; left: boolean }>;
}

// ── data lifecycle: the results archive, retention and deletion ────────────

/** One recipient of a run, as the results export and the archive hold it (in list order). */
export interface ResultRow {
  id: string;
  state: string;
  attempts: number;
  reason?: string;
  reasonDetail?: string;
  /** The locale variant it was sent in (absent: the default message). */
  locale?: string;
  /** Sent, and what the provider's receipt said since (absent: no receipt). */
  delivery?: 'delivered' | 'undelivered';
  /** A run with a fallback chain: the provider of the leg it ended on (domain/fallback.ts). */
  provider?: string;
  /** For pending: when the next attempt is due; otherwise: when the state last changed. */
  updatedAt: string | null;
  lastError: { code: string; message: string; at: string | null } | null;
}

/** What the archive keeps of a run beside its rows: enough to show the run without Redis. */
export interface ArchivedRunSummary {
  campaignId: string;
  runId: string;
  status: RunStatus;
  trigger: string;
  createdAt: number;
  /** When it completed, or was cancelled. */
  finishedAt: number;
  counts: RunCounts;
  skippedBy: Partial<Record<ReasonName, number>>;
}

/** What a sink answers for a run it holds whole: the number of rows and the SHA-256 of their NDJSON lines. */
export interface ArchiveManifest {
  run: ArchivedRunSummary;
  count: number;
  /** Hex SHA-256 of the rows as NDJSON (`JSON.stringify(row) + "\n"` each): the results export's body before its summary line. */
  sha256: string;
  archivedAt: number;
}

/**
 * Where finished runs go when they leave Redis (a directory, or
 * PostgreSQL). `write` returns only once the run is durable and read back
 * whole; writing a run again replaces it, so a crash half-way and a second
 * attempt leave one copy.
 */
export interface ResultsArchive {
  /** Named in the run's summary (`archived`): `dir` or `postgres`. */
  readonly kind: string;
  write(run: ArchivedRunSummary, rows: AsyncIterable<ResultRow>): Promise<ArchiveManifest>;
  /** The manifest of a run held whole, or null. */
  manifest(campaignId: string, runId: string): Promise<ArchiveManifest | null>;
  /** The rows of a run held whole, in list order. */
  rows(campaignId: string, runId: string): AsyncIterable<ResultRow>;
  /** One recipient's row, or null. */
  find(campaignId: string, runId: string, recipientId: string): Promise<ResultRow | null>;
  /** Removes every run of a campaign; answers how many. */
  purge(campaignId: string): Promise<number>;
  close(): Promise<void>;
}

/** A finished run waiting for its retention to end. */
export interface RetainedRun {
  campaignId: string;
  runId: string;
  finishedAt: number;
}

/** Redis's side of retention and deletion: which runs are due, and removing what left for the archive. */
export interface Retention {
  /** Runs finished at or before `before`, oldest first. */
  due(before: number, limit: number): Promise<RetainedRun[]>;
  forget(campaignId: string, runId: string): Promise<void>;
  /**
   * One step: the run (finished, nothing in flight) now reads from the
   * archive; `dropList`: the campaign's list goes too (a one-off campaign's
   * last run). False when the run is not finished, or gone.
   */
  markArchived(campaignId: string, runId: string, manifest: ArchiveManifest, kind: string, dropList: boolean): Promise<boolean>;
  /** Keeps the newest `keep` runs of a campaign in Redis; older archived ones leave (their summary stays in the archive's manifest); answers how many left. */
  trimSummaries(campaignId: string, keep: number): Promise<number>;
  /** Removes the ledger of a run marked archived, in bounded steps. */
  dropRunData(campaignId: string, runId: string, pages: number): Promise<void>;
  /** Finished runs of every campaign not noted yet (runs that ended before retention existed), in bounded steps; answers how many. */
  backfill(): Promise<number>;
}

/** Campaigns being deleted: marked at once, removed in bounded steps by a worker. */
export interface Deletions {
  /** One step: the campaign (not running or paused, nothing in flight) is `deleting`; answers what it held. */
  mark(campaignId: string, latestRunId: string | null, purgeArchive: boolean): Promise<{ ok: true; runs: number } | (Transition & { ok: false })>;
  /** True while a campaign is marked and not yet removed. */
  pending(campaignId: string): Promise<boolean>;
  /** Marked campaigns, oldest first. */
  list(limit: number): Promise<Array<{ campaignId: string; purgeArchive: boolean; requestedAt: number }>>;
  /** Removes everything of a marked campaign from Redis, in bounded steps (its marked meta last). */
  remove(campaignId: string): Promise<void>;
}

/** How full Redis is: `used` of `limit` bytes (limit null: nothing says). */
export interface MemoryReading {
  used: number;
  limit: number | null;
  /** Where the limit comes from: Redis `maxmemory`, or `MEMORY_LIMIT_BYTES`. */
  source: 'maxmemory' | 'MEMORY_LIMIT_BYTES' | null;
}

export interface MemoryProbe {
  read(): Promise<MemoryReading>;
}
