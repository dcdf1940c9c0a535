/**
 * Every Redis key the product writes, in one place.
 *
 * All keys of one campaign carry the hash tag `{c:<id>}`, so each Lua script
 * (which only ever touches one campaign) stays in one Redis Cluster slot. The
 * limiter keys of a provider share `{lim:<name>}`. BullMQ's own keys live
 * under `<prefix>:<queue>:…` and never collide with these (queue names never
 * start with `{`).
 */
export class Keys {
  constructor(readonly prefix: string) {}

  /** Campaign ids, ordered lexicographically (ULIDs sort by creation time). */
  campaignIndex(): string {
    return `${this.prefix}:campaigns`;
  }

  /** Runs that are not finished yet, as `runMember`s: the supervisor's worklist. */
  activeRuns(): string {
    return `${this.prefix}:active-runs`;
  }

  /** A run as a member of a set: `<campaignId>|<runId>` (campaign ids never hold '|'). */
  runMember(campaignId: string, runId: string): string {
    return `${campaignId}|${runId}`;
  }

  parseRunMember(member: string): { campaignId: string; runId: string } {
    const sep = member.indexOf('|');
    return { campaignId: member.slice(0, sep), runId: member.slice(sep + 1) };
  }

  /** Hash: run number → `runMember`, for runs in Redis (a run's recipients' idempotency keys carry its number); removed when the run is archived or deleted. */
  runNumbers(): string {
    return `${this.prefix}:run-nos`;
  }

  /** String: one day of one bucket of a provider's message ids (redis-message-ids.ts), 16 bytes each; expires after the receipt window. */
  messageIds(provider: string, bucket: number, day: number): string {
    return `${this.prefix}:mid:{${provider}:${bucket}}:${day}`;
  }

  /** Finished runs as `runMember`s, scored by when they finished: what the archiver takes once their retention ends. */
  retention(): string {
    return `${this.prefix}:retention`;
  }

  /** Set once every run that finished before retention existed has been noted in `retention`. */
  retentionBackfilled(): string {
    return `${this.prefix}:retention-backfilled`;
  }

  /** Campaigns marked deleting, scored by when: what workers remove. */
  deletions(): string {
    return `${this.prefix}:deletions`;
  }

  /** A named lock (supervisor, reschedules). */
  lock(name: string): string {
    return `${this.prefix}:lock:${name}`;
  }

  /** A suppression list: the set of recipient ids never to be sent to. */
  suppression(name: string): string {
    return `${this.prefix}:supp:{${name}}`;
  }

  suppressionLists(): string {
    return `${this.prefix}:supp-lists`;
  }

  /**
   * Frequency-cap counters of one recipient under one cap are
   * `frequencyPrefix(shard, cap) + id`; a shard's keys share a hash tag, so
   * one script can count a batch of them on a Redis Cluster.
   */
  frequencyPrefix(shard: number, cap: string): string {
    return `${this.prefix}:{fc${shard}}:${cap}:`;
  }

  /** The last metrics snapshot a worker process published. */
  metricsSnapshot(instance: string): string {
    return `${this.prefix}:metrics:${instance}`;
  }

  /** Worker instances, scored by their last metrics snapshot: who is alive. */
  workers(): string {
    return `${this.prefix}:workers`;
  }

  /** Uploads under way, as `<campaignId>|<version>` scored by start: the supervisor drops abandoned ones. */
  stagings(): string {
    return `${this.prefix}:stagings`;
  }

  campaign(campaignId: string): CampaignKeys {
    return new CampaignKeys(this.campaignBase(campaignId));
  }

  /** Every key of a campaign starts with this (and shares its hash slot). */
  campaignBase(campaignId: string): string {
    return `${this.prefix}:{c:${campaignId}}`;
  }

  /** Hash: webhook endpoints made through the API, name → JSON (with the secret: see README, events out). */
  webhooks(): string {
    return `${this.prefix}:webhooks`;
  }

  /** Counter bumped by every change of `webhooks` or `webhookState`: processes reload when it moves. */
  webhooksVersion(): string {
    return `${this.prefix}:webhooks:version`;
  }

  /** Hash: every endpoint's state (file ones too), name → JSON: since when it takes events, its epoch, disabled. */
  webhookState(): string {
    return `${this.prefix}:webhook-state`;
  }

  /** An endpoint's dead letters: deliveries that exhausted their attempts, and those being replayed. */
  deadLetters(endpoint: string): DeadLetterKeys {
    const base = `${this.prefix}:dl:{wh:${endpoint}}`;
    return { letters: base, order: `${base}:at`, replay: `${base}:replay` };
  }

  /**
   * Zset: campaigns whose outbox may hold events not yet delivered to every
   * endpoint, besides those with a run in progress (`activeRuns`); the score
   * is bumped by each mark, so a dispatcher removes a campaign only if nobody
   * marked it since it looked.
   */
  outboxCampaigns(): string {
    return `${this.prefix}:outbox`;
  }

  limiter(provider: string): LimiterKeys {
    const base = `${this.prefix}:{lim:${provider}}`;
    return { free: `${base}:free`, held: `${base}:held`, config: `${base}:cfg`, retired: `${base}:retired` };
  }
}

export interface DeadLetterKeys {
  /** Hash: delivery id → JSON (what was sent, attempts, last status and error). */
  letters: string;
  /** Zset: delivery id → when it became a dead letter (the listing's order). */
  order: string;
  /** Zset: delivery id → when its replay is next attempted. */
  replay: string;
}

export interface LimiterKeys {
  /** Permit slots not held by anyone, scored by the (steady) time they may next be used. */
  free: string;
  /** Grants of permits leased to a process (`<slot>:<grant>`), scored by the time the lease ends. */
  held: string;
  config: string;
  /** Slots above a lowered cap, scored by when they would be free, until the cap rises again. */
  retired: string;
}

/** How many entries a campaign's outbox keeps at most: the same number as OUTBOX_MAXLEN in lua/includes/outbox.lua. */
export const OUTBOX_MAXLEN = 10_000;

export class CampaignKeys {
  constructor(private readonly base: string) {}

  meta(): string {
    return `${this.base}:meta`;
  }

  /** JSON array of the recipients of one page of one version of the list (bare ids as strings). */
  page(version: number, page: number): string {
    return `${this.pagePrefix(version)}${page}`;
  }

  pagePrefix(version: number): string {
    return `${this.base}:pg:${version}:`;
  }

  /** Hash: recipient id → position, one of `buckets` by hash of the id. */
  bucket(version: number, bucket: number): string {
    return `${this.bucketPrefix(version)}${bucket}`;
  }

  bucketPrefix(version: number): string {
    return `${this.base}:ix:${version}:`;
  }

  /** Hash: progress of a list being uploaded (accepted rows, pages written, buckets). */
  staging(version: number): string {
    return `${this.base}:stage:${version}`;
  }

  /**
   * Stream: the campaign's outbox, appended to by the Lua step of each
   * transition it reports (lua/includes/outbox.lua), at most OUTBOX_MAXLEN
   * entries; recipient entries leave once every endpoint has them.
   */
  events(): string {
    return `${this.base}:events`;
  }

  /**
   * Hash: where each webhook endpoint is in the outbox (`c:<name>`), the
   * delivery it is making (`d:<name>`), who makes it (`l:<name>`, a lease), and
   * the newest event the outbox's bound pushed out unsent (`lost`).
   */
  webhooks(): string {
    return `${this.base}:wh`;
  }

  /** String: the last dry run that found nothing wrong (its fingerprint), for an hour: a launch right after it need not render the list again. */
  dryRun(): string {
    return `${this.base}:dry`;
  }

  /** List of the latest occurrences of the schedule (ran or skipped, and why), newest first. */
  occurrences(): string {
    return `${this.base}:occ`;
  }

  runs(): string {
    return `${this.base}:runs`;
  }

  run(runId: string): RunKeys {
    const base = `${this.base}:run:${runId}`;
    return {
      run: base,
      records: (page: number) => `${base}:st:${page}`,
      legs: (page: number) => `${base}:lg:${page}`,
      series: `${base}:ts`,
      recordsPrefix: `${base}:st:`,
      lease: (page: number) => `${base}:lease:${page}`,
      leasePrefix: `${base}:lease:`,
      leases: `${base}:leases`,
      errors: `${base}:err`,
      bad: `${base}:bad`,
      open: `${base}:open`,
      unfinished: `${base}:unfinished`,
      parked: `${base}:parked`,
      doubt: `${base}:doubt`,
      early: `${base}:early`,
      waves: `${base}:waves`,
    };
  }
}

export interface RunKeys {
  /** Hash: status, counts, cursor and bookkeeping of the run. */
  run: string;
  /** String of fixed-width ledger records for one page (see domain/ledger.ts). */
  records(page: number): string;
  /** The run's per-second series of outcomes (src/app/run-series.ts), a bounded ring of slots. */
  series: string;
  /** One byte per recipient of a page: its fallback leg (domain/fallback.ts); the scripts derive it from `records(page)`. */
  legs(page: number): string;
  /** `records(page)` is this followed by the page number (for scripts that walk pages). */
  recordsPrefix: string;
  /** `token|expiryMs` of the worker that owns a page right now. */
  lease(page: number): string;
  leasePrefix: string;
  /** Zset page → lease expiry, for finding abandoned pages. */
  leases: string;
  /** Hash position → last error of that recipient. */
  errors: string;
  /** Zset of positions that ended failed or unknown (score = position). */
  bad: string;
  /** Pages enqueued whose first pass is not over: what the fan-out window counts. */
  open: string;
  /** Pages enqueued that still have a recipient that is not final. */
  unfinished: string;
  /** Zset page → when its earliest pending recipient is due, for pages released with nothing due now (quiet hours, retry backoff). */
  parked: string;
  /** Zset of positions pending in doubt (an earlier attempt may have been delivered): a cancel counts them unknown. The Lua scripts derive it from `run`. */
  doubt: string;
  /** Hash position → a provider's receipt that came before the worker's confirm (lua/receipt.lua); derived from `run` by the scripts. */
  early: string;
  /** Hash: the instant (ms) a wave of local-time recipients is due → how many were deferred to it (lua/claim.lua); derived from `run`. */
  waves: string;
}
