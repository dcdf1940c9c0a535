import type { Message } from './campaign.js';

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

function stringData(data: Record<string, unknown>): Record<string, string> {
  return Object.fromEntries(Object.entries(data).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]));
}

/** Why `message` is too long for a provider of `type`, or null when it fits (or the type has no limit). */
export function sizeProblem(type: string, message: Message): string | null {
  switch (type) {
    case 'fcm': {
      const bytes = Buffer.byteLength(JSON.stringify({ notification: { title: message.title, body: message.body }, data: stringData(message.data) }));
      return bytes > SIZE_LIMITS.fcm.bytes ? `${SIZE_LIMITS.fcm.what} is ${bytes} bytes, above ${SIZE_LIMITS.fcm.bytes}` : null;
    }
    case 'apns': {
      const extra = typeof message.data.aps === 'object' && message.data.aps !== null ? message.data.aps : {};
      const bytes = Buffer.byteLength(JSON.stringify({ ...message.data, aps: { ...extra, alert: { title: message.title, body: message.body } } }));
      return bytes > SIZE_LIMITS.apns.bytes ? `${SIZE_LIMITS.apns.what} is ${bytes} bytes, above ${SIZE_LIMITS.apns.bytes}` : null;
    }
    case 'alimtalk': {
      const characters = [...message.body].length;
      return characters > SIZE_LIMITS.alimtalk.characters
        ? `${SIZE_LIMITS.alimtalk.what} is ${characters} characters, above ${SIZE_LIMITS.alimtalk.characters}`
        : null;
    }
    default:
      return null;
  }
}
