import { LIST_BYTES_PER_RECIPIENT, type MemoryGuard } from './memory-guard.js';
import { invalidState } from '../domain/campaign.js';
import { DomainError, ErrorCodes } from '../domain/errors.js';
import { IngestTally, invalidRecipients, type IngestSummary, type StoredRecipient } from '../domain/recipient.js';
import type { CampaignLifecycle } from './campaign-lifecycle.js';
import { campaignView, latestRun, requireCampaign, type CampaignView } from './campaign-view.js';
import type { CampaignStore, Runs } from './ports.js';

/** An upload as it arrives: rows parsed on the fly, and what the bytes were once they are all in. */
export interface UploadSource {
  /** Parsed rows in order; throws DomainError(MALFORMED_REQUEST) on a syntax error or a cut body. */
  rows: AsyncIterable<unknown>;
  /** Known once `rows` is exhausted. */
  digest(): { bytes: number; sha256: string };
}

export interface UploadOptions {
  /** X-Recipient-Count: data rows, a CSV header not counted. */
  expectedCount?: number;
  /** X-Content-SHA256: hex of the exact body bytes. */
  expectedSha256?: string;
  /** A guess of the row count, to size the index. */
  sizeHint: number;
  invalid: 'skip' | 'reject';
}

export interface UploadResult extends IngestSummary {
  rows: number;
  bytes: number;
  sha256: string;
  campaign: CampaignView;
}

const CHUNK = 1000;

/**
 * Replaces a campaign's recipient list with an upload, streamed: rows are
 * checked and deduplicated as they arrive and staged beside the current list
 * (memory stays one chunk and one page whatever the size). Only when the body
 * is whole and matches what the sender declared (row count, SHA-256) is the
 * new list swapped in, in one Lua step; on any doubt — a cut body, a syntax
 * error, a mismatch — the campaign keeps nothing of it and the staged data is
 * dropped. The lesson of a half-written batch file taken for a whole one.
 */
export class UploadRecipients {
  constructor(
    private readonly deps: {
      store: CampaignStore;
      runs: Pick<Runs, 'getRun'>;
      lifecycle: CampaignLifecycle;
      /** Refuses new work while Redis is nearly full. */
      memory?: Pick<MemoryGuard, 'admit'>;
    },
  ) {}

  async execute(campaignId: string, source: UploadSource, options: UploadOptions): Promise<UploadResult> {
    const campaign = await requireCampaign(this.deps.store, campaignId);
    if (campaign.status !== 'draft' && campaign.status !== 'scheduled') throw invalidState(campaignId, campaign.status, 'upload');
    // What the sender declared (a guess from the length otherwise, not counted): the list is written beside the current one.
    await this.deps.memory?.admit('upload', (options.expectedCount ?? 0) * LIST_BYTES_PER_RECIPIENT);
    const tally = new IngestTally();
    let digest = { bytes: 0, sha256: '' };
    await this.deps.lifecycle.replaceList(campaign, options.sizeHint, async (staging) => {
      digest = await ingestUpload(
        source,
        tally,
        options,
        async (chunk) => {
          const fresh = await staging.add(chunk);
          for (const isNew of fresh) {
            if (isNew) tally.accepted += 1;
            else tally.duplicate += 1;
          }
        },
        'the upload holds no usable recipient: nothing was kept',
      );
    });
    const updated = await this.deps.store.get(campaignId);
    const run = updated ? await latestRun(this.deps.runs, updated) : null;
    return { ...tally.summary(), rows: tally.rows, ...digest, campaign: campaignView(updated ?? campaign, run) };
  }
}

/**
 * Reads an upload to its end: rows checked and counted in `tally`, usable
 * ones handed to `store` a chunk at a time, then the body's digest checked
 * against what its sender announced. Throws (nothing is to be kept) on an
 * invalid row under `invalid: reject`, a cut or malformed body, a mismatch,
 * or nothing accepted at all (422 with `emptyMessage`: an empty file is
 * never taken for a list).
 */
export async function ingestUpload(
  source: UploadSource,
  tally: IngestTally,
  options: Pick<UploadOptions, 'expectedCount' | 'expectedSha256' | 'invalid'>,
  store: (chunk: StoredRecipient[]) => Promise<void>,
  emptyMessage: string,
): Promise<{ bytes: number; sha256: string }> {
  let chunk: StoredRecipient[] = [];
  // Refused rows stop the storing, not the reading: the answer names the first ones, and the count and checksum are still checked.
  let refused = false;
  for await (const row of source.rows) {
    const recipient = tally.check(row);
    if (recipient === null) {
      refused ||= options.invalid === 'reject';
      continue;
    }
    if (refused) continue;
    chunk.push(recipient);
    if (chunk.length >= CHUNK) {
      await store(chunk);
      chunk = [];
    }
  }
  const digest = source.digest();
  checkUploadIntegrity(tally, digest, options);
  if (refused) throw invalidRecipients(tally.summary(), 'nothing was kept');
  await store(chunk);
  if (tally.accepted === 0) throw new DomainError(ErrorCodes.VALIDATION_FAILED, emptyMessage, tally.summary());
  return digest;
}

/** Refuses an upload whose row count or SHA-256 is not what its sender announced. */
function checkUploadIntegrity(
  tally: IngestTally,
  digest: { bytes: number; sha256: string },
  options: Pick<UploadOptions, 'expectedCount' | 'expectedSha256'>,
): void {
  const problems: string[] = [];
  if (options.expectedCount !== undefined && options.expectedCount !== tally.rows) {
    problems.push(`X-Recipient-Count says ${options.expectedCount} rows, the body has ${tally.rows}`);
  }
  if (options.expectedSha256 !== undefined && options.expectedSha256.toLowerCase() !== digest.sha256) {
    problems.push(`X-Content-SHA256 says ${options.expectedSha256.toLowerCase()}, the body hashes to ${digest.sha256}`);
  }
  if (problems.length > 0) {
    throw new DomainError(ErrorCodes.INTEGRITY_FAILED, `the upload is not what was announced (${problems.join('; ')}): nothing was kept`, {
      rows: tally.rows,
      bytes: digest.bytes,
      sha256: digest.sha256,
      problems,
    });
  }
}
