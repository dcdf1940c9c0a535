-- Shared by the ledger scripts. Layout of a record: see src/domain/ledger.ts.
-- @include clock
-- @include outbox
local RECORD = 10
local PENDING, INFLIGHT, SENT, FAILED, UNKNOWN, SKIPPED = 0, 1, 2, 3, 4, 5
-- Sent, with the provider's receipt since (src/domain/ledger.ts Delivery): final like SENT, counted in `sent`.
local DELIVERED, UNDELIVERED = 6, 7
-- The reason field: a code (REASONS of src/domain/respect.ts) in the low 14
-- bits, and two flags kept through every retry of the run: COUNTED, the
-- recipient was counted against a frequency cap (never counted twice);
-- IN_DOUBT, an attempt may have reached the provider without an answer, so
-- the recipient can never end `failed` or `skipped` (it may have been
-- delivered): it ends `sent` or `unknown`.
local COUNTED, IN_DOUBT = 32768, 16384
-- REASONS of src/domain/respect.ts that the scripts act on.
local QUIET, TOKEN_INVALID, CANCELLED, LOCAL_TIME, EXPIRED = 1, 4, 5, 7, 8
-- Once claimed, the code of a record holds the message variant it was sent
-- in: LOCALE + k for the run's k-th locale tag (run hash `locales`), none for
-- the default. Skip and defer reasons are below it.
local LOCALE = 4096
local function reasonCode(reason) return reason % IN_DOUBT end
local function counted(reason) return reason >= COUNTED end
local function inDoubt(reason) return reason % COUNTED >= IN_DOUBT end
-- The flags of a reason field, without its code.
local function flagsOf(reason) return reason - reasonCode(reason) end

-- Pending recipients waiting for their time are counted in the run's
-- `deferred`, and those waiting for their local time in `defer:7` as well
-- (the rest wait for quiet hours). A record leaving such a wait (claimed,
-- skipped, settled) takes itself out, in `d`: the deltas a script adds to
-- the run's fields.
local DEFER_LOCAL = 'defer:' .. LOCAL_TIME
local function isDeferral(code) return code == QUIET or code == LOCAL_TIME end
local function leaveDeferral(d, reason)
  local code = reasonCode(reason)
  if isDeferral(code) then d.deferred = (d.deferred or 0) - 1 end
  if code == LOCAL_TIME then d[DEFER_LOCAL] = (d[DEFER_LOCAL] or 0) - 1 end
end
local function enterDeferral(d, code)
  d.deferred = (d.deferred or 0) + 1
  if code == LOCAL_TIME then d[DEFER_LOCAL] = (d[DEFER_LOCAL] or 0) + 1 end
end

-- A run's clocks (see includes/clock.lua), kept in its hash:
-- - `lease`: page leases, on a steady clock whose step from one call to the
--   next is bounded by the run's `clkStep` (create-run stores it from the
--   configuration: a live run's hash is touched at least every supervisor
--   tick, so the bound only ever clips a step of the wall clock, or a gap in
--   which nothing was timed);
-- - `elapsed`: ms since the run began, the axis of every record's time (due
--   after a retry's backoff, after quiet hours): it follows TIME but never
--   runs backwards, so a backward step of the wall clock does not hold every
--   recipient back by its size (a forward one is taken as real waiting would
--   be; quiet hours are checked again by the worker's own clock anyway).
-- Returns lease now, elapsed, wall now.
local function runClocks(runKey)
  local wall = wallMs()
  local f = redis.call('HMGET', runKey, 'clk', 'clkWall', 'clkStep', 'due', 'dueWall', 'createdAt')
  local lease = advanceClock(tonumber(f[1] or ''), tonumber(f[2] or ''), wall, tonumber(f[3] or '') or 1000)
  local dueNow = advanceClock(tonumber(f[4] or ''), tonumber(f[5] or ''), wall, nil)
  redis.call('HSET', runKey, 'clk', lease, 'clkWall', wall, 'due', dueNow, 'dueWall', wall)
  return lease, dueNow - tonumber(f[6] or wall), wall
end

-- A page's records held by a script that touches many of them (claim.lua,
-- confirm.lua): read with one GET, written back by `flushRecords` with one
-- SETRANGE per run of neighbouring records changed, instead of a GETRANGE
-- and a SETRANGE per recipient. readRecord and writeRecord take either the
-- records' key or such a page; a script that opens one flushes it before it
-- returns.
local function openRecords(key)
  return { key = key, raw = redis.call('GET', key) or '', dirty = {} }
end

local function keyOfRecords(records)
  if type(records) == 'table' then return records.key end
  return records
end

-- state, attempts, reason, at (ms since the run began)
local function readRecord(records, index)
  local raw
  if type(records) == 'table' then
    raw = records.dirty[index]
    if not raw then
      if #records.raw < (index + 1) * RECORD then return PENDING, 0, 0, 0 end
      local state, attempts, reason, at = struct.unpack('>BBHI6', records.raw, index * RECORD + 1)
      return state, attempts, reason, at
    end
  else
    raw = redis.call('GETRANGE', records, index * RECORD, index * RECORD + RECORD - 1)
    if #raw < RECORD then return PENDING, 0, 0, 0 end
  end
  local state, attempts, reason, at = struct.unpack('>BBHI6', raw)
  return state, attempts, reason, at
end

local function writeRecord(records, index, state, attempts, reason, at)
  if at < 0 then at = 0 end
  local packed = struct.pack('>BBHI6', state, attempts, reason, at)
  if type(records) == 'table' then records.dirty[index] = packed else redis.call('SETRANGE', records, index * RECORD, packed) end
end

local function flushRecords(records)
  local indexes = {}
  for index in pairs(records.dirty) do indexes[#indexes + 1] = index end
  table.sort(indexes)
  local from, run = nil, {}
  for n = 1, #indexes + 1 do
    local index = indexes[n]
    if from and index ~= from + #run then
      redis.call('SETRANGE', records.key, from * RECORD, table.concat(run))
      from, run = nil, {}
    end
    if index then
      from = from or index
      run[#run + 1] = records.dirty[index]
    end
  end
  records.dirty = {}
end

-- Channel fallback (src/domain/fallback.ts). A run with a fallback chain has
-- `fb` in its hash: per leg a recipient can leave, the letters of the
-- outcomes that move it on (f failed, t token-invalid, n no-token, u
-- unknown), comma separated; and `fbMax`: per leg, its message budget ('' :
-- none). Each recipient's leg is a byte in a string per page beside its
-- records (written only once someone on the page moves on; missing: 0):
-- bits 0-1 its leg, bits 2k+2..2k+3 why it left leg k.
local LEFT_CODE = { f = 0, t = 1, n = 2, u = 3 }
-- The reason a recipient past a leg's budget is skipped with (REASONS of src/domain/respect.ts).
local FALLBACK_BUDGET = 9

local function legsKeyOf(records) return (string.gsub(keyOfRecords(records), ':st:(%d+)$', ':lg:%1')) end

local function readLegs(recordsKey, index)
  local raw = redis.call('GETRANGE', legsKeyOf(recordsKey), index, index)
  if raw == '' then return 0 end
  return string.byte(raw)
end

-- The run's rules, read once per script: nil when it has no fallback.
local function fallbackRules(runKey)
  local f = redis.call('HMGET', runKey, 'fb', 'fbMax')
  if not f[1] or f[1] == '' then return nil end
  local rules = { on = {}, max = {} }
  for part in string.gmatch(f[1] .. ',', '([^,]*),') do rules.on[#rules.on + 1] = part end
  local k = 0
  for part in string.gmatch((f[2] or '') .. ',', '([^,]*),') do
    k = k + 1
    rules.max[k] = tonumber(part)
  end
  return rules
end

-- Moves a recipient whose leg just ended with `why` (a letter) on to the
-- next leg, when the run's rules say so: pending again, due now, no
-- attempts spent on the new leg, its frequency-cap mark kept (a fallback is
-- the same message, not a second one), the last leg's error and requeue
-- count gone (the new leg's provider has its own). Returns true when it moved on.
local function fallBack(runKey, recordsKey, errorsKey, position, index, reason, why, elapsed, rules, d)
  if not rules then return false end
  local byte = readLegs(recordsKey, index)
  local leg = byte % 4
  local on = rules.on[leg + 1]
  if not on or not string.find(on, why, 1, true) then return false end
  local moved = byte - leg + (leg + 1) + LEFT_CODE[why] * 4 ^ (leg + 1)
  redis.call('SETRANGE', legsKeyOf(recordsKey), index, string.char(moved))
  writeRecord(recordsKey, index, PENDING, 0, counted(reason) and COUNTED or 0, elapsed)
  redis.call('HDEL', errorsKey, position)
  d['leg:' .. leg .. ':out'] = (d['leg:' .. leg .. ':out'] or 0) + 1
  d['leg:' .. (leg + 1) .. ':in'] = (d['leg:' .. (leg + 1) .. ':in'] or 0) + 1
  return true
end

-- Counts a recipient sent on `leg` (`leg:k:sent`), for a run with a fallback chain.
local function countLegSent(leg, rules, d)
  if not rules then return end
  local key = 'leg:' .. leg .. ':sent'
  d[key] = (d[key] or 0) + 1
end

-- The run's index of recipients pending in doubt (an earlier attempt may have
-- been delivered; retried, or resent): a cancel counts them unknown, not
-- skipped. Kept beside the run's hash (same hash tag).
local function noteDoubt(runKey, position, pendingInDoubt)
  if pendingInDoubt then redis.call('ZADD', runKey .. ':doubt', position, position) else redis.call('ZREM', runKey .. ':doubt', position) end
end

-- Returns the holder token and expiry (steady ms) of a page lease, or nil.
local function readLease(leaseKey)
  local lease = redis.call('GET', leaseKey)
  if not lease then return nil, 0 end
  local sep = string.find(lease, '|', 1, true)
  return string.sub(lease, 1, sep - 1), tonumber(string.sub(lease, sep + 1))
end

local function writeLease(leaseKey, leasesKey, page, token, expiry)
  redis.call('SET', leaseKey, token .. '|' .. expiry)
  redis.call('ZADD', leasesKey, expiry, page)
end

local function recordError(errorsKey, position, code, message, attempts, now, requeues)
  redis.call('HSET', errorsKey, position, cjson.encode({ code = code, message = message, attempts = attempts, at = now, requeues = requeues }))
end

-- Settles the in-flight records of a page that no live worker holds any
-- more (its lease ran out, or its holder released it with a confirm lost on
-- the way): a request may have been on the wire. With the in-doubt policy
-- 'resend' (a provider that honours the idempotency key) a recipient with
-- attempts left is pending again, due now, to be sent with the same key;
-- otherwise — 'report', no attempts left, or a cancelled run — it is
-- `unknown`: never sent again silently (noted in `ev`, the step's recipient
-- events). One the provider's receipt already reported (receipt.lua, before
-- any confirm) is sent, as the receipt says. Returns how many became
-- unknown, how many pending, and how many sent.
local function settleInflight(runKey, recordsKey, errorsKey, badKey, page, elapsed, now, policy, maxAttempts, ev)
  local raw = redis.call('GET', recordsKey)
  if not raw then return 0, 0, 0 end
  local run = redis.call('HMGET', runKey, 'pageSize', 'status', 'early')
  local pageSize = tonumber(run[1])
  local resendable = policy == 'resend' and run[2] ~= 'cancelled'
  local anyEarly = tonumber(run[3] or '0') > 0
  -- The policy is the campaign's own provider's: a recipient on a fallback leg is never resent blind (reported unknown).
  local anyLegs = redis.call('EXISTS', legsKeyOf(recordsKey)) == 1
  local unknown, resent, sent, delivered, undelivered = 0, 0, 0, 0, 0
  for index = 0, math.floor(#raw / RECORD) - 1 do
    local state, attempts, reason = struct.unpack('>BBH', raw, index * RECORD + 1)
    if state == INFLIGHT then
      local position = page * pageSize + index
      local early = anyEarly and redis.call('HGET', runKey .. ':early', position)
      if early then
        local kind = string.sub(early, 1, 1)
        redis.call('HDEL', runKey .. ':early', position)
        redis.call('HINCRBY', runKey, 'early', -1)
        writeRecord(recordsKey, index, kind == 'd' and DELIVERED or UNDELIVERED, attempts, reason, elapsed)
        noteRecipient(ev, 's', position)
        noteRecipient(ev, kind, position, string.sub(early, 3))
        if kind == 'd' then delivered = delivered + 1 else undelivered = undelivered + 1 end
        sent = sent + 1
      elseif resendable and attempts < maxAttempts and not (anyLegs and readLegs(recordsKey, index) % 4 > 0) then
        writeRecord(recordsKey, index, PENDING, attempts, inDoubt(reason) and reason or reason + IN_DOUBT, elapsed)
        noteDoubt(runKey, position, true)
        recordError(errorsKey, position, 'LEASE_EXPIRED',
          'the worker sending this recipient stopped before it heard back from the provider; sending again with the same idempotency key',
          attempts, now)
        resent = resent + 1
      else
        writeRecord(recordsKey, index, UNKNOWN, attempts, reason, elapsed)
        recordError(errorsKey, position, 'LEASE_EXPIRED',
          'the worker sending this recipient stopped before it heard back from the provider; it may or may not have been delivered',
          attempts, now)
        redis.call('ZADD', badKey, position, position)
        noteRecipient(ev, 'u', position)
        unknown = unknown + 1
      end
    end
  end
  if unknown + resent + sent > 0 then redis.call('HINCRBY', runKey, 'inflight', -(unknown + resent + sent)) end
  if unknown + sent > 0 then redis.call('HINCRBY', runKey, 'pending', -(unknown + sent)) end
  if unknown > 0 then redis.call('HINCRBY', runKey, 'unknown', unknown) end
  if sent > 0 then redis.call('HINCRBY', runKey, 'sent', sent) end
  if delivered > 0 then redis.call('HINCRBY', runKey, 'delivered', delivered) end
  if undelivered > 0 then redis.call('HINCRBY', runKey, 'undelivered', undelivered) end
  return unknown, resent, sent
end

-- Ends the run once nothing is pending (in-flight counts as pending) and puts
-- the campaign in the status the run was created to leave it in. Returns 1
-- when this call completed the run.
local function completeIfDone(runKey, metaKey, now)
  local fields = redis.call('HMGET', runKey, 'status', 'pending', 'after', 'id')
  if (fields[1] ~= 'running' and fields[1] ~= 'paused') or tonumber(fields[2]) ~= 0 then return 0 end
  redis.call('HSET', runKey, 'status', 'completed', 'completedAt', now)
  if redis.call('HGET', metaKey, 'latestRun') == fields[4] then
    if fields[1] == 'paused' and fields[3] ~= 'completed' and redis.call('HGET', metaKey, 'status') == 'paused' then
      -- A paused run ended by its deadline: the operator's pause holds for
      -- the campaign's next occurrences, resumed into its schedule.
      redis.call('HSET', metaKey, 'pausedFrom', fields[3], 'updatedAt', now)
    else
      redis.call('HSET', metaKey, 'status', fields[3], 'updatedAt', now)
    end
  end
  local c = redis.call('HMGET', runKey, 'total', 'sent', 'failed', 'unknown', 'skipped', 'trigger')
  emit(metaKey, 'run.completed', fields[4], now, 'trigger', c[6] or '',
    'counts', cjson.encode({ total = tonumber(c[1]), sent = tonumber(c[2]), failed = tonumber(c[3]), unknown = tonumber(c[4]), skipped = tonumber(c[5]) }))
  return 1
end
