import { subscribe } from 'node:diagnostics_channel';
import { performance } from 'node:perf_hooks';
import type { OnDeparted } from '../../app/ports.js';

/**
 * When an undici request's last byte was handed to its socket: undici
 * publishes `undici:client:sendHeaders` (with the socket) just before it
 * writes a request and `undici:request:bodySent` right after, each with its
 * request object, whose `body` is the very Buffer the caller passed. Each
 * watched request is known by that Buffer, so nothing is parsed and a request
 * nobody watches costs a WeakMap lookup.
 *
 * The instant is taken after the write, never before it: a late reading only
 * makes the permit rest longer, an early one could let it rest too little.
 *
 * A request on a connection's first turn reports nothing. The kernel accepts
 * a connection before the provider's server does, so such a request can sit
 * unread until the server gets to the new connection — after a burst of new
 * connections (a fleet of workers starting) far longer than any margin. Its
 * permit rests from the answer instead, which the server sends only after
 * reading it. Once a connection has carried an answer, the server is reading
 * it.
 */
const watched = new WeakMap<Buffer, OnDeparted>();
/** Requests written on each socket so far. */
const turns = new WeakMap<object, number>();
let subscribed = false;

function bodyOf(message: unknown): Buffer | undefined {
  const body = (message as { request?: { body?: unknown } }).request?.body;
  return Buffer.isBuffer(body) ? body : undefined;
}

function onSendHeaders(message: unknown): void {
  const body = bodyOf(message);
  if (!body || !watched.has(body)) return;
  const socket = (message as { socket?: object }).socket;
  const turn = socket ? (turns.get(socket) ?? 0) : 0;
  if (socket) turns.set(socket, turn + 1);
  if (turn === 0) watched.delete(body);
}

function onBodySent(message: unknown): void {
  const body = bodyOf(message);
  const departed = body && watched.get(body);
  if (departed) departed(performance.now());
}

/**
 * The request body to send, as a Buffer that reports its request's
 * departure to `onDeparted` (unless it goes out on a fresh connection).
 */
export function departingBody(text: string, onDeparted: OnDeparted | undefined): Buffer {
  const body = Buffer.from(text);
  if (onDeparted) {
    if (!subscribed) {
      subscribe('undici:client:sendHeaders', onSendHeaders);
      subscribe('undici:request:bodySent', onBodySent);
      subscribed = true;
    }
    watched.set(body, onDeparted);
  }
  return body;
}
