-- The campaign's outbox: a Redis Stream beside its meta hash (same hash slot),
-- appended to in the very step that makes the transition it reports, so an
-- event is never lost and never written for a transition that did not happen.
-- Bounded: past OUTBOX_MAXLEN entries the oldest go, and the newest id that
-- went is noted (`lost` in the campaign's webhook hash; `lostRun` for the
-- newest run event among them), so a webhook endpoint that was still behind
-- it knows it missed events (src/app/webhook-dispatcher.ts).
local OUTBOX_MAXLEN = 10000 -- the same as OUTBOX_MAXLEN in src/adapters/redis/keys.ts
local OUTBOX_TRIM = 100

-- `<campaign base>:meta` → `<campaign base>:<suffix>` (src/adapters/redis/keys.ts).
local function campaignKey(metaKey, suffix)
  return string.sub(metaKey, 1, -5) .. suffix
end
local function outboxKey(metaKey)
  return campaignKey(metaKey, 'events')
end

-- Appends one event: its type, the run it is about, when (wall ms), then field/value pairs.
local function emit(metaKey, eventType, runId, at, ...)
  local key = outboxKey(metaKey)
  if redis.call('XLEN', key) >= OUTBOX_MAXLEN then
    local oldest = redis.call('XRANGE', key, '-', '+', 'COUNT', OUTBOX_TRIM)
    local ids, lostRun = {}, nil
    for i, entry in ipairs(oldest) do
      ids[i] = entry[1]
      if entry[2][2] ~= 'recipients' then lostRun = entry[1] end
    end
    redis.call('XDEL', key, unpack(ids))
    redis.call('HSET', campaignKey(metaKey, 'wh'), 'lost', ids[#ids])
    if lostRun then redis.call('HSET', campaignKey(metaKey, 'wh'), 'lostRun', lostRun) end
  end
  redis.call('XADD', key, '*', 'type', eventType, 'run', runId, 'at', at, ...)
end

-- Recipient events of one step, written as one entry (`recipients`) when the
-- step ends: positions by kind, each kind only while a webhook endpoint
-- subscribes to it (the caller's mask, src/domain/webhooks.ts EVENT_CODES):
-- f failed, u unknown, k skipped (position:reason code), s sent,
-- x undelivered, d delivered — in this order within an entry: one step can
-- make a recipient sent, then undelivered, then delivered, never the reverse.
local RECIPIENT_KINDS = { 'f', 'u', 'k', 's', 'x', 'd' }

local function recipientEvents(mask)
  return { mask = mask or '', n = 0, f = {}, u = {}, k = {}, s = {}, d = {}, x = {} }
end

local function noteRecipient(ev, kind, position, detail)
  if ev.mask == '' or not string.find(ev.mask, kind, 1, true) then return end
  local list = ev[kind]
  list[#list + 1] = detail and (position .. ':' .. detail) or position
  ev.n = ev.n + 1
end

local function emitRecipients(metaKey, runId, at, ev)
  if ev.n == 0 then return end
  local fields = {}
  for _, kind in ipairs(RECIPIENT_KINDS) do
    if #ev[kind] > 0 then
      fields[#fields + 1] = kind
      fields[#fields + 1] = table.concat(ev[kind], ',')
    end
  end
  emit(metaKey, 'recipients', runId, at, 'n', ev.n, unpack(fields))
  ev.n = 0
  for _, kind in ipairs(RECIPIENT_KINDS) do ev[kind] = {} end
end
