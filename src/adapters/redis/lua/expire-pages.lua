-- The supervisor's sweep of a run past its deadline (`expiresAt`), running
-- or paused: every recipient of pages [from, to) still pending — never
-- claimed, deferred to a local time or past quiet hours, waiting for a retry,
-- or on a page no worker has opened yet — is skipped, reason EXPIRED (unknown
-- when an earlier attempt may have been delivered), in one step per call.
-- Recipients in flight are left to their confirm: their requests left before
-- the deadline. Completes the run once nothing is pending.
-- KEYS: 1 run, 2 campaign meta, 3 bad, 4 unfinished, 5 parked, 6 errors
-- ARGV: 1 key prefix of the run's records (…:st:), 2 event mask, 3 from page, 4 to page (exclusive)
-- Returns {expired, unknown, 1 when this call completed the run, 'early' when the deadline has not passed}
-- @include ledger

local run = redis.call('HMGET', KEYS[1], 'status', 'expiresAt', 'pageSize', 'total', 'id')
if run[1] ~= 'running' and run[1] ~= 'paused' then return { 0, 0, 0 } end
local _, elapsed, wall = runClocks(KEYS[1])
local deadline = tonumber(run[2] or '')
if not deadline or wall < deadline then return { 0, 0, 0, 'early' } end
local pageSize, total = tonumber(run[3]), tonumber(run[4])
local ev = recipientEvents(ARGV[2])
local d = {}
local expired, doubted = 0, 0
local skippedRecord = struct.pack('>BBHI6', SKIPPED, 0, EXPIRED, elapsed)
for page = tonumber(ARGV[3]), tonumber(ARGV[4]) - 1 do
  local size = math.min(pageSize, total - page * pageSize)
  local key = ARGV[1] .. page
  local raw = redis.call('GET', key)
  if size > 0 and not raw then
    -- A page no worker ever opened: every record is pending, none written yet.
    redis.call('SET', key, string.rep(skippedRecord, size))
    for index = 0, size - 1 do noteRecipient(ev, 'k', page * pageSize + index, EXPIRED) end
    expired = expired + size
  elseif size > 0 then
    local left = 0
    for index = 0, size - 1 do
      local state, attempts, reason = PENDING, 0, 0
      if (index + 1) * RECORD <= #raw then state, attempts, reason = struct.unpack('>BBH', raw, index * RECORD + 1) end
      local position = page * pageSize + index
      if state == PENDING then
        leaveDeferral(d, reason)
        if inDoubt(reason) then
          writeRecord(key, index, UNKNOWN, attempts, flagsOf(reason), elapsed)
          noteDoubt(KEYS[1], position, false)
          recordError(KEYS[6], position, 'IN_DOUBT', 'not sent again before the deadline of the run; an earlier attempt may have been delivered', attempts, wall)
          redis.call('ZADD', KEYS[3], position, position)
          noteRecipient(ev, 'u', position)
          doubted = doubted + 1
        else
          writeRecord(key, index, SKIPPED, attempts, EXPIRED, elapsed)
          noteRecipient(ev, 'k', position, EXPIRED)
          expired = expired + 1
        end
      elseif state == INFLIGHT then
        left = left + 1
      end
    end
    if left == 0 then
      redis.call('SREM', KEYS[4], page)
      redis.call('ZREM', KEYS[5], page)
    end
  end
end
for field, delta in pairs(d) do
  if delta ~= 0 then redis.call('HINCRBY', KEYS[1], field, delta) end
end
local completed = 0
if expired + doubted > 0 then
  redis.call('HINCRBY', KEYS[1], 'pending', -(expired + doubted))
  if expired > 0 then
    redis.call('HINCRBY', KEYS[1], 'skipped', expired)
    redis.call('HINCRBY', KEYS[1], 'skip:' .. EXPIRED, expired)
  end
  if doubted > 0 then redis.call('HINCRBY', KEYS[1], 'unknown', doubted) end
  redis.call('HSET', KEYS[1], 'activeAt', wall)
  emitRecipients(KEYS[2], run[5], wall, ev)
  completed = completeIfDone(KEYS[1], KEYS[2], wall)
end
return { expired, doubted, completed }
