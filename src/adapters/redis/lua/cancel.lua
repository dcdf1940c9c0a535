-- Cancels a campaign: its schedule goes, and a run in progress ends
-- `cancelled`: every recipient still pending is counted skipped at once
-- (their records say pending; a cancelled run reads them as skipped) —
-- unknown instead when an earlier attempt of theirs may have been delivered
-- (the run's `:doubt` index) — and the ones in flight finish and are
-- recorded as usual.
-- Those found in doubt are `recipient.unknown` events (by the mask,
-- includes/outbox.lua); the skipped are counted by `run.cancelled`.
-- KEYS: 1 campaign meta, 2 latest run hash (any key when there is none)
-- ARGV: 1 allowed states (csv), 2 latest run id as the caller read it, 3 event mask
-- Returns {'ok', 'cancelled'} | {'state', status} | {'moved'} | {'missing'}
-- @include campaign

local status = redis.call('HGET', KEYS[1], 'status')
if not status then return { 'missing' } end
if not allowed(status, ARGV[1]) then return { 'state', status } end
if not latestIs(KEYS[1], ARGV[2]) then return { 'moved' } end
local now = nowMs()
if ARGV[2] ~= '' then
  local run = redis.call('HMGET', KEYS[2], 'status', 'pending', 'inflight')
  if run[1] == 'running' or run[1] == 'paused' then
    local waiting = tonumber(run[2]) - tonumber(run[3])
    -- Pending recipients an earlier attempt may have reached are unknown, not skipped (includes/ledger.lua noteDoubt).
    local doubtful = redis.call('ZRANGE', KEYS[2] .. ':doubt', 0, -1)
    local ev = recipientEvents(ARGV[3])
    for _, position in ipairs(doubtful) do
      noteRecipient(ev, 'u', position)
      redis.call('ZADD', KEYS[2] .. ':bad', position, position)
      redis.call('HSET', KEYS[2] .. ':err', position, cjson.encode({ code = 'CANCELLED_IN_DOUBT', message = 'cancelled while waiting to be sent again; an earlier attempt may have been delivered', at = now }))
    end
    redis.call('DEL', KEYS[2] .. ':doubt')
    local skipped = waiting - #doubtful
    redis.call('HINCRBY', KEYS[2], 'skipped', skipped)
    redis.call('HINCRBY', KEYS[2], 'skip:5', skipped) -- REASONS.cancelled
    if #doubtful > 0 then redis.call('HINCRBY', KEYS[2], 'unknown', #doubtful) end
    redis.call('HSET', KEYS[2], 'deferred', 0, 'defer:7', 0) -- REASONS['local-time']
    redis.call('HINCRBY', KEYS[2], 'pending', -waiting)
    redis.call('HSET', KEYS[2], 'status', 'cancelled', 'cancelledAt', now)
    emitRecipients(KEYS[1], ARGV[2], now, ev)
    emit(KEYS[1], 'run.cancelled', ARGV[2], now, 'skipped', skipped, 'unknown', #doubtful)
  end
end
redis.call('HINCRBY', KEYS[1], 'scheduleVersion', 1)
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'schedule', '', 'updatedAt', now)
redis.call('HDEL', KEYS[1], 'pausedFrom')
return { 'ok', 'cancelled' }
