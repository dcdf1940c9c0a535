import { pino, type Logger as Pino } from 'pino';

/**
 * pino JSON, one line per event. Secrets never reach a log line: the
 * Authorization header and cookies, tokens, and the recipient fields named in
 * LOG_REDACT_FIELDS (device tokens and phone numbers by default) are replaced
 * with "[redacted]" wherever a log line carries them.
 */
export const DEFAULT_REDACT_FIELDS = [
  'token',
  'deviceToken',
  'device_token',
  'pushToken',
  'registrationToken',
  'phone',
  'phoneNumber',
  'phone_number',
  'mobile',
  'msisdn',
];

export function redactPaths(fields: readonly string[]): string[] {
  const paths = ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization', 'adminToken', 'viewerToken'];
  for (const field of fields) {
    const key = /^[A-Za-z_$][\w$]*$/.test(field) ? field : `["${field.replace(/"/g, '\\"')}"]`;
    const join = (base: string) => (key.startsWith('[') ? `${base}${key}` : `${base}.${key}`);
    paths.push(key.startsWith('[') ? key.slice(2, -2) : key, join('*'), join('recipient'), join('*.recipient'));
  }
  return paths;
}

export function createLogger(level: string, bindings: Record<string, unknown> = {}, redactFields: readonly string[] = DEFAULT_REDACT_FIELDS): Pino {
  return pino({
    level,
    base: { pid: process.pid, ...bindings },
    redact: { paths: redactPaths(redactFields), censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}
