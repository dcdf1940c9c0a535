-- Takes recipients of a page for sending, in one step with what decides they
-- must not be sent now. Per recipient, one directive:
--   c  claim: pending (and due) → inflight, one attempt spent; `a` '1' when
--      the recipient was just counted against a frequency cap; `b` the
--      locale variant it is sent in (k ≥ 1: the run's k-th locale tag; 0 or
--      '': the default message), kept in its record's code;
--   d  defer: stays pending, due again at `a` (epoch ms); `b` why (QUIET,
--      LOCAL_TIME; QUIET when ''): counted as deferred (includes/ledger.lua);
--      a local-time one is counted in its wave (`:waves`, by due instant);
--   k  skip: pending → skipped for good, reason code `a`, detail `b`
--      (suppressed, frequency cap, invalid token);
--   x  expire: pending → skipped, reason EXPIRED, once the run's deadline
--      has passed; before it, nothing.
-- Deadline: past the run's `expiresAt` less the guard (ARGV 5: what a request
-- needs to reach the provider), a `c` expires the recipient instead of
-- claiming it — in the step that would have claimed it.
-- Only the lease holder may do any of it, and only while the run is running,
-- so a pause stops every worker at its next claim. A record already in flight
-- under this lease is answered as claimed again to a `c`: a claim whose reply
-- was lost and that the client resent. Directives for recipients in any
-- other state are ignored. The lease is renewed.
-- A recipient to skip that an earlier attempt may have reached (in doubt) ends `unknown` instead.
-- Skips (and recipients found in doubt) are recipient events of the campaign's
-- outbox, by the mask (includes/outbox.lua), in this step.
-- Channel fallback (includes/ledger.lua fallBack): the caller sends one leg
-- (ARGV 6); a directive for a recipient on another leg is ignored. A
-- recipient skipped as token-invalid moves on to the next leg when the run's
-- rules say so. On a leg with a message budget (`fbMax`), a recipient's
-- first claim on it counts against the budget (`leg:k:msgs`); one past it is
-- skipped, reason FALLBACK_BUDGET.
-- KEYS: 1 run, 2 records, 3 lease, 4 leases, 5 errors, 6 campaign meta, 7 bad
-- ARGV: 1 page, 2 token, 3 lease ms, 4 event mask, 5 deadline guard ms, 6 leg,
--       7 the directives, packed (redis-ledger.ts packDirectives): per recipient
--       index (u32), directive (a letter), a (a double), b (a string after its u16 length)
-- Returns {'ok', ms left until the deadline less the guard ('' : none), index, attempts, index, attempts, …} (the claimed)
--       | {'fenced'} | {'inactive', status}
-- @include ledger

local holder = readLease(KEYS[3])
if holder ~= ARGV[2] then return { 'fenced' } end
local run = redis.call('HMGET', KEYS[1], 'status', 'pageSize', 'id', 'expiresAt')
if run[1] ~= 'running' then return { 'inactive', run[1] or 'missing' } end

local now, elapsed, wall = runClocks(KEYS[1])
local pageSize = tonumber(run[2])
local deadline = tonumber(run[4] or '')
local msLeft = deadline and deadline - tonumber(ARGV[5]) - wall or nil
local expired = msLeft ~= nil and msLeft <= 0
local out = { 'ok', msLeft and tostring(msLeft) or '' }
local claimed, skipped, doubted, latestWake = 0, 0, 0, 0
local d = {}
local ev = recipientEvents(ARGV[4])
local rules = fallbackRules(KEYS[1])
local leg = tonumber(ARGV[6]) or 0
-- This leg's message budget and what is spent of it.
local budget = rules and leg > 0 and rules.max[leg + 1] or nil
local spent = budget and tonumber(redis.call('HGET', KEYS[1], 'leg:' .. leg .. ':msgs') or '0') or 0
local spentBefore = spent
local records = openRecords(KEYS[2])

-- pending → skipped (reason `code`), or unknown when an earlier attempt may have been delivered.
local function skip(index, attempts, reason, code, detail)
  local position = tonumber(ARGV[1]) * pageSize + index
  leaveDeferral(d, reason)
  if not inDoubt(reason) and code == TOKEN_INVALID and fallBack(KEYS[1], records, KEYS[5], position, index, reason, 't', elapsed, rules, d) then
    -- On the next leg now (why: its legs byte).
  elseif inDoubt(reason) then
    writeRecord(records, index, UNKNOWN, attempts, flagsOf(reason), elapsed)
    noteDoubt(KEYS[1], position, false)
    recordError(KEYS[5], position, 'IN_DOUBT', detail .. '; an earlier attempt may have been delivered', attempts, wall)
    redis.call('ZADD', KEYS[7], position, position)
    noteRecipient(ev, 'u', position)
    doubted = doubted + 1
  else
    writeRecord(records, index, SKIPPED, attempts, code, elapsed)
    -- An expired recipient's reason says it all: no detail kept (a deadline may skip millions).
    if code ~= EXPIRED then recordError(KEYS[5], position, 'SKIPPED', detail, attempts, wall) end
    redis.call('HINCRBY', KEYS[1], 'skip:' .. code, 1)
    noteRecipient(ev, 'k', position, code)
    skipped = skipped + 1
  end
end

local packed, offset = ARGV[7] or '', 1
while offset <= #packed do
  local index, op, a, b
  index, op, a, b, offset = struct.unpack('>I4c1dHc0', packed, offset)
  local state, attempts, reason, at = readRecord(records, index)
  if rules and readLegs(records, index) % 4 ~= leg then
    -- Sent on another leg than the caller's: not this caller's to decide.
  elseif state == INFLIGHT and op == 'c' then
    out[#out + 1] = index
    out[#out + 1] = attempts
  elseif state == PENDING and (op == 'x' or op == 'c') and expired then
    skip(index, attempts, reason, EXPIRED, 'not sent before the deadline of the run')
  elseif state == PENDING and op == 'c' and at <= elapsed and budget and attempts == 0 and spent >= budget then
    skip(index, attempts, reason, FALLBACK_BUDGET, 'the message budget of fallback leg ' .. leg .. ' (maxMessages ' .. budget .. ') is spent')
  elseif state == PENDING and op == 'c' and at <= elapsed then
    if budget and attempts == 0 then spent = spent + 1 end
    attempts = math.min(attempts + 1, 255)
    leaveDeferral(d, reason)
    local flags = flagsOf(reason)
    if a == 1 and not counted(reason) then flags = flags + COUNTED end
    local locale = tonumber(b) or 0
    if locale > 0 then flags = flags + LOCALE + locale end
    writeRecord(records, index, INFLIGHT, attempts, flags, elapsed)
    if inDoubt(reason) then noteDoubt(KEYS[1], tonumber(ARGV[1]) * pageSize + index, false) end
    claimed = claimed + 1
    out[#out + 1] = index
    out[#out + 1] = attempts
  elseif state == PENDING and op == 'd' then
    -- `a` is an instant (epoch ms): due after as long as the wall clock has until then.
    local dueAt = a
    local wake = math.max(elapsed, elapsed + dueAt - wall)
    local why = tonumber(b) or QUIET
    if reasonCode(reason) ~= why then
      leaveDeferral(d, reason)
      enterDeferral(d, why)
      if why == LOCAL_TIME then
        -- The run's waves, by due instant (a few dozen zones; bounded all the same).
        local waves = KEYS[1] .. ':waves'
        if redis.call('HEXISTS', waves, dueAt) == 1 or redis.call('HLEN', waves) < 200 then redis.call('HINCRBY', waves, dueAt, 1) end
      end
    end
    writeRecord(records, index, PENDING, attempts, why + flagsOf(reason), wake)
    if wake > latestWake then latestWake = wake end
  elseif state == PENDING and op == 'k' then
    skip(index, attempts, reason, a, b)
  end
end
flushRecords(records)
if claimed > 0 then redis.call('HINCRBY', KEYS[1], 'inflight', claimed) end
if spent > spentBefore then d['leg:' .. leg .. ':msgs'] = spent - spentBefore end
for field, delta in pairs(d) do
  if delta ~= 0 then redis.call('HINCRBY', KEYS[1], field, delta) end
end
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
