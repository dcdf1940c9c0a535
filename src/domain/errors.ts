/**
 * Every failure the product reports to a caller is a DomainError with a stable
 * code. Adapters map codes to transport details (HTTP statuses live in
 * adapters/http/errors.ts), so the domain never knows about HTTP.
 */
export const ErrorCodes = {
  VALIDATION_FAILED: 'VALIDATION_FAILED',
  MALFORMED_REQUEST: 'MALFORMED_REQUEST',
  UNAUTHORIZED: 'UNAUTHORIZED',
  FORBIDDEN: 'FORBIDDEN',
  NOT_FOUND: 'NOT_FOUND',
  CAMPAIGN_NOT_FOUND: 'CAMPAIGN_NOT_FOUND',
  RECIPIENT_NOT_FOUND: 'RECIPIENT_NOT_FOUND',
  RUN_NOT_FOUND: 'RUN_NOT_FOUND',
  UNKNOWN_PROVIDER: 'UNKNOWN_PROVIDER',
  WEBHOOK_NOT_FOUND: 'WEBHOOK_NOT_FOUND',
  /** A webhook endpoint of that name exists already. */
  WEBHOOK_EXISTS: 'WEBHOOK_EXISTS',
  INVALID_STATE: 'INVALID_STATE',
  NO_RECIPIENTS: 'NO_RECIPIENTS',
  /** Some recipients' messages would not render (a missing variable) or not fit the provider: the dry run's report says who. */
  RENDER_FAILED: 'RENDER_FAILED',
  ALREADY_RAN: 'ALREADY_RAN',
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  /** An upload whose count or checksum does not match what the sender declared. */
  INTEGRITY_FAILED: 'INTEGRITY_FAILED',
  UNSUPPORTED_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  /** An `Expect` header other than 100-continue. */
  EXPECTATION_FAILED: 'EXPECTATION_FAILED',
  NOT_IMPLEMENTED: 'NOT_IMPLEMENTED',
  TOO_MANY_REQUESTS: 'TOO_MANY_REQUESTS',
  STORE_UNAVAILABLE: 'STORE_UNAVAILABLE',
  /** Redis is too full to take more (MEMORY_HIGH_WATERMARK): nothing new is accepted, running campaigns go on. */
  REDIS_MEMORY_HIGH: 'REDIS_MEMORY_HIGH',
  INTERNAL: 'INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export class DomainError extends Error {
  readonly code: ErrorCode;
  readonly details: unknown;

  constructor(code: ErrorCode, message: string, details?: unknown) {
    super(message);
    this.name = 'DomainError';
    this.code = code;
    this.details = details;
  }
}

export function campaignNotFound(id: string): DomainError {
  return new DomainError(ErrorCodes.CAMPAIGN_NOT_FOUND, `campaign ${JSON.stringify(id)} does not exist`);
}
