-- Takes recipients of a page for sending, in one step with what decides they
-- must not be sent now. Per recipient, one directive:
--   c  claim: pending (and due) → inflight, one attempt spent; `a` '1' when
--      the recipient was just counted against a frequency cap; `b` the
--      locale variant it is sent in (k ≥ 1: the run's k-th locale tag; 0 or
--      '': the default message), kept in its record's code;
--   d  defer (quiet hours): stays pending, due again at `a` (epoch ms); counted as deferred;
--   k  skip: pending → skipped for good, reason code `a`, detail `b`
--      (suppressed, frequency cap, invalid token).
-- Only the lease holder may do any of it, and only while the run is running,
-- so a pause stops every worker at its next claim. A record already in flight
-- under this lease is answered as claimed again to a `c`: a claim whose reply
-- was lost and that the client resent. Directives for recipients in any
-- other state are ignored. The lease is renewed.
-- A recipient to skip that an earlier attempt may have reached (in doubt) ends `unknown` instead.
-- Skips (and recipients found in doubt) are recipient events of the campaign's
-- outbox, by the mask (includes/outbox.lua), in this step.
-- KEYS: 1 run, 2 records, 3 lease, 4 leases, 5 errors, 6 campaign meta, 7 bad
-- ARGV: 1 page, 2 token, 3 lease ms, 4 event mask, then (index, directive, a, b) per recipient
-- Returns {'ok', index, attempts, index, attempts, …} (the claimed) | {'fenced'} | {'inactive', status}
-- @include ledger

local holder = readLease(KEYS[3])
if holder ~= ARGV[2] then return { 'fenced' } end
local run = redis.call('HMGET', KEYS[1], 'status', 'pageSize', 'id')
if run[1] ~= 'running' then return { 'inactive', run[1] or 'missing' } end

local now, elapsed, wall = runClocks(KEYS[1])
local pageSize = tonumber(run[2])
local out = { 'ok' }
local claimed, deferred, skipped, doubted, latestWake = 0, 0, 0, 0, 0
local ev = recipientEvents(ARGV[4])
for i = 5, #ARGV, 4 do
  local index, op = tonumber(ARGV[i]), ARGV[i + 1]
  local state, attempts, reason, at = readRecord(KEYS[2], index)
  if state == INFLIGHT and op == 'c' then
    out[#out + 1] = index
    out[#out + 1] = attempts
  elseif state == PENDING and op == 'c' and at <= elapsed then
    attempts = math.min(attempts + 1, 255)
    if reasonCode(reason) == QUIET then deferred = deferred - 1 end
    local flags = flagsOf(reason)
    if ARGV[i + 2] == '1' and not counted(reason) then flags = flags + COUNTED end
    local locale = tonumber(ARGV[i + 3]) or 0
    if locale > 0 then flags = flags + LOCALE + locale end
    writeRecord(KEYS[2], index, INFLIGHT, attempts, flags, elapsed)
    if inDoubt(reason) then noteDoubt(KEYS[1], tonumber(ARGV[1]) * pageSize + index, false) end
    claimed = claimed + 1
    out[#out + 1] = index
    out[#out + 1] = attempts
  elseif state == PENDING and op == 'd' then
    -- `a` is an instant (epoch ms): due after as long as the wall clock has until then.
    local wake = math.max(elapsed, elapsed + tonumber(ARGV[i + 2]) - wall)
    if reasonCode(reason) ~= QUIET then deferred = deferred + 1 end
    writeRecord(KEYS[2], index, PENDING, attempts, QUIET + flagsOf(reason), wake)
    if wake > latestWake then latestWake = wake end
  elseif state == PENDING and op == 'k' then
    local code = tonumber(ARGV[i + 2])
    local position = tonumber(ARGV[1]) * pageSize + index
    if reasonCode(reason) == QUIET then deferred = deferred - 1 end
    if inDoubt(reason) then
      -- An earlier attempt may have been delivered: not skipped, in doubt.
      writeRecord(KEYS[2], index, UNKNOWN, attempts, flagsOf(reason), elapsed)
      noteDoubt(KEYS[1], position, false)
      recordError(KEYS[5], position, 'IN_DOUBT', ARGV[i + 3] .. '; an earlier attempt may have been delivered', attempts, wall)
      redis.call('ZADD', KEYS[7], position, position)
      noteRecipient(ev, 'u', position)
      doubted = doubted + 1
    else
      writeRecord(KEYS[2], index, SKIPPED, attempts, code, elapsed)
      recordError(KEYS[5], position, 'SKIPPED', ARGV[i + 3], attempts, wall)
      redis.call('HINCRBY', KEYS[1], 'skip:' .. code, 1)
      noteRecipient(ev, 'k', position, code)
      skipped = skipped + 1
    end
  end
end
if claimed > 0 then redis.call('HINCRBY', KEYS[1], 'inflight', claimed) end
if deferred ~= 0 then redis.call('HINCRBY', KEYS[1], 'deferred', deferred) end
if latestWake > 0 then
  local current = tonumber(redis.call('HGET', KEYS[1], 'deferredUntil') or '0')
  local wakeAt = wall + latestWake - elapsed
  if wakeAt > current then redis.call('HSET', KEYS[1], 'deferredUntil', wakeAt) end
end
if skipped + doubted > 0 then
  redis.call('HINCRBY', KEYS[1], 'pending', -(skipped + doubted))
  if skipped > 0 then redis.call('HINCRBY', KEYS[1], 'skipped', skipped) end
  if doubted > 0 then redis.call('HINCRBY', KEYS[1], 'unknown', doubted) end
  redis.call('HSET', KEYS[1], 'activeAt', wall)
  emitRecipients(KEYS[6], run[3], wall, ev)
  completeIfDone(KEYS[1], KEYS[6], wall)
end
writeLease(KEYS[3], KEYS[4], ARGV[1], ARGV[2], now + tonumber(ARGV[3]))
return out
