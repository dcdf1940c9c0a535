import type { DeliverAt } from '../../domain/windows.js';
import type {
  AcquireResult,
  ClaimDirective,
  ClaimResult,
  ConfirmEntry,
  ConfirmOutcome,
  ConfirmResult,
  CreateRunResult,
  ExpireResult,
  KickResult,
  LeaseRenewal,
  ReleaseResult,
} from '../../app/ports.js';
import type { CampaignStatus } from '../../domain/campaign.js';

/**
 * The one place the ledger scripts' replies become the ports' results, and
 * the ports' words become the scripts' wire letters. Every script answers a
 * flat array; what each position means is written in its header (lua/*.lua).
 */
export type Reply = Array<string | number | Buffer | null>;

export function text(value: unknown): string {
  return Buffer.isBuffer(value) ? value.toString('utf8') : String(value);
}

const int = (value: unknown): number => Number(text(value));

/** confirm.lua's op letters (`retryInDoubt`: a retry after an answer in doubt). */
export const CONFIRM_OPS: Record<ConfirmOutcome | 'retryInDoubt', string> = {
  sent: 's',
  failed: 'f',
  retry: 't',
  retryInDoubt: 'q',
  requeue: 'r',
  unclaim: 'n',
  unknown: 'u',
};

/** confirm.lua's letters for a failure that ends a leg for want of an address. */
export const DEAD_OPS = { 'token-invalid': 'i', 'no-token': 'o' } as const;

/** claim.lua's directive letters. */
export const CLAIM_OPS = { claim: 'c', defer: 'd', skip: 'k', expire: 'x' } as const;

/** Longest text one packed field carries (a u16 length; texts are far shorter: a detail, an error code). */
const MAX_SHORT_TEXT = 16_000;
/** An error message is cut to this many characters (providers' answers are cut far shorter before). */
const MAX_MESSAGE = 100_000;

/**
 * claim.lua's directives in one argument (one string for Redis to read, not
 * four per recipient): per directive its index (u32), letter, `a` (a double:
 * the counted flag, a due instant, a reason code) and `b` (a u16-long text:
 * the locale, the defer reason, the skip detail). Layout `>I4c1dHc0`.
 */
export function packDirectives(directives: readonly ClaimDirective[]): Buffer {
  const parts: Buffer[] = [];
  for (const d of directives) {
    const [a, b] =
      d.op === 'claim'
        ? [d.counted ? 1 : 0, String(d.locale ?? 0)]
        : d.op === 'defer'
          ? [Math.round(d.until), d.reason === undefined ? '' : String(d.reason)]
          : d.op === 'expire'
            ? [0, '']
            : [d.reason, d.detail.slice(0, MAX_SHORT_TEXT)];
    const text = Buffer.from(b);
    const head = Buffer.allocUnsafe(15);
    head.writeUInt32BE(d.index, 0);
    head.write(CLAIM_OPS[d.op], 4, 'latin1');
    head.writeDoubleBE(a, 5);
    head.writeUInt16BE(text.length, 13);
    parts.push(head, text);
  }
  return Buffer.concat(parts);
}

/**
 * confirm.lua's entries in one argument: per entry its index (u32), attempt
 * (u8), op letter, delay ms (u32), error code (u16-long text) and message
 * (u32-long text). Layout `>I4Bc1I4Hc0I4c0`.
 */
export function packEntries(entries: readonly ConfirmEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const op = e.outcome === 'retry' && e.inDoubt ? CONFIRM_OPS.retryInDoubt : e.outcome === 'failed' && e.dead ? DEAD_OPS[e.dead] : CONFIRM_OPS[e.outcome];
    const code = Buffer.from(e.code.slice(0, MAX_SHORT_TEXT));
    const message = Buffer.from(e.message.slice(0, MAX_MESSAGE));
    const head = Buffer.allocUnsafe(12);
    head.writeUInt32BE(e.index, 0);
    head.writeUInt8(Math.min(255, e.attempt), 4);
    head.write(op, 5, 'latin1');
    head.writeUInt32BE(Math.min(0xffffffff, Math.max(0, Math.round(e.delayMs))), 6);
    head.writeUInt16BE(code.length, 10);
    const tail = Buffer.allocUnsafe(4);
    tail.writeUInt32BE(message.length, 0);
    parts.push(head, code, tail, message);
  }
  return Buffer.concat(parts);
}

export const decode = {
  createRun(reply: Reply): CreateRunResult {
    if (reply[0] === 'ok') return { ok: true, createdAt: int(reply[1]) };
    return {
      ok: false,
      reason: text(reply[0]) as 'missing' | 'state' | 'exists' | 'empty' | 'changed' | 'expired',
      status: reply[1] === undefined ? undefined : (text(reply[1]) as CampaignStatus),
      ...(reply[2] !== undefined ? { deadline: int(reply[2]) } : {}),
    };
  },

  acquirePage(reply: Reply): AcquireResult {
    const kind = text(reply[0]);
    switch (kind) {
      case 'ok':
        return {
          kind,
          records: reply[1] as Buffer,
          elapsed: int(reply[2]),
          recipientsVersion: int(reply[3]),
          markedUnknown: int(reply[4]),
          runNo: text(reply[5] ?? '') === '' ? null : int(reply[5]),
          pageSize: int(reply[6]),
          startAt: int(reply[7]),
          deadlineIn: text(reply[8] ?? '') === '' ? null : int(reply[8]),
          deliverAt: text(reply[9] ?? '') === '' ? null : (JSON.parse(text(reply[9])) as DeliverAt),
          pace: text(reply[10] ?? '') === '' ? null : Number(text(reply[10])),
          legs: Buffer.isBuffer(reply[11]) ? reply[11] : Buffer.from(text(reply[11] ?? ''), 'latin1'),
        };
      case 'busy':
        return { kind, delayMs: int(reply[1]) };
      case 'inactive':
        return { kind, status: text(reply[1]), markedUnknown: int(reply[2]) };
      case 'superseded':
        return { kind };
      default:
        return { kind: 'missing' };
    }
  },

  claim(reply: Reply): ClaimResult {
    const kind = text(reply[0]);
    if (kind === 'fenced') return { kind };
    if (kind === 'inactive') return { kind, status: text(reply[1]) };
    const claimed = [];
    for (let i = 2; i < reply.length; i += 2) claimed.push({ index: int(reply[i]), attempt: int(reply[i + 1]) });
    const msLeft = text(reply[1] ?? '');
    return { kind: 'ok', claimed, msLeft: msLeft === '' ? null : Number(msLeft) };
  },

  confirm(reply: Reply): ConfirmResult {
    if (text(reply[0]) === 'fenced') return { kind: 'fenced' };
    return { kind: 'ok', runCompleted: int(reply[1]) === 1, applied: int(reply[2]) };
  },

  /** renew-leases.lua: the run's status, then 1 (renewed) or 0 (fenced) per lease. */
  renewLeases(reply: Reply): LeaseRenewal[] {
    const status = text(reply[0]);
    if (status === 'missing') return [];
    return reply.slice(1).map((held): LeaseRenewal => {
      if (int(held) !== 1) return { kind: 'fenced' };
      return status === 'running' ? { kind: 'renewed' } : { kind: 'inactive', status };
    });
  },

  releasePage(reply: Reply): ReleaseResult {
    const nextDue = int(reply[2]);
    return { pending: int(reply[0]), inflight: int(reply[1]), nextDueIn: nextDue < 0 ? null : nextDue, markedUnknown: int(reply[3]) };
  },

  expireLeases(reply: Reply): ExpireResult {
    const gen = int(reply[3]);
    const pages = reply.slice(4).map(int);
    return { pages, unknown: int(reply[0]), resent: int(reply[1]), completed: int(reply[2]) === 1, requeue: gen > 0 ? { gen, pages } : null };
  },

  advanceCursor(reply: Reply): 'ok' | 'moved' | 'inactive' {
    return text(reply[0]) as 'ok' | 'moved' | 'inactive';
  },

  kickRun(reply: Reply): KickResult {
    const kind = text(reply[0]);
    if (kind === 'kicked') return { kind, gen: int(reply[1]), pages: reply.slice(2).map(int) };
    if (kind === 'parked') return { kind, wakesIn: int(reply[1]) };
    return { kind: kind === 'fresh' ? 'fresh' : 'inactive' };
  },
};
