-- The campaign's outbox: a Redis Stream beside its meta hash (same hash slot),
-- appended to in the very step that makes the transition it reports, so an
-- event is never lost and never written for a transition that did not happen.
-- Bounded: the oldest go first past OUTBOX_MAXLEN (approximately).
local OUTBOX_MAXLEN = 10000 -- the same as OUTBOX_MAXLEN in src/adapters/redis/keys.ts

-- `<campaign base>:meta` → `<campaign base>:events` (src/adapters/redis/keys.ts).
local function outboxKey(metaKey)
  return string.sub(metaKey, 1, -5) .. 'events'
end

-- Appends one event: its type, the run it is about, when (wall ms), then field/value pairs.
local function emit(metaKey, eventType, runId, at, ...)
  redis.call('XADD', outboxKey(metaKey), 'MAXLEN', '~', OUTBOX_MAXLEN, '*', 'type', eventType, 'run', runId, 'at', at, ...)
end
