import { pino, type Logger as Pino } from 'pino';

/**
 * pino JSON, one line per event. Secrets never reach a log line: the
 * Authorization header, tokens, and recipient fields that usually hold device
 * tokens or phone numbers are redacted wherever they appear.
 */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'token',
  '*.token',
  'adminToken',
  'recipient.token',
  'recipient.deviceToken',
  'recipient.phone',
  'recipient.phoneNumber',
  '*.recipient.token',
  '*.recipient.deviceToken',
  '*.recipient.phone',
  '*.recipient.phoneNumber',
];

export function createLogger(level: string, bindings: Record<string, unknown> = {}): Pino {
  return pino({
    level,
    base: { pid: process.pid, ...bindings },
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}
