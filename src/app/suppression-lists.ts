import { DomainError, ErrorCodes } from '../domain/errors.js';
import { IngestTally, recipientId, type IngestSummary } from '../domain/recipient.js';
import type { Suppressions } from './ports.js';
import { ingestUpload, type UploadOptions, type UploadSource } from './upload-recipients.js';

export interface SuppressionListView {
  name: string;
  size: number;
}

export interface SuppressionUploadResult extends IngestSummary {
  name: string;
  size: number;
  rows: number;
  bytes: number;
  sha256: string;
}

/**
 * Named suppression lists: recipient ids never to be sent to, checked at send
 * time by every worker (so an id added mid-run is not sent from then on).
 * `global` is on every campaign unless it says otherwise; a provider that
 * reports a token invalid puts its id on `token-invalid:<provider>`.
 */
export class SuppressionLists {
  constructor(private readonly deps: { suppressions: Suppressions }) {}

  lists(): Promise<{ items: SuppressionListView[] }> {
    return this.deps.suppressions.lists().then((items) => ({ items }));
  }

  async members(name: string, limit: number, cursor?: string): Promise<SuppressionListView & { ids: string[]; nextCursor: string | null }> {
    if (cursor !== undefined && !/^\d+$/.test(cursor))
      throw new DomainError(ErrorCodes.VALIDATION_FAILED, 'cursor is not one this API returned', { path: ['cursor'] });
    const [page, size] = await Promise.all([this.deps.suppressions.members(name, cursor ?? '0', limit), this.size(name)]);
    return { name, size, ...page };
  }

  async contains(name: string, id: string): Promise<{ name: string; id: string; suppressed: boolean }> {
    const [found] = await this.deps.suppressions.find([name], [id]);
    return { name, id, suppressed: found !== undefined };
  }

  async add(name: string, ids: readonly string[]): Promise<SuppressionListView & { added: number }> {
    const added = await this.deps.suppressions.add(name, ids);
    return { name, size: await this.size(name), added };
  }

  async remove(name: string, ids: readonly string[]): Promise<SuppressionListView & { removed: number }> {
    const removed = await this.deps.suppressions.remove(name, ids);
    return { name, size: await this.size(name), removed };
  }

  async clear(name: string): Promise<SuppressionListView> {
    await this.deps.suppressions.clear(name);
    return { name, size: 0 };
  }

  /**
   * Replaces a list with an upload (CSV with an `id` column, or NDJSON of ids
   * or objects with an `id`), under the same rules as recipient uploads: all
   * or nothing, and refused whole when the count or checksum announced do not
   * match, the body was cut, or it holds no id at all (only `clear` empties a
   * list).
   */
  async upload(name: string, source: UploadSource, options: Omit<UploadOptions, 'sizeHint'>): Promise<SuppressionUploadResult> {
    const tally = new IngestTally();
    let digest = { bytes: 0, sha256: '' };
    const size = await this.deps.suppressions.replace(name, async (add) => {
      // An empty upload is a mistake (a file not written yet, a wrong column), never a wish to send to everyone who opted out.
      digest = await ingestUpload(
        source,
        tally,
        options,
        async (chunk) => {
          const fresh = await add(chunk.map(recipientId));
          tally.accepted += fresh;
          tally.duplicate += chunk.length - fresh;
        },
        `the upload holds no id: list ${name} was not changed (DELETE /api/suppressions/${name} empties a list)`,
      );
    });
    return { name, size, ...tally.summary(), rows: tally.rows, ...digest };
  }

  private async size(name: string): Promise<number> {
    return (await this.deps.suppressions.lists()).find((l) => l.name === name)?.size ?? 0;
  }
}
