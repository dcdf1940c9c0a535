import type { Message } from './campaign.js';
import { smsText } from './sms-text.js';

/**
 * What a provider refuses for its size, checked on the rendered message (the
 * dry run): FCM and APNs take 4,096 bytes of payload, an alimtalk text 1,000
 * characters (the template at Kakao with its parameters filled in: pushq
 * checks `message.body`, which should hold that text).
 */
export const SIZE_LIMITS = {
  fcm: { bytes: 4096, what: 'FCM payload (notification + data)' },
  apns: { bytes: 4096, what: 'APNs payload' },
  alimtalk: { characters: 1000, what: 'alimtalk text (message.body)' },
} as const;

/** What FCM carries of a message: its `notification`, and `data` as the map of strings FCM takes. The sender and the size check both use it. */
export function fcmContent(message: Message): { notification: { title: string; body: string }; data: Record<string, string> } {
  const data = Object.fromEntries(Object.entries(message.data).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]));
  return { notification: { title: message.title, body: message.body }, data };
}

/** The APNs payload of a message: `data` at the top level, `aps.alert` from the title and body (with any `data.aps` kept). */
export function apnsContent(message: Message): Record<string, unknown> {
  const extraAps = typeof message.data.aps === 'object' && message.data.aps !== null ? (message.data.aps as Record<string, unknown>) : {};
  return { ...message.data, aps: { ...extraAps, alert: { title: message.title, body: message.body } } };
}

/** Why `message` is too long for a provider of `type`, or null when it fits (or the type has no limit). */
export function sizeProblem(type: string, message: Message): string | null {
  switch (type) {
    case 'fcm': {
      const bytes = Buffer.byteLength(JSON.stringify(fcmContent(message)));
      return bytes > SIZE_LIMITS.fcm.bytes ? `${SIZE_LIMITS.fcm.what} is ${bytes} bytes, above ${SIZE_LIMITS.fcm.bytes}` : null;
    }
    case 'apns': {
      const bytes = Buffer.byteLength(JSON.stringify(apnsContent(message)));
      return bytes > SIZE_LIMITS.apns.bytes ? `${SIZE_LIMITS.apns.what} is ${bytes} bytes, above ${SIZE_LIMITS.apns.bytes}` : null;
    }
    case 'alimtalk': {
      const characters = [...message.body].length;
      return characters > SIZE_LIMITS.alimtalk.characters
        ? `${SIZE_LIMITS.alimtalk.what} is ${characters} characters, above ${SIZE_LIMITS.alimtalk.characters}`
        : null;
    }
    case 'sms': {
      // An advertisement's notices are added at sending: they may still turn an SMS into an LMS, or pass LMS's limit.
      const text = smsText(message.title, message.body);
      return text.ok ? null : text.message;
    }
    default:
      return null;
  }
}
