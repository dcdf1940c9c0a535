import { setTimeout as sleep } from 'node:timers/promises';
import { campaignNotFound, DomainError, ErrorCodes } from '../domain/errors.js';
import { invalidRecipients, RecipientCollector } from '../domain/recipient.js';
import { invalidState, type CampaignStatus } from '../domain/campaign.js';
import { ledgerRows } from './campaign-queries.js';
import { requireCampaign } from './campaign-view.js';
import { LEDGER_BYTES_PER_RECIPIENT, LIST_BYTES_PER_RECIPIENT, type MemoryGuard } from './memory-guard.js';
import type { CampaignStore, Ledger, ResultRow, Runs } from './ports.js';
import type { RunStarter } from './run-starter.js';

/** Most recipients of one test send: a seed list, not an audience. */
export const MAX_TEST_RECIPIENTS = 50;

/** How long the answer waits for every seed recipient to be final; then it answers what is known (202) and the run goes on. */
export const TEST_SEND_WAIT_MS = 10_000;

/** Every state but cancelled (and a campaign being deleted, which is gone). */
const ALLOWED: readonly CampaignStatus[] = ['draft', 'scheduled', 'running', 'paused', 'completed'];

export interface TestSendView {
  campaignId: string;
  /** `test-<n>`: its own ledger and idempotency keys. */
  runId: string;
  /** False when some are not final yet (the wait ran out, they wait for quiet hours, or no worker runs): see GET …/runs/:runId. */
  complete: boolean;
  /** Why the answer did not wait for all of them. */
  warning?: string;
  results: ResultRow[];
}

/**
 * Sends the campaign's message, rendered, now, to a seed list only (up to
 * 50, typically the team's own devices), through the campaign's real
 * provider, under the same limiter, quiet hours, suppression lists and
 * frequency caps (a test send is still a message to a person). It is a run
 * aside: `test-<n>`, with its own list, ledger and idempotency keys; the
 * campaign's status, latest run and counts never change.
 */
export class TestSend {
  constructor(
    private readonly deps: {
      store: CampaignStore;
      runs: Pick<Runs, 'getRun'>;
      ledger: Pick<Ledger, 'readPageEntries'>;
      starter: RunStarter;
      pageSize: number;
      memory?: Pick<MemoryGuard, 'admit'>;
      /** Worker processes seen lately: with none, the answer does not wait for what nobody will send now. */
      workersSeen?: () => Promise<number>;
      waitMs?: number;
    },
  ) {}

  async execute(campaignId: string, recipients: readonly unknown[]): Promise<TestSendView> {
    const campaign = await requireCampaign(this.deps.store, campaignId);
    if (!ALLOWED.includes(campaign.status)) throw invalidState(campaignId, campaign.status, 'test-send', 'A cancelled campaign sends nothing more.');
    if (recipients.length === 0 || recipients.length > MAX_TEST_RECIPIENTS) {
      throw new DomainError(ErrorCodes.VALIDATION_FAILED, `a test send takes 1 to ${MAX_TEST_RECIPIENTS} recipients (got ${recipients.length})`, {
        issues: [{ path: ['recipients'], message: `1 to ${MAX_TEST_RECIPIENTS} recipients` }],
      });
    }
    const collector = new RecipientCollector();
    for (const r of recipients) collector.add(r);
    const summary = collector.summary();
    if (summary.invalid > 0) throw invalidRecipients(summary, 'nothing was sent');
    await this.deps.memory?.admit('test-send', collector.recipients.length * (LIST_BYTES_PER_RECIPIENT + LEDGER_BYTES_PER_RECIPIENT));
    const n = await this.deps.store.nextTestSend(campaignId);
    if (n === null) throw campaignNotFound(campaignId);
    const runId = `test-${n}`;
    const staging = await this.deps.store.beginStaging(campaignId, collector.recipients.length, this.deps.pageSize);
    await staging.add(collector.recipients);
    const list = await staging.finish();
    const created = await this.deps.starter.start(campaignId, runId, {
      allowedFrom: ALLOWED,
      statusAfter: null,
      trigger: 'test-send',
      recipients: list,
      aside: true,
    });
    if (!created.ok) {
      await staging.abort();
      if (created.reason === 'missing') throw campaignNotFound(campaignId);
      throw invalidState(campaignId, created.status ?? campaign.status, 'test-send');
    }
    await staging.commit();
    const workers = this.deps.workersSeen ? await this.deps.workersSeen() : 1;
    const waited =
      workers > 0
        ? await this.waitForRun(campaignId, runId)
        : { complete: false, warning: 'no worker process seen in the last 30 s: it is sent once one runs' };
    const run = await this.deps.runs.getRun(campaignId, runId);
    const results: ResultRow[] = [];
    if (run) for await (const row of ledgerRows(this.deps.store, this.deps.ledger, run)) results.push(row);
    return { campaignId, runId, ...waited, results };
  }

  /** Until the run is final, or all that is left waits for quiet hours, or the wait runs out. */
  private async waitForRun(campaignId: string, runId: string): Promise<{ complete: boolean; warning?: string }> {
    const waitMs = this.deps.waitMs ?? TEST_SEND_WAIT_MS;
    const deadline = Date.now() + waitMs;
    for (let delay = 20; ; delay = Math.min(delay * 2, 250)) {
      const run = await this.deps.runs.getRun(campaignId, runId);
      if (!run || run.status === 'completed' || run.status === 'cancelled') return { complete: true };
      if (run.counts.pending > 0 && run.counts.inflight === 0 && run.deferred === run.counts.pending) {
        return { complete: false, warning: 'the rest wait for their quiet hours' };
      }
      if (Date.now() + delay > deadline) return { complete: false, warning: `not all final within ${Math.round(waitMs / 1000)} s` };
      await sleep(delay);
    }
  }
}
