import { describeError } from '../domain/send-outcome.js';
import type { Logger, MessageIds } from './ports.js';

type Entry = { messageId: string; runNo: number; position: number };

/**
 * Providers' message ids of sent recipients, written a batch at a time
 * (`MessageIds`): soon after the answer that carried them, since a receipt
 * naming one may follow within seconds. One that could not be written only
 * leaves that receipt unmatched (404): the send itself is recorded anyway.
 */
export class MessageIdBuffer {
  private readonly pending = new Map<string, Entry[]>();
  private timer: NodeJS.Timeout | null = null;
  private size = 0;

  constructor(
    private readonly messageIds: MessageIds,
    private readonly log: Logger,
    private readonly options = { batch: 256, delayMs: 20 },
  ) {}

  add(provider: string, entry: Entry): void {
    const list = this.pending.get(provider) ?? [];
    list.push(entry);
    this.pending.set(provider, list);
    this.size += 1;
    if (this.size >= this.options.batch) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.options.delayMs);
  }

  async flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batches = [...this.pending];
    this.pending.clear();
    this.size = 0;
    await Promise.all(
      batches.map(([provider, entries]) =>
        this.messageIds
          .remember(provider, entries)
          .catch((err) =>
            this.log.warn(
              { provider, count: entries.length, err: describeError(err) },
              'could not keep provider message ids: receipts naming them will not match',
            ),
          ),
      ),
    );
  }
}
