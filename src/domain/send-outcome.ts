/**
 * What a provider said about one send, classified once in the provider
 * adapter so every later decision (retry, report, slow down) is made on these
 * six kinds (domain/send-rules.ts) and never on raw status codes.
 */
export type SendOutcome =
  /** `messageId`: the provider's own id for it, when it gives one and sends receipts naming it. */
  | { kind: 'sent'; messageId?: string }
  /**
   * The provider refused for rate. `provider`: its limit for everyone — every
   * worker holds off, and the recipient goes again later without spending an
   * attempt. `recipient`: a limit on this one device (APNs TooManyRequests) —
   * retried with a backoff like a transient failure, nobody else slowed.
   */
  | { kind: 'rate-limited'; scope: 'provider' | 'recipient'; code: string; message: string; retryAfterMs?: number }
  /**
   * The provider will never accept this one (bad request, bad token).
   * `tokenInvalid`: the device token or number itself is dead (unregistered,
   * malformed): the recipient goes on the provider's token-invalid list.
   * `noAddress`: the recipient has no token or number for this provider at all.
   */
  | { kind: 'permanent'; code: string; message: string; tokenInvalid?: boolean; noAddress?: boolean }
  /** Worth another attempt after a backoff (5xx, connection error). */
  | { kind: 'transient'; code: string; message: string }
  /**
   * No answer in time: the provider may or may not have it (retried, or
   * reported, by the provider's policy). `final`: reported whatever the
   * policy (the provider refused a replay of a request it may have acted on).
   */
  | { kind: 'in-doubt'; code: string; message: string; final?: boolean }
  /**
   * Not taken, for a reason that is neither the recipient's nor the
   * provider's health and is fixed already (a stream refused before
   * processing, credentials just renewed): again at once, no attempt spent
   * (a bounded number of times), on a permit of its own.
   */
  | { kind: 'not-sent'; code: string; message: string };

export type SendOutcomeKind = SendOutcome['kind'];

export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
